// Package extract copies files and folders out of a checkpoint tree to
// local files: places of the tree a mount shows (checkpoint.Node), found
// by nav.Resolve, and everything inside the file systems it shows
// (volume.FS) — without FUSE and without root.
//
// How a copy is made:
//
//   - Regular files are copied with their data; runs of zeros become holes
//     (the copy is sparse where the source reads as zeros). Symlinks are
//     copied as symlinks (targets as ckptfs shows them). Hard links within
//     one copy stay hard links. Device files, FIFOs and sockets are
//     skipped with a warning.
//   - Modification and access times are kept (symlinks included). Modes:
//     file systems that store Unix permissions (volume.HasUnixPermissions:
//     ext2/3/4) keep their permission bits (set-id bits dropped); others
//     (NTFS, FAT) give files 0644 and folders 0755, less the umask.
//     Owners are not kept.
//   - Alternate data streams (NTFS) are copied as extended attributes
//     "user.<stream name>", the names ntfs-3g uses for them, when the
//     destination accepts them (StreamsXattr); streams larger than 64 KiB
//     (the Linux limit for one attribute) or refused by the destination
//     are skipped with a warning.
//   - An entry that cannot be read (damaged file system structures, I/O
//     errors) is reported with its path, its partial copy removed, and the
//     copy goes on with the next entry.
package extract

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/volume"
)

// Streams says what Copy does with alternate data streams (NTFS).
type Streams int

const (
	// StreamsXattr copies each stream as the extended attribute
	// "user.<stream name>".
	StreamsXattr Streams = iota
	// StreamsSkip copies the unnamed data only.
	StreamsSkip
)

// Options tune Copy.
type Options struct {
	// Streams says what to do with alternate data streams.
	Streams Streams
	// Progress, when set, is told the number of bytes of file data each
	// time a piece of it has been copied. It is called from several
	// goroutines at once.
	Progress func(n int64)
	// OnEntry, when set, is told the result of each entry once it is done
	// (a folder after everything in it), in the order of the copy.
	OnEntry func(Entry)
}

// Entry is the result of copying one entry.
type Entry struct {
	// Src names the entry as POINT:PATH.
	Src string
	// Dst is the local path of the copy.
	Dst string
	// Depth is 0 for the place given to Copy, 1 for what is in it, ...
	Depth int
	// Type is "file", "folder", "symlink" or "special" (not copied).
	Type string
	// Bytes is the data size of a copied file.
	Bytes int64
	// Linked reports a hard link made to an earlier copy of the same
	// file.
	Linked bool
	// Warnings say what of the entry was left out, the copy going on:
	// special files, alternate data streams.
	Warnings []string
	// Err says why the entry could not be copied (its partial copy is
	// removed). Errors reading the source wrap syscall.EIO.
	Err error
}

// Summary counts what a copy did.
type Summary struct {
	Entries  int   // entries visited, failed ones included
	Files    int   // regular files copied (hard links included)
	Folders  int   // folders copied
	Symlinks int   // symlinks copied
	Links    int   // files copied as hard links to an earlier copy
	Skipped  int   // special files not copied
	Failed   int   // entries below the top that could not be copied
	Warnings int   // warnings given
	Bytes    int64 // file data copied
}

// Errors of Copy; test with errors.Is.
var (
	// ErrBadName means a name in the tree cannot be a local file name
	// ("", ".", "..", or holding "/" or NUL, which only a damaged file
	// system holds).
	ErrBadName = errors.New("cannot be a local file name")
	// ErrNotRegular means Cat was given something other than a regular
	// file.
	ErrNotRegular = errors.New("not a regular file")
)

// Copy copies the place src to the local path dst, as cp -r would: an
// existing folder dst receives the copy under src.Name; otherwise dst
// names the copy. An existing device or FIFO dst is written to, never
// replaced; an existing file or symlink is replaced.
//
// The returned error is the failure of src itself (nothing, or only part
// of a folder, was copied). Entries below src that cannot be copied are
// reported through opts.OnEntry, counted in Summary.Failed, and the copy
// goes on.
func Copy(src nav.Place, dst string, opts Options) (Summary, error) {
	if st, err := os.Stat(dst); err == nil && st.IsDir() {
		if !safeName(src.Name) {
			return Summary{}, fmt.Errorf("%s: the name %q %w", src, src.Name, ErrBadName)
		}
		dst = filepath.Join(dst, src.Name)
	}
	c := &copier{opts: opts, links: map[linkKey]string{}}
	err := c.copy(src.Loc, dst, src.String(), 0)
	return c.sum, err
}

// linkKey identifies an inode for hard-link detection.
type linkKey struct {
	fs  volume.FS
	ino uint64
}

// copier copies places of a tree to local files.
type copier struct {
	opts         Options
	links        map[linkKey]string
	sum          Summary
	xattrRefused bool // the destination refused a user xattr: warned once
}

// progress reports n more bytes copied.
func (c *copier) progress(n int64) {
	if c.opts.Progress != nil {
		c.opts.Progress(n)
	}
}

// readErr names the place at fault; damaged structures read as I/O errors.
func readErr(disp string, err error) error {
	if errors.Is(err, volume.ErrCorrupt) && !errors.Is(err, syscall.EIO) {
		return fmt.Errorf("%s: %w: %w", disp, syscall.EIO, err)
	}
	return fmt.Errorf("%s: %w", disp, err)
}

