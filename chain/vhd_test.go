package chain

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// vhdSpec describes a generated VHD chain.
type vhdSpec struct {
	size       int64
	baseBlock  uint32
	childBlock uint32
	layers     int // including the base
	fixed      bool
	// aligned keeps every write 4 KiB aligned, so that each sector
	// bitmap byte is 0x00 or 0xFF (what vhdimount reads right).
	aligned bool
	seed    int64
	// opts adjusts the options of layer i before it is built.
	opts func(i int, o *vhdtest.Options, path string)
	// name names layer i's file (default Disk.vhd, Disk_<i>.avhd).
	name func(i int) string
}

// builtVHD is a generated VHD chain on disk.
type builtVHD struct {
	paths    []string // base first
	images   []*vhdtest.Image
	contents [][]byte // the virtual disk at each layer, base first
}

func (b builtVHD) leaf() string { return b.paths[len(b.paths)-1] }

// buildVHD writes the chain into dir. Each layer writes random extents:
// partial blocks with single sectors and runs not aligned to bitmap bytes
// (unless aligned), and blocks no earlier layer allocated.
func buildVHD(t testing.TB, dir string, s vhdSpec) builtVHD {
	t.Helper()
	rng := rand.New(rand.NewSource(s.seed))
	var seed [32]byte
	seed[0], seed[1] = byte(s.seed), byte(s.seed>>8)
	fillRNG := randv2.NewChaCha8(seed) // fast (assembly) even under -race
	unit := int64(512)
	if s.aligned {
		unit = 4096
	}
	var b builtVHD
	for i := 0; i < s.layers; i++ {
		o := vhdtest.Options{BlockSize: s.childBlock}
		name := fmt.Sprintf("Disk_%d.avhd", i)
		if i == 0 {
			o.VirtualSize, o.BlockSize, o.Fixed, name = s.size, s.baseBlock, s.fixed, "Disk.vhd"
		} else {
			o.Parent, o.ParentPath = b.images[i-1], b.paths[i-1]
		}
		if s.name != nil {
			name = s.name(i)
		}
		path := filepath.Join(dir, name)
		if s.opts != nil {
			s.opts(i, &o, path)
		}
		mkdirAll(t, filepath.Dir(path))
		im := vhdtest.New(o)
		bs, size := int64(im.Options().BlockSize), im.Options().VirtualSize
		writes := 4 + rng.Intn(5)
		if i == 0 {
			writes = 12
		}
		for w := 0; w < writes; w++ {
			n := (1 + rng.Int63n(2*bs/unit)) * unit
			if w%3 == 0 {
				n = unit // a lone sector (or 4 KiB)
			}
			n = min(n, size/unit*unit)
			off := rng.Int63n((size-n)/unit+1) * unit
			p := make([]byte, n)
			fillRNG.Read(p)
			im.Write(off, p)
		}
		if err := im.Save(path); err != nil {
			t.Fatal(err)
		}
		var parent []byte
		if i > 0 {
			parent = b.contents[i-1]
		}
		b.paths, b.images, b.contents = append(b.paths, path), append(b.images, im), append(b.contents, im.Contents(parent))
	}
	return b
}

// openVHD builds a chain in a new folder, checks at cleanup that its files
// were not written, and opens it (closed at cleanup).
func openVHD(t *testing.T, s vhdSpec) (builtVHD, *Chain) {
	t.Helper()
	b := buildVHD(t, t.TempDir(), s)
	testutil.Unchanged(t, b.paths...)
	c, err := Open(b.leaf(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return b, c
}

func sum256(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// vhdimountSHA256 hashes the disk of a vhdimount image read in aligned
// chunks of one block: libvhdi 20210425 also misreads VHD sectors when a
// read ends inside a run of set bitmap bits (seen with reads of 32 KiB and
// less on 512 KiB blocks, while block-sized reads are right).
func vhdimountSHA256(t *testing.T, img string, block int64) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, block)
	for off := int64(0); ; off += block {
		n, err := f.ReadAt(buf, off)
		h.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestVHDChainModel reads every point of generated VHD chains, whole and
// in random pieces from several goroutines, against the model.
func TestVHDChainModel(t *testing.T) {
	specs := []vhdSpec{
		{size: 3*disk.MiB + 3*512, baseBlock: 2 * disk.MiB, childBlock: 512 * 1024, layers: 4},
		{size: 2 * disk.MiB, baseBlock: 2 * disk.MiB, childBlock: 2 * disk.MiB, layers: 2, fixed: true},
		{size: 1 * disk.MiB, baseBlock: 4096, childBlock: 64 * 1024, layers: 9},
	}
	for i, s := range specs {
		t.Run(fmt.Sprintf("%dx%d", s.layers, s.childBlock), func(t *testing.T) {
			s.seed = int64(200 + i)
			b, c := openVHD(t, s)
			if c.Depth() != s.layers || c.Leaf().Format() != "VHD" {
				t.Fatalf("depth %d format %s", c.Depth(), c.Leaf().Format())
			}
			for p := 0; p < c.Depth(); p++ {
				mustEqual(t, fmt.Sprintf("point %d", p), readAll(t, c.Point(p)), b.contents[len(b.contents)-1-p])
			}
			want := b.contents[len(b.contents)-1]
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(g)))
					buf := make([]byte, 256*1024)
					for k := 0; k < 20; k++ {
						off := rng.Int63n(c.Size())
						n := 1 + rng.Intn(len(buf))
						got := buf[:min(int64(n), c.Size()-off)]
						if _, err := c.ReadAt(got, off); err != nil {
							t.Errorf("ReadAt %d+%d: %v", off, len(got), err)
							return
						}
						if !bytes.Equal(got, want[off:off+int64(len(got))]) {
							t.Errorf("ReadAt %d+%d differs from the model", off, len(got))
							return
						}
					}
				}(g)
			}
			wg.Wait()
		})
	}
}

