// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/subnet/safefile"
)

// KeyFileName is the name of the private key file in the state dir. It holds
// the key in the base64 form wg(8) uses, so `wg pubkey < wireguard.key`
// prints the node's public key.
const KeyFileName = "wireguard.key"

// loadOrCreateKey returns the private key kept in stateDir, generating and
// storing one (mode 0600, directory 0700) the first time; created reports
// that it did. A key file that group or others may read is refused rather
// than used: the key may have leaked.
func loadOrCreateKey(stateDir string) (k wgtypes.Key, created bool, err error) {
	path := filepath.Join(stateDir, KeyFileName)
	k, err = readSecretKey(path, privateKeyRules)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return wgtypes.Key{}, false, fmt.Errorf("read private key: %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("create state dir: %w", err)
	}
	k, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("generate private key: %w", err)
	}
	if err := writeSecretFile(path, []byte(k.String()+"\n")); err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("store private key: %w", err)
	}
	return k, true, nil
}

// readPSK reads the pre-shared key file, an operator's file: owned by root
// or weftd's user, refusing a file that group or others can access.
func readPSK(path string) (wgtypes.Key, error) {
	k, err := readSecretKey(path, safefile.Rules{What: "WireGuard pre-shared key file", Max: maxKeyFile, Owners: safefile.Self, Secret: true, FollowLinks: true})
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("read pre-shared key: %w", err)
	}
	return k, nil
}

// maxKeyFile bounds a key file: a key is 44 bytes of base64.
const maxKeyFile = 4 << 10

// privateKeyRules are the rules of the private key file in the state dir:
// owned by root, weftd's user or the state dir's owner.
var privateKeyRules = safefile.Rules{What: "WireGuard private key file", Max: maxKeyFile, Owners: safefile.Self | safefile.DirOwner, Secret: true}

// readSecretKey reads a base64 WireGuard key from a file opened under r
// (see [safefile.Read]: no symbolic link on the path, never a FIFO, a
// regular file with no permission bits for group or others, bounded).
func readSecretKey(path string, r safefile.Rules) (wgtypes.Key, error) {
	data, err := safefile.Read(path, r)
	if err != nil {
		return wgtypes.Key{}, err
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(data)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("%s: not a base64 WireGuard key: %w", path, err)
	}
	return k, nil
}

// writeSecretFile writes data to path atomically with mode 0600.
func writeSecretFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// randomHex returns 2n random hex characters.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
