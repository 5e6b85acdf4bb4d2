package extract

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/volume"
)

// xattrMax is the largest extended attribute value Linux accepts.
const xattrMax = 64 << 10

// copyStreams copies the alternate data streams of ino to e.Dst as user
// extended attributes; what cannot be copied becomes a warning of e.
func (c *copier) copyStreams(e *Entry, v volume.FS, ino uint64) {
	if c.opts.Streams == StreamsSkip {
		return
	}
	warn := func(format string, args ...any) {
		e.Warnings = append(e.Warnings, fmt.Sprintf(format, args...))
	}
	names, err := v.Streams(ino)
	if err != nil {
		warn("%s: alternate data streams not copied: %v", e.Src, err)
		return
	}
	for _, name := range names {
		f, err := v.OpenStream(ino, name)
		if err != nil {
			warn("%s: stream %q not copied: %v", e.Src, name, readErr(e.Src+":"+name, err))
			continue
		}
		if f.Size() > xattrMax {
			warn("%s: stream %q (%d bytes) is larger than an extended attribute can be; not copied", e.Src, name, f.Size())
			continue
		}
		b := make([]byte, f.Size())
		if n, err := f.ReadAt(b, 0); n != len(b) {
			warn("%s: stream %q not copied: %v", e.Src, name, readErr(e.Src+":"+name, err))
			continue
		}
		if err := unix.Setxattr(e.Dst, "user."+name, b, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				if !c.xattrRefused {
					c.xattrRefused = true
					warn("%s: the destination does not accept user extended attributes; alternate data streams are not copied", e.Dst)
				}
				return
			}
			warn("%s: stream %q not copied: setxattr: %v", e.Src, name, err)
		}
	}
}

// safeName reports whether name can be joined to a local folder without
// leaving it: never "", ".", "..", or with a slash or NUL (which a damaged
// file system could hold).
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// makeDir creates folder dst (writable by us while we fill it), or
// accepts an existing folder.
func makeDir(dst string) error {
	err := os.Mkdir(dst, 0o700)
	if err == nil {
		return nil
	}
	if st, e := os.Lstat(dst); e == nil && st.IsDir() {
		if st.Mode().Perm()&0o700 != 0o700 {
			return os.Chmod(dst, st.Mode().Perm()|0o700)
		}
		return nil
	}
	return err
}

// replaceable reports whether dst may be removed to put a copy there:
// it does not exist, or is a regular file or a symlink. Devices, pipes,
// sockets and folders are never removed.
func replaceable(dst string) bool {
	st, err := os.Lstat(dst)
	return err != nil || st.Mode().IsRegular() || st.Mode()&fs.ModeSymlink != 0
}

// replaceSymlink creates symlink dst → target, replacing a file or
// symlink there.
func replaceSymlink(target, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		if !replaceable(dst) {
			return fmt.Errorf("%s: exists and is not a file or symlink", dst)
		}
		os.Remove(dst)
	}
	return os.Symlink(target, dst)
}

// setTimes sets dst's access and modification times without following a
// symlink. A zero access time takes the modification time; a zero
// modification time is left alone.
func setTimes(dst string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if !atime.IsZero() {
		ts[0] = unix.NsecToTimespec(atime.UnixNano())
	}
	if !mtime.IsZero() {
		ts[1] = unix.NsecToTimespec(mtime.UnixNano())
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

var umaskOnce = sync.OnceValue(func() fs.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return fs.FileMode(m)
})

// umask is the process's umask.
func umask() fs.FileMode { return umaskOnce() }
