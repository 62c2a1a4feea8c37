// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package safefile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Read reads the file at path under the rules r (a relative path is
// taken from the working directory). It walks the
// path one component at a time from "/", opening each directory with
// O_NOFOLLOW relative to the previous one, so no symbolic link is followed
// anywhere on the path (what openat2's RESOLVE_NO_SYMLINKS does, on every
// kernel; the walk also lets it check every directory on the way). It
// accepts:
//
//   - directories owned by root or an accepted owner, none writable by
//     group or others unless sticky (in a sticky directory nobody can
//     rename or remove another's entry);
//   - a regular file with one link (a hard link to someone else's file has
//     two), owned by root or an accepted owner, not writable by group or
//     others (nor readable, for a secret), of at most r.Max bytes.
//
// The file is looked at with fstatat before it is opened, so a FIFO or a
// device is never opened; it is then opened with O_NONBLOCK|O_NOFOLLOW and
// checked again through its descriptor (the check that counts: the entry
// may have been swapped in between). A missing file (or directory) gives
// an error for which errors.Is(err, fs.ErrNotExist) holds.
func Read(path string, r Rules) ([]byte, error) {
	w, err := r.walk(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(w.fd)
	fd, base, clean, self, owner := w.fd, w.base, w.clean, w.self, w.owner
	ffd, err := unix.Openat(fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, r.entryError(fd, base, clean, path, true, err)
	}
	defer unix.Close(ffd)
	var fst unix.Stat_t
	if err := unix.Fstat(ffd, &fst); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := r.checkFile(path, &fst, self, owner); err != nil {
		return nil, err
	}
	// Room for the size seen (checked against max) and one byte more to
	// see the end; the buffer grows, up to max+1, only if the file does.
	buf := make([]byte, fst.Size+1)
	n := 0
	for {
		if n == len(buf) {
			if int64(n) > r.Max {
				break
			}
			buf = append(buf, make([]byte, min(int64(n), r.Max+1-int64(n)))...)
		}
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
	if int64(n) > r.Max {
		return nil, r.tooLarge(path, int64(n))
	}
	return buf[:n], nil
}

// checkFile checks the file's stat as [Read] describes.
func (r Rules) checkFile(path string, st *unix.Stat_t, self, owner uint32) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return &Error{r.What, path, "it is a symbolic link (none is followed there: give the real file)", nil}
	case unix.S_IFIFO:
		return &Error{r.What, path, "not a regular file (a FIFO)", nil}
	case unix.S_IFDIR:
		return &Error{r.What, path, "not a regular file (a directory)", nil}
	default:
		return &Error{r.What, path, fmt.Sprintf("not a regular file (mode %#o)", st.Mode&unix.S_IFMT), nil}
	}
	if st.Size > r.Max {
		return r.tooLarge(path, st.Size)
	}
	if st.Nlink != 1 {
		return &Error{r.What, path, fmt.Sprintf("it has %d hard links (a file of its own has one)", st.Nlink), nil}
	}
	if !r.accepts(st.Uid, self, owner) {
		return &Error{r.What, path, fmt.Sprintf("owned by uid %d, %s: chown it", st.Uid, r.ownerText(self, owner, false)), nil}
	}
	if r.Secret && st.Mode&0o077 != 0 {
		return r.secretMode(path, os.FileMode(st.Mode&0o777))
	}
	if st.Mode&0o022 != 0 {
		return &Error{r.What, path, fmt.Sprintf("writable by group or others (mode %04o)", st.Mode&0o7777), nil}
	}
	return nil
}

// entryError explains a failure to open the entry name of directory dirfd
// (shown as shown): a missing entry keeps fs.ErrNotExist, a symbolic link
// says so.
func (r Rules) entryError(dirfd int, name, shown, path string, last bool, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if last {
			return &Error{r.What, path, "it is a symbolic link (none is followed there: give the real file)", nil}
		}
		return &Error{r.What, path, shown + " is a symbolic link (none is followed on the path: give the real path)", nil}
	}
	return &fs.PathError{Op: "open", Path: path, Err: err}
}

// walkResult is a path walked and its file checked by stat: the open
// directory of the file (the caller closes fd), the file's name in it.
type walkResult struct {
	fd          int
	base, clean string
	self, owner uint32
}

// maxLinks bounds the links followed on one path (with FollowLinks), as
// the kernel's 40.
const maxLinks = 40

