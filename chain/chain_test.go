package chain

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// TestChainMatchesModel reads generated chains and compares every byte
// with the model the generator kept, at every point of the chain.
func TestChainMatchesModel(t *testing.T) {
	cases := []struct {
		name string
		spec chainSpec
	}{
		{"base only dynamic", chainSpec{size: 9*disk.MiB + 512, sector: 512, baseBlock: 2 * disk.MiB, layers: 1}},
		{"base only fixed", chainSpec{size: 5 * disk.MiB, sector: 512, baseBlock: 1 * disk.MiB, layers: 1, fixed: true}},
		{"2 layers 512", chainSpec{size: 16 * disk.MiB, sector: 512, baseBlock: 4 * disk.MiB, childBlock: 1 * disk.MiB, layers: 2}},
		{"3 layers 4096 zero+unmapped", chainSpec{size: 12*disk.MiB + 4096, sector: 4096, baseBlock: 2 * disk.MiB, childBlock: 2 * disk.MiB, layers: 3, zeroBlocks: true, unmapped: true}},
		{"8 layers mixed blocks", chainSpec{size: 20 * disk.MiB, sector: 512, baseBlock: 8 * disk.MiB, childBlock: 1 * disk.MiB, layers: 8, zeroBlocks: true}},
		// 64 layers; 24 under the race detector, whose interest is
		// concurrency, not depth (the models alone would take gigabytes).
		{"deep", chainSpec{size: 6 * disk.MiB, sector: 512, baseBlock: 2 * disk.MiB, childBlock: 1 * disk.MiB, layers: testutil.Scale(64, 24), zeroBlocks: true}},
		{"parents in other folders", chainSpec{size: 8 * disk.MiB, sector: 512, baseBlock: 2 * disk.MiB, childBlock: 2 * disk.MiB, layers: 4,
			dir: func(i int) string { return filepath.Join("layer", strings.Repeat("x/", i)) }}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.spec.seed = int64(i + 1)
			b := build(t, t.TempDir(), c.spec)
			testutil.Unchanged(t, b.paths...)
			leaf, err := Open(b.leaf(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer leaf.Close()
			if leaf.Depth() != c.spec.layers {
				t.Fatalf("depth %d, want %d", leaf.Depth(), c.spec.layers)
			}
			for p := 0; p < leaf.Depth(); p++ {
				if raceEnabled && leaf.Depth() > 8 && p%16 != 0 && p != leaf.Depth()-1 {
					continue
				}
				pt := leaf.Point(p)
				want := b.at(len(b.images) - 1 - p)
				mustRead(t, "point "+pt.LayerName(0), pt, want)
			}
			// Unaligned reads of random sizes at random offsets (fewer and
			// smaller under the race detector), into one buffer: fresh
			// memory costs page faults and shadow memory, not reads.
			want := b.at(len(b.images) - 1)
			rng := rand.New(rand.NewSource(7))
			maxRead := testutil.Scale[int64](3*disk.MiB, disk.MiB/2)
			buf := make([]byte, maxRead)
			for k := 0; k < testutil.Scale(300, 100); k++ {
				off := rng.Int63n(leaf.Size())
				n := rng.Int63n(min(maxRead, leaf.Size()-off) + 1)
				got := buf[:n]
				if _, err := leaf.ReadAt(got, off); err != nil {
					t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
				}
				mustEqual(t, "random read", got, want[off:off+n])
				// Where the bytes lie on disk says the same.
				if n > 0 && k%3 == 0 {
					ps, ok := leaf.Pieces(off, n, nil)
					if !ok {
						t.Fatalf("Pieces(%d, %d) refused a chain of plain files", off, n)
					}
					mustEqual(t, "pieces", readPieces(t, ps, got[:0]), want[off:off+n])
				}
			}
		})
	}
}

// readPieces reads what Pieces described, appending to out.
func readPieces(t *testing.T, ps []Piece, out []byte) []byte {
	t.Helper()
	for _, p := range ps {
		n := len(out)
		out = append(out, make([]byte, p.Length)...)
		if p.File != nil {
			if _, err := p.File.ReadAt(out[n:], p.Offset); err != nil {
				t.Fatalf("%s: %d bytes at %d: %v", p.File.Name(), p.Length, p.Offset, err)
			}
		}
	}
	return out
}

// TestConcurrentReaders checks that parallel readers see the right bytes
// (run with -race).
func TestConcurrentReaders(t *testing.T) {
	b := build(t, t.TempDir(), chainSpec{size: 24 * disk.MiB, sector: 512, baseBlock: 2 * disk.MiB, childBlock: 1 * disk.MiB, layers: 5, zeroBlocks: true, seed: 99})
	c, err := Open(b.leaf(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := b.at(len(b.images) - 1)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			buf := make([]byte, 256*1024)
			for k := 0; k < testutil.Scale(400, 200); k++ {
				off := rng.Int63n(c.Size())
				n := rng.Int63n(min(256*1024, c.Size()-off) + 1)
				got := buf[:n]
				if _, err := c.ReadAt(got, off); err != nil {
					errs <- err.Error()
					return
				}
				if d := firstDiff(got, want[off:off+n]); d != "equal" {
					errs <- d
					return
				}
				if k%50 == 0 {
					c.Invalidate(off, n) // races resolution against invalidation
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestLocators covers every way of finding a parent.
func TestLocators(t *testing.T) {
	linkage := func(p *vhdxtest.Image) string { return p.DataWriteGUID.Braced() }
	cases := []struct {
		name    string
		locator func(i int, parent *vhdxtest.Image, child, parentPath string) []disk.LocatorEntry
		dir     func(i int) string
		search  bool // put parents in a search path
		wantKey string
		wantErr error
		ignore  bool
	}{
		{name: "relative only, other folder", dir: func(i int) string { return strings.Repeat("c/", i) },
			locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
				rel, _ := filepath.Rel(filepath.Dir(child), pp)
				return []disk.LocatorEntry{{Key: "parent_linkage", Value: linkage(p)}, {Key: "relative_path", Value: strings.ReplaceAll(rel, "/", `\`)}}
			}, wantKey: disk.KeyRelativePath},
		{name: "relative path in other letter case", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: linkage(p)}, {Key: "relative_path", Value: `.\` + strings.ToUpper(filepath.Base(pp))}}
		}, wantKey: disk.KeyRelativePath},
		{name: "absolute win32 only", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: linkage(p)}, {Key: "absolute_win32_path", Value: `\\?\D:\VMs\Virtual Hard Disks\` + filepath.Base(pp)}}
		}, wantKey: disk.KeyAbsoluteWin32Path},
		{name: "volume path only, parent in search path", search: true, locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: linkage(p)}, {Key: "volume_path", Value: `\\?\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\x\` + strings.ToUpper(filepath.Base(pp))}}
		}, wantKey: disk.KeyVolumePath},
		{name: "upper-case linkage without braces", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: p.DataWriteGUID.String()}, {Key: "relative_path", Value: filepath.Base(pp)}}
		}, wantKey: disk.KeyRelativePath},
		{name: "parent_linkage2 matches", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: disk.NewGUID().Braced()}, {Key: "parent_linkage2", Value: linkage(p)}, {Key: "relative_path", Value: filepath.Base(pp)}}
		}, wantKey: disk.KeyRelativePath},
		{name: "renamed parent found by linkage", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: linkage(p)}, {Key: "relative_path", Value: `gone.vhdx`}}
		}, wantKey: "search"},
		{name: "wrong linkage", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: disk.NewGUID().Braced()}, {Key: "relative_path", Value: filepath.Base(pp)}}
		}, wantErr: ErrLinkageMismatch},
		{name: "wrong linkage ignored", ignore: true, locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: disk.NewGUID().Braced()}, {Key: "relative_path", Value: filepath.Base(pp)}}
		}, wantKey: disk.KeyRelativePath},
		{name: "missing parent", locator: func(i int, p *vhdxtest.Image, child, pp string) []disk.LocatorEntry {
			return []disk.LocatorEntry{{Key: "parent_linkage", Value: disk.NewGUID().Braced()}, {Key: "relative_path", Value: `nowhere\x.vhdx`}, {Key: "absolute_win32_path", Value: `\\?\C:\nothing.vhdx`}}
		}, wantErr: ErrParentNotFound},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			dir := c.dir
			if c.search {
				dir = func(i int) string {
					if i == 0 {
						return "elsewhere"
					}
					return "here"
				}
			}
			b := build(t, root, chainSpec{size: 4 * disk.MiB, sector: 512, baseBlock: 1 * disk.MiB, childBlock: 1 * disk.MiB, layers: 3, seed: int64(i), locator: c.locator, dir: dir})
			opts := Options{IgnoreLinkage: c.ignore}
			if c.search {
				opts.SearchPaths = []string{filepath.Join(root, "elsewhere")}
			}
			ch, err := Open(b.leaf(), opts)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("error %v, want %v", err, c.wantErr)
				}
				if !strings.Contains(err.Error(), b.leaf()) && !strings.Contains(err.Error(), filepath.Base(b.paths[1])) {
					t.Errorf("error does not name the file: %v", err)
				}
				if strings.Contains(err.Error(), "--") {
					t.Errorf("a library error names a flag: %v", err)
				}
				checkErrorType(t, err, b)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if got := ch.Links[1].LocatorKey; got != c.wantKey {
				t.Errorf("parent found through %q, want %q", got, c.wantKey)
			}
			if c.ignore != ch.Links[1].Linkage.Ignored {
				t.Errorf("linkage ignored = %v", ch.Links[1].Linkage.Ignored)
			}
			mustRead(t, "chain", ch, b.at(2))
		})
	}
}

// checkErrorType checks the details a linkage or missing-parent error
// carries for errors.As.
func checkErrorType(t *testing.T, err error, b built) {
	t.Helper()
	var le *LinkageError
	var nf *ParentNotFoundError
	switch {
	case errors.As(err, &le):
		if le.Child != b.leaf() || le.Parent != b.paths[1] || le.Key != disk.KeyParentLinkage || le.Expected == le.Actual ||
			le.FoundBy != disk.KeyRelativePath || !errors.Is(le, ErrLinkageMismatch) {
			t.Errorf("LinkageError %+v", le)
		}
	case errors.As(err, &nf):
		if nf.Child != b.leaf() || len(nf.Tried) == 0 || len(nf.Locator) != 2 || nf.Locator[0].Key != disk.KeyRelativePath || !errors.Is(nf, ErrParentNotFound) {
			t.Errorf("ParentNotFoundError %+v", nf)
		}
	default:
		t.Errorf("%v: neither a *LinkageError nor a *ParentNotFoundError", err)
	}
}

func TestCycleAndDepth(t *testing.T) {
	pa := cycleFixture(t, t.TempDir())
	pb := filepath.Join(filepath.Dir(pa), "b.avhdx")
	_, err := Open(pa, Options{})
	var ce *CycleError
	if !errors.Is(err, ErrCycle) || !errors.As(err, &ce) || ce.Child != pb || ce.Parent != pa || ce.Link != 0 {
		t.Fatalf("cycle: got %v", err)
	}
	// Depth: a 6-file chain against a limit of 5.
	b := build(t, t.TempDir(), chainSpec{size: 2 * disk.MiB, sector: 512, baseBlock: disk.MiB, childBlock: disk.MiB, layers: 6})
	if _, err := Open(b.leaf(), Options{MaxDepth: 5}); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("depth: got %v", err)
	}
	if c, err := Open(b.leaf(), Options{MaxDepth: 6}); err != nil {
		t.Fatalf("depth 6 within limit: %v", err)
	} else {
		c.Close()
	}
}

func TestGeometryMismatch(t *testing.T) {
	dir := t.TempDir()
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 4 * disk.MiB, BlockSize: disk.MiB})
	other := vhdxtest.New(vhdxtest.Options{VirtualSize: 2 * disk.MiB, BlockSize: disk.MiB})
	child := vhdxtest.New(vhdxtest.Options{Parent: other, BlockSize: disk.MiB, ParentPath: filepath.Join(dir, "base.vhdx")})
	child.Options()
	other.DataWriteGUID = base.DataWriteGUID
	if err := base.Save(filepath.Join(dir, "base.vhdx")); err != nil {
		t.Fatal(err)
	}
	if err := child.Save(filepath.Join(dir, "child.avhdx")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(dir, "child.avhdx"), Options{})
	var ge *GeometryError
	if !errors.Is(err, ErrGeometryMismatch) || !errors.As(err, &ge) || ge.Field != "virtual size" || ge.ChildValue != 2*disk.MiB || ge.ParentValue != 4*disk.MiB {
		t.Fatalf("got %v", err)
	}
}

var _ = os.Remove
