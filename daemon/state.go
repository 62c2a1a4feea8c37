// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
	"github.com/weftnet/weft/subnet/safefile"
)

// Files in the state dir. The backends keep their own files there too
// (VTEP MAC, WireGuard private key).
const (
	nodeIDFile   = "node-id"
	dataFile     = "data.json"
	configFile   = "config.json"
	leaseFile    = "lease.json"
	snapshotFile = "peers.json"
	// gossipKeyFile holds a copy of the cluster's gossip key from the
	// store (base64, mode 0600), for a start while the store is away.
	gossipKeyFile = "gossip-key"
)

// stateDir is weftd's persistent state: everything it needs to start and
// serve its data plane while etcd is unreachable. Files are written
// atomically (temporary file, fsync, rename) with mode 0600.
type stateDir struct {
	dir string
}

// openStateDir creates dir (0700) if needed and tightens its mode.
func openStateDir(dir string) (*stateDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chmod state dir: %w", err)
	}
	return &stateDir{dir: dir}, nil
}

func (s *stateDir) path(name string) string { return filepath.Join(s.dir, name) }

// Bounds of the state dir's files as read back. Each is far above what
// weftd writes; a larger file is not weftd's and is refused unread.
const (
	// maxSmallStateFile bounds the node ID and the gossip key copy.
	maxSmallStateFile = 4 << 10
	// maxStateFile bounds the data version, the lease and the network
	// config (a lease record in the store is at most
	// subnetetcd.MaxValueSize; a config is a few hundred bytes).
	maxStateFile = 1 << 20
	// maxSnapshotFile bounds the peer snapshot: one listing holds at most
	// subnetetcd.MaxListKeys leases, each well under 1 KiB of indented
	// JSON here.
	maxSnapshotFile = subnetetcd.MaxListKeys << 10
)

// stateRules are the rules for reading the state file name: no symbolic
// link on the path, a regular file of at most max bytes owned by root,
// weftd's user or the state dir's owner, writable by no one else (and for
// a secret, accessible by no one else), in directories no one else can
// write; a FIFO is never opened (see [safefile.Read]).
func stateRules(max int64, secret bool) safefile.Rules {
	return safefile.Rules{What: "state file", Max: max, Owners: safefile.Self | safefile.DirOwner, Secret: secret}
}

// read reads the state file name under stateRules.
func (s *stateDir) read(name string, max int64, secret bool) ([]byte, error) {
	return safefile.Read(s.path(name), stateRules(max, secret))
}

// write stores data in the named file atomically.
func (s *stateDir) write(name string, data []byte) error {
	tmp, err := os.CreateTemp(s.dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(name))
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", s.path(name), err)
	}
	return nil
}

func (s *stateDir) writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return s.write(name, append(data, '\n'))
}

// readJSON decodes the named file into v. It returns false (and no error)
// when the file does not exist.
func (s *stateDir) readJSON(name string, max int64, v any) (bool, error) {
	data, err := s.read(name, max, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", s.path(name), err)
	}
	return true, nil
}

// nodeID returns the node's UUID, creating it on first use. It never
// changes afterwards: it tells this node from another one with the same
// name.
func (s *stateDir) nodeID() (string, error) {
	data, err := s.read(nodeIDFile, maxSmallStateFile, false)
	if err == nil {
		id, perr := uuid.Parse(strings.TrimSpace(string(data)))
		if perr != nil {
			return "", fmt.Errorf("%s: not a UUID (remove the file to make a new node identity): %w", s.path(nodeIDFile), perr)
		}
		return id.String(), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read node ID: %w", err)
	}
	id := uuid.NewString()
	if err := s.write(nodeIDFile, []byte(id+"\n")); err != nil {
		return "", err
	}
	return id, nil
}

// ownData is the data this node is the source of truth for. Version grows
// by one whenever any other field changes.
type ownData struct {
	Version     uint64             `json:"version"`
	PublicIP    netip.Addr         `json:"publicIP,omitzero"`
	PublicIPv6  netip.Addr         `json:"publicIPv6,omitzero"`
	GossipAddr  string             `json:"gossipAddr,omitempty"`
	BackendType string             `json:"backendType"`
	BackendData subnet.BackendData `json:"backendData,omitzero"`
}

// sameData reports whether a and b carry the same data, ignoring Version.
func sameData(a, b ownData) bool {
	a.Version, b.Version = 0, 0
	return a == b
}

// dataVersion returns cur with the version to publish: the persisted
// version when the data is unchanged, one more when it changed (1 the
// first time), and persists the result.
func (s *stateDir) dataVersion(cur ownData) (ownData, error) {
	var prev ownData
	found, err := s.readJSON(dataFile, maxStateFile, &prev)
	if err != nil {
		return ownData{}, err
	}
	cur.Version = prev.Version
	if !found || !sameData(prev, cur) {
		cur.Version++
	}
	if found && cur == prev {
		return cur, nil
	}
	return cur, s.writeJSON(dataFile, cur)
}

// setDataVersion persists d (used when the store shows a higher version
// than ours, for example after the state dir was lost).
func (s *stateDir) setDataVersion(d ownData) error { return s.writeJSON(dataFile, d) }

// config returns the last good network config, or nil if none was saved.
// It is validated again on load.
func (s *stateDir) config() (*subnet.Config, error) {
	data, err := s.read(configFile, maxStateFile, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved config: %w", err)
	}
	c, err := subnet.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("saved config %s: %w", s.path(configFile), err)
	}
	return c, nil
}

func (s *stateDir) saveConfig(c *subnet.Config) error { return s.writeJSON(configFile, c) }

// lease returns the saved lease, or nil.
func (s *stateDir) lease() (*subnet.Lease, error) {
	var l subnet.Lease
	found, err := s.readJSON(leaseFile, maxStateFile, &l)
	if err != nil || !found {
		return nil, err
	}
	if !l.Primary().IsValid() {
		return nil, fmt.Errorf("saved lease %s has no subnet", s.path(leaseFile))
	}
	return &l, nil
}

func (s *stateDir) saveLease(l *subnet.Lease) error { return s.writeJSON(leaseFile, l) }

// snapshot returns the last complete peer view saved, or nil.
func (s *stateDir) snapshot() (*subnet.View, error) {
	var v subnet.View
	found, err := s.readJSON(snapshotFile, maxSnapshotFile, &v)
	if err != nil || !found {
		return nil, err
	}
	v.Complete = true
	return &v, nil
}

func (s *stateDir) saveSnapshot(v subnet.View) error { return s.writeJSON(snapshotFile, v) }

// gossipKey returns the saved copy of the store's gossip key, or nil if
// none was saved. Errors never quote the file's content.
func (s *stateDir) gossipKey() ([]byte, error) {
	data, err := s.read(gossipKeyFile, maxSmallStateFile, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved gossip key: %w", err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
		return nil, fmt.Errorf("saved gossip key %s is not a base64 key of 16, 24 or 32 bytes (remove it; it is fetched from the store again)", s.path(gossipKeyFile))
	}
	return k, nil
}

func (s *stateDir) saveGossipKey(k []byte) error {
	return s.write(gossipKeyFile, []byte(base64.StdEncoding.EncodeToString(k)+"\n"))
}
