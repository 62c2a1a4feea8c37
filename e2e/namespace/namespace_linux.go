// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package namespace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir holds the bind mounts of named namespaces.
const RunDir = "/run/netns"

// Path returns the bind-mount path of the namespace name.
func Path(name string) string { return filepath.Join(RunDir, name) }

// Create makes the network namespace name with its loopback up and returns
// an open handle to it (the caller closes it). The calling thread's
// namespace is not changed. Like `ip netns add`, it makes [RunDir] a shared
// mount point first, so that namespaces made later also appear in mount
// namespaces copied from this one.
func Create(name string) (netns.NsHandle, error) {
	if err := sharedRunDir(); err != nil {
		return netns.None(), err
	}
	var h netns.NsHandle
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current netns: %w", err)
		}
		defer orig.Close()
		// NewNamed moves this thread into the new namespace.
		h, err = netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			return errThreadTainted{errors.Join(err, fmt.Errorf("restore netns: %w", rerr))}
		}
		if err != nil {
			return fmt.Errorf("create netns %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, os.ErrExist) {
			Delete(name) // a failed bind mount leaves its empty file
		}
		return netns.None(), err
	}
	if err := loopbackUp(h); err != nil {
		h.Close()
		Delete(name)
		return netns.None(), fmt.Errorf("netns %s: %w", name, err)
	}
	return h, nil
}

func loopbackUp(ns netns.NsHandle) error {
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// sharedRunDir makes RunDir a mount point with shared propagation, as
// iproute2 does before it adds a namespace.
func sharedRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", RunDir, err)
	}
	err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then retry.
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", RunDir, err)
		}
		err = unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", RunDir, err)
	}
	return nil
}

// Delete removes the namespace name: its bind mount and file. A missing
// namespace is not an error. The namespace itself lives on while a process,
// socket or handle still refers to it.
func Delete(name string) error {
	p := Path(name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// Open returns a handle to the namespace name (the caller closes it).
func Open(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(Path(name))
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", name, err)
	}
	return h, nil
}

// Do runs fn in network namespace ns and returns its error. fn runs on a
// new goroutine locked to its OS thread; the thread's original namespace is
// restored afterwards, and if that fails the thread is left locked so that
// Go discards it when the goroutine ends (never reused in the wrong
// namespace).
//
// Only fn's own goroutine is in ns: goroutines it starts may run on other
// threads, in other namespaces. Sockets opened by fn stay in ns after it
// returns and may be used from any goroutine.
func Do(ns netns.NsHandle, fn func() error) error {
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return errThreadTainted{errors.Join(ferr, fmt.Errorf("restore netns: %w", err))}
		}
		return ferr
	})
}

// DoNamed runs fn in the namespace name; see [Do].
func DoNamed(name string, fn func() error) error {
	h, err := Open(name)
	if err != nil {
		return err
	}
	defer h.Close()
	return Do(h, fn)
}

// errThreadTainted marks an error after which the thread is in an unknown
// namespace and must not be unlocked.
type errThreadTainted struct{ error }

func (e errThreadTainted) Unwrap() error { return e.error }

func onLockedThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		var tainted errThreadTainted
		if !errors.As(err, &tainted) {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}
