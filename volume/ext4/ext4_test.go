package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

func run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=", "MKE2FS_SYNC=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// writeSparse writes a file of the given size with data only at the given
// offsets; everything else is a hole.
func writeSparse(t *testing.T, p string, size int64, chunks map[int64][]byte) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, data := range chunks {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// expectation of a file whose content differs from the source tree.
type override struct {
	path string
	data []byte
}

// image describes a test file system and how it was made.
type image struct {
	path string
	src  string
	// debugfs commands run after mkfs (trailing holes, unwritten extents)
	fixups []string
}

// prefill creates img filled with 0xAA so that unwritten extents and
// holes would show garbage if read from disk.
func prefill(t *testing.T, img string, size int64) {
	t.Helper()
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xAA}, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// makeFS builds an image with mkfs from src, then applies debugfs fixups.
func makeFS(t *testing.T, mkfs string, args []string, src string, sizeMiB int64, fixups []string) string {
	t.Helper()
	testutil.Need(t, mkfs, "debugfs", "e2fsck")
	img := filepath.Join(t.TempDir(), "fs.img")
	prefill(t, img, sizeMiB<<20)
	run(t, "", mkfs, append(append([]string{"-q", "-F", "-E", "nodiscard"}, args...), "-d", src, img)...)
	if len(fixups) > 0 {
		run(t, strings.Join(fixups, "\n")+"\n", "debugfs", "-w", "-f", "-", img)
	}
	return img
}

func openImage(t *testing.T, img string) *FS {
	t.Helper()
	fsys, _ := fstest.OpenImage(t, img, Probe, Open)
	return fsys
}

// buildTree writes the common test tree under src and returns debugfs
// fixups that restore what mkfs -d does not copy (trailing holes) and add
// unwritten extents. bs is the block size.
func buildTree(t *testing.T, src string, bs int64, htree bool) []string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a/b/c/d"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a/b/c/d/deep.txt"), []byte("deep\n"), 0o600))
	must(os.WriteFile(filepath.Join(src, "empty"), nil, 0o644))
	must(os.WriteFile(filepath.Join(src, "oneblock"), fstest.Pattern(1, int(bs)), 0o644))
	must(os.WriteFile(filepath.Join(src, "odd"), fstest.Pattern(2, int(3*bs+7)), 0o640))
	must(os.WriteFile(filepath.Join(src, "Grüße, 世界 ✓.txt"), []byte("non-ascii name\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "big"), fstest.Pattern(3, 3<<20+5), 0o644))
	must(os.WriteFile(filepath.Join(src, "suid"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "suid"), 0o4755|fs.ModeSetuid))
	must(os.Chmod(filepath.Join(src, "suid"), fs.ModeSetuid|0o755))
	must(os.Chown(filepath.Join(src, "odd"), 1234, 5678))
	// holes: data, hole, data, then a trailing hole
	writeSparse(t, filepath.Join(src, "sparse"), 40*bs+123, map[int64][]byte{
		0:       fstest.Pattern(4, int(2*bs+10)),
		20 * bs: fstest.Pattern(5, int(bs)),
	})
	// hole at the start, data at the end
	writeSparse(t, filepath.Join(src, "leadinghole"), 30*bs+5, map[int64][]byte{28 * bs: fstest.Pattern(6, int(2*bs+5))})
	// unwritten: a hole that debugfs turns into unwritten extents
	writeSparse(t, filepath.Join(src, "unwritten"), 50*bs, map[int64][]byte{0: fstest.Pattern(7, int(bs)), 40 * bs: fstest.Pattern(8, int(bs))})
	must(os.Symlink("oneblock", filepath.Join(src, "fastlink")))
	must(os.Symlink(strings.Repeat("long/path/component/", 10)+"target", filepath.Join(src, "slowlink")))
	must(os.Symlink("../does/not/exist", filepath.Join(src, "a/dangling")))
	must(os.Link(filepath.Join(src, "odd"), filepath.Join(src, "a/hardlink-to-odd")))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	if htree {
		d := filepath.Join(src, "many")
		must(os.Mkdir(d, 0o755))
		for i := 0; i < 10000; i++ {
			// Short names keep mkfs -d (quadratic in a linear directory) fast.
			f, err := os.Create(filepath.Join(d, fmt.Sprintf("e%05d%s", i, strings.Repeat("x", i%5))))
			must(err)
			if i%1000 == 0 {
				f.WriteString(strconv.Itoa(i))
			}
			f.Close()
		}
	}
	// Fixed mtimes (mkfs -d copies seconds).
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	filepath.Walk(src, func(p string, info fs.FileInfo, err error) error {
		if err == nil && info.Mode()&fs.ModeSymlink == 0 && p != src {
			os.Chtimes(p, mt, mt)
		}
		return nil
	})
	return []string{
		fmt.Sprintf("sif /sparse size %d", 40*bs+123),
		fmt.Sprintf("fallocate /unwritten 5 30"),
		fmt.Sprintf("fallocate /unwritten 45 49"),
		fmt.Sprintf("sif /unwritten size %d", 50*bs),
		fmt.Sprintf("fallocate /leadinghole 31 40"), // beyond EOF: must not show
	}
}

func TestImages(t *testing.T) {
	tests := []struct {
		name    string
		mkfs    string
		args    []string
		bs      int64
		sizeMiB int64
		htree   bool
		fsck    bool // e2fsck -fyD to build hash-tree directories
	}{
		{"ext4-4k-htree", "mkfs.ext4", []string{"-b", "4096", "-N", "12000", "-L", "data vol"}, 4096, 24, true, true},
		{"ext4-1k", "mkfs.ext4", []string{"-b", "1024", "-L", "data vol"}, 1024, 12, false, false},
		{"ext4-inline", "mkfs.ext4", []string{"-b", "4096", "-O", "inline_data", "-L", "data vol"}, 4096, 12, false, false},
		{"ext4-64bit-metabg", "mkfs.ext4", []string{"-b", "1024", "-O", "64bit,meta_bg,^resize_inode", "-L", "data vol", "-g", "1024"}, 1024, 12, false, false},
		{"ext4-128-inode", "mkfs.ext4", []string{"-b", "4096", "-I", "128", "-L", "data vol"}, 4096, 12, false, false},
		{"ext4-bigalloc", "mkfs.ext4", []string{"-b", "4096", "-O", "bigalloc", "-C", "16384", "-L", "data vol"}, 4096, 16, false, false},
		{"ext3", "mkfs.ext3", []string{"-b", "4096", "-L", "data vol"}, 4096, 12, false, false},
		{"ext2-1k", "mkfs.ext2", []string{"-b", "1024", "-L", "data vol"}, 1024, 12, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(t.TempDir(), "src")
			fixups := buildTree(t, src, tc.bs, tc.htree)
			if tc.mkfs != "mkfs.ext4" {
				fixups = fixups[:1] // no extents, no fallocate
				for _, n := range []string{"unwritten", "leadinghole"} {
					os.Remove(filepath.Join(src, n))
				}
			}
			img := makeFS(t, tc.mkfs, tc.args, src, tc.sizeMiB, fixups)
			if tc.fsck {
				cmd := exec.Command("e2fsck", "-fyD", img)
				if out, err := cmd.CombinedOutput(); err != nil && cmd.ProcessState.ExitCode() > 1 {
					t.Fatalf("e2fsck: %v\n%s", err, out)
				}
			}
			fsys := openImage(t, img)
			if fsys.Label() != "data vol" || fsys.Type() != "ext4" || fsys.CaseInsensitive() {
				t.Errorf("Label/Type = %q/%q", fsys.Label(), fsys.Type())
			}
			fstest.ConcurrentWalk(t, fsys)
			n := fstest.CompareTree(t, fsys, fsys.Root(), src, fstest.TreeOptions{Extra: map[string]bool{"lost+found": true}, Unix: true, Mtime: time.Second, FolderMtimes: true})
			if n < 8 {
				t.Errorf("only %d files compared", n)
			}
			checkLayout(t, fsys, tc.mkfs == "mkfs.ext4", tc.htree)
			if tc.name == "ext4-inline" {
				for _, p := range [][]string{{"suid"}, {"a"}, {"a", "b", "c", "d", "deep.txt"}} {
					ino := fsys.Root()
					for _, n := range p {
						e, err := fsys.Lookup(ino, n)
						if err != nil {
							t.Fatal(err)
						}
						ino = e.Ino
					}
					if in, _ := fsys.inode(ino); in.flags&flagInline == 0 {
						t.Errorf("%v is not inline", p)
					}
				}
			}
			e, err := fsys.Lookup(fsys.Root(), "big")
			if err != nil {
				t.Fatal(err)
			}
			fl, _ := fsys.Open(e.Ino)
			want, _ := os.ReadFile(filepath.Join(src, "big"))
			fstest.ConcurrentReads(t, fl, want, 300000)
			// A whole-file read coalesces contiguous blocks into few ReadAt calls.
			calls := countReads(t, img, func(fsys *FS) {
				fl, err := fsys.Open(e.Ino)
				if err != nil {
					t.Fatal(err)
				}
				fl.ReadAt(make([]byte, fl.Size()), 0) // warm the metadata cache
			}, func(fsys *FS) {
				fl, _ := fsys.Open(e.Ino)
				buf := make([]byte, fl.Size())
				if n, err := fl.ReadAt(buf, 0); n != len(buf) || err != nil || !bytes.Equal(buf, want) {
					t.Fatalf("whole read: %d, %v", n, err)
				}
			})
			bin, _ := fsys.inode(e.Ino)
			runs := 0
			for _, s := range segments(t, fsys, bin) {
				if s.mapped {
					runs++
				}
			}
			if calls != int64(runs) {
				t.Errorf("reading %d bytes took %d ReadAt calls for %d runs", len(want), calls, runs)
			}
			if tc.mkfs == "mkfs.ext4" {
				e, _ := fsys.Lookup(fsys.Root(), "unwritten")
				fl, _ := fsys.Open(e.Ino)
				want, _ := os.ReadFile(filepath.Join(src, "unwritten"))
				fstest.ConcurrentReads(t, fl, want, 300000)
			}
		})
	}
}

// checkLayout makes sure the images exercise what they are meant to.
func checkLayout(t *testing.T, fsys *FS, extents, htree bool) {
	t.Helper()
	in := func(name string) *inode {
		e, err := fsys.Lookup(fsys.Root(), name)
		if err != nil {
			t.Fatal(err)
		}
		i, err := fsys.inode(e.Ino)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	if extents {
		segs := segments(t, fsys, in("unwritten"))
		unwritten := 0
		for _, s := range segs {
			if !s.mapped && s.pblk == 1 {
				unwritten++
			}
		}
		if unwritten == 0 {
			t.Errorf("unwritten has no unwritten extents: %+v", segs)
		}
	}
	if s := in("sparse"); s.flags&flagInline == 0 {
		segs := segments(t, fsys, s)
		if len(segs) < 4 || segs[len(segs)-1].mapped {
			t.Errorf("sparse has no trailing hole or no inner hole: %+v size %d", segs, s.size)
		}
	}
	if htree && in("many").flags&flagIndex == 0 {
		t.Errorf("directory many is not hash-indexed")
	}
	if sl := in("slowlink"); sl.blocks512 == 0 && sl.flags&flagInline == 0 {
		t.Errorf("slowlink is not a slow symlink")
	}
}

// countReads opens img, runs warm, then returns how many ReadAt calls
// measure makes.
func countReads(t *testing.T, img string, warm, measure func(*FS)) int64 {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	cr := &fstest.CountingReader{R: f}
	fsys, err := Open(cr, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	warm(fsys)
	before := cr.N.Load()
	measure(fsys)
	return cr.N.Load() - before
}

// segments lists the runs of in up to its size. Unwritten extents are
// reported with pblk 1 (they are unmapped segments inside an extent).
func segments(t *testing.T, fsys *FS, in *inode) []seg {
	t.Helper()
	var out []seg
	n := (uint64(in.size) + uint64(fsys.bs) - 1) / uint64(fsys.bs)
	for lb := uint64(0); lb < n; {
		s, err := fsys.segment(in, lb, n-lb)
		if err != nil {
			t.Fatal(err)
		}
		if !s.mapped && in.flags&flagExtents != 0 && isUnwritten(fsys, in, lb) {
			s.pblk = 1
		}
		out = append(out, s)
		lb += s.n
	}
	return out
}

// isUnwritten reports whether logical block lb of in lies in an unwritten
// extent (a leaf entry with length > 32768), by scanning the tree.
func isUnwritten(fsys *FS, in *inode, lb uint64) bool {
	var walk func(node []byte) bool
	walk = func(node []byte) bool {
		entries := int(binary.LittleEndian.Uint16(node[2:]))
		depth := binary.LittleEndian.Uint16(node[6:])
		for i := 0; i < entries; i++ {
			e := node[12+12*i:]
			if depth > 0 {
				b, err := fsys.block(uint64(binary.LittleEndian.Uint32(e[4:])))
				if err == nil && walk(b) {
					return true
				}
				continue
			}
			s := uint64(binary.LittleEndian.Uint32(e))
			n := uint64(binary.LittleEndian.Uint16(e[4:]))
			if n > 32768 && lb >= s && lb < s+n-32768 {
				return true
			}
		}
		return false
	}
	return walk(in.iblock[:])
}

// TestDeepExtentTree uses 1 KiB blocks and 1500 fragments, which needs an
// extent tree of depth 2.
func TestDeepExtentTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	const bs = 1024
	chunks := map[int64][]byte{}
	for i := int64(0); i < 1500; i++ {
		chunks[i*3*bs] = fstest.Pattern(i, bs+int(i%3)*100)
	}
	writeSparse(t, filepath.Join(src, "fragmented"), 1500*3*bs+77, chunks)
	img := makeFS(t, "mkfs.ext4", []string{"-b", "1024"}, src, 16, []string{fmt.Sprintf("sif /fragmented size %d", 1500*3*bs+77)})
	fsys := openImage(t, img)
	e, err := fsys.Lookup(fsys.Root(), "fragmented")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := fsys.inode(e.Ino)
	if depth := binary.LittleEndian.Uint16(in.iblock[6:]); depth < 2 {
		t.Errorf("extent tree depth %d, want >= 2", depth)
	}
	fl, err := fsys.Open(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "fragmented"))
	got, _ := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()))
	if !bytes.Equal(got, want) {
		t.Fatalf("content differs at %d", fstest.FirstDiff(got, want))
	}
	fstest.ConcurrentReads(t, fl, want, 300000)
}

