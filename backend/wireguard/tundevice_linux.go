// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// tunPath is the TUN clone device: opening it and naming an interface
// (TUNSETIFF) creates a TUN interface.
const tunPath = "/dev/net/tun"

// tunNode is what explainTUN learned about the clone device.
type tunNode struct {
	mode       fs.FileMode // permission bits
	char       bool        // a character device
	major      uint32
	minor      uint32
	owner      string // "root:root (0:0)"
	uid        uint32
	openErr    error // a probe open(2) of the node by this process
	statFailed error // stat(2) failed other than with ENOENT
}

// explainTUN adds to err, the failure to create a TUN interface through
// path, what the device node looks like and what to change on the host
// or in the unit, so that the operator does not have to work it out from
// a bare "permission denied". It returns err unchanged when it has nothing
// to add.
func explainTUN(path string, err error) error {
	var n *tunNode
	fi, serr := os.Stat(path)
	switch {
	case errors.Is(serr, fs.ErrNotExist):
	case serr != nil:
		n = &tunNode{statFailed: serr}
	default:
		n = &tunNode{mode: fi.Mode().Perm(), char: fi.Mode()&fs.ModeCharDevice != 0}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n.uid = st.Uid
			n.major, n.minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
			n.owner = ownerString(st.Uid, st.Gid)
		}
		if errors.Is(err, unix.EPERM) {
			// Opening the node tells the device cgroup (EPERM on open)
			// apart from a missing CAP_NET_ADMIN (EPERM on TUNSETIFF).
			// Opening the clone device creates nothing by itself.
			fd, oerr := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
			if oerr == nil {
				unix.Close(fd)
			}
			n.openErr = oerr
		}
	}
	if advice := tunAdvice(path, n, err, os.Geteuid()); advice != "" {
		return fmt.Errorf("%w: %s", err, advice)
	}
	return err
}

// ownerString formats a file's owner as "name:group (uid:gid)", names
// left out where the user or group database has none.
func ownerString(uid, gid uint32) string {
	u, g := strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(gid), 10)
	un, gn := u, g
	if x, err := user.LookupId(u); err == nil {
		un = x.Username
	}
	if x, err := user.LookupGroupId(g); err == nil {
		gn = x.Name
	}
	return fmt.Sprintf("%s:%s (%s:%s)", un, gn, u, g)
}

// udevFix is how a host without udev gets the mode udev gives the device.
const udevFix = `make it mode 0666 as udev does on distributions that run it (systemd's 50-udev-default.rules: KERNEL=="tun", MODE="0666"); ` +
	`on a host without udev, have systemd-tmpfiles do it at boot with a line "z /dev/net/tun 0666 root root -" in /etc/tmpfiles.d/weft-tun.conf ` +
	`(or chmod 0666 /dev/net/tun from a boot script); see docs/install.md, "The TUN device"`

// tunAdvice explains the failure err of creating a TUN interface through
// path: n describes the node (nil: it does not exist), euid is the
// effective user weftd runs as. It returns "" when it knows nothing to say.
func tunAdvice(path string, n *tunNode, err error, euid int) string {
	switch {
	case n == nil:
		return fmt.Sprintf("%s does not exist: load the tun module (modprobe tun) or create the node (mknod -m 0666 %s c 10 200); "+
			"in a container, the runtime must pass the host's %s in (the DaemonSet mounts it as a CharDevice host path)", path, path, path)
	case n.statFailed != nil:
		return fmt.Sprintf("stat %s: %v", path, n.statFailed)
	case !n.char || n.major != 10 || n.minor != 200:
		return fmt.Sprintf("%s (mode %04o, owner %s) is not the TUN character device 10:200: remove it and create the node (mknod -m 0666 %s c 10 200)",
			path, n.mode, n.owner, path)
	}
	node := fmt.Sprintf("%s (mode %04o, owner %s)", path, n.mode, n.owner)
	switch {
	case errors.Is(err, unix.EACCES) && n.mode&0o006 != 0o006 && uint32(euid) != n.uid:
		return fmt.Sprintf("weftd runs as uid %d and may not open %s: %s", euid, node, udevFix)
	case errors.Is(err, unix.EACCES):
		return fmt.Sprintf("weftd runs as uid %d and may not open %s although its mode allows it: is /dev mounted nodev, "+
			"or does a security module (AppArmor, SELinux) deny it?", euid, node)
	case errors.Is(err, unix.EPERM) && n.openErr != nil:
		return fmt.Sprintf("the device cgroup does not let weftd open %s: in weftd.service keep DevicePolicy=closed with DeviceAllow=%s rw; "+
			"in a container, the runtime must allow the character device 10:200 (runc 1.2.0 dropped it from its default list)", node, path)
	case errors.Is(err, unix.EPERM):
		return fmt.Sprintf("weftd opened %s but may not create a TUN interface, which needs CAP_NET_ADMIN: in weftd.service keep "+
			"CAP_NET_ADMIN in CapabilityBoundingSet= and AmbientCapabilities=; in a container, add the NET_ADMIN capability", node)
	}
	return ""
}
