package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/probe"
)

func init() {
	register("cp", command{
		summary: "copy a file or folder out of a checkpoint, without mounting and without root",
		usage:   "SOURCE POINT:PATH DEST|- [--streams xattr|skip] [--search-path DIR]... [--ignore-linkage]",
		run:     runCp,
	})
}

// How `ckptfs cp` copies:
//
//   - POINT is a point folder as the mount shows it (a path of folders
//     from the mount's root, e.g. "Disk_3F2A…" or "by-file/Disk"); PATH is
//     the path below it as the mount shows it, e.g.
//     "Disk.files/2-Basic data partition/inetpub/web.config". "POINT:/x/y"
//     (an absolute PATH) means /x/y inside the point's only file system.
//     Names inside NTFS and FAT match ignoring case; folder names of the
//     tree match exactly, else ignoring case when unambiguous.
//   - DEST works as for cp -r: an existing folder receives the copy under
//     its source name; otherwise DEST is the copy's name. DEST "-" writes
//     a file's data to standard output.
//   - Regular files are copied with their data; runs of zeros become holes
//     (the copy is sparse where the source reads as zeros). Symlinks are
//     copied as symlinks (targets as ckptfs shows them). Hard links within
//     one copy stay hard links. Device files, FIFOs and sockets are
//     skipped with a warning.
//   - Modification and access times are kept (symlinks included). Modes:
//     from ext2/3/4 the permission bits are kept (set-id bits dropped);
//     NTFS and FAT have no Unix modes, so files get 0644 and folders 0755,
//     less the umask. Owners are not kept.
//   - Alternate data streams (NTFS) are copied as extended attributes
//     "user.<stream name>", the names ntfs-3g uses for them, when the
//     destination accepts them (--streams xattr, the default); streams
//     larger than 64 KiB (the Linux limit for one attribute) or refused by
//     the destination are skipped with a warning. --streams skip copies
//     the unnamed data only.
//   - An entry that cannot be read (damaged file system structures, I/O
//     errors) is reported with its path, its partial copy removed, and the
//     copy goes on; the command then exits with status 1.

// xattrMax is the largest extended attribute value Linux accepts.
const xattrMax = 64 << 10

func runCp(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("cp", stderr)
	var cf chainFlags
	cf.add(fl)
	streams := fl.String("streams", "xattr", "alternate data streams: `xattr` (copy as user.* extended attributes) or skip")
	if err := parse(fl, args, 3, 3); err != nil {
		return err
	}
	if *streams != "xattr" && *streams != "skip" {
		return fmt.Errorf("%w: --streams must be xattr or skip", errUsage)
	}
	view, err := openFilesView(fl.Arg(0), cf)
	if err != nil {
		return err
	}
	defer view.Close()
	src, err := resolveSpec(view.Root, fl.Arg(1))
	if err != nil {
		return err
	}
	dst := fl.Arg(2)
	if dst == "-" {
		return catTo(stdout, src)
	}
	if st, err := os.Stat(dst); err == nil && st.IsDir() {
		if !safeName(src.name) {
			return fmt.Errorf("%s: the name %q cannot be a local file name; give DEST a name", src.display(), src.name)
		}
		dst = filepath.Join(dst, src.name)
	}
	c := &copier{stderr: stderr, streams: *streams, links: map[linkKey]string{}}
	c.prog = c.newProgress(src.loc)
	err = c.copy(src.loc, dst, src.display())
	c.prog.Finish()
	if err != nil {
		return err
	}
	if c.failed > 0 {
		return fmt.Errorf("%d of %d entries could not be copied (see above)", c.failed, c.entries)
	}
	return nil
}