// TestTripleIndirect reads an ext2 file whose data needs triple-indirect
// blocks (1 KiB blocks: beyond 12+256+65536 blocks).
func TestTripleIndirect(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	const far = 65 << 20
	chunks := map[int64][]byte{0: []byte("start"), 300 << 10: fstest.Pattern(1, 5000), far: fstest.Pattern(2, 3000)}
	writeSparse(t, filepath.Join(src, "far"), far+3000, chunks)
	img := makeFS(t, "mkfs.ext2", []string{"-b", "1024"}, src, 4, nil)
	fsys := openImage(t, img)
	e, err := fsys.Lookup(fsys.Root(), "far")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fsys.Open(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if fl.Size() != far+3000 {
		t.Fatalf("size %d", fl.Size())
	}
	want, _ := os.ReadFile(filepath.Join(src, "far"))
	for _, r := range [][2]int64{{0, 100}, {300<<10 - 10, 5020}, {far - 5000, 8000}, {40 << 20, 1 << 20}, {far + 2990, 100}} {
		buf := make([]byte, r[1])
		n, err := fl.ReadAt(buf, r[0])
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], want[r[0]:r[0]+int64(n)]) {
			t.Errorf("range %v differs", r)
		}
	}
}

func TestTimestamps(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	img := makeFS(t, "mkfs.ext4", []string{"-I", "256"}, src, 4, nil)
	fsys := openImage(t, img)
	e, _ := fsys.Lookup(fsys.Root(), "f")
	// Patch the inode's time fields directly.
	g := (e.Ino - 1) / uint64(fsys.inodesPerGroup)
	gd := fsys.gdt[g*uint64(fsys.descSize):]
	table := int64(binary.LittleEndian.Uint32(gd[8:]))
	off := table*fsys.bs + int64((e.Ino-1)%uint64(fsys.inodesPerGroup))*fsys.inodeSize
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	put := func(field int64, v uint32) {
		b := binary.LittleEndian.AppendUint32(nil, v)
		if _, err := f.WriteAt(b, off+field); err != nil {
			t.Fatal(err)
		}
	}
	put(0x10, 0x12345678)     // mtime
	put(0x88, 123456789<<2|1) // mtime_extra: ns, epoch 1
	put(0x08, 0xF0000000)     // atime: before 1970
	put(0x8C, 0)              // atime_extra
	put(0x0C, 0x7FFFFFFF)     // ctime: 2038
	put(0x84, 3)              // ctime_extra: epoch 3
	put(0x90, 1000000000)     // crtime
	put(0x94, 5<<2)           // crtime_extra
	f.Close()
	fsys = openImage(t, img)
	a, err := fsys.Stat(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want time.Time
	}{
		{"mtime", a.Mtime, time.Unix(0x12345678+1<<32, 123456789)},
		{"atime", a.Atime, time.Unix(-268435456, 0)},
		{"ctime", a.Ctime, time.Unix(0x7FFFFFFF+3<<32, 0)},
		{"btime", a.Btime, time.Unix(1000000000, 5)},
	}
	for _, tc := range tests {
		if !tc.got.Equal(tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestJournalReplay writes transactions into the journal with debugfs and
// leaves them unrecovered; the reader must see what e2fsck would recover.
func TestJournalReplay(t *testing.T) {
	for _, tc := range []struct{ name, open string }{{"plain", "jo"}, {"csum-v3", "jo -c"}} {
		t.Run(tc.name, func(t *testing.T) { testJournalReplay(t, tc.open) })
	}
}

func testJournalReplay(t *testing.T, jo string) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "x"), bytes.Repeat([]byte("old!"), 2048), 0o644)
	os.WriteFile(filepath.Join(src, "y"), bytes.Repeat([]byte("yyyy"), 1024), 0o644)
	os.WriteFile(filepath.Join(src, "z"), bytes.Repeat([]byte("zzzz"), 1024), 0o644)
	img := makeFS(t, "mkfs.ext4", []string{"-b", "4096", "-L", "before"}, src, 16, nil)
	bmap := func(name string, n int) string {
		return strings.TrimSpace(lastLine(run(t, "", "debugfs", "-R", fmt.Sprintf("bmap /%s %d", name, n), img)))
	}
	dir := t.TempDir()
	newX := bytes.Repeat([]byte("NEW!"), 1024)
	escaped := append([]byte{0xC0, 0x3B, 0x39, 0x98}, bytes.Repeat([]byte("E"), 4092)...)
	os.WriteFile(filepath.Join(dir, "newx"), newX, 0o644)
	os.WriteFile(filepath.Join(dir, "esc"), escaped, 0o644)
	os.WriteFile(filepath.Join(dir, "newz"), bytes.Repeat([]byte("ZZZZ"), 1024), 0o644)
	// The superblock with a new label, journalled as block 0.
	sb := make([]byte, 4096)
	f, _ := os.Open(img)
	f.ReadAt(sb, 0)
	f.Close()
	copy(sb[1024+0x78:1024+0x88], append([]byte("after"), make([]byte, 11)...))
	os.WriteFile(filepath.Join(dir, "sb"), sb, 0o644)
	bx, by, bz := bmap("x", 0), bmap("y", 0), bmap("z", 0)
	run(t, strings.Join([]string{
		jo,
		"jw -b " + bx + " " + filepath.Join(dir, "newx"),
		"jw -b " + by + " " + filepath.Join(dir, "esc"),
		"jw -b 0 " + filepath.Join(dir, "sb"),
		"jw -b " + bz + " " + filepath.Join(dir, "newz"),
		"jc",
		jo,
		"jw -r " + bz, // revoke z in a later transaction
		"jc",
	}, "\n")+"\n", "debugfs", "-w", "-f", "-", img)
	out := run(t, "", "dumpe2fs", "-h", img)
	if !strings.Contains(out, "needs_recovery") {
		t.Fatalf("image does not need recovery:\n%s", out)
	}
	// Oracle: e2fsck recovers a copy.
	orig, _ := os.ReadFile(img)
	fixed := filepath.Join(dir, "fixed.img")
	os.WriteFile(fixed, orig, 0o644)
	exec.Command("e2fsck", "-fy", fixed).Run()

	fsys := openImage(t, img)
	if fsys.journal == nil {
		t.Fatal("no journal overlay")
	}
	if fsys.Label() != "after" {
		t.Errorf("Label = %q, want the journalled %q", fsys.Label(), "after")
	}
	want := map[string][]byte{"x": append(newX, bytes.Repeat([]byte("old!"), 1024)...), "y": escaped, "z": bytes.Repeat([]byte("zzzz"), 1024)}
	oracle := openImage(t, fixed)
	for name, w := range want {
		for _, fsx := range []*FS{fsys, oracle} {
			e, err := fsx.Lookup(fsx.Root(), name)
			if err != nil {
				t.Fatal(err)
			}
			fl, _ := fsx.Open(e.Ino)
			got, _ := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()))
			if !bytes.Equal(got, w) {
				t.Errorf("%s (oracle=%v): got %q...", name, fsx == oracle, got[:8])
			}
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestCorruption(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "dir"), 0o755)
	os.WriteFile(filepath.Join(src, "dir/file"), fstest.Pattern(1, 100000), 0o644)
	os.WriteFile(filepath.Join(src, "other"), []byte("fine"), 0o644)
	img := makeFS(t, "mkfs.ext4", []string{"-b", "4096"}, src, 16, nil)
	orig, _ := os.ReadFile(img)
	fsys := openImage(t, img)
	de, _ := fsys.Lookup(fsys.Root(), "dir")
	fe, _ := fsys.Lookup(de.Ino, "file")
	inodeOff := func(ino uint64) int64 {
		g := (ino - 1) / uint64(fsys.inodesPerGroup)
		gd := fsys.gdt[g*uint64(fsys.descSize):]
		table := uint64(binary.LittleEndian.Uint32(gd[8:])) | uint64(binary.LittleEndian.Uint32(gd[0x28:]))<<32
		return int64(table)*fsys.bs + int64((ino-1)%uint64(fsys.inodesPerGroup))*fsys.inodeSize
	}
	dirIn, _ := fsys.inode(de.Ino)
	dirSeg, _ := fsys.segment(dirIn, 0, 1)
	dirBlock := int64(dirSeg.pblk) * fsys.bs

	sbTests := []struct {
		name, field string
		mutate      func(b []byte)
	}{
		{"magic", "magic", func(b []byte) { b[1024+0x38] = 0 }},
		{"block size", "s_log_block_size", func(b []byte) { binary.LittleEndian.PutUint32(b[1024+0x18:], 20) }},
		{"inode size", "s_inode_size", func(b []byte) { binary.LittleEndian.PutUint16(b[1024+0x58:], 100) }},
		{"blocks per group", "s_blocks_per_group", func(b []byte) { binary.LittleEndian.PutUint32(b[1024+0x20:], 0) }},
		{"inodes per group", "s_inodes_per_group", func(b []byte) { binary.LittleEndian.PutUint32(b[1024+0x28:], 0) }},
		{"inodes count", "s_inodes_count", func(b []byte) { binary.LittleEndian.PutUint32(b[1024:], 0xFFFFFFFF) }},
		{"desc size", "s_desc_size", func(b []byte) { binary.LittleEndian.PutUint16(b[1024+0xFE:], 3) }},
	}
	for _, tc := range sbTests {
		t.Run("superblock "+tc.name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			tc.mutate(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, volume.ErrCorrupt) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Open: %v; want ErrCorrupt naming %s", err, tc.field)
			}
		})
	}
	t.Run("unsupported feature", func(t *testing.T) {
		b := append([]byte(nil), orig...)
		b[1024+0x60+2] |= 0x80 // an unknown incompat bit
		if _, err := Open(bytes.NewReader(b), int64(len(b))); !errors.Is(err, volume.ErrUnsupported) {
			t.Fatalf("Open: %v", err)
		}
	})

	inodeTests := []struct {
		name   string
		ino    uint64
		mutate func(b []byte, off int64)
		op     string
	}{
		{"extent magic", fe.Ino, func(b []byte, o int64) { b[o+0x28] = 0 }, "open"},
		{"extent depth", fe.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[o+0x28+6:], 9) }, "open"},
		{"extent entries", fe.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[o+0x28+2:], 200) }, "open"},
		{"extent beyond fs", fe.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint32(b[o+0x28+12+8:], 0xFFFFFFF0) }, "open"},
		{"extent too long", fe.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[o+0x28+12+4:], 30000) }, "open"},
		{"extra isize", fe.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[o+0x80:], 1000) }, "stat"},
		{"free inode", fe.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[o:], 0) }, "stat"},
		{"dir rec_len", de.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[dirBlock+4:], 3) }, "readdir"},
		{"dir rec_len past block", de.Ino, func(b []byte, o int64) { binary.LittleEndian.PutUint16(b[dirBlock+4:], 8192) }, "readdir"},
		{"dir inode number", de.Ino, func(b []byte, o int64) {
			// the third entry (after . and ..) is "file"
			p := dirBlock + 12 + 12
			binary.LittleEndian.PutUint32(b[p:], 0xFFFFFFF)
		}, "readdir"},
	}
	for _, tc := range inodeTests {
		t.Run("inode "+tc.name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			tc.mutate(b, inodeOff(tc.ino))
			fsys, err := Open(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			switch tc.op {
			case "open":
				var fl volume.File
				if fl, err = fsys.Open(tc.ino); err == nil {
					_, err = fl.ReadAt(make([]byte, 200000), 0)
				}
			case "stat":
				_, err = fsys.Stat(tc.ino)
			case "readdir":
				_, err = fsys.ReadDir(tc.ino)
			}
			if !errors.Is(err, volume.ErrCorrupt) {
				t.Fatalf("%s: %v; want ErrCorrupt", tc.op, err)
			}
			// The rest of the file system still works.
			e, err := fsys.Lookup(fsys.Root(), "other")
			if err != nil {
				t.Fatal(err)
			}
			fl, err := fsys.Open(e.Ino)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := fl.ReadAt(buf, 0); err != nil || string(buf) != "fine" {
				t.Fatalf("other: %q, %v", buf, err)
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("abc"), 0o644)
	os.Symlink("f", filepath.Join(src, "l"))
	img := makeFS(t, "mkfs.ext4", nil, src, 8, nil)
	fsys := openImage(t, img)
	root := fsys.Root()
	f, _ := fsys.Lookup(root, "f")
	d, _ := fsys.Lookup(root, "d")
	l, _ := fsys.Lookup(root, "l")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"lookup missing", second(fsys.Lookup(root, "nope")), volume.ErrNotFound},
		{"lookup wrong case", second(fsys.Lookup(root, "F")), volume.ErrNotFound},
		{"readdir file", second(fsys.ReadDir(f.Ino)), volume.ErrNotDir},
		{"open dir", second(fsys.Open(d.Ino)), fs.ErrInvalid},
		{"open symlink", second(fsys.Open(l.Ino)), fs.ErrInvalid},
		{"readlink file", second(fsys.Readlink(f.Ino)), fs.ErrInvalid},
		{"stat 0", second(fsys.Stat(0)), fs.ErrNotExist},
		{"stat huge", second(fsys.Stat(1 << 40)), fs.ErrNotExist},
		{"stat unused", second(fsys.Stat(uint64(fsys.inodesCount))), volume.ErrCorrupt},
		{"open stream", second(fsys.OpenStream(f.Ino, "x")), fs.ErrNotExist},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	fl, _ := fsys.Open(f.Ino)
	if _, err := fl.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("negative offset accepted")
	}
	if n, err := fl.ReadAt(make([]byte, 5), 1); n != 2 || err != io.EOF {
		t.Errorf("short read: %d, %v", n, err)
	}
	if Probe(bytes.NewReader(make([]byte, 4096))) {
		t.Error("Probe of zeros")
	}
	if s, err := fsys.Streams(f.Ino); s != nil || err != nil {
		t.Error("Streams")
	}
}

func second[T any](_ T, err error) error { return err }

func FuzzOpen(f *testing.F) { fstest.FuzzOpen(f, Open) }