// walk walks path as [Read] describes and checks the file's stat, without
// opening the file.
func (r Rules) walk(path string) (walkResult, error) {
	clean, err := filepath.Abs(path)
	if err != nil {
		return walkResult{}, &Error{r.What, path, "no absolute path: " + err.Error(), nil}
	}
	if filepath.Base(clean) == "/" {
		return walkResult{}, &Error{r.What, path, "not a file name", nil}
	}
	fd := -1
	ok := false
	defer func() {
		if !ok && fd >= 0 {
			unix.Close(fd)
		}
	}()
	type dirStat struct {
		name string
		st   unix.Stat_t
	}
	var (
		dirs   []dirStat
		st     unix.Stat_t
		comps  []string
		walked string
		links  int
		self   = uint32(unix.Geteuid())
	)
	// start walks from "/" to target, a clean absolute path.
	start := func(target string) error {
		if fd >= 0 {
			unix.Close(fd)
		}
		fd, err = unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /: %w", err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat /: %w", err)
		}
		dirs = append(dirs, dirStat{"/", st})
		walked, clean = "/", target
		comps = strings.Split(strings.Trim(target, "/"), "/")
		return nil
	}
	// follow follows the link c in fd's directory, if the rules let it:
	// FollowLinks, and the link owned by root or an accepted owner (its
	// directory is checked with the others).
	follow := func(c string) error {
		if !r.FollowLinks {
			return nil
		}
		if links++; links > maxLinks {
			return &Error{r.What, path, fmt.Sprintf("more than %d symbolic links on the path", maxLinks), nil}
		}
		if !r.accepts(st.Uid, self, dirs[len(dirs)-1].st.Uid) {
			return &Error{r.What, path, fmt.Sprintf("%s is a symbolic link owned by uid %d, %s", filepath.Join(walked, c), st.Uid, r.ownerText(self, dirs[len(dirs)-1].st.Uid, false)), nil}
		}
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(fd, c, buf)
		if err != nil {
			return &fs.PathError{Op: "readlink", Path: filepath.Join(walked, c), Err: err}
		}
		target := string(buf[:n])
		if !filepath.IsAbs(target) {
			target = filepath.Join(walked, target)
		}
		return start(filepath.Join(append([]string{target}, comps...)...))
	}
	if err := start(clean); err != nil {
		return walkResult{}, err
	}
	var base string
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		if c == "" || c == "." {
			continue
		}
		if len(comps) == 0 { // the file
			if err := unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return walkResult{}, r.entryError(fd, c, clean, path, true, err)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFLNK && r.FollowLinks {
				if err := follow(c); err != nil {
					return walkResult{}, err
				}
				continue
			}
			base = c
			break
		}
		next, oerr := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if oerr != nil {
			if r.FollowLinks && unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				if err := follow(c); err != nil {
					return walkResult{}, err
				}
				continue
			}
			return walkResult{}, r.entryError(fd, c, filepath.Join(walked, c), path, false, oerr)
		}
		walked = filepath.Join(walked, c)
		unix.Close(fd)
		fd = next
		if err := unix.Fstat(fd, &st); err != nil {
			return walkResult{}, fmt.Errorf("stat %s: %w", walked, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return walkResult{}, &Error{r.What, path, walked + " is not a directory", nil}
		}
		dirs = append(dirs, dirStat{walked, st})
	}
	if base == "" {
		return walkResult{}, &Error{r.What, path, "not a file name", nil}
	}
	owner := dirs[len(dirs)-1].st.Uid // the file's directory's owner
	for _, d := range dirs {
		if !r.accepts(d.st.Uid, self, owner) {
			return walkResult{}, &Error{r.What, path, fmt.Sprintf("directory %s is owned by uid %d, %s", d.name, d.st.Uid, r.ownerText(self, owner, true)), nil}
		}
		if d.st.Mode&0o022 != 0 && d.st.Mode&unix.S_ISVTX == 0 {
			return walkResult{}, &Error{r.What, path, fmt.Sprintf("directory %s is writable by group or others and not sticky (mode %04o)", d.name, d.st.Mode&0o7777), nil}
		}
	}
	if err := r.checkFile(path, &st, self, owner); err != nil {
		return walkResult{}, err
	}
	ok = true
	return walkResult{fd: fd, base: base, clean: clean, self: self, owner: owner}, nil
}

// Check checks the file at path under the rules r as [Read] does, from
// its path and its stat alone, without opening it: for a file another
// library reads (the etcd client's TLS files).
func Check(path string, r Rules) error {
	w, err := r.walk(path)
	if err != nil {
		return err
	}
	unix.Close(w.fd)
	return nil
}