// sevenZip reads the virtual disk of a VHD chain with 7-Zip.
func sevenZip(t *testing.T, path string) []byte {
	t.Helper()
	cmd := exec.Command("7z", "e", "-so", path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("7z e -so %s: %v\n%s", path, err, errb.String())
	}
	return out.Bytes()
}

// TestVHDAgainstOracles compares every point of VHD chains whose writes
// are 4 KiB aligned with libvhdi's vhdimount and 7-Zip, by SHA-256 of the
// whole virtual disk.
func TestVHDAgainstOracles(t *testing.T) {
	testutil.Need(t, "vhdimount", "7z")
	testutil.NeedFUSE(t)
	specs := []vhdSpec{
		{size: 4 * disk.MiB, baseBlock: 2 * disk.MiB, childBlock: 2 * disk.MiB, layers: 3, aligned: true},
		{size: 2*disk.MiB + 4096, baseBlock: 512 * 1024, childBlock: 512 * 1024, layers: 4, aligned: true},
	}
	for i, s := range specs {
		t.Run(fmt.Sprintf("%dx%d", s.layers, s.childBlock), func(t *testing.T) {
			s.seed = int64(300 + i)
			b, c := openVHD(t, s)
			// vhdimount of the leaf shows every layer: vhdi1 is the base.
			mnt := filepath.Dir(testutil.VhdiMount(t, b.leaf()))
			for p := 0; p < c.Depth(); p++ {
				path := b.paths[len(b.paths)-1-p]
				got := sum256(readAll(t, c.Point(p)))
				if want := sum256(b.contents[len(b.contents)-1-p]); got != want {
					t.Errorf("point %d differs from the model", p)
				}
				img := filepath.Join(mnt, fmt.Sprintf("vhdi%d", len(b.paths)-p))
				if want := vhdimountSHA256(t, img, int64(s.childBlock)); got != want {
					t.Errorf("point %d (%s) differs from vhdimount", p, filepath.Base(path))
				}
				if want := sum256(sevenZip(t, path)); got != want {
					t.Errorf("point %d (%s) differs from 7-Zip", p, filepath.Base(path))
				}
			}
		})
	}
}

