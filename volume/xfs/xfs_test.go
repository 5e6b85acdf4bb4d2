package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// The images every test shares.
func v5Image(t testing.TB) *image {
	return getImage(t, "v5", func(dir string) (*image, error) {
		return buildMounted(dir, 256, treeOpts{bs: 4096, dirBlk: 4096, fragBlks: 400, leafNames: 300, nodeNames: 700, btFiles: 1000}, "-L", "xfs data")
	})
}

func v5SmallImage(t testing.TB) *image {
	return getImage(t, "v5-1k", func(dir string) (*image, error) {
		return buildMounted(dir, 128, treeOpts{bs: 1024, dirBlk: 8192, fragBlks: 4000, leafNames: 600, nodeNames: 1300, btFiles: 2000},
			"-b", "size=1024", "-m", "bigtime=0", "-n", "size=8192", "-L", "small")
	})
}

// v4 images get attributes and one timestamp with xfs_db (the kernel
// cannot mount v4), whose values are runs of 'v'.
// (xfs_db 6.1 crashes when an inode's first attribute does not fit in the
// inode: each gets a small one first.)
var v4Attrs = []struct {
	path  string
	names []string
	sizes []int
}{
	{"small", []string{"first", "greeting"}, []int{5, 30}},
	{"oneblock", []string{"first", "remote"}, []int{5, 5000}},
	{"a/b/c/d/deep.txt", nil, nil}, // filled in below: enough names for a node (not on
	// an empty file: xfs_db crashes there)
}

func init() {
	v4Attrs[2].names, v4Attrs[2].sizes = []string{"first"}, []int{5}
	for i := 0; i < 300; i++ {
		v4Attrs[2].names = append(v4Attrs[2].names, fmt.Sprintf("node_attribute_with_a_long_name_%04d", i))
		v4Attrs[2].sizes = append(v4Attrs[2].sizes, 100)
	}
}

const v4Mtime = 1234567890

func v4Image(t testing.TB, name string, o treeOpts, args ...string) *image {
	return getImage(t, name, func(dir string) (*image, error) {
		img, err := buildProto(dir, 256, o, append([]string{"-m", "crc=0"}, args...)...)
		if err != nil {
			return nil, err
		}
		for _, a := range v4Attrs {
			cmds := []string{"-x", "-c", "path /" + a.path}
			var parts []string
			for i, n := range a.names {
				cmds = append(cmds, "-c", fmt.Sprintf("attr_set -v %d %s", a.sizes[i], n))
				parts = append(parts, n+"="+sum(bytes.Repeat([]byte("v"), a.sizes[i])))
			}
			cmds = append(cmds, "-c", "attr_set -r -v 10 rootattr")
			if _, err := sh(nil, "xfs_db", append(cmds, img.path)...); err != nil {
				return nil, err
			}
			v := img.want[a.path]
			v.Xattrs = strings.Join(sortedCopy(parts), ",")
			img.want[a.path] = v
		}
		// xfs_db cannot write v4 timestamps: patch di_mtime where
		// xfs_db says the inode is, then let xfs_db decode it.
		out, err := sh(nil, "xfs_db", "-c", "path /small", "-c", "inode", img.path)
		if err != nil {
			return nil, err
		}
		var ino int64
		fmt.Sscanf(out[strings.LastIndex(out, " ")+1:], "%d", &ino)
		out, err = sh(nil, "xfs_db", "-c", fmt.Sprintf("convert inode %d byte", ino), img.path)
		if err != nil {
			return nil, err
		}
		var off int64
		fmt.Sscanf(out, "%v", &off)
		fl, err := os.OpenFile(img.path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		_, err = fl.WriteAt(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, v4Mtime), 987654321), off+0x28)
		fl.Close()
		if err != nil {
			return nil, err
		}
		if out, err = sh(nil, "xfs_db", "-c", "path /small", "-c", "p core.mtime.sec", img.path); err != nil {
			return nil, err
		}
		if tm, err := time.ParseInLocation(time.ANSIC, strings.TrimSpace(strings.SplitN(out, "= ", 2)[1]), time.Local); err != nil || tm.Unix() != v4Mtime {
			return nil, fmt.Errorf("xfs_db shows the patched mtime as %q (%v)", out, err)
		}
		return img, nil
	})
}

