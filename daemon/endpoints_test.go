// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/subnet"
)

// recordingPublisher keeps what it was asked to publish.
type recordingPublisher struct{ eps []subnet.Endpoint }

func (p *recordingPublisher) PublishEndpoints(_ context.Context, _ *subnet.Lease, eps []subnet.Endpoint) (int, int, error) {
	p.eps = eps
	return len(eps), 0, nil
}

// TestPublishEndpointsFromRecords: the endpoints published are the pod
// records with an identity whose addresses lie in the lease; a record
// without identity (an older release's, or a pod the runtime did not
// name) is not published, one addressed from another subnet is skipped
// with the reason, and no record directory is no endpoint.
func TestPublishEndpointsFromRecords(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "cni")
	d := &daemon{nodeName: "n1", cfg: &Config{ResyncInterval: time.Second}}
	lease := &subnet.Lease{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Record: subnet.Record{NodeName: "n1"}, LeaseID: 7}
	pub := &recordingPublisher{}
	dir := antispoof.RecordDir(dataDir)

	if n, _, _, _, err := d.publishEndpoints(t.Context(), pub, dir, lease); err != nil || n != 0 {
		t.Fatalf("no record directory: %d endpoints, %v", n, err)
	}
	id := subnet.PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"app": "web"}}
	for _, r := range []antispoof.Record{
		{ContainerID: "c1", IfName: "eth0", Port: "weft0000000a", MAC: "02:00:00:00:00:0a", IPv4: netip.MustParseAddr("10.244.3.10"), Pod: id},
		{ContainerID: "c2", IfName: "eth0", Port: "weft0000000b", MAC: "02:00:00:00:00:0b", IPv4: netip.MustParseAddr("10.244.3.11")},
		{ContainerID: "c3", IfName: "eth0", Port: "weft0000000c", MAC: "02:00:00:00:00:0c", IPv4: netip.MustParseAddr("10.244.9.12"), Pod: id},
	} {
		if err := antispoof.WriteRecord(dataDir, r); err != nil {
			t.Fatal(err)
		}
	}
	n, _, _, skipped, err := d.publishEndpoints(t.Context(), pub, dir, lease)
	if err != nil || n != 1 {
		t.Fatalf("published %d, %v; want 1", n, err)
	}
	want := []subnet.Endpoint{{Node: "n1", Key: "weft0000000a", PodIdentity: id, IPv4: netip.MustParseAddr("10.244.3.10")}}
	if diff := cmp.Diff(want, pub.eps, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	if len(skipped) != 1 || skipped["weft0000000c"] == "" {
		t.Errorf("skipped %v, want weft0000000c (outside the lease)", skipped)
	}
}
