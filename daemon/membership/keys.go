// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/subnet/safefile"
)

// ErrKeyFileMode is wrapped by the error for a gossip key file that group
// or others may access.
var ErrKeyFileMode = errors.New("gossip key file must be mode 0600")

// MaxKeyFileSize bounds a gossip key file: a key line is at most 45
// bytes, so 64 KiB leaves room for many keys and comments.
const MaxKeyFileSize = 64 << 10

// KeyFileRules are how a gossip key file is opened (see [safefile.Read]):
// a symbolic link on the path only if root or weftd's user owns it (a
// Kubernetes Secret volume), never a FIFO, a regular file of at most
// [MaxKeyFileSize] bytes with one link, owned by root or weftd's user,
// accessible by no one else, in directories no one else can write.
var KeyFileRules = safefile.Rules{What: "gossip key file", Max: MaxKeyFileSize, Owners: safefile.Self, Secret: true, FollowLinks: true}

// readKeyFile reads a gossip key file: one base64 key of 16, 24 or 32
// bytes per line (blank lines and # comments ignored), the first being
// the one that encrypts. It opens it under [KeyFileRules], refusing among
// others a file readable or writable by group or others. stamp identifies
// the file's content and mode, to notice changes. Errors never quote key material.
func readKeyFile(path string) (keys [][]byte, stamp string, err error) {
	data, err := safefile.Read(path, KeyFileRules)
	if errors.Is(err, safefile.ErrSecretMode) {
		return nil, "", fmt.Errorf("%w: %w", ErrKeyFileMode, err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read gossip key file: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, "", fmt.Errorf("stat gossip key file: %w", err)
	}
	sum := sha256.Sum256(data)
	stamp = fmt.Sprintf("%s %s", fi.Mode(), hex.EncodeToString(sum[:]))

	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, "", fmt.Errorf("gossip key file %s line %d: not base64", path, line)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, "", fmt.Errorf("gossip key file %s line %d: key is %d bytes, want 16, 24 or 32", path, line, n)
		}
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			keys = append(keys, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, "", fmt.Errorf("read gossip key file: %w", err)
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("gossip key file %s holds no key", path)
	}
	return keys, stamp, nil
}

// keyID names a key in logs without revealing it: the first 8 hex digits
// of its SHA-256.
func keyID(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:4])
}

// checkKeys checks gossip keys given directly: at least one, each 16, 24
// or 32 bytes. It returns them without duplicates. Errors never quote key
// material.
func checkKeys(keys [][]byte) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("no gossip key given")
	}
	var out [][]byte
	for i, k := range keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("gossip key %d is %d bytes, want 16, 24 or 32", i+1, n)
		}
		if !slices.ContainsFunc(out, func(o []byte) bool { return bytes.Equal(o, k) }) {
			out = append(out, bytes.Clone(k))
		}
	}
	return out, nil
}

// ReloadKeys re-reads Config.KeyFile and makes the running member's keyring
// match it: the first key encrypts, every key in the file decrypts, keys no
// longer in the file are dropped. An invalid file changes nothing and
// returns the reason. Without a KeyFile it does nothing. Before Run it only
// checks the file. Run also calls it when the file changes.
//
// Rotating without downtime takes three reloads on every node, each step
// finished everywhere before the next: add the new key as a second line;
// move it to the first line; remove the old key.
func (m *Membership) ReloadKeys() error {
	if m.cfg.KeyFile == "" {
		return nil
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	keys, stamp, err := readKeyFile(m.cfg.KeyFile)
	if err != nil {
		return err
	}
	if err := m.applyKeysLocked(keys); err != nil {
		return err
	}
	m.mu.Lock()
	m.keyStamp = stamp
	m.mu.Unlock()
	return nil
}

// SetKeys replaces the keys given in Config.Keys (for example after the
// key in the store changed), as [Membership.ReloadKeys] does for a key
// file: the first key encrypts, all decrypt, the rest are dropped. It is
// refused for a member configured with a KeyFile or without keys.
func (m *Membership) SetKeys(keys [][]byte) error {
	keys, err := checkKeys(keys)
	if err != nil {
		return err
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if m.cfg.KeyFile != "" || len(m.cfg.Keys) == 0 {
		return errors.New("gossip keys can be set only on a member configured with Keys")
	}
	m.mu.Lock()
	m.cfg.Keys = keys
	m.mu.Unlock()
	return m.applyKeysLocked(keys)
}

// applyKeysLocked makes the running member's keyring hold keys, keys[0]
// as the primary. The caller holds keyMu. Before Run it does nothing.
func (m *Membership) applyKeysLocked(keys [][]byte) error {
	m.mu.Lock()
	ring := m.keyring
	m.mu.Unlock()
	if ring == nil {
		return nil
	}
	before := ring.GetPrimaryKey()

	// Primary first, so that no message is ever encrypted with a key
	// about to go. Then drop old keys from the end of the ring (memberlist
	// removes a key by shifting the slice its readers iterate; removing the
	// last one shifts nothing) and add the new ones.
	if err := ring.AddKey(keys[0]); err != nil {
		return fmt.Errorf("install gossip key: %w", err)
	}
	if err := ring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("use gossip key: %w", err)
	}
	current := slices.Clone(ring.GetKeys())
	var removed, added []string
	for i := len(current) - 1; i > 0; i-- {
		k := current[i]
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			if err := ring.RemoveKey(k); err != nil {
				return fmt.Errorf("remove gossip key: %w", err)
			}
			removed = append(removed, keyID(k))
		}
	}
	for _, k := range keys[1:] {
		if !slices.ContainsFunc(current, func(o []byte) bool { return bytes.Equal(o, k) }) {
			added = append(added, keyID(k))
		}
		if err := ring.AddKey(k); err != nil {
			return fmt.Errorf("install gossip key: %w", err)
		}
	}
	entry := m.log.WithFields(logrus.Fields{
		"primary": keyID(keys[0]),
		"keys":    len(keys),
		"added":   added,
		"removed": removed,
	})
	// A file seen twice in one state (written in two steps, or its mode
	// changed back) reloads nothing: say so only at debug level, so that
	// the info line marks each real change of the keyring once.
	if bytes.Equal(before, keys[0]) && len(added) == 0 && len(removed) == 0 {
		entry.Debug("gossip keys unchanged")
		return nil
	}
	entry.Info("gossip keys loaded")
	return nil
}

// keyLoop reloads the keys when the key file's content or mode changes.
func (m *Membership) keyLoop(ctx context.Context) {
	m.log.Debug("key file watch started")
	defer m.log.Debug("key file watch stopped")
	t := time.NewTicker(m.cfg.KeyCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, stamp, err := readKeyFile(m.cfg.KeyFile)
		m.mu.Lock()
		same := stamp == m.keyStamp
		m.mu.Unlock()
		if err != nil {
			if m.limiter.allow("key file") {
				m.log.WithError(err).Error("gossip key file unusable; keeping the keys in use")
			}
			continue
		}
		if same {
			continue
		}
		if err := m.ReloadKeys(); err != nil {
			m.log.WithError(err).Error("gossip key reload failed; keeping the keys in use")
		}
	}
}
