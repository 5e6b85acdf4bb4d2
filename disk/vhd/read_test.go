package vhd_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// readAll reads the virtual disk one file presents through its extents
// alone, taking FromParent bytes from parent (zeros when nil). It checks
// that the extents of every block are in order and cover it exactly.
func readAll(t testing.TB, f *vhd.File, parent []byte) []byte {
	t.Helper()
	out := make([]byte, f.VirtualSize())
	bs := f.BlockSize()
	var ext []disk.Extent
	for b := int64(0); b*bs < f.VirtualSize(); b++ {
		var err error
		if ext, err = f.BlockExtents(b, ext[:0]); err != nil {
			t.Fatalf("block %d: %v", b, err)
		}
		at := b * bs
		for _, e := range ext {
			if e.Offset != at || e.Length <= 0 {
				t.Fatalf("block %d: extent %+v, want one at %d", b, e, at)
			}
			at += e.Length
			lo, hi := min(e.Offset, f.VirtualSize()), min(e.Offset+e.Length, f.VirtualSize())
			dst := out[lo:hi]
			switch e.Source {
			case disk.Data:
				if _, err := f.ReadFileAt(dst, e.FileOffset); err != nil {
					t.Fatalf("block %d: reading %d bytes at %d: %v", b, len(dst), e.FileOffset, err)
				}
			case disk.FromParent:
				if parent != nil {
					copy(dst, parent[lo:hi])
				}
			}
		}
		if at != (b+1)*bs {
			t.Fatalf("block %d: extents end at %d, want %d", b, at, (b+1)*bs)
		}
	}
	return out
}