// TestVhdimountVHDBitmapBug documents where vhdimount is wrong: libvhdi
// 20210425 does not mask the bit it shifts out of a sector bitmap byte,
// so after a set bit every later sector of that byte is read from the
// child. ckptfs follows the specification (one bit per sector), as 7-Zip
// does.
func TestVhdimountVHDBitmapBug(t *testing.T) {
	testutil.Need(t, "vhdimount", "7z")
	testutil.NeedFUSE(t)
	dir := t.TempDir()
	base := vhdtest.New(vhdtest.Options{VirtualSize: 4 * disk.MiB})
	base.Write(0, testutil.RandBytes(1, 2*disk.MiB))
	bp := filepath.Join(dir, "Disk.vhd")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	child := vhdtest.New(vhdtest.Options{Parent: base, ParentPath: bp})
	child.Write(512, testutil.RandBytes(2, 512)) // sector 1: bitmap byte 0 = 0x40
	cp := filepath.Join(dir, "Disk_1.avhd")
	if err := child.Save(cp); err != nil {
		t.Fatal(err)
	}
	c, err := Open(cp, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := readAll(t, c)
	mustEqual(t, "model", got, child.ChainContents())
	mustEqual(t, "7-Zip", got, sevenZip(t, cp))
	vh, err := os.ReadFile(testutil.VhdiMount(t, cp))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(vh, got) {
		t.Fatal("vhdimount now reads unaligned VHD bitmaps right: drop this test and the fact")
	}
	// Sectors 2..7 come from the child's (zero) data in vhdimount.
	if !bytes.Equal(vh[1024:4096], make([]byte, 3072)) || bytes.Equal(got[1024:4096], vh[1024:4096]) {
		t.Error("vhdimount differs elsewhere than documented")
	}
}

// TestVHDLocate finds VHD parents by every locator kind and checks the
// linkage, time stamps, sizes and formats along the chain.
func TestVHDLocate(t *testing.T) {
	one := func(i int) bool { return i == 1 }
	cases := []struct {
		name string
		spec vhdSpec
		// prepare runs after the chain is written.
		prepare func(t *testing.T, dir string, b builtVHD)
		opts    func(dir string) Options
		// key is the locator key that must find the base; err the error
		// wanted instead; warn a text one of the base link's warnings has.
		key, err, warn string
		ignored        bool
	}{
		{name: "default locators", key: "W2ru"},
		{name: "relative only", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if one(i) {
				o.Locators = []vhdtest.Locator{{Code: vhdtest.W2ru, Path: `.\Disk.vhd`}}
			}
		}}, key: "W2ru"},
		{name: "absolute only", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if one(i) {
				o.Locators = []vhdtest.Locator{{Code: vhdtest.W2ku, Path: `D:\VMs\old place\DISK.VHD`}}
			}
		}}, key: "W2ku"},
		{name: "Wi2r only", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if one(i) {
				o.Locators = []vhdtest.Locator{{Code: vhdtest.Wi2r, Path: `.\Disk.vhd`}}
			}
		}}, key: "Wi2r"},
		{name: "Wi2k only", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if one(i) {
				o.Locators = []vhdtest.Locator{{Code: vhdtest.Wi2k, Path: `C:\vpc\Disk.vhd`}}
			}
		}}, key: "Wi2k"},
		{name: "parent name only", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if one(i) {
				o.Locators = []vhdtest.Locator{}
			}
		}}, key: "parent name"},
		{name: "moved folder: stale absolute, parent in a search path", spec: vhdSpec{
			name: func(i int) string {
				if i == 0 {
					return "base/Disk.vhd"
				}
				return fmt.Sprintf("snap/Disk_%d.avhd", i)
			},
			opts: func(i int, o *vhdtest.Options, p string) {
				if one(i) {
					o.Locators = []vhdtest.Locator{{Code: vhdtest.W2ku, Path: `E:\Hyper-V\Virtual Hard Disks\Disk.vhd`}}
				}
			}},
			opts: func(dir string) Options { return Options{SearchPaths: []string{filepath.Join(dir, "base")}} },
			key:  "W2ku"},
		{name: "moved folder: stale absolute, relative works", spec: vhdSpec{
			name: func(i int) string {
				if i == 0 {
					return "Virtual Hard Disks/Disk.vhd"
				}
				return fmt.Sprintf("Snapshots/Disk_%d.avhd", i)
			},
			opts: func(i int, o *vhdtest.Options, p string) {
				if one(i) {
					o.Locators = []vhdtest.Locator{{Code: vhdtest.W2ku, Path: `E:\gone\Disk.vhd`}, {Code: vhdtest.W2ru, Path: `..\virtual hard disks\disk.vhd`}}
				}
			}},
			key: "W2ru"},
		{name: "renamed parent found by identity", prepare: func(t *testing.T, dir string, b builtVHD) {
			if err := os.Rename(b.paths[0], filepath.Join(dir, "renamed.vhd")); err != nil {
				t.Fatal(err)
			}
		}, key: "search"},
		{name: "parent gone, no identity match", prepare: func(t *testing.T, dir string, b builtVHD) {
			os.Remove(b.paths[0])
			other := vhdtest.New(vhdtest.Options{VirtualSize: b.images[0].Options().VirtualSize})
			other.Save(filepath.Join(dir, "other.vhd"))
		}, err: "parent not found"},
		{name: "unique ID mismatch", prepare: func(t *testing.T, dir string, b builtVHD) {
			other := vhdtest.New(vhdtest.Options{VirtualSize: b.images[0].Options().VirtualSize})
			os.Remove(b.paths[0])
			other.Save(b.paths[0])
		}, err: "parent linkage mismatch"},
		{name: "unique ID mismatch ignored", prepare: func(t *testing.T, dir string, b builtVHD) {
			other := vhdtest.New(vhdtest.Options{VirtualSize: b.images[0].Options().VirtualSize})
			os.Remove(b.paths[0])
			other.Save(b.paths[0])
		}, opts: func(string) Options { return Options{IgnoreLinkage: true} }, key: "W2ru", ignored: true, warn: "Parent Time Stamp"},
		{name: "time stamp mismatch", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if one(i) {
				ts := uint32(12345)
				o.ParentTimeStamp = &ts
			}
		}}, key: "W2ru", warn: "Parent Time Stamp"},
		{name: "CHS rounding", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			c, h, s := vhdtest.CHS(2 * disk.MiB)
			o.Geometry = [3]int{c, h, s}
			if i == 0 {
				o.VirtualSize = int64(c*h*s) * 512 // the geometry's capacity, as Virtual PC records it
			} else {
				o.VirtualSize = 2 * disk.MiB
			}
		}}, key: "W2ru", warn: "CHS rounding"},
		{name: "size mismatch", spec: vhdSpec{opts: func(i int, o *vhdtest.Options, p string) {
			if i == 0 {
				o.VirtualSize = disk.MiB
			} else {
				o.VirtualSize = 2 * disk.MiB
			}
		}}, err: "parent geometry differs"},
		{name: "VHDX parent", prepare: func(t *testing.T, dir string, b builtVHD) {
			os.Remove(b.paths[0])
			x := vhdxtest.New(vhdxtest.Options{VirtualSize: 2 * disk.MiB})
			if err := x.Save(b.paths[0]); err != nil {
				t.Fatal(err)
			}
		}, err: "a chain cannot mix VHDX and VHD"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := c.spec
			s.size, s.baseBlock, s.childBlock, s.layers, s.seed = 2*disk.MiB, disk.MiB, 256*1024, 2, int64(400+i)
			b := buildVHD(t, dir, s)
			if c.prepare != nil {
				c.prepare(t, dir, b)
			}
			var o Options
			if c.opts != nil {
				o = c.opts(dir)
			}
			ch, err := Open(b.leaf(), o)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				if !strings.Contains(err.Error(), b.paths[1]) {
					t.Errorf("error %q does not name the child", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			l := ch.Links[1]
			if l.LocatorKey != c.key || l.Linkage.OK == c.ignored || l.Linkage.Ignored != c.ignored || l.Linkage.ActualKey != "unique ID" {
				t.Errorf("link 1 found through %q, linkage %+v", l.LocatorKey, l.Linkage)
			}
			if c.warn != "" && !strings.Contains(strings.Join(l.Warnings, "\n"), c.warn) {
				t.Errorf("link 1 warnings %q lack %q", l.Warnings, c.warn)
			}
			if c.warn == "" && len(l.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", l.Warnings)
			}
			if !c.ignored {
				mustEqual(t, "leaf", readAll(t, ch), b.contents[1])
			}
		})
	}
}

