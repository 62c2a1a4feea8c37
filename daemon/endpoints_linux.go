// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirNotify tells when entries of one directory are renamed in, moved
// out or deleted (inotify), so that the endpoint loop publishes a pod the
// moment the CNI plugin's record lands rather than at its next poll. It
// starts no goroutine: [dirNotify.wait] polls the inotify descriptor.
type dirNotify struct {
	fd   int
	gone bool // the directory itself was removed or moved
}

func newDirNotify(dir string) (*dirNotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	const mask = unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return &dirNotify{fd: fd}, nil
}

// wait blocks for at most d and reports whether the directory changed.
// After it reports the directory itself gone, the caller closes n.
func (n *dirNotify) wait(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(n.fd), Events: unix.POLLIN}}
	k, err := unix.Poll(fds, int(d.Milliseconds()))
	if err != nil || k == 0 {
		return false
	}
	var buf [4096]byte
	changed := false
	for {
		m, err := unix.Read(n.fd, buf[:])
		if err != nil || m <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				n.gone = true
			}
			return changed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= m; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			changed = true
			if ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_Q_OVERFLOW) != 0 {
				n.gone = n.gone || ev.Mask&unix.IN_Q_OVERFLOW == 0
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

func (n *dirNotify) close() { unix.Close(n.fd) }
