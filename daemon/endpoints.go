// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/subnet"
)

// endpointPoll is how often the endpoint loop looks at the pod record
// directory for a change (one stat).
const endpointPoll = 100 * time.Millisecond

// endpointLoop publishes this node's pods in the store, for the other
// nodes' policy: in etcd mode (a store that is a [subnet.EndpointPublisher])
// with --cni-data-dir set; otherwise it returns at once. The source is the
// CNI plugin's pod records (package antispoof), the ones with a pod
// identity. It publishes when the record directory changed (a pod added
// or deleted: the plugin renames records in and removes them, which
// changes the directory's mtime), when the lease changed, and every
// resync interval (which repairs drift in the store); each publication
// converges the node's endpoints in the store to the records. On Linux an
// inotify watch on the directory wakes it as soon as a record is renamed
// in or removed; the poll stays as the fallback.
func (d *daemon) endpointLoop(ctx context.Context) error {
	pub, ok := d.store.(subnet.EndpointPublisher)
	if !ok || d.cfg.CNIDataDir == "" {
		return nil
	}
	st := &endpointState{pub: pub, dir: antispoof.RecordDir(d.cfg.CNIDataDir), dirty: true, backoff: time.Second, problem: "not published yet"}
	st.log = d.log.WithField("records", st.dir)
	st.log.Debug("endpoint loop started")
	defer st.log.Debug("endpoint loop stopped")
	var notify *dirNotify
	defer func() {
		if notify != nil {
			notify.close()
		}
	}()
	for {
		now := time.Now()
		var mtime time.Time
		if fi, err := os.Stat(st.dir); err == nil {
			mtime = fi.ModTime()
			if notify == nil {
				// Made before the records are read below: a record
				// renamed in after this is seen by the watch.
				notify, _ = newDirNotify(st.dir) // nil: poll only
			}
		}
		d.lease.mu.Lock()
		var lease *subnet.Lease
		if d.lease.ok && d.lease.cur != nil {
			l := *d.lease.cur
			lease = &l
		}
		d.lease.mu.Unlock()

		if !mtime.Equal(st.lastMtime) {
			st.dirty = true
		}
		due := lease != nil && lease.LeaseID != 0 && now.After(st.retryAt) &&
			(st.dirty || lease.LeaseID != st.lastLease || now.Sub(st.lastAt) >= d.cfg.ResyncInterval)
		if due && !d.endpointTurn(ctx, st, lease, mtime, now) {
			return nil
		}
		if notify != nil {
			if notify.wait(endpointPoll) {
				st.dirty = true
			}
			if notify.gone {
				notify.close()
				notify = nil
			}
		} else if sleep(ctx, endpointPoll) != nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// endpointState is the endpoint loop's own (no other goroutine reads it).
type endpointState struct {
	pub subnet.EndpointPublisher
	dir string
	log logrus.FieldLogger
	// What the last publication was made from, and when.
	lastMtime time.Time
	lastLease int64
	lastAt    time.Time
	// dirty: publish at the next turn; retryAt, backoff: after a failure;
	// problem: the failure last logged ("" when none).
	dirty   bool
	retryAt time.Time
	backoff time.Duration
	problem string
}

// endpointTurn publishes once and logs what changed; it returns false
// when ctx ended.
func (d *daemon) endpointTurn(ctx context.Context, st *endpointState, lease *subnet.Lease, mtime, now time.Time) bool {
	// A change within the filesystem's timestamp granularity of the
	// stat could leave mtime as it is: look again next turn.
	st.dirty = now.Sub(mtime) < 50*time.Millisecond
	st.lastMtime, st.lastLease, st.lastAt = mtime, lease.LeaseID, now
	n, put, del, skipped, err := d.publishEndpoints(ctx, st.pub, st.dir, lease)
	msg := ""
	switch {
	case err != nil && ctx.Err() != nil:
		return false
	case err != nil:
		msg = err.Error()
		st.retryAt = now.Add(st.backoff)
		st.backoff = min(st.backoff*2, d.cfg.ResyncInterval)
		st.dirty = true
	default:
		st.backoff = time.Second
	}
	if msg != st.problem {
		if msg == "" {
			st.log.WithField("endpoints", n).Info("pod endpoints published")
		} else {
			st.log.WithError(err).Warn("publish pod endpoints: retrying")
		}
		st.problem = msg
	}
	if err == nil && put+del+len(skipped) > 0 {
		st.log.WithFields(logrus.Fields{"endpoints": n, "written": put, "deleted": del}).Debug("pod endpoints published")
	}
	for port, why := range skipped {
		st.log.WithFields(logrus.Fields{"port": port, "problem": why}).Debug("pod not published")
	}
	return true
}

// publishEndpoints reads the pod records of dir and publishes the
// endpoints of those with a pod identity whose addresses lie in lease;
// skipped maps the ports of the others that have one to why. A missing
// directory is no pod.
func (d *daemon) publishEndpoints(ctx context.Context, pub subnet.EndpointPublisher, dir string, lease *subnet.Lease) (n, put, del int, skipped map[string]string, err error) {
	recs, err := antispoof.ReadRecords(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, 0, nil, err
	}
	skipped = map[string]string{}
	var eps []subnet.Endpoint
	for _, r := range recs.Good {
		if r.Pod.IsZero() {
			continue // a pod the runtime did not name, or an older record
		}
		e := subnet.Endpoint{Node: d.nodeName, Key: r.Port, PodIdentity: r.Pod, IPv4: r.IPv4, IPv6: r.IPv6}
		if err := subnet.CheckEndpoint(e, []subnet.Lease{*lease}); err != nil {
			skipped[r.Port] = err.Error() // addressed from an earlier lease
			continue
		}
		eps = append(eps, e)
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.ResyncInterval)
	defer cancel()
	put, del, err = pub.PublishEndpoints(cctx, lease, eps)
	if err != nil {
		return len(eps), put, del, skipped, fmt.Errorf("publish %d endpoints: %w", len(eps), err)
	}
	return len(eps), put, del, skipped, nil
}
