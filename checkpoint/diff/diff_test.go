package diff

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/volume"
)

// x is an extent: length n of the file at l, stored at p.
func x(l, p, n int64) volume.Extent { return volume.Extent{Logical: l, Physical: p, Length: n} }

func TestRanges(t *testing.T) {
	var r Ranges
	r.add(0, 10)
	r.add(10, 5) // touches: merged
	r.add(20, 5)
	r.add(22, 10) // overlaps: merged
	if want := (Ranges{{0, 15}, {20, 12}}); !slices.Equal(r, want) {
		t.Fatalf("add: %v, want %v", r, want)
	}
	for _, c := range []struct {
		off, n int64
		want   bool
	}{{15, 5, false}, {14, 1, true}, {31, 1, true}, {32, 100, false}, {-5, 6, true}, {0, 0, false}} {
		if got := r.Intersects(c.off, c.n); got != c.want {
			t.Errorf("Intersects(%d, %d) = %v", c.off, c.n, got)
		}
	}
	if got, want := r.Clip(5, 20), (Ranges{{5, 10}, {20, 5}}); !slices.Equal(got, want) {
		t.Errorf("Clip: %v, want %v", got, want)
	}
	if got, want := r.Subtract([]Range{{25, 2}, {2, 3}}), (Ranges{{0, 2}, {5, 10}, {20, 5}, {27, 5}}); !slices.Equal(got, want) {
		t.Errorf("Subtract: %v, want %v", got, want)
	}
	if r.Bytes() != 27 {
		t.Errorf("Bytes: %d", r.Bytes())
	}
}

func TestPlacedDifferently(t *testing.T) {
	a := []volume.Extent{x(0, 100, 50), x(50, 500, 50)}
	b := []volume.Extent{x(0, 100, 30), x(30, 130, 20), x(50, 900, 50), x(100, 2000, 10)}
	if got, want := placedDifferently(a, b), (Ranges{{50, 50}}); !slices.Equal(got, want) {
		t.Errorf("placedDifferently: %v, want %v", got, want)
	}
}

// testChain writes base + child: the child rewrites two sector ranges and
// one whole block. It returns the chain at the child; Point(1) is the base.
func testChain(t *testing.T) (*chain.Chain, Ranges) {
	dir := t.TempDir()
	const size = 16 * disk.MiB
	rng := rand.New(rand.NewSource(1))
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: size, BlockSize: disk.MiB})
	buf := make([]byte, 6*disk.MiB)
	rng.Read(buf)
	base.Write(2*disk.MiB, buf)
	bp := filepath.Join(dir, "Disk.vhdx")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	child := vhdxtest.New(vhdxtest.Options{Parent: base, ParentPath: bp, BlockSize: disk.MiB})
	w := func(off, n int64) {
		b := make([]byte, n)
		rng.Read(b)
		child.Write(off, b)
	}
	w(3*disk.MiB+512, 1024)
	w(5*disk.MiB-512, 1024) // across a block boundary
	w(10*disk.MiB, disk.MiB)
	cp := filepath.Join(dir, "Disk_1.avhdx")
	if err := child.Save(cp); err != nil {
		t.Fatal(err)
	}
	c, err := chain.Open(cp, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, Ranges{{3*disk.MiB + 512, 1024}, {5*disk.MiB - 512, 1024}, {10 * disk.MiB, disk.MiB}}
}

