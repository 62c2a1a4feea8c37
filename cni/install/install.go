// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package install puts the weft CNI plugin and its network config list
// where a container runtime looks for them (/opt/cni/bin and
// /etc/cni/net.d on a host). The DaemonSet's init container runs it through
// weft-install-cni, from an image that has no shell; on a host it replaces
// copying the files by hand.
//
// Each file is written next to its destination under a temporary name,
// synced and then renamed over the destination, so a runtime that reads the
// directory at any moment sees the old file or the new one, never a part of
// either, and a plugin binary that is running is replaced rather than
// overwritten (which would fail with "text file busy").
package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
)

// PluginName is the file name the plugin is installed under: the "type"
// a conflist names it by.
const PluginName = "weft"

// Config says what to install and where.
type Config struct {
	// Plugin is the plugin binary to copy.
	Plugin string
	// Conflist is the network config list to copy; it keeps its file
	// name, which decides its order among the runtime's lists.
	Conflist string
	// BinDir is the directory the runtime finds plugins in.
	BinDir string
	// ConfDir is the directory the runtime reads network configs from.
	ConfDir string
}

// Run checks cfg and installs both files; it returns the paths it wrote.
// Nothing is written unless every check passes: both sources are
// non-empty regular files, the conflist parses as a CNI network config
// list whose first plugin is weft, and both directories exist (in a
// container they are host paths that must be mounted). Running it again
// replaces the files in place.
func Run(cfg Config) ([]string, error) {
	for _, f := range []struct{ what, path string }{{"plugin", cfg.Plugin}, {"conflist", cfg.Conflist}} {
		if f.path == "" {
			return nil, fmt.Errorf("no %s file given", f.what)
		}
		fi, err := os.Stat(f.path)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%s: %w", f.what, err)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("%s %s is not a regular file", f.what, f.path)
		case fi.Size() == 0:
			return nil, fmt.Errorf("%s %s is empty", f.what, f.path)
		}
	}
	// Parsed from bytes: a file name would make libcni also read plugin
	// configs from a directory beside it.
	b, err := os.ReadFile(cfg.Conflist)
	if err != nil {
		return nil, fmt.Errorf("conflist: %w", err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("conflist %s: %w", cfg.Conflist, err)
	}
	if len(list.Plugins) == 0 || list.Plugins[0].Network.Type != PluginName {
		return nil, fmt.Errorf("conflist %s: the first plugin must be of type %q", cfg.Conflist, PluginName)
	}
	for _, d := range []struct{ what, path string }{{"binary directory", cfg.BinDir}, {"config directory", cfg.ConfDir}} {
		if d.path == "" {
			return nil, fmt.Errorf("no %s given", d.what)
		}
		if fi, err := os.Stat(d.path); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s %s does not exist (is the host path mounted?)", d.what, d.path)
		}
	}
	var done []string
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{
		{cfg.Plugin, filepath.Join(cfg.BinDir, PluginName), 0o755},
		{cfg.Conflist, filepath.Join(cfg.ConfDir, filepath.Base(cfg.Conflist)), 0o644},
	} {
		if err := copyFile(f.src, f.dst, f.mode); err != nil {
			return done, err
		}
		done = append(done, f.dst)
	}
	return done, nil
}

// copyFile copies src to dst through a temporary file in dst's directory
// that is renamed over dst once complete and synced.
func copyFile(src, dst string, mode os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".weft-install-*")
	if err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
