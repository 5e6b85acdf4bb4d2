package fusefs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/fusefs"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// mount mounts root in a temporary folder, unmounted at cleanup even when
// the test fails.
func mount(t *testing.T, root *checkpoint.Node, opts ...fusefs.Options) string {
	t.Helper()
	dir, _ := mountServer(t, root, opts...)
	return dir
}

// mountServer is mount, also returning the server.
func mountServer(t testing.TB, root *checkpoint.Node, opts ...fusefs.Options) (string, *fusefs.Server) {
	t.Helper()
	testutil.NeedFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o := fusefs.Options{ReadAheadKB: 1024, FsName: "test"}
	if len(opts) > 0 {
		o = opts[0]
	}
	o.SelfAccess = true // this process reads the mount
	srv, err := fusefs.Mount(dir, root, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := testutil.Unmount(dir); err != nil {
			t.Errorf("%v", err)
		}
		srv.Wait()
	})
	return dir, srv
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestRenderTree(t *testing.T) {
	big := testutil.RandBytes(1, 3<<20+17)
	var calls atomic.Int32
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	sub := &checkpoint.Node{Name: "sub", IsDir: true, Mode: 0o555, Mtime: mtime, List: func() ([]*checkpoint.Node, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond) // widen the race window
		return []*checkpoint.Node{checkpoint.File("b.bin", bytes.NewReader(big), int64(len(big)))}, nil
	}}
	bad := &checkpoint.Node{Name: "bad", IsDir: true, List: func() ([]*checkpoint.Node, error) { return nil, errors.New("boom") }}
	a := checkpoint.Bytes("a.txt", []byte("hello"))
	a.Mtime = mtime
	root := checkpoint.Dir("",
		a, sub, bad,
		&checkpoint.Node{Name: "link", Target: "a.txt"},
		checkpoint.Dir("empty"),
		&checkpoint.Node{Name: "vol", FS: newFakeFS()},
	)
	dir := mount(t, root)

	if got, want := names(t, dir), []string{"a.txt", "bad", "empty", "link", "sub", "vol"}; !equal(got, want) {
		t.Errorf("root lists %v, want %v", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "hello" {
		t.Errorf("a.txt: %q, %v", b, err)
	}
	st, err := os.Stat(filepath.Join(dir, "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o444 || st.Size() != 5 || !st.ModTime().Equal(mtime) {
		t.Errorf("a.txt: mode %v size %d mtime %v", st.Mode(), st.Size(), st.ModTime())
	}

	// The lazy folder is listed once, however many look at it at once.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				os.ReadDir(filepath.Join(dir, "sub"))
			} else {
				os.Stat(filepath.Join(dir, "sub", "b.bin"))
			}
		}(i)
	}
	wg.Wait()
	if b, err := os.ReadFile(filepath.Join(dir, "sub", "b.bin")); err != nil || !bytes.Equal(b, big) {
		t.Errorf("sub/b.bin: %d bytes, %v", len(b), err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("List called %d times, want 1", n)
	}
	if _, err := os.ReadDir(filepath.Join(dir, "bad")); !errors.Is(err, syscall.EIO) {
		t.Errorf("listing a failing folder: %v, want EIO", err)
	}
	if s, err := os.Readlink(filepath.Join(dir, "link")); err != nil || s != "a.txt" {
		t.Errorf("link: %q, %v", s, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing name: %v", err)
	}

	// Read-only everywhere.
	for _, p := range []string{"a.txt", "sub/b.bin", "vol/f.txt"} {
		if _, err := os.OpenFile(filepath.Join(dir, p), os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
			t.Errorf("open %s for writing: %v, want EROFS", p, err)
		}
	}
	if _, err := os.Create(filepath.Join(dir, "new")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub", "d"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir: %v, want EROFS", err)
	}
	if err := os.Chmod(filepath.Join(dir, "a.txt"), 0o666); !errors.Is(err, syscall.EROFS) {
		t.Errorf("chmod: %v, want EROFS", err)
	}

	// Inode numbers are stable and distinct.
	ino := func(p string) uint64 {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	if ino("a.txt") != ino("a.txt") || ino("a.txt") == ino("sub/b.bin") || ino("vol/f.txt") == ino("vol/d/g.txt") {
		t.Errorf("inode numbers: a.txt %d, sub/b.bin %d, vol/f.txt %d, vol/d/g.txt %d", ino("a.txt"), ino("sub/b.bin"), ino("vol/f.txt"), ino("vol/d/g.txt"))
	}

	// A volume.FS is rendered in place of its folder.
	if got, want := names(t, filepath.Join(dir, "vol")), []string{"broken", "d", "f.txt", "s"}; !equal(got, want) {
		t.Errorf("vol lists %v, want %v", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "vol", "d", "g.txt")); err != nil || string(b) != "inside d" {
		t.Errorf("vol/d/g.txt: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "vol", "F.TXT")); err != nil || string(b) != "volume file" {
		t.Errorf("vol/F.TXT (case-insensitive lookup): %q, %v", b, err)
	}
	if s, err := os.Readlink(filepath.Join(dir, "vol", "s")); err != nil || s != "d/g.txt" {
		t.Errorf("vol/s: %q, %v", s, err)
	}
	st, err = os.Stat(filepath.Join(dir, "vol", "f.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o640 || st.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("vol/f.txt: mode %v uid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
	// Files of volumes report the page size as their preferred I/O size
	// (diff -r allocates two such buffers per pair of files).
	if bs := st.Sys().(*syscall.Stat_t).Blksize; bs != 4096 {
		t.Errorf("vol/f.txt: st_blksize %d, want 4096", bs)
	}
	if _, err := os.ReadFile(filepath.Join(dir, "vol", "broken")); !errors.Is(err, syscall.EIO) {
		t.Errorf("corrupt inode: %v, want EIO", err)
	}
}

// TestChainConcurrentReads reads every point of a generated chain through
// the mount from 8 goroutines at random ranges and compares with the
// model's contents (run it with -race: the read path has no lock), through
// the page cache and with direct I/O.
func TestChainConcurrentReads(t *testing.T) {
	testutil.NeedFUSE(t)
	src := t.TempDir()
	const size = 8<<20 + 512*7
	gen := vhdxtest.Generate(t, src, "Disk", size, 4, 7)
	testutil.Unchanged(t, gen.Paths...)
	c, err := chain.Open(gen.Leaf(), chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	points, err := checkpoint.BuildFileTree([]*chain.Chain{c}, checkpoint.FileTreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	contents := gen.Contents()
	// Three ways of answering READs of disk data: from mappings of the
	// layer files (the default), spliced (and preads for small ones), and
	// copied through ReadAt.
	modes := []struct {
		name            string
		noMap, noSplice bool
	}{{"map", false, false}, {"splice", true, false}, {"copy", false, true}}
	for _, direct := range []bool{false, true} {
		for _, m := range modes {
			t.Run(fmt.Sprintf("direct-io=%v,%s", direct, m.name), func(t *testing.T) {
				dir, srv := mountServer(t, checkpoint.Dir("", points...), fusefs.Options{ReadAheadKB: 1024, DirectIO: direct, NoSplice: m.noSplice, NoMap: m.noMap})
				maxRead := fmt.Sprintf("max_read=%d", fusefs.MaxRead)
				if m, _ := os.ReadFile("/proc/self/mountinfo"); !strings.Contains(string(m), dir+" ") || !strings.Contains(string(m), maxRead) {
					t.Errorf("mount options: want %s on %s", maxRead, dir)
				}
				concurrentReads(t, dir, gen, contents, size)
				smallReads(t, dir, gen, contents, size)
				// Each mode took its own paths (the chain mixes all
				// layers and zeros, so splicing both splices from one
				// file and assembles pieces); with direct I/O the small
				// reads are small READs, and some lie in one file and
				// take the pread path.
				st := srv.ReadStats()
				switch m.name {
				case "copy":
					if st.Mapped != 0 || st.FromFile != 0 || st.Assembled != 0 || st.Pread != 0 || st.Copied == 0 || !st.SpliceOff {
						t.Errorf("copying: %+v", st)
					}
				case "map":
					if st.Mapped == 0 || st.FromFile != 0 || st.Assembled != 0 || st.Pread != 0 {
						t.Errorf("mapping: %+v", st)
					}
				case "splice":
					if st.Mapped != 0 || st.FromFile == 0 || st.Assembled == 0 || st.SpliceOff {
						t.Errorf("splicing: %+v", st)
					}
					if direct && st.Pread == 0 {
						t.Errorf("direct I/O, 4 KiB reads: no READ took the pread path: %+v", st)
					}
				}
				t.Logf("%+v", st)
			})
		}
	}
}

// smallReads reads 4 KiB (and 100 bytes, unaligned) at every 64 KiB of the
// leaf and compares them with the model.
func smallReads(t *testing.T, dir string, gen vhdxtest.Chain, contents [][]byte, size int64) {
	t.Helper()
	leaf := len(gen.Paths) - 1
	name := strings.TrimSuffix(filepath.Base(gen.Paths[leaf]), filepath.Ext(gen.Paths[leaf]))
	f, err := os.Open(filepath.Join(dir, name, "Disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for off := int64(0); off < size; off += 64 << 10 {
		for _, r := range []struct{ off, n int64 }{{off, 4096}, {off + 1000, 100}} {
			want := contents[leaf][r.off:min(r.off+r.n, size)]
			got, err := f.ReadAt(buf[:r.n], r.off)
			if (err != nil && err != io.EOF) || !bytes.Equal(buf[:got], want) {
				t.Fatalf("leaf: %d bytes at %d: got %d bytes (%v), differ", r.n, r.off, got, err)
			}
		}
	}
}

func concurrentReads(t *testing.T, dir string, gen vhdxtest.Chain, contents [][]byte, size int64) {
	type point struct {
		file string
		want []byte
	}
	var pts []point
	for i := range gen.Paths {
		name := strings.TrimSuffix(filepath.Base(gen.Paths[i]), filepath.Ext(gen.Paths[i]))
		pts = append(pts, point{filepath.Join(dir, name, "Disk.raw"), contents[i]})
	}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			files := make([]*os.File, len(pts))
			for i, p := range pts {
				f, err := os.Open(p.file)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				files[i] = f
			}
			buf := make([]byte, 512<<10)
			for r := 0; r < 40; r++ {
				i := rng.Intn(len(pts))
				n := 1 + rng.Intn(len(buf))
				off := rng.Int63n(size)
				got, err := files[i].ReadAt(buf[:n], off)
				want := pts[i].want[off:min(off+int64(n), size)]
				if (err != nil && err != io.EOF) || !bytes.Equal(buf[:got], want) {
					if failures.Add(1) < 5 {
						t.Errorf("point %d: %d bytes at %d: got %d bytes (%v), differ", i, n, off, got, err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	// And each point whole, sequentially.
	for i, p := range pts {
		b, err := os.ReadFile(p.file)
		if err != nil || !bytes.Equal(b, p.want) {
			t.Errorf("point %d: whole file differs (%d bytes, %v)", i, len(b), err)
		}
	}
}

func equal(a, b []string) bool {
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// fakeFS is a tiny case-insensitive volume.FS:
//
//	/f.txt  /d/g.txt  /s -> d/g.txt  /broken (Stat fails)
type fakeFS struct{ inodes map[uint64]*fakeInode }

type fakeInode struct {
	attr     volume.Attr
	data     string
	target   string
	children []volume.Entry
}

func newFakeFS() *fakeFS {
	m := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &fakeFS{inodes: map[uint64]*fakeInode{
		5:  {attr: volume.Attr{Ino: 5, Mode: fs.ModeDir | 0o755, Nlink: 2, Mtime: m}, children: []volume.Entry{{Name: "broken", Ino: 99}, {Name: "d", Ino: 6, Mode: fs.ModeDir}, {Name: "f.txt", Ino: 7}, {Name: "s", Ino: 9, Mode: fs.ModeSymlink}}},
		6:  {attr: volume.Attr{Ino: 6, Mode: fs.ModeDir | 0o755, Nlink: 2, Mtime: m}, children: []volume.Entry{{Name: "g.txt", Ino: 8}}},
		7:  {attr: volume.Attr{Ino: 7, Mode: 0o640, Uid: 1000, Mtime: m}, data: "volume file"},
		8:  {attr: volume.Attr{Ino: 8, Mode: 0o644, Mtime: m}, data: "inside d"},
		9:  {attr: volume.Attr{Ino: 9, Mode: fs.ModeSymlink | 0o777, Mtime: m}, target: "d/g.txt"},
		99: nil,
	}}
	for _, n := range f.inodes {
		if n != nil && n.attr.Mode.IsRegular() {
			n.attr.Size = int64(len(n.data))
		}
		if n != nil && n.target != "" {
			n.attr.Size = int64(len(n.target))
		}
	}
	return f
}

func (f *fakeFS) Type() string          { return "fake" }
func (f *fakeFS) Label() string         { return "" }
func (f *fakeFS) Root() uint64          { return 5 }
func (f *fakeFS) CaseInsensitive() bool { return true }

func (f *fakeFS) get(ino uint64) (*fakeInode, error) {
	n, ok := f.inodes[ino]
	if !ok {
		return nil, volume.ErrNotFound
	}
	if n == nil {
		return nil, volume.ErrCorrupt
	}
	return n, nil
}

func (f *fakeFS) Stat(ino uint64) (volume.Attr, error) {
	n, err := f.get(ino)
	if err != nil {
		return volume.Attr{}, err
	}
	return n.attr, nil
}

func (f *fakeFS) ReadDir(ino uint64) ([]volume.Entry, error) {
	n, err := f.get(ino)
	if err != nil {
		return nil, err
	}
	if !n.attr.Mode.IsDir() {
		return nil, volume.ErrNotDir
	}
	return n.children, nil
}

func (f *fakeFS) Lookup(dir uint64, name string) (volume.Entry, error) {
	es, err := f.ReadDir(dir)
	if err != nil {
		return volume.Entry{}, err
	}
	for _, e := range es {
		if strings.EqualFold(e.Name, name) {
			return e, nil
		}
	}
	return volume.Entry{}, volume.ErrNotFound
}

func (f *fakeFS) Open(ino uint64) (volume.File, error) {
	n, err := f.get(ino)
	if err != nil {
		return nil, err
	}
	return fakeFile{strings.NewReader(n.data)}, nil
}

type fakeFile struct{ *strings.Reader }

func (f fakeFile) Size() int64 { return f.Reader.Size() }

func (f *fakeFS) Readlink(ino uint64) (string, error) {
	n, err := f.get(ino)
	if err != nil {
		return "", err
	}
	return n.target, nil
}

func (f *fakeFS) Streams(ino uint64) ([]string, error) { return nil, nil }
func (f *fakeFS) OpenStream(ino uint64, name string) (volume.File, error) {
	return nil, volume.ErrNotFound
}
