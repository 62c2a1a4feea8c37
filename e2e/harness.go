// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Logs returns the last lines of etcd's and every weftd's log.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	if c.Etcd != nil {
		data, _ := os.ReadFile(c.Etcd.LogFile)
		fmt.Fprintf(&b, "----- etcd (%s) -----\n%s\n", c.Etcd.LogFile, tail(data, lines))
	}
	for _, n := range c.Nodes() {
		if n.Proc() == nil {
			continue // weftd never started here
		}
		fmt.Fprintf(&b, "----- weftd on %s (%s) -----\n%s\n", n.Name, n.LogFile, n.LogTail(lines))
	}
	return b.String()
}

// Eventually calls cond every interval until it returns nil or timeout
// passes, and returns its last error.
func Eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}