func TestChanged(t *testing.T) {
	c, want := testChain(t)
	base := c.Point(1)
	got, err := Changed(base, 0, c, 0, c.Size(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Changed: %v, want %v", got, want)
	}
	// Reversed: the same ranges.
	if got, _ := Changed(c, 0, base, 0, c.Size(), nil); !slices.Equal(got, want) {
		t.Errorf("Changed reversed: %v", got)
	}
	// A window of the disks (a partition), offsets relative to it.
	got, err = Changed(base, disk.MiB, c, disk.MiB, 8*disk.MiB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Ranges{{2*disk.MiB + 512, 1024}, {4*disk.MiB - 512, 1024}}); !slices.Equal(got, want) {
		t.Errorf("Changed window: %v, want %v", got, want)
	}
	// The same point: nothing.
	if got, _ := Changed(c, 0, c, 0, c.Size(), nil); len(got) != 0 {
		t.Errorf("Changed of a point with itself: %v", got)
	}
	// Two views of the chain opened separately share the files by path.
	c2, err := chain.Open(c.Links[0].Path, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, _ := Changed(c, 0, c2, 0, c.Size(), nil); len(got) != 0 {
		t.Errorf("Changed of two opens of one file: %v", got)
	}
	// Shifted: data against other data everywhere but where both are zeros.
	got, _ = Changed(base, 0, base, disk.MiB, 8*disk.MiB, nil)
	if want := (Ranges{{disk.MiB, 7 * disk.MiB}}); !slices.Equal(got, want) {
		t.Errorf("Changed shifted: %v, want %v", got, want)
	}
}

// fsNode wraps a file system as the tree shows it.
func fsNode(name string, v volume.FS, c *chain.Chain) *checkpoint.Node {
	n := &checkpoint.Node{Name: name, IsDir: true, Mode: 0o555, FS: v}
	if c != nil {
		n.Disk, n.DiskLength = c, c.Size()
	}
	return n
}

func point(name string, nodes ...*checkpoint.Node) *checkpoint.Node {
	return checkpoint.Dir(name, checkpoint.Dir("Disk.files", nodes...), checkpoint.Bytes("Disk.raw", []byte(name)))
}

func lines(r *Result) string {
	var b strings.Builder
	for _, c := range r.Changes {
		b.WriteString(Line(c) + "\n")
	}
	return b.String()
}

func TestWalk(t *testing.T) {
	a := newMemFS("ext4")
	a.file("same.txt", "same", 1)
	a.file("content.txt", "abcd", 1)
	a.file("size.txt", "abcd", 1)
	a.file("time.txt", "abcd", 1)
	a.add("mode.txt", &memNode{mode: 0o600, data: []byte("m")})
	a.file("gone/x", "x", 1)
	a.file("gone/sub/y", "y", 1)
	a.file("becomes dir", "f", 1)
	a.add("becomes file", &memNode{mode: fs.ModeDir | 0o755})
	a.file("becomes file/inner", "i", 1)
	a.add("link", &memNode{mode: fs.ModeSymlink | 0o777, target: "same.txt"})
	a.file("broken", "b", 1)
	a.file("ads", "data", 1).streams = map[string][]byte{"s": []byte("1")}

	b := a.clone()
	b.at("content.txt").data = []byte("abce")
	b.at("size.txt").data = []byte("abcde")
	b.at("time.txt").mtime = time.Unix(2, 0)
	b.at("mode.txt").mode = 0o644
	b.remove("gone")
	b.file("new/deep/z", "z", 3)
	b.remove("becomes dir")
	b.file("becomes dir/w", "w", 3)
	b.remove("becomes file")
	b.file("becomes file", "now a file", 3)
	b.at("link").target = "time.txt"
	b.at("broken").statErr = fmt.Errorf("damaged: %w", volume.ErrCorrupt)
	b.at("ads").streams = map[string][]byte{"s": []byte("2")}

	pa, pb := point("A", fsNode("1-x", a, nil)), point("B", fsNode("1-x", b, nil))
	res, err := Points(pa, pb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `M	Disk.files/1-x/ads	(streams)
T	Disk.files/1-x/becomes dir	(file -> dir)
A	Disk.files/1-x/becomes dir/w
T	Disk.files/1-x/becomes file	(dir -> file)
D	Disk.files/1-x/becomes file/inner
E	Disk.files/1-x/broken	newer point: damaged: corrupt file system structure
M	Disk.files/1-x/content.txt	(content)
D	Disk.files/1-x/gone/
D	Disk.files/1-x/gone/sub/
D	Disk.files/1-x/gone/sub/y
D	Disk.files/1-x/gone/x
M	Disk.files/1-x/link	(target)
M	Disk.files/1-x/mode.txt	(mode)
A	Disk.files/1-x/new/
A	Disk.files/1-x/new/deep/
A	Disk.files/1-x/new/deep/z
M	Disk.files/1-x/size.txt	(size)
M	Disk.files/1-x/time.txt	(mtime)
`
	if got := lines(res); got != want {
		t.Errorf("changes:\n%s\nwant:\n%s", got, want)
	}
	if v := res.Volumes[0]; v.Method != "walk" || v.ChangedBytes != -1 || v.Note == "" {
		t.Errorf("volume stats: %+v", v)
	}

	// A file system only in the newer point: everything added.
	res, _ = Points(point("A"), pb, Options{})
	if len(res.Changes) != 15 || res.Changes[0].Path != "Disk.files/1-x" || res.Changes[0].Status != Added {
		t.Errorf("added file system:\n%s", lines(res))
	}
	// A renamed file-system folder on the same partition is paired.
	c, _ := testChain(t)
	na, nb := fsNode("1-old", a, c.Point(1)), fsNode("1-new", b, c)
	res, _ = Points(point("A", na), point("B", nb), Options{})
	if len(res.Changes) != 18 || !strings.HasPrefix(res.Changes[0].Path, "Disk.files/1-new/") {
		t.Errorf("renamed file-system folder:\n%s", lines(res))
	}
}

func TestExtentsAvoidReads(t *testing.T) {
	c, ch := testChain(t)
	a := newMemFS("x")
	// Equal metadata, different bytes: what the extents say decides.
	a.file("in unchanged bytes", "aaaa", 1).ext = []volume.Extent{x(0, 2*disk.MiB, 4)}
	a.file("in changed bytes", "aaaa", 1).ext = []volume.Extent{x(0, ch[0].Off, 4)}
	a.file("moved", "aaaa", 1).ext = []volume.Extent{x(0, 2*disk.MiB, 4)}
	a.file("same", "aaaa", 1).ext = []volume.Extent{x(0, ch[2].Off, 4)}
	b := a.clone()
	b.at("in unchanged bytes").data = []byte("bbbb") // cannot happen on a real disk
	b.at("in changed bytes").data = []byte("bbbb")
	b.at("moved").data = []byte("bbbb")
	b.at("moved").ext = []volume.Extent{x(0, 4*disk.MiB, 4)}
	pa := point("A", fsNode("1-x", extFS{a}, c.Point(1)))
	pb := point("B", fsNode("1-x", extFS{b}, c))
	res, err := Points(pa, pb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "M\tDisk.files/1-x/in changed bytes\t(content)\nM\tDisk.files/1-x/moved\t(content)\n"
	if got := lines(res); got != want {
		t.Errorf("changes:\n%s\nwant:\n%s", got, want)
	}
	if v := res.Volumes[0]; v.Method != "walk" || v.ContentReads != 3 || v.ChangedBytes != ch.Bytes() {
		t.Errorf("volume stats: %+v", v)
	}
	// --full reads everything, and so sees the impossible change too.
	res, _ = Points(pa, pb, Options{Full: true})
	if n := len(res.Changes); n != 3 {
		t.Errorf("--full: %s", lines(res))
	}
	// Without changes in the volume nothing is read.
	opens := a.opens.Load() + b.opens.Load()
	same := point("B", fsNode("1-x", extFS{b}, c.Point(1)))
	res, _ = Points(pa, same, Options{})
	if len(res.Changes) != 0 || res.Volumes[0].Method != "unchanged" || a.opens.Load()+b.opens.Load() != opens {
		t.Errorf("unchanged volume: %s %+v", lines(res), res.Volumes)
	}
}

func TestLine(t *testing.T) {
	for _, c := range []struct {
		c    Change
		want string
	}{
		{Change{Status: Added, Path: "a/b", Type: "dir"}, "A\ta/b/"},
		{Change{Status: Deleted, Path: "a\tb", Type: "file"}, `D	"a\tb"`},
		{Change{Status: TypeChg, Path: "x", Type: "dir", OldType: "file"}, "T\tx\t(file -> dir)"},
		{Change{Status: Error, Path: "x", Err: "boom"}, "E\tx\tboom"},
	} {
		if got := Line(c.c); got != c.want {
			t.Errorf("Line(%+v) = %q, want %q", c.c, got, c.want)
		}
	}
}

func TestListedOnce(t *testing.T) {
	calls := 0
	lazy := &checkpoint.Node{Name: "Disk.files", IsDir: true, List: func() ([]*checkpoint.Node, error) {
		calls++
		return nil, errors.New("no partition table")
	}}
	res, _ := Points(checkpoint.Dir("A", lazy), checkpoint.Dir("B", lazy), Options{})
	if _, err := lazy.Entries(); err == nil || calls != 1 {
		t.Errorf("List called %d times", calls)
	}
	if len(res.Changes) != 1 || res.Changes[0].Status != Error || !strings.Contains(res.Changes[0].Err, "no partition table") {
		t.Errorf("listing error: %s", lines(res))
	}
}