func sortedCopy(s []string) []string {
	s = append([]string(nil), s...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func TestImages(t *testing.T) {
	tests := []struct {
		name   string
		img    func(t testing.TB) *image
		ignore string
		v5     bool
	}{
		{"v5-4k-bigtime", v5Image, "", true},
		{"v5-1k-dirblk8k-nobigtime", v5SmallImage, "", true},
		{"v4-4k-noftype", func(t testing.TB) *image {
			return v4Image(t, "v4", treeOpts{bs: 4096, leafNames: 300, nodeNames: 700, btFiles: 600}, "-n", "ftype=0")
		}, "mtime,dirsize", false},
		{"v4-1k-ftype-dirblk4k", func(t testing.TB) *image {
			return v4Image(t, "v4-1k", treeOpts{bs: 1024, leafNames: 200, nodeNames: 700, btFiles: 400}, "-b", "size=1024", "-n", "ftype=1,size=4096")
		}, "mtime,dirsize", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img(t)
			testutil.Unchanged(t, img.path)
			fsys := openImage(t, img.path)
			if fsys.v5 != tc.v5 || fsys.Type() != "xfs" || fsys.CaseInsensitive() {
				t.Errorf("v5=%v Type=%q", fsys.v5, fsys.Type())
			}
			if fsys.Dirty() {
				t.Error("Dirty() on a cleanly unmounted image")
			}
			got := readerView(t, fsys)
			compareViews(t, got, img.want, tc.ignore)
			if len(got) < 40 {
				t.Errorf("only %d paths", len(got))
			}
			checkLayout(t, fsys, tc.v5)
			if !tc.v5 {
				a, _ := fsys.Stat(lookupPath(t, fsys, "small"))
				if want := time.Unix(v4Mtime, 987654321); !a.Mtime.Equal(want) {
					t.Errorf("v4 mtime %v, want %v", a.Mtime, want)
				}
			}
		})
	}
}

func lookupPath(t testing.TB, fsys *FS, path string) uint64 {
	t.Helper()
	ino := fsys.Root()
	for _, n := range strings.Split(path, "/") {
		e, err := fsys.Lookup(ino, n)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", path, err)
		}
		ino = e.Ino
	}
	return ino
}

// checkLayout makes sure an image holds every structure it is meant to.
func checkLayout(t *testing.T, fsys *FS, mounted bool) {
	t.Helper()
	in := func(path string) *inode {
		i, err := fsys.inode(lookupPath(t, fsys, path))
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	leafBlock := func(path string) uint16 {
		i := in(path)
		br := &blockReader{f: fsys, fk: &i.data}
		b, found, err := br.read(uint64(dirLeafOffset)>>fsys.blockLog, 1<<fsys.dirBlkLog)
		if err != nil || !found {
			t.Fatalf("%s: leaf block: %v %v", path, found, err)
		}
		return be16(b[8:])
	}
	nodeAttrs := "a/b/c/d/deep.txt"
	if mounted {
		nodeAttrs = "empty"
	}
	type check struct {
		what string
		ok   bool
	}
	checks := []check{
		{"sf is short-form", in("sf").data.format == fmtLocal},
		{"blk is a block directory", in("blk").data.format != fmtLocal && in("blk").size == fsys.dirBlk},
		{"leaf is a leaf directory", in("leaf").size > fsys.dirBlk && (leafBlock("leaf")&0xFF == 0xF1)},
		{"node is a node directory", leafBlock("node") == daNodeMagic || leafBlock("node") == da3NodeMagic},
		{"btdir is B+tree-mapped", in("btdir").data.format == fmtBtree},
		{"fastlink is inline", in("fastlink").data.format == fmtLocal},
		{"slowlink is remote", in("slowlink").data.format == fmtExtents},
		{"oneblock has a remote attribute", in("oneblock").attr.format != fmtLocal},
		{nodeAttrs + " has a node attribute fork", attrRootMagic(t, fsys, in(nodeAttrs)) == daNodeMagic || attrRootMagic(t, fsys, in(nodeAttrs)) == da3NodeMagic},
	}
	if mounted {
		fr := in("frag")
		level := 0
		if fr.data.format == fmtBtree {
			level = int(be16(fr.data.lit))
		}
		wantLevel := 1
		if fsys.bs == 1024 {
			wantLevel = 2
		}
		exts, _ := fsys.extents(&in("unwritten").data)
		unwritten := 0
		for _, e := range exts {
			if e.unwritten {
				unwritten++
			}
		}
		checks = append(checks,
			check{fmt.Sprintf("frag has a %d-level bmbt (level %d)", wantLevel, level), level >= wantLevel},
			check{"unwritten has unwritten extents", unwritten >= 2},
			check{"small has short-form attributes", in("small").attr.format == fmtLocal},
			check{"odd has a leaf attribute fork", fsys.bs > 1024 && attrRootMagic(t, fsys, in("odd"))&0xFF == 0xEE || fsys.bs == 1024},
		)
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("layout: not true: %s", c.what)
		}
	}
}