func save(t testing.TB, im *vhdtest.Image, path string) string {
	t.Helper()
	if err := im.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func open(t testing.TB, path string) *vhd.File {
	t.Helper()
	f, err := vhd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func fill(seed int64, n int) []byte { return testutil.RandBytes(seed, n) }

// TestReadModels reads generated files of every type and shape and
// compares them with their models, which follow the specification.
func TestReadModels(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name  string
		opts  vhdtest.Options
		write func(im *vhdtest.Image)
	}{
		{"fixed", vhdtest.Options{VirtualSize: 5*mib + 3*512, Fixed: true}, func(im *vhdtest.Image) {
			im.Write(0, fill(1, 4096))
			im.Write(5*mib, fill(2, 3*512))
		}},
		{"dynamic 2M", vhdtest.Options{VirtualSize: 7 * mib}, func(im *vhdtest.Image) {
			im.Write(3*mib-512, fill(3, 2*512+mib))
			im.Write(0, fill(4, 512))
		}},
		{"dynamic last block partial", vhdtest.Options{VirtualSize: 4*mib + 7*512, BlockSize: 512 << 10}, func(im *vhdtest.Image) {
			im.Write(4*mib, fill(5, 7*512))
		}},
		{"dynamic ignores a clear bitmap", vhdtest.Options{VirtualSize: 2 * mib, BlockSize: 64 << 10}, func(im *vhdtest.Image) {
			im.Write(64<<10, fill(6, 64<<10))
			for s := int64(0); s < 128; s += 3 {
				im.SetPresent(64<<10+s*512, false)
			}
		}},
		{"dynamic 4K blocks", vhdtest.Options{VirtualSize: 256 << 10, BlockSize: 4096}, func(im *vhdtest.Image) {
			im.Write(8192+512, fill(7, 1024))
			im.Write(200<<10, fill(8, 8192))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			im := vhdtest.New(c.opts)
			c.write(im)
			f := open(t, save(t, im, filepath.Join(t.TempDir(), "d.vhd")))
			if got := readAll(t, f, nil); !bytes.Equal(got, im.Contents(nil)) {
				t.Fatal("virtual disk differs from the model")
			}
			if f.VirtualSize() != c.opts.VirtualSize || f.SectorSize() != 512 {
				t.Errorf("size %d sector %d", f.VirtualSize(), f.SectorSize())
			}
		})
	}
}

// TestReadDifferencing reads differencing files whose bitmaps mix bits in
// every pattern, including single sectors not aligned to 4 KiB, against
// the model: bit 1 (MSB first) is this file, 0 the parent.
func TestReadDifferencing(t *testing.T) {
	const size = 3 << 20
	dir := t.TempDir()
	base := vhdtest.New(vhdtest.Options{VirtualSize: size, BlockSize: 1 << 20})
	base.Write(0, fill(10, size))
	bp := save(t, base, filepath.Join(dir, "base.vhd"))
	parent := base.Contents(nil)

	child := vhdtest.New(vhdtest.Options{Parent: base, ParentPath: bp, BlockSize: 512 << 10})
	// Block 0: single sectors 0, 2, 7 (one bitmap byte 10100001) and 9.
	for _, s := range []int64{0, 2, 7, 9} {
		child.Write(s*512, fill(20+s, 512))
	}
	// Block 1: a run crossing bitmap bytes at odd sectors, then zeros
	// written over parent data (they must hide it).
	child.Write(512<<10+5*512, fill(30, 13*512))
	child.Write(512<<10+40*512, make([]byte, 3*512))
	// Block 2: every sector but the last; block 3: all sectors.
	child.Write(1<<20, fill(31, 512<<10-512))
	child.Write(3<<19, fill(32, 512<<10))
	// Block 4: allocated with a clear bitmap: all parent.
	child.Allocate(4)
	// Block 5 (the last): a sector whose data is written but whose bit is
	// clear, then one with its bit set.
	child.Write(5<<19+512, fill(33, 1024))
	child.SetPresent(5<<19+512, false)
	cp := save(t, child, filepath.Join(dir, "child.avhd"))
	f := open(t, cp)
	if got, want := readAll(t, f, parent), child.Contents(parent); !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("differs from the model first at byte %d (sector %d)", i, i/512)
			}
		}
	}
	// The bitmap decides, sector by sector: check one run precisely.
	ext, err := f.BlockExtents(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []disk.Extent{
		{Offset: 0, Length: 512, Source: disk.Data}, {Offset: 512, Length: 512, Source: disk.FromParent},
		{Offset: 1024, Length: 512, Source: disk.Data}, {Offset: 1536, Length: 4 * 512, Source: disk.FromParent},
		{Offset: 7 * 512, Length: 512, Source: disk.Data}, {Offset: 8 * 512, Length: 512, Source: disk.FromParent},
		{Offset: 9 * 512, Length: 512, Source: disk.Data}, {Offset: 10 * 512, Length: 512<<10 - 10*512, Source: disk.FromParent},
	}
	if len(ext) != len(want) {
		t.Fatalf("block 0 extents %+v", ext)
	}
	for i := range want {
		if ext[i].Offset != want[i].Offset || ext[i].Length != want[i].Length || ext[i].Source != want[i].Source {
			t.Errorf("extent %d: %+v, want %+v", i, ext[i], want[i])
		}
	}
	if got := f.OwnBytes(); got != 6*(512<<10) {
		t.Errorf("OwnBytes %d", got)
	}
	st, err := f.BlockStates()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st) != "map[allocated, bitmap empty:1 allocated, bitmap full:1 allocated, bitmap partial:4]" {
		t.Errorf("block states %v", st)
	}
}

// TestFooterFromHead: a dynamic file whose end footer is damaged is read
// through the mirror at offset 0, and says so.
func TestFooterFromHead(t *testing.T) {
	dir := t.TempDir()
	im := vhdtest.New(vhdtest.Options{VirtualSize: 4 << 20})
	im.Write(1<<20, fill(40, 8192))
	p := save(t, im, filepath.Join(dir, "d.vhd"))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-512+50] ^= 0xff // Current Size: the checksum no longer matches
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f := open(t, p)
	if !f.FooterFromHead || len(f.Warnings) != 1 || !bytes.Contains([]byte(f.Warnings[0]), []byte("copy at offset 0 was used")) {
		t.Fatalf("FooterFromHead %v, warnings %q", f.FooterFromHead, f.Warnings)
	}
	if got := readAll(t, f, nil); !bytes.Equal(got, im.Contents(nil)) {
		t.Fatal("virtual disk differs from the model")
	}
}