// TestVHDLinkageErrorNamesBoth: a unique ID mismatch names both IDs and
// both files; a VHDX child whose locator points at a VHD is refused.
func TestVHDLinkageErrorNamesBoth(t *testing.T) {
	dir := t.TempDir()
	b := buildVHD(t, dir, vhdSpec{size: 2 * disk.MiB, baseBlock: disk.MiB, childBlock: disk.MiB, layers: 2, seed: 1})
	other := vhdtest.New(vhdtest.Options{VirtualSize: 2 * disk.MiB})
	os.Remove(b.paths[0])
	other.Save(b.paths[0])
	_, err := Open(b.leaf(), Options{})
	if !errors.Is(err, ErrLinkageMismatch) {
		t.Fatalf("error %v", err)
	}
	for _, w := range []string{b.paths[0], b.paths[1], b.images[0].UniqueID.Braced(), other.UniqueID.Braced(), "unique ID"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	var le *LinkageError
	if !errors.As(err, &le) || le.Expected != b.images[0].UniqueID || le.Actual != other.UniqueID || le.ActualKey != "unique ID" {
		t.Errorf("error %v: as *LinkageError %+v", err, le)
	}

	// A VHDX child whose relative_path names a VHD.
	x := vhdxtest.New(vhdxtest.Options{VirtualSize: 2 * disk.MiB})
	xc := vhdxtest.New(vhdxtest.Options{Parent: x, ParentPath: b.paths[0]})
	xp := filepath.Join(dir, "child.avhdx")
	if err := xc.Save(xp); err != nil {
		t.Fatal(err)
	}
	_, err = Open(xp, Options{})
	if !errors.Is(err, ErrFormatMismatch) || !strings.Contains(err.Error(), "VHDX file's relative_path names "+b.paths[0]+", a VHD file") {
		t.Fatalf("VHDX child of a VHD: %v", err)
	}
}
