package xfs

// Test images: built once per test binary with mkfs.xfs, filled through a
// kernel loop mount (v5) or a mkfs protofile (v4, which this kernel does
// not mount), with what the kernel showed recorded before unmounting.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// verbosef logs image build times when XFS_TEST_VERBOSE is set.
func verbosef(format string, args ...any) {
	if os.Getenv("XFS_TEST_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// tmpRoot holds the images of this test binary; TestMain removes it.
var tmpRoot string

func TestMain(m *testing.M) {
	var err error
	if tmpRoot, err = os.MkdirTemp("", "xfstest"); err != nil {
		panic(err)
	}
	code := m.Run()
	if os.Getenv("XFS_TEST_KEEP") == "" {
		os.RemoveAll(tmpRoot)
	} else {
		fmt.Fprintln(os.Stderr, "images kept in", tmpRoot)
	}
	os.Exit(code)
}

// kview is what a reader shows for one path.
type kview struct {
	Mode       fs.FileMode
	Uid, Gid   uint32
	Nlink      uint32
	Size       int64
	Mtime      int64 // ns since 1970
	Sum        string
	Link       string
	Xattrs     string // sorted "name=sha" of user.* attributes
	EntryMatch bool   // the directory entry's type matches Stat (reader only)
}

// image is a built test image and the view it must show.
type image struct {
	path string
	want map[string]kview
	err  error
}

var (
	imagesMu sync.Mutex
	images   = map[string]*image{}
	onces    = map[string]*sync.Once{}
)

// getImage builds (once per test binary) the image named name.
func getImage(t testing.TB, name string, build func(dir string) (*image, error)) *image {
	t.Helper()
	needRoot(t)
	testutil.Need(t, "mkfs.xfs", "xfs_db", "mount", "umount")
	imagesMu.Lock()
	once, ok := onces[name]
	if !ok {
		once = new(sync.Once)
		onces[name] = once
	}
	imagesMu.Unlock()
	once.Do(func() {
		dir := filepath.Join(tmpRoot, name)
		os.MkdirAll(dir, 0o755)
		img, err := build(dir)
		if err != nil {
			img = &image{err: err}
		}
		imagesMu.Lock()
		images[name] = img
		imagesMu.Unlock()
	})
	imagesMu.Lock()
	img := images[name]
	imagesMu.Unlock()
	if img.err != nil {
		t.Fatalf("building image %s: %v", name, img.err)
	}
	return img
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop mounts")
	}
}

// sh runs a command and returns its combined output.
func sh(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mkfs makes an image of sizeMiB with mkfs.xfs: sparse, or filled with
// 0xAA when prefill is set, so that unwritten extents and holes would
// show garbage if they were read from disk. The environment lets
// mkfs.xfs make file systems below its 300 MB floor.
func mkfs(img string, sizeMiB int64, args ...string) error {
	return mkfsFill(img, sizeMiB, false, args...)
}

func mkfsFill(img string, sizeMiB int64, prefill bool, args ...string) error {
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	f.Truncate(sizeMiB << 20)
	if prefill {
		buf := bytes.Repeat([]byte{0xAA}, 1<<20)
		for i := int64(0); i < sizeMiB && err == nil; i++ {
			_, err = f.Write(buf)
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	_, err = sh([]string{"TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1"}, "mkfs.xfs", append(append([]string{"-q", "-f", "-K"}, args...), img)...)
	return err
}

// withMount loop-mounts img on a fresh directory, runs fn and unmounts.
func withMount(img, opts string, fn func(mnt string) error) (err error) {
	mnt, err := os.MkdirTemp(tmpRoot, "mnt")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	if _, err := sh(nil, "mount", "-o", "loop,"+opts, img, mnt); err != nil {
		return err
	}
	defer func() {
		if _, uerr := sh(nil, "umount", mnt); uerr != nil && err == nil {
			err = uerr
		}
	}()
	return fn(mnt)
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// kernelView records what the kernel shows under root.
func kernelView(root string) (map[string]kview, error) {
	out := map[string]kview{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := kview{Mode: fi.Mode(), Uid: st.Uid, Gid: st.Gid, Nlink: uint32(st.Nlink), Size: fi.Size(),
			Mtime: st.Mtim.Nano(), EntryMatch: true}
		switch {
		case fi.Mode().IsRegular() && fi.Size() > hashSize:
			v.Sum = "not hashed"
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v.Sum = sum(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			v.Link, _ = os.Readlink(p)
		}
		if v.Xattrs, err = hostXattrs(p); err != nil {
			return err
		}
		out[rel] = v
		return nil
	})
	return out, err
}

// hostXattrs lists the user.* attributes of a host path.
func hostXattrs(p string) (string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return "", nil
		}
		return "", err
	}
	if size == 0 {
		return "", nil
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		vb := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, vb)
		if err != nil {
			return "", err
		}
		parts = append(parts, strings.TrimPrefix(name, "user.")+"="+sum(vb[:vn]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ","), nil
}

// readerView records what fsys shows, walking from its root.
func readerView(t testing.TB, fsys volume.FS) map[string]kview {
	t.Helper()
	out := map[string]kview{}
	var walk func(ino uint64, prefix string)
	walk = func(ino uint64, prefix string) {
		ents, err := fsys.ReadDir(ino)
		if err != nil {
			t.Fatalf("ReadDir(%q): %v", prefix, err)
		}
		for _, e := range ents {
			p := prefix + e.Name
			a, err := fsys.Stat(e.Ino)
			if err != nil {
				t.Fatalf("Stat(%q): %v", p, err)
			}
			le, err := fsys.Lookup(ino, e.Name)
			if err != nil || le != e {
				t.Errorf("Lookup(%q) = %+v, %v; ReadDir gave %+v", p, le, err, e)
			}
			v := kview{Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Nlink: a.Nlink, Size: a.Size,
				Mtime: a.Mtime.UnixNano(), EntryMatch: e.Mode == a.Mode.Type()}
			switch {
			case a.Mode.IsRegular() && a.Size > hashSize:
				v.Sum = "not hashed"
			case a.Mode.IsRegular():
				fl, err := fsys.Open(e.Ino)
				if err != nil {
					t.Fatalf("Open(%q): %v", p, err)
				}
				// Read past EOF too: the reader must stop at the size.
				b, err := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()+4096))
				if err != nil {
					t.Fatalf("read %q: %v", p, err)
				}
				v.Sum = sum(b)
			case a.Mode&fs.ModeSymlink != 0:
				if v.Link, err = fsys.Readlink(e.Ino); err != nil {
					t.Errorf("Readlink(%q): %v", p, err)
				}
			}
			names, err := fsys.Streams(e.Ino)
			if err != nil {
				t.Errorf("Streams(%q): %v", p, err)
			}
			var parts []string
			for _, n := range names {
				s, err := fsys.OpenStream(e.Ino, n)
				if err != nil {
					t.Errorf("OpenStream(%q, %q): %v", p, n, err)
					continue
				}
				b, _ := io.ReadAll(io.NewSectionReader(s, 0, s.Size()))
				parts = append(parts, n+"="+sum(b))
			}
			v.Xattrs = strings.Join(parts, ",")
			out[p] = v
			if a.Mode.IsDir() {
				walk(e.Ino, p+"/")
			}
		}
	}
	walk(fsys.Root(), "")
	return out
}

// compareViews reports every difference between the reader's and the
// kernel's view; ignore lists fields not compared ("mtime").
func compareViews(t *testing.T, got, want map[string]kview, ignore string) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	bad := 0
	for _, p := range paths {
		g, gok := got[p]
		w, wok := want[p]
		if strings.Contains(ignore, "mtime") {
			g.Mtime, w.Mtime = 0, 0
		}
		if strings.Contains(ignore, "dirsize") && g.Mode.IsDir() {
			g.Size, w.Size = 0, 0
		}
		if !gok || !wok || g != w {
			if bad++; bad <= 20 {
				t.Errorf("%s:\n got %+v (%v)\nwant %+v (%v)", p, g, gok, w, wok)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d paths differ", bad, len(paths))
	}
}

func openImage(t testing.TB, path string) *FS {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	if !Probe(f) {
		t.Fatal("Probe = false")
	}
	fsys, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// The file "huge" holds hugeLen bytes of pattern(13) at hugeOff, beyond
// 4 GiB, in a sparse file too large to hash whole in the views.
const (
	hugeOff  = 5<<30 + 12345
	hugeLen  = 100000
	hashSize = 1 << 30 // larger files are not hashed by the views
)

// treeOpts sizes the test tree.
type treeOpts struct {
	bs        int64 // file system block size
	dirBlk    int64 // directory block size
	fragBlks  int   // blocks of the fragmented file (every other one punched)
	leafNames int   // entries of the leaf directory
	nodeNames int   // entries of the node directory
	btFiles   int   // files created in the B+tree-mapped directory
}

// populate fills a mounted file system (or a source tree when mounted is
// false: no hard links, xattrs, fallocate or timestamps).
func populate(root string, o treeOpts, mounted bool) error {
	var errs []error
	must := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	write := func(rel string, data []byte, mode fs.FileMode) {
		must(os.WriteFile(p(rel), data, mode))
		must(os.Chmod(p(rel), mode))
	}
	bs := o.bs
	must(os.MkdirAll(p("a/b/c/d"), 0o755))
	write("a/b/c/d/deep.txt", []byte("deep\n"), 0o600)
	write("empty", nil, 0o644)
	write("small", []byte("hello, xfs\n"), 0o644)
	write("oneblock", pattern(1, int(bs)), 0o644)
	write("odd", pattern(2, int(3*bs+7)), 0o640)
	write("Grüße, 世界 ✓.txt", []byte("non-ascii name\n"), 0o644)
	write("big", pattern(3, 3<<20+5), 0o644)
	write("suid", []byte("#!/bin/sh\n"), 0o755)
	must(os.Chmod(p("suid"), fs.ModeSetuid|fs.ModeSetgid|0o755))
	must(os.Chown(p("odd"), 1234, 5678))
	must(os.Symlink("oneblock", p("fastlink")))
	must(os.Symlink(strings.Repeat("long/path/component/", 40)+"target", p("slowlink")))
	must(os.Symlink("../does/not/exist", p("a/dangling")))
	must(unix.Mkfifo(p("fifo"), 0o644))
	sparse := func(rel string, size int64, chunks map[int64][]byte) {
		f, err := os.Create(p(rel))
		if err != nil {
			must(err)
			return
		}
		defer f.Close()
		for off, data := range chunks {
			_, err := f.WriteAt(data, off)
			must(err)
		}
		must(f.Truncate(size))
	}
	sparse("sparse", 40*bs+123, map[int64][]byte{0: pattern(4, int(2*bs+10)), 20 * bs: pattern(5, int(bs))})
	sparse("leadinghole", 30*bs+5, map[int64][]byte{28 * bs: pattern(6, int(2*bs+5))})
	if mounted {
		sparse("huge", hugeOff+hugeLen+1000, map[int64][]byte{hugeOff: pattern(13, hugeLen)})
	}

	dirs := []struct {
		name string
		n    int
		long bool
	}{{"sf", 3, false}, {"blk", 50, false}, {"leaf", o.leafNames, false}, {"node", o.nodeNames, true}}
	for _, d := range dirs {
		must(os.Mkdir(p(d.name), 0o755))
		for i := 0; i < d.n; i++ {
			name := fmt.Sprintf("entry_%d", i)
			if d.long {
				name = fmt.Sprintf("a_rather_long_file_name_to_fill_directory_blocks_%06d_%s", i, strings.Repeat("x", i%7))
			}
			var data []byte
			if i%97 == 0 {
				data = []byte(name)
			}
			write(d.name+"/"+name, data, 0o644)
		}
	}
	// A directory grown into one-block holes of free space (or, from a
	// protofile, between its files' data) is fragmented into more extents
	// than the inode holds: a B+tree-mapped directory.
	must(os.Mkdir(p("btdir"), 0o755))
	if mounted {
		for i := 0; i < 200; i++ {
			write(fmt.Sprintf("btdir/filler%d", i), pattern(int64(i), int(o.dirBlk)), 0o644)
		}
		must(syncfs(root))
		for i := 0; i < 200; i += 2 {
			must(os.Remove(p(fmt.Sprintf("btdir/filler%d", i))))
		}
		must(syncfs(root))
	}
	for i := 0; i < o.btFiles; i++ {
		name := fmt.Sprintf("btdir/%s_%05d", strings.Repeat("long_name_to_grow_the_directory_", 3), i)
		var data []byte
		if !mounted {
			data = pattern(int64(i), int(bs))
		}
		write(name, data, 0o644)
	}
	if !mounted {
		return errors.Join(errs...)
	}

	must(os.Link(p("odd"), p("a/hardlink-to-odd")))
	must(os.Link(p("odd"), p("a/b/second-hardlink")))

	// Unwritten extents: preallocated, partly written, and past EOF.
	fall := func(rel string, mode uint32, off, n int64, writes map[int64][]byte) {
		f, err := os.OpenFile(p(rel), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			must(err)
			return
		}
		defer f.Close()
		must(unix.Fallocate(int(f.Fd()), mode, off, n))
		for o, d := range writes {
			_, err := f.WriteAt(d, o)
			must(err)
		}
		must(f.Sync())
	}
	fall("unwritten", 0, 0, 1<<20, map[int64][]byte{10 * bs: pattern(7, int(3*bs)), 200000: pattern(8, 100)})
	fall("unwritten-only", 0, 0, 64<<10, nil)
	write("prealloc-past-eof", pattern(9, 5000), 0o644)
	fall("prealloc-past-eof", unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20, nil)

	// A file fragmented into many extents: every other block punched.
	frag := pattern(10, o.fragBlks*int(bs))
	write("frag", frag, 0o644)
	f, err := os.OpenFile(p("frag"), os.O_RDWR, 0)
	if err == nil {
		for i := 1; i < o.fragBlks; i += 2 {
			must(unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(i)*bs, bs))
		}
		f.Close()
	}
	must(err)

	// Extended attributes: short-form, leaf with remote values, node.
	setx := func(rel, name string, v []byte) { must(unix.Lsetxattr(p(rel), name, v, 0)) }
	setx("small", "user.greeting", []byte("hi"))
	setx("small", "user.empty", nil)
	setx("small", "trusted.hidden", []byte("not listed"))
	setx("small", "security.hidden", []byte("not listed"))
	setx("a", "user.on-a-dir", []byte("dir attr"))
	setx("oneblock", "user.remote", pattern(11, 3*int(bs)+17))
	setx("oneblock", "user.local", []byte("x"))
	setx("oneblock", "user.maxsize", pattern(12, 65536))
	for i := 0; i < 40; i++ {
		setx("odd", fmt.Sprintf("user.leaf%02d", i), pattern(int64(100+i), 60))
	}
	for i := 0; i < 400; i++ {
		setx("empty", fmt.Sprintf("user.node_attribute_with_a_long_name_%04d", i), pattern(int64(1000+i), 100+i%50))
	}

	// Timestamps with nanoseconds, before 1970 and after 2038.
	for rel, tm := range map[string]time.Time{
		"small":        time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC),
		"oneblock":     time.Date(1960, 6, 7, 8, 9, 10, 5, time.UTC),
		"odd":          time.Date(2200, 1, 1, 0, 0, 0, 999999999, time.UTC),
		"a/b/c/d":      time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC),
		"sparse":       time.Date(1901, 12, 14, 0, 0, 0, 0, time.UTC),
		"leadinghole":  time.Date(2038, 1, 19, 3, 14, 8, 1, time.UTC),
		"unwritten":    time.Date(2486, 7, 2, 22, 20, 0, 0, time.UTC),
		"frag":         time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		"sf/entry_0":   time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		"blk/entry_10": time.Date(2010, 10, 10, 10, 10, 10, 10, time.UTC),
	} {
		must(os.Chtimes(p(rel), tm, tm))
	}
	return errors.Join(errs...)
}

// syncfs flushes the file system holding path (not every file system,
// as sync would).
func syncfs(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// buildMounted makes an image with mkfs args, fills it through a loop
// mount and records the kernel's view.
func buildMounted(dir string, sizeMiB int64, o treeOpts, args ...string) (*image, error) {
	img := filepath.Join(dir, "fs.img")
	t0 := time.Now()
	if err := mkfsFill(img, sizeMiB, true, args...); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := withMount(img, "", func(mnt string) error { return populate(mnt, o, true) }); err != nil {
		return nil, err
	}
	t2 := time.Now()
	defer func() { verbosef("%s: mkfs %v, populate %v, view %v", dir, t1.Sub(t0), t2.Sub(t1), time.Since(t2)) }()
	// The view is taken from a fresh read-only mount: what is on disk.
	var want map[string]kview
	err := withMount(img, "ro", func(mnt string) (err error) {
		want, err = kernelView(mnt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &image{path: img, want: want}, nil
}

// writeProto writes an mkfs.xfs protofile describing the tree at src.
func writeProto(src, proto string) error {
	var b bytes.Buffer
	b.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			m := fi.Mode()
			perm := fmt.Sprintf("%03o", m.Perm())
			su, sg := "-", "-"
			if m&fs.ModeSetuid != 0 {
				su = "u"
			}
			if m&fs.ModeSetgid != 0 {
				sg = "g"
			}
			ind := strings.Repeat(" ", depth+1)
			owner := fmt.Sprintf("%d %d", st.Uid, st.Gid)
			switch {
			case m.IsDir():
				fmt.Fprintf(&b, "%s%s d%s%s%s %s\n", ind, e.Name(), su, sg, perm, owner)
				if err := walk(p, depth+1); err != nil {
					return err
				}
				fmt.Fprintf(&b, "%s$\n", ind)
			case m&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				fmt.Fprintf(&b, "%s%s l%s%s%s %s %s\n", ind, e.Name(), su, sg, perm, owner, target)
			case m&fs.ModeNamedPipe != 0:
				fmt.Fprintf(&b, "%s%s p%s%s%s %s\n", ind, e.Name(), su, sg, perm, owner)
			default:
				fmt.Fprintf(&b, "%s%s -%s%s%s %s %s\n", ind, e.Name(), su, sg, perm, owner, p)
			}
		}
		return nil
	}
	if err := walk(src, 0); err != nil {
		return err
	}
	b.WriteString("$\n")
	return os.WriteFile(proto, b.Bytes(), 0o644)
}

// buildProto makes an image from a protofile of a generated source tree
// (names with spaces are left out: protofiles cannot hold them). The
// expected view is the source tree's, without timestamps.
func buildProto(dir string, sizeMiB int64, o treeOpts, args ...string) (*image, error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := populate(src, o, false); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(src, "Grüße, 世界 ✓.txt"))
	if err := os.WriteFile(filepath.Join(src, "Grüße_世界_✓.txt"), []byte("non-ascii name\n"), 0o644); err != nil {
		return nil, err
	}
	proto := filepath.Join(dir, "proto")
	if err := writeProto(src, proto); err != nil {
		return nil, err
	}
	img := filepath.Join(dir, "fs.img")
	if err := mkfs(img, sizeMiB, append(args, "-p", proto)...); err != nil {
		return nil, err
	}
	want, err := kernelView(src)
	if err != nil {
		return nil, err
	}
	return &image{path: img, want: want}, nil
}
