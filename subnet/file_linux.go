// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// readTrusted reads at most max bytes of the file at path (absolute) for a
// reader that runs as root, such as the CNI plugin, when the file sits in a
// directory that a less trusted user (weftd's) owns. It walks the path one
// component at a time from "/", opening each directory with O_NOFOLLOW
// relative to the previous one, so no symbolic link is followed anywhere on
// the path (what openat2's RESOLVE_NO_SYMLINKS does, on every kernel; the
// walk also lets it check every directory on the way). It accepts:
//
//   - directories owned by root or by the owner of the file's directory,
//     none writable by group or others unless sticky (in a sticky
//     directory nobody can rename or remove another's entry);
//   - a regular file with one link (a hard link to someone else's file has
//     two), owned by root or by its directory's owner, not writable by
//     group or others, of at most max bytes.
//
// The file is looked at with fstatat before it is opened, so a FIFO or a
// device is never opened; it is then opened with O_NONBLOCK|O_NOFOLLOW and
// checked again through its descriptor (the check that counts: the entry
// may have been swapped in between).
func readTrusted(path string, max int64) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, &unsafeFile{path, "not an absolute path"}
	}
	clean := filepath.Clean(path)
	dir, base := filepath.Split(clean)
	if base == "" {
		return nil, &unsafeFile{path, "not a file name"}
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /: %w", err)
	}
	defer func() { unix.Close(fd) }()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat /: %w", err)
	}
	type dirStat struct {
		name string
		st   unix.Stat_t
	}
	dirs := []dirStat{{"/", st}}
	walked := "/"
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		if c == "" {
			continue
		}
		walked = filepath.Join(walked, c)
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, entryError(fd, c, walked, path, err)
		}
		unix.Close(fd)
		fd = next
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("stat %s: %w", walked, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, &unsafeFile{path, walked + " is not a directory"}
		}
		dirs = append(dirs, dirStat{walked, st})
	}
	owner := dirs[len(dirs)-1].st.Uid // the file's directory's owner: weftd's user
	for _, d := range dirs {
		if d.st.Uid != 0 && d.st.Uid != owner {
			return nil, &unsafeFile{path, fmt.Sprintf("directory %s is owned by uid %d, neither root nor the owner (uid %d) of the file's directory", d.name, d.st.Uid, owner)}
		}
		if d.st.Mode&0o022 != 0 && d.st.Mode&unix.S_ISVTX == 0 {
			return nil, &unsafeFile{path, fmt.Sprintf("directory %s is writable by group or others and not sticky (mode %04o)", d.name, d.st.Mode&0o7777)}
		}
	}
	if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, entryError(fd, base, clean, path, err)
	}
	if err := checkFile(path, &st, owner, max); err != nil {
		return nil, err
	}
	ffd, err := unix.Openat(fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, entryError(fd, base, clean, path, err)
	}
	defer unix.Close(ffd)
	var fst unix.Stat_t
	if err := unix.Fstat(ffd, &fst); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := checkFile(path, &fst, owner, max); err != nil {
		return nil, err
	}
	buf := make([]byte, max+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(ffd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if int64(n) > max {
		return nil, &unsafeFile{path, fmt.Sprintf("larger than %d bytes", max)}
	}
	return buf[:n], nil
}

// checkFile checks the file's stat as readTrusted describes.
func checkFile(path string, st *unix.Stat_t, owner uint32, max int64) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return &unsafeFile{path, "it is a symbolic link (the plugin runs as root and follows none there)"}
	case unix.S_IFIFO:
		return &unsafeFile{path, "not a regular file (a FIFO)"}
	case unix.S_IFDIR:
		return &unsafeFile{path, "not a regular file (a directory)"}
	default:
		return &unsafeFile{path, fmt.Sprintf("not a regular file (mode %#o)", st.Mode&unix.S_IFMT)}
	}
	if st.Size > max {
		return &unsafeFile{path, fmt.Sprintf("%d bytes, more than the %d a subnet file may have", st.Size, max)}
	}
	if st.Nlink != 1 {
		return &unsafeFile{path, fmt.Sprintf("it has %d hard links (weftd's file has one)", st.Nlink)}
	}
	if st.Uid != 0 && st.Uid != owner {
		return &unsafeFile{path, fmt.Sprintf("owned by uid %d, neither root nor the owner (uid %d) of its directory", st.Uid, owner)}
	}
	if st.Mode&0o022 != 0 {
		return &unsafeFile{path, fmt.Sprintf("writable by group or others (mode %04o)", st.Mode&0o7777)}
	}
	return nil
}

// entryError explains a failure to open the entry name of directory dirfd
// (shown as shown): a missing entry keeps fs.ErrNotExist, a symbolic link
// says so.
func entryError(dirfd int, name, shown, path string, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if shown == filepath.Clean(path) {
			return &unsafeFile{path, "it is a symbolic link (the plugin runs as root and follows none there)"}
		}
		return &unsafeFile{path, shown + " is a symbolic link (the plugin runs as root and follows none on the path)"}
	}
	return &fs.PathError{Op: "open", Path: shown, Err: err}
}