// copy copies loc to dst and reports the entry. The error of the entry
// is returned; errors below it are reported and counted.
func (c *copier) copy(loc nav.Loc, dst, disp string, depth int) error {
	e := Entry{Src: disp, Dst: dst, Depth: depth}
	c.sum.Entries++
	e.Err = c.entry(&e, loc)
	switch {
	case e.Err != nil && depth > 0:
		c.sum.Failed++
	case e.Err != nil:
	case e.Type == "file":
		c.sum.Files++
		c.sum.Bytes += e.Bytes
		if e.Linked {
			c.sum.Links++
		}
	case e.Type == "folder":
		c.sum.Folders++
	case e.Type == "symlink":
		c.sum.Symlinks++
	case e.Type == "special":
		c.sum.Skipped++
	}
	c.sum.Warnings += len(e.Warnings)
	if c.opts.OnEntry != nil {
		c.opts.OnEntry(e)
	}
	return e.Err
}

// entry copies one entry, filling in e.
func (c *copier) entry(e *Entry, loc nav.Loc) error {
	if !loc.In {
		return c.node(e, loc)
	}
	v := loc.Node.FS
	st, err := v.Stat(loc.Ino)
	if err != nil {
		return readErr(e.Src, err)
	}
	posix := volume.HasUnixPermissions(v)
	switch {
	case st.Mode.IsDir():
		e.Type = "folder"
		ents, err := v.ReadDir(loc.Ino)
		if err != nil {
			return readErr(e.Src, err)
		}
		if err := makeDir(e.Dst); err != nil {
			return err
		}
		for _, x := range ents {
			c.child(e, nav.Loc{Node: loc.Node, In: true, Ino: x.Ino}, x.Name)
		}
		c.copyStreams(e, v, loc.Ino)
		mode := fs.FileMode(0o755) &^ umask()
		if posix {
			mode = st.Mode.Perm()
		}
		if err := os.Chmod(e.Dst, mode); err != nil {
			return err
		}
	case st.Mode&fs.ModeSymlink != 0:
		e.Type = "symlink"
		target, err := v.Readlink(loc.Ino)
		if err != nil {
			return readErr(e.Src, err)
		}
		if err := replaceSymlink(target, e.Dst); err != nil {
			return err
		}
	case st.Mode.IsRegular():
		e.Type = "file"
		key := linkKey{v, loc.Ino}
		if first, ok := c.links[key]; ok && st.Nlink > 1 && replaceable(e.Dst) {
			os.Remove(e.Dst)
			if err := os.Link(first, e.Dst); err == nil {
				e.Linked, e.Bytes = true, st.Size
				return nil
			}
		}
		f, err := v.Open(loc.Ino)
		if err != nil {
			return readErr(e.Src, err)
		}
		perm := fs.FileMode(0o644)
		if posix {
			perm = st.Mode.Perm()
		}
		if err := c.copyFile(f, st.Size, e.Dst, perm, e.Src); err != nil {
			return err
		}
		e.Bytes = st.Size
		if posix {
			if err := os.Chmod(e.Dst, perm); err != nil {
				return err
			}
		}
		c.copyStreams(e, v, loc.Ino)
		if st.Nlink > 1 {
			c.links[key] = e.Dst
		}
	default:
		e.Type = "special"
		e.Warnings = append(e.Warnings, fmt.Sprintf("%s: not copied: %s", e.Src, typeName(st.Mode)))
		return nil
	}
	return setTimes(e.Dst, st.Atime, st.Mtime)
}

// node copies a node of the tree (outside file systems).
func (c *copier) node(e *Entry, loc nav.Loc) error {
	n := loc.Node
	switch n.Kind() {
	case checkpoint.KindFileSystem:
		return c.entry(e, loc.Enter())
	case checkpoint.KindFile:
		e.Type = "file"
		if err := c.copyFile(dataOf(n), n.Size, e.Dst, 0o644, e.Src); err != nil {
			return err
		}
		e.Bytes = n.Size
		return setTimes(e.Dst, n.Mtime, n.Mtime)
	case checkpoint.KindSymlink:
		e.Type = "symlink"
		if err := replaceSymlink(n.Target, e.Dst); err != nil {
			return err
		}
		return setTimes(e.Dst, n.Mtime, n.Mtime)
	}
	e.Type = "folder"
	kids, err := n.Entries()
	if err != nil {
		return readErr(e.Src, err)
	}
	if err := makeDir(e.Dst); err != nil {
		return err
	}
	for _, k := range kids {
		c.child(e, nav.Loc{Node: k, Path: k.Name}, k.Name)
	}
	if err := os.Chmod(e.Dst, 0o755&^umask()); err != nil {
		return err
	}
	return setTimes(e.Dst, n.Mtime, n.Mtime)
}

// child copies the entry name of folder e (at loc).
func (c *copier) child(e *Entry, loc nav.Loc, name string) {
	disp := e.Src + sep(e.Src) + name
	if !safeName(name) {
		err := fmt.Errorf("%s: an entry named %q %w (damaged folder?); skipped", e.Src, name, ErrBadName)
		c.sum.Entries++
		c.sum.Failed++
		if c.opts.OnEntry != nil {
			c.opts.OnEntry(Entry{Src: disp, Depth: e.Depth + 1, Err: err})
		}
		return
	}
	c.copy(loc, filepath.Join(e.Dst, name), disp, e.Depth+1)
}

// sep is what joins a name to disp.
func sep(disp string) string {
	if n := len(disp); n > 0 && (disp[n-1] == '/' || disp[n-1] == ':') {
		return ""
	}
	return "/"
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}
