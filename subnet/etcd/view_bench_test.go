// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package etcd

import (
	"fmt"
	"testing"
	"time"
)

// TestBenchEndpointView prints the endpoint reader's view of 150 000
// endpoints (5000 nodes of 30 pods, what every node makes again on each
// pod change) beside its view of 1000 (the reference: the ratio is how
// the view grows with the endpoints), medians of 5 in the same run.
func TestBenchEndpointView(t *testing.T) {
	median := func(nodes, pods int) time.Duration {
		es := benchEndpointSet(t, nodes, pods)
		var ds []time.Duration
		for range 5 {
			start := time.Now()
			es.view()
			ds = append(ds, time.Since(start))
		}
		return quantile(ds, 0.5)
	}
	small, big := median(100, 10), median(5000, 30)
	fmt.Printf("BENCH| endpoint view, 150 000 endpoints (on each pod change) | %.1f ms | 1000 endpoints: %.2f ms | %.0fx\n",
		ms(big), ms(small), ms(big)/ms(small))
}