// catTo writes the data of a file to w (DEST "-").
func catTo(w io.Writer, src spec) error {
	var r io.ReaderAt
	var size int64
	disp := src.display()
	switch {
	case !src.loc.In && src.loc.Node.Kind() == checkpoint.KindFile:
		r, size = src.loc.Node.Data, src.loc.Node.Size
	case src.loc.In:
		v := src.loc.Node.FS
		st, err := v.Stat(src.loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		if !st.Mode.IsRegular() {
			return fmt.Errorf("%s: not a regular file; give a folder as DEST to copy it", disp)
		}
		f, err := v.Open(src.loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		r, size = f, st.Size
	default:
		return fmt.Errorf("%s: not a regular file; give a folder as DEST to copy it", disp)
	}
	return copySeq(w, r, size, disp, nil)
}

// copySeq copies size bytes of r to w in order.
func copySeq(w io.Writer, r io.ReaderAt, size int64, disp string, prog *progress) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	for off := int64(0); off < size; {
		b := (*bp)[:min(copyChunk, size-off)]
		if n, err := r.ReadAt(b, off); n < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return readErr(disp, fmt.Errorf("reading %d bytes at offset %d: %w", len(b), off, err))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		if prog != nil {
			prog.Add(int64(len(b)))
		}
		off += int64(len(b))
	}
	return nil
}

// openFilesView opens a source with file systems shown.
func openFilesView(path string, cf chainFlags) (*checkpoint.View, error) {
	return checkpoint.OpenView(path, chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage},
		checkpoint.FileTreeOptions{FileSystems: probe.Open})
}

// spec is a resolved POINT:PATH.
type spec struct {
	point  string // the point as given
	prefix string // "/" when PATH was absolute (inside the only file system)
	loc    nav.Loc
	name   string // the name a copy into a folder gets
}

// display is how messages name the resolved place.
func (s spec) display() string { return s.point + ":" + s.prefix + s.loc.Path }

// resolvePoint finds point folder name (a path of folders from root).
func resolvePoint(root *checkpoint.Node, name string) (*checkpoint.Node, error) {
	if name == "" {
		return nil, fmt.Errorf("empty point name")
	}
	loc, err := nav.Walk(root, name)
	if err != nil {
		return nil, err
	}
	if loc.In || loc.Node.Kind() != checkpoint.KindFolder {
		return nil, fmt.Errorf("%s is not a point folder", name)
	}
	return loc.Node, nil
}

// pointNames lists the point folders of a view for error messages.
func pointNames(root *checkpoint.Node) string {
	kids, _ := root.Entries()
	var names []string
	for _, k := range kids {
		if k.Kind() == checkpoint.KindFolder {
			names = append(names, fmt.Sprintf("%q", k.Name))
		}
	}
	if len(names) > 12 {
		names = append(names[:12], "…")
	}
	return strings.Join(names, ", ")
}