func attrRootMagic(t *testing.T, fsys *FS, in *inode) uint16 {
	t.Helper()
	if !in.hasAttr || in.attr.format == fmtLocal {
		return 0
	}
	br := &blockReader{f: fsys, fk: &in.attr}
	b, found, err := br.read(0, 1)
	if err != nil || !found {
		t.Fatalf("inode %d: attr block 0: %v", in.ino, err)
	}
	return be16(b[8:])
}

// TestExtents checks Extents against the bytes: reading each extent from
// the volume gives the file, holes and unwritten ranges are zeros.
func TestExtents(t *testing.T) {
	img := v5Image(t)
	fsys := openImage(t, img.path)
	raw, err := os.Open(img.path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, name := range []string{"frag", "sparse", "leadinghole", "unwritten", "unwritten-only", "prealloc-past-eof", "big", "empty"} {
		ino := lookupPath(t, fsys, name)
		exts, err := fsys.Extents(ino)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fl, _ := fsys.Open(ino)
		want, _ := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()))
		var got []byte
		holes := 0
		for _, e := range exts {
			if e.Logical != int64(len(got)) {
				t.Fatalf("%s: extent at %d after %d bytes", name, e.Logical, len(got))
			}
			b := make([]byte, e.Length)
			if e.Physical >= 0 {
				if _, err := raw.ReadAt(b, e.Physical); err != nil {
					t.Fatal(err)
				}
			} else {
				holes++
			}
			got = append(got, b...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: extents give different bytes (%d vs %d)", name, len(got), len(want))
		}
		if name != "big" && name != "empty" && name != "prealloc-past-eof" && holes == 0 {
			t.Errorf("%s: no hole or unwritten extent reported", name)
		}
	}
}

