// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package safefile reads files that a privileged reader must not be
// tricked about: the root CNI plugin reading the subnet file in weftd's
// directory, weftd reading its keys and its state dir. A file is read
// only when its path holds no symbolic link, it is a regular file with
// one link and of bounded size, owned by an accepted owner, not writable
// by group or others (nor readable, for a secret), and every directory on
// its path is owned by root or an accepted owner and writable by no one
// else unless sticky. A FIFO or device is never opened, so a read never
// blocks. Errors name the file and what is wrong, never the content.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Owners are the users, besides root, whose files (and directories) are
// accepted.
type Owners uint8

const (
	// Self accepts the effective user of this process (weftd's user).
	Self Owners = 1 << iota
	// DirOwner accepts the owner of the file's own directory (the root
	// CNI plugin reading a file in the directory of weftd's user).
	DirOwner
)

// Rules say what file to accept.
type Rules struct {
	// What names the file in errors ("subnet file", "gossip key file").
	What string
	// Max is the most bytes the file may have.
	Max int64
	// Owners are the accepted owners besides root.
	Owners Owners
	// FollowLinks follows a symbolic link on the path when the link is
	// owned by root or an accepted owner, and its directory (like every
	// other on the path) by no one else and writable by no one else
	// unless sticky: such a link was placed by a trusted user (a
	// Kubernetes Secret volume is made of them). Without it, no link is
	// followed at all. A reader of files in a less trusted user's
	// directory (the CNI plugin) or of weftd's own state leaves it off.
	FollowLinks bool
	// Secret also refuses a file that group or others may read (0600 or
	// 0400 are accepted).
	Secret bool
}

// ErrSecretMode is wrapped by the error for a secret that group or others
// may access.
var ErrSecretMode = errors.New("secret file accessible by group or others")

// Error is a file (or a directory on its path) that the rules refuse. Its
// message names the path and the reason, never the content.
type Error struct {
	What, Path, Reason string
	Err                error // ErrSecretMode, or nil
}

func (e *Error) Error() string {
	return fmt.Sprintf("refusing %s %s: %s", e.What, e.Path, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// ownerText describes the accepted owners for an error, such as "neither
// root nor the owner (uid 4343) of its directory".
func (r Rules) ownerText(self, dirOwner uint32, ofDir bool) string {
	var alt []string
	if r.Owners&Self != 0 {
		alt = append(alt, fmt.Sprintf("this process's user (uid %d)", self))
	}
	if r.Owners&DirOwner != 0 && (r.Owners&Self == 0 || dirOwner != self) {
		if ofDir {
			alt = append(alt, fmt.Sprintf("the owner (uid %d) of the file's directory", dirOwner))
		} else {
			alt = append(alt, fmt.Sprintf("the owner (uid %d) of its directory", dirOwner))
		}
	}
	switch len(alt) {
	case 0:
		return "not root"
	case 1:
		return "neither root nor " + alt[0]
	default:
		return "neither root, " + strings.Join(alt[:len(alt)-1], ", ") + " nor " + alt[len(alt)-1]
	}
}

// accepts reports whether uid may own the file or a directory on its path.
func (r Rules) accepts(uid, self, dirOwner uint32) bool {
	return uid == 0 || (r.Owners&Self != 0 && uid == self) || (r.Owners&DirOwner != 0 && uid == dirOwner)
}

func (r Rules) tooLarge(path string, size int64) error {
	return &Error{r.What, path, fmt.Sprintf("%d bytes, more than the %d a %s may have", size, r.Max, r.What), nil}
}

func (r Rules) secretMode(path string, perm os.FileMode) error {
	return &Error{r.What, path, fmt.Sprintf("has mode %04o, want 0600: group or others may access it (chmod 600 %s, and consider it leaked)", perm, path), ErrSecretMode}
}