// resolveSpec resolves "POINT:PATH". Point names may themselves hold
// colons (Hyper-V's default checkpoint names do), so every colon is tried
// as the separator, leftmost first; the first split whose point and path
// both exist wins.
func resolveSpec(root *checkpoint.Node, arg string) (spec, error) {
	var firstErr error
	found := false
	for i := 0; i < len(arg); i++ {
		if arg[i] != ':' {
			continue
		}
		pt, err := resolvePoint(root, arg[:i])
		if err != nil {
			continue
		}
		found = true
		s, err := resolveIn(pt, arg[:i], arg[i+1:])
		if err == nil {
			return s, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return spec{}, firstErr
	}
	if !found {
		if !strings.Contains(arg, ":") {
			return spec{}, fmt.Errorf("%w: %q is not POINT:PATH", errUsage, arg)
		}
		return spec{}, fmt.Errorf("%s: no such point (points: %s)", arg[:strings.IndexByte(arg, ':')], pointNames(root))
	}
	return spec{}, fmt.Errorf("%s: not found", arg)
}

// resolveIn resolves PATH below point folder pt.
func resolveIn(pt *checkpoint.Node, point, p string) (spec, error) {
	s := spec{point: point}
	if strings.HasPrefix(p, "/") {
		fss, err := nav.FileSystems(pt)
		switch {
		case len(fss) == 1:
		case len(fss) == 0 && err != nil:
			return spec{}, fmt.Errorf("%s: %w", point, err)
		case len(fss) == 0:
			return spec{}, fmt.Errorf("%s: the point has no file system ckptfs can read", point)
		default:
			var names []string
			for _, f := range fss {
				names = append(names, f.Path)
			}
			return spec{}, fmt.Errorf("%s: the point has %d file systems (%s); give the path below the point, e.g. %s:%s%s",
				point, len(fss), strings.Join(names, ", "), point, fss[0].Path, p)
		}
		loc, err := nav.Walk(fss[0].Node, p)
		if err != nil {
			return spec{}, fmt.Errorf("%s:/%w", point, err)
		}
		s.prefix, s.loc, s.name = "/", loc.Enter(), loc.Name()
		if s.name == "" {
			s.name = fss[0].Node.Name
		}
		return s, nil
	}
	loc, err := nav.Walk(pt, p)
	if err != nil {
		return spec{}, fmt.Errorf("%s:%w", point, err)
	}
	s.loc, s.name = loc, loc.Name()
	if s.name == "" {
		s.name = pt.Name
	}
	return s, nil
}

// linkKey identifies an inode for hard-link detection.
type linkKey struct {
	fs  volume.FS
	ino uint64
}

// copier copies places of a tree to local files.
type copier struct {
	stderr  io.Writer
	streams string
	prog    *progress
	links   map[linkKey]string
	entries int
	failed  int
	warned  map[string]bool
}

// newProgress sizes the copy for the bar, which only a terminal gets and
// only for copies of 64 MiB or more.
func (c *copier) newProgress(loc nav.Loc) *progress {
	p := newProgress(c.stderr, "copying", 0)
	if !p.active {
		return p
	}
	p.total = c.size(loc)
	p.active = p.total >= 64<<20
	return p
}

// size adds up the data sizes below loc (errors count as 0).
func (c *copier) size(loc nav.Loc) int64 {
	if !loc.In {
		switch loc.Node.Kind() {
		case checkpoint.KindFile:
			return loc.Node.Size
		case checkpoint.KindFileSystem:
			return c.size(loc.Enter())
		case checkpoint.KindFolder:
			kids, _ := loc.Node.Entries()
			var n int64
			for _, k := range kids {
				n += c.size(nav.Loc{Node: k})
			}
			return n
		}
		return 0
	}
	v := loc.Node.FS
	st, err := v.Stat(loc.Ino)
	if err != nil {
		return 0
	}
	if !st.Mode.IsDir() {
		if st.Mode.IsRegular() {
			return st.Size
		}
		return 0
	}
	ents, _ := v.ReadDir(loc.Ino)
	var n int64
	for _, e := range ents {
		n += c.size(nav.Loc{Node: loc.Node, In: true, Ino: e.Ino})
	}
	return n
}

// warn prints a warning once per key.
func (c *copier) warn(key, format string, args ...any) {
	if c.warned == nil {
		c.warned = map[string]bool{}
	}
	if key != "" && c.warned[key] {
		return
	}
	c.warned[key] = true
	fmt.Fprintf(c.stderr, "ckptfs cp: warning: "+format+"\n", args...)
}

// fail reports an entry that could not be copied and counts it.
func (c *copier) fail(err error) {
	c.failed++
	fmt.Fprintf(c.stderr, "ckptfs cp: %v\n", err)
}

// readErr names the place at fault; damaged structures read as I/O errors.
func readErr(disp string, err error) error {
	if errors.Is(err, volume.ErrCorrupt) && !errors.Is(err, syscall.EIO) {
		return fmt.Errorf("%s: %w: %w", disp, syscall.EIO, err)
	}
	return fmt.Errorf("%s: %w", disp, err)
}

// copy copies loc to dst. The error of the top entry is returned; errors
// below it are reported and counted.
func (c *copier) copy(loc nav.Loc, dst, disp string) error {
	c.entries++
	if !loc.In {
		n := loc.Node
		switch n.Kind() {
		case checkpoint.KindFileSystem:
			return c.copy(loc.Enter(), dst, disp)
		case checkpoint.KindFile:
			if err := c.copyFile(n.Data, n.Size, dst, 0o644, disp); err != nil {
				return err
			}
			return setTimes(dst, n.Mtime, n.Mtime)
		case checkpoint.KindSymlink:
			if err := replaceSymlink(n.Target, dst); err != nil {
				return err
			}
			return setTimes(dst, n.Mtime, n.Mtime)
		}
		kids, err := n.Entries()
		if err != nil {
			return readErr(disp, err)
		}
		if err := makeDir(dst); err != nil {
			return err
		}
		for _, k := range kids {
			if !safeName(k.Name) {
				c.fail(fmt.Errorf("%s: a name %q that cannot be a local file name; skipped", disp, k.Name))
				continue
			}
			if err := c.copy(nav.Loc{Node: k, Path: k.Name}, filepath.Join(dst, k.Name), disp+sep(disp)+k.Name); err != nil {
				c.fail(err)
			}
		}
		if err := os.Chmod(dst, 0o755&^umask()); err != nil {
			return err
		}
		return setTimes(dst, n.Mtime, n.Mtime)
	}
	v := loc.Node.FS
	st, err := v.Stat(loc.Ino)
	if err != nil {
		return readErr(disp, err)
	}
	posix := strings.HasPrefix(v.Type(), "ext")
	switch {
	case st.Mode.IsDir():
		ents, err := v.ReadDir(loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		if err := makeDir(dst); err != nil {
			return err
		}
		for _, e := range ents {
			if !safeName(e.Name) {
				c.fail(fmt.Errorf("%s: an entry named %q cannot be a local file name (damaged folder?); skipped", disp, e.Name))
				continue
			}
			if err := c.copy(nav.Loc{Node: loc.Node, In: true, Ino: e.Ino}, filepath.Join(dst, e.Name), disp+sep(disp)+e.Name); err != nil {
				c.fail(err)
			}
		}
		c.copyStreams(v, loc.Ino, dst, disp)
		mode := fs.FileMode(0o755) &^ umask()
		if posix {
			mode = st.Mode.Perm()
		}
		if err := os.Chmod(dst, mode); err != nil {
			return err
		}
	case st.Mode&fs.ModeSymlink != 0:
		target, err := v.Readlink(loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		if err := replaceSymlink(target, dst); err != nil {
			return err
		}
	case st.Mode.IsRegular():
		key := linkKey{v, loc.Ino}
		if first, ok := c.links[key]; ok && st.Nlink > 1 && replaceable(dst) {
			os.Remove(dst)
			if err := os.Link(first, dst); err == nil {
				return nil
			}
		}
		f, err := v.Open(loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		perm := fs.FileMode(0o644)
		if posix {
			perm = st.Mode.Perm()
		}
		if err := c.copyFile(f, st.Size, dst, perm, disp); err != nil {
			return err
		}
		if posix {
			if err := os.Chmod(dst, perm); err != nil {
				return err
			}
		}
		c.copyStreams(v, loc.Ino, dst, disp)
		if st.Nlink > 1 {
			c.links[key] = dst
		}
	default:
		c.warn("", "%s: not copied: %s", disp, typeName(st.Mode))
		return nil
	}
	return setTimes(dst, st.Atime, st.Mtime)
}

// safeName reports whether name can be joined to a local folder without
// leaving it: never "", ".", "..", or with a slash or NUL (which a damaged
// file system could hold).
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

func sep(disp string) string {
	if strings.HasSuffix(disp, "/") || strings.HasSuffix(disp, ":") {
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

// copyStreams copies the alternate data streams of ino as user xattrs.
func (c *copier) copyStreams(v volume.FS, ino uint64, dst, disp string) {
	if c.streams == "skip" {
		return
	}
	names, err := v.Streams(ino)
	if err != nil {
		c.warn("", "%s: alternate data streams not copied: %v", disp, err)
		return
	}
	for _, name := range names {
		f, err := v.OpenStream(ino, name)
		if err != nil {
			c.warn("", "%s: stream %q not copied: %v", disp, name, readErr(disp+":"+name, err))
			continue
		}
		if f.Size() > xattrMax {
			c.warn("", "%s: stream %q (%d bytes) is larger than an extended attribute can be; not copied", disp, name, f.Size())
			continue
		}
		b := make([]byte, f.Size())
		if n, err := f.ReadAt(b, 0); n != len(b) {
			c.warn("", "%s: stream %q not copied: %v", disp, name, readErr(disp+":"+name, err))
			continue
		}
		if err := unix.Setxattr(dst, "user."+name, b, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				c.warn("xattr", "%s: the destination does not accept user extended attributes; alternate data streams are not copied", dst)
				return
			}
			c.warn("", "%s: stream %q not copied: setxattr: %v", disp, name, err)
		}
	}
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

func umask() fs.FileMode { return umaskOnce() }

// Copy geometry: chunks of copyChunk bytes are read by copyWorkers
// goroutines at once and written where they belong, all-zero blocks of
// holeBlock bytes left as holes.
const (
	copyChunk   = 4 << 20
	copyWorkers = 4
	holeBlock   = 4096
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// replaceable reports whether dst may be removed to put a copy there:
// it does not exist, or is a regular file or a symlink. Devices, pipes,
// sockets and folders are never removed.
func replaceable(dst string) bool {
	st, err := os.Lstat(dst)
	return err != nil || st.Mode().IsRegular() || st.Mode()&fs.ModeSymlink != 0
}

// copyFile copies size bytes of r to dst. A file dst that did not exist
// is removed again on error. An existing device or pipe is written in
// order. Errors name disp (reading) or dst (writing).
func (c *copier) copyFile(r io.ReaderAt, size int64, dst string, perm fs.FileMode, disp string) (err error) {
	if st, err := os.Stat(dst); err == nil && !st.Mode().IsRegular() {
		if st.IsDir() {
			return fmt.Errorf("%s: is a folder", dst)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = copySeq(f, r, size, disp, c.prog)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	_, statErr := os.Lstat(dst)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if errors.Is(err, fs.ErrPermission) && replaceable(dst) {
		// A read-only file of an earlier copy: replace it, as cp -f would.
		if os.Remove(dst) == nil {
			created = true
			f, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil && created {
			os.Remove(dst)
		}
	}()
	chunks := (size + copyChunk - 1) / copyChunk
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, copyWorkers)
	var wg sync.WaitGroup
	workers := int(min(int64(copyWorkers), chunks))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			bp := chunkPool.Get().(*[]byte)
			defer chunkPool.Put(bp)
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= chunks {
					return
				}
				off := i * copyChunk
				b := (*bp)[:min(copyChunk, size-off)]
				n, rerr := r.ReadAt(b, off)
				if n < len(b) {
					if rerr == nil || rerr == io.EOF {
						rerr = io.ErrUnexpectedEOF
					}
					errs[w] = readErr(disp, fmt.Errorf("reading %d bytes at offset %d: %w", len(b), off, rerr))
					failed.Store(true)
					return
				}
				if werr := writeSparse(f, b, off); werr != nil {
					errs[w] = werr
					failed.Store(true)
					return
				}
				c.prog.Add(int64(len(b)))
			}
		}(w)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return f.Truncate(size)
}

// writeSparse writes b at off, skipping all-zero blocks (they stay holes:
// the file is new and is truncated to its size at the end).
func writeSparse(f *os.File, b []byte, off int64) error {
	start := -1
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		_, err := f.WriteAt(b[start:end], off+int64(start))
		start = -1
		return err
	}
	for i := 0; i < len(b); i += holeBlock {
		end := min(i+holeBlock, len(b))
		if isZero(b[i:end]) {
			if err := flush(i); err != nil {
				return err
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return flush(len(b))
}

var zeroBlock [holeBlock]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