func TestConcurrentWalk(t *testing.T) {
	fsys := openImage(t, v5SmallImage(t).path)
	fstest.ConcurrentWalk(t, fsys)
	// Parallel reads of one file agree with a sequential read.
	fl, _ := fsys.Open(lookupPath(t, fsys, "frag"))
	want, _ := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for off := int64(g * 777); off < fl.Size(); off += 8 * 4099 {
				b := make([]byte, 5000)
				n, err := fl.ReadAt(b, off)
				if err != nil && err != io.EOF || !bytes.Equal(b[:n], want[off:off+int64(n)]) {
					t.Errorf("read at %d: %d, %v", off, n, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// TestDirty shuts the file system down with changes only in the log: the
// reader must say so and still show the state on disk.
func TestDirty(t *testing.T) {
	needRoot(t)
	testutil.Need(t, "mkfs.xfs", "mount", "umount")
	dir := t.TempDir()
	img := filepath.Join(dir, "dirty.img")
	if err := mkfs(img, 64); err != nil {
		t.Fatal(err)
	}
	if fsys := openImage(t, img); fsys.Dirty() {
		t.Error("a fresh file system is Dirty")
	}
	var before map[string]kview
	err := withMount(img, "", func(mnt string) error {
		os.WriteFile(filepath.Join(mnt, "old"), pattern(1, 100000), 0o644)
		os.Mkdir(filepath.Join(mnt, "olddir"), 0o755)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	withMount(img, "ro", func(mnt string) (err error) { before, err = kernelView(mnt); return err })
	if fsys := openImage(t, img); fsys.Dirty() {
		t.Error("a cleanly unmounted file system is Dirty")
	}
	t0 := time.Now()
	defer func() { verbosef("TestDirty: %v after the first mounts", time.Since(t0)) }()
	err = withMount(img, "", func(mnt string) error {
		for i := 0; i < 50; i++ {
			os.WriteFile(filepath.Join(mnt, fmt.Sprintf("new%d", i)), []byte("new"), 0o644)
		}
		os.Remove(filepath.Join(mnt, "olddir"))
		// The changes reach the log, then the file system goes down
		// before they are written home (xfs_io -c shutdown does the
		// same, but stats every mount point first and hangs on a dead
		// FUSE mount).
		if err := syncfs(mnt); err != nil {
			return err
		}
		return goingDown(mnt)
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys := openImage(t, img)
	if !fsys.Dirty() {
		t.Fatal("Dirty() = false after a shutdown")
	}
	// The on-disk state: whatever it holds must read without errors, and
	// the file written before the clean unmount is intact.
	got := readerView(t, fsys)
	if got["old"] != before["old"] {
		t.Errorf("old: %+v, want %+v", got["old"], before["old"])
	}
	t.Logf("on-disk state after shutdown: %d entries", len(got))
}

func TestAPIErrors(t *testing.T) {
	fsys := openImage(t, v5SmallImage(t).path)
	root := fsys.Root()
	f := lookupPath(t, fsys, "small")
	d := lookupPath(t, fsys, "a")
	l := lookupPath(t, fsys, "fastlink")
	leaf := lookupPath(t, fsys, "node")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"lookup missing", second(fsys.Lookup(root, "nope")), volume.ErrNotFound},
		{"lookup missing in node dir", second(fsys.Lookup(leaf, "nope")), volume.ErrNotFound},
		{"lookup dot", second(fsys.Lookup(leaf, ".")), volume.ErrNotFound},
		{"lookup wrong case", second(fsys.Lookup(root, "SMALL")), volume.ErrNotFound},
		{"readdir file", second(fsys.ReadDir(f)), volume.ErrNotDir},
		{"lookup in file", second(fsys.Lookup(f, "x")), volume.ErrNotDir},
		{"open dir", second(fsys.Open(d)), os.ErrInvalid},
		{"open symlink", second(fsys.Open(l)), os.ErrInvalid},
		{"readlink file", second(fsys.Readlink(f)), os.ErrInvalid},
		{"stat huge", second(fsys.Stat(1 << 60)), os.ErrNotExist},
		{"open stream missing", second(fsys.OpenStream(f, "nope")), os.ErrNotExist},
		{"open stream of another namespace", second(fsys.OpenStream(f, "hidden")), os.ErrNotExist},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	fl, _ := fsys.Open(f)
	if _, err := fl.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("negative offset accepted")
	}
	if n, err := fl.ReadAt(make([]byte, 20), 5); n != 6 || err != io.EOF {
		t.Errorf("short read: %d, %v", n, err)
	}
	if n, err := fl.ReadAt(make([]byte, 20), 500); n != 0 || err != io.EOF {
		t.Errorf("read past EOF: %d, %v", n, err)
	}
	if Probe(bytes.NewReader(make([]byte, 4096))) || Probe(bytes.NewReader(nil)) {
		t.Error("Probe of zeros")
	}
	if fsys.Label() != "small" {
		t.Errorf("Label = %q", fsys.Label())
	}
}

func second[T any](_ T, err error) error { return err }

// TestLookupReadsLittle proves that Lookup in a node directory uses
// the hash index: it reads far fewer bytes than the directory holds.
func TestLookupReadsLittle(t *testing.T) {
	img := v5Image(t)
	f, err := os.Open(img.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	cr := &countingReader{r: f}
	fsys, err := Open(cr, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	node := lookupPath(t, fsys, "node")
	in, _ := fsys.inode(node)
	for i := 0; i < 700; i += 69 {
		name := fmt.Sprintf("a_rather_long_file_name_to_fill_directory_blocks_%06d_%s", i, strings.Repeat("x", i%7))
		before := cr.bytes()
		if _, err := fsys.Lookup(node, name); err != nil {
			t.Fatal(err)
		}
		// At most the index root, a leaf and a data block.
		if read := cr.bytes() - before; read > 3*fsys.dirBlk || read >= in.size/4 {
			t.Errorf("looking up %q read %d bytes of a %d-byte directory", name, read, in.size)
		}
	}
	if _, ok := fsys.dirCache.Get(node); ok {
		t.Error("lookups loaded the whole listing")
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n.Add(int64(len(p)))
	return c.r.ReadAt(p, off)
}

func (c *countingReader) bytes() int64 { return c.n.Load() }

// goingDown shuts the file system at mnt down (XFS_IOC_GOINGDOWN with
// XFS_FSOP_GOING_FLAGS_LOGFLUSH).
func goingDown(mnt string) error {
	const iocGoingDown = 0x8004587D // _IOR('X', 125, __u32)
	fd, err := unix.Open(mnt, unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags := uint32(1)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), iocGoingDown, uintptr(unsafe.Pointer(&flags))); errno != 0 {
		return fmt.Errorf("XFS_IOC_GOINGDOWN: %w", errno)
	}
	return nil
}

// TestHugeFile reads a sparse file past 4 GiB at the kernel-written data
// and in its holes.
func TestHugeFile(t *testing.T) {
	fsys := openImage(t, v5Image(t).path)
	fl, err := fsys.Open(lookupPath(t, fsys, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	if fl.Size() != hugeOff+hugeLen+1000 {
		t.Fatalf("size %d", fl.Size())
	}
	want := pattern(13, hugeLen)
	for _, r := range []struct{ off, n int64 }{{hugeOff - 5000, 10000}, {hugeOff, hugeLen}, {hugeOff + hugeLen - 10, 2000}, {1 << 32, 8192}, {0, 4096}} {
		b := make([]byte, r.n)
		n, err := fl.ReadAt(b, r.off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		for i := int64(0); i < int64(n); i++ {
			var w byte
			if p := r.off + i - hugeOff; p >= 0 && p < hugeLen {
				w = want[p]
			}
			if b[i] != w {
				t.Fatalf("byte %d: %#x, want %#x", r.off+i, b[i], w)
			}
		}
	}
	exts, err := fsys.Extents(lookupPath(t, fsys, "huge"))
	if err != nil || len(exts) < 2 || exts[0].Physical != -1 || exts[0].Length < hugeOff-int64(fsys.bs) {
		t.Errorf("Extents = %+v, %v", exts, err)
	}
}

// TestShortFormI8 decodes a short-form directory whose inode numbers are
// stored in 8 bytes (i8count), as on volumes with inodes above 2^32.
func TestShortFormI8(t *testing.T) {
	fsys := openImage(t, v5SmallImage(t).path)
	sf, _ := fsys.inode(lookupPath(t, fsys, "sf"))
	target := lookupPath(t, fsys, "small")
	var b []byte
	b = append(b, 2, 2)                                       // count, i8count
	b = binary.BigEndian.AppendUint64(b, uint64(fsys.Root())) // parent
	for i, name := range []string{"first", "second"} {
		b = append(b, byte(len(name)), 0, byte(8*i))
		b = append(b, name...)
		b = append(b, 1) // ftype: regular file
		b = binary.BigEndian.AppendUint64(b, target)
	}
	in := *sf
	in.ino = 1 << 40 // not cached
	in.size = int64(len(b))
	in.data.lit = b
	var got []volume.Entry
	if err := fsys.parseShortForm(&in, func(e volume.Entry) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (volume.Entry{Name: "first", Ino: target}) || got[1].Name != "second" || got[1].Ino != target {
		t.Errorf("entries %+v", got)
	}
	in.data.lit = b[:len(b)-3]
	in.size -= 3
	if err := fsys.parseShortForm(&in, func(volume.Entry) {}); !errors.Is(err, volume.ErrCorrupt) {
		t.Errorf("truncated: %v", err)
	}
}
