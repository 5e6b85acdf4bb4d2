package chain

import (
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// chainSpec describes a generated chain.
type chainSpec struct {
	size       int64
	sector     uint32
	baseBlock  uint32
	childBlock uint32
	layers     int // including the base
	zeroBlocks bool
	unmapped   bool
	fixed      bool
	seed       int64
	// locator returns the locator entries for child i, or nil for the default.
	locator func(i int, parent *vhdxtest.Image, childPath, parentPath string) []disk.LocatorEntry
	// dirs places layer i in a sub-folder (i >= 0), nil keeps all in one.
	dir func(i int) string
}

// built is a generated chain on disk.
type built struct {
	paths    []string // base first
	images   []*vhdxtest.Image
	contents [][]byte // the virtual disk at each layer, base first
}

// at returns the expected virtual disk at layer i (0 = base).
func (b built) at(i int) []byte { return b.contents[i] }

func (b built) leaf() string { return b.paths[len(b.paths)-1] }

// build writes the chain into dir. Layer 0 is the base. Each child writes
// random sector-aligned extents (partial blocks), and some whole blocks.
func build(t testing.TB, dir string, s chainSpec) built {
	t.Helper()
	rng := rand.New(rand.NewSource(s.seed))
	var seed [32]byte
	seed[0] = byte(s.seed)
	fill := randv2.NewChaCha8(seed) // fast (assembly) even under -race
	ss := int64(s.sector)
	var b built
	for i := 0; i < s.layers; i++ {
		o := vhdxtest.Options{VirtualSize: s.size, SectorSize: s.sector, BlockSize: s.childBlock}
		name := fmt.Sprintf("Disk_%d.avhdx", i)
		if i == 0 {
			o.BlockSize, o.Fixed = s.baseBlock, s.fixed
			name = "Disk.vhdx"
		} else {
			o.Parent = b.images[i-1]
			o.ParentPath = b.paths[i-1]
		}
		d := dir
		if s.dir != nil {
			d = filepath.Join(dir, s.dir(i))
		}
		path := filepath.Join(d, name)
		if i > 0 && s.locator != nil {
			o.Locator = s.locator(i, b.images[i-1], path, b.paths[i-1])
		}
		im := vhdxtest.New(o)
		bs := int64(im.Options().BlockSize)
		writes := 3 + rng.Intn(6)
		if i == 0 {
			writes = 12
		}
		// Writes of up to three blocks; up to 4 MiB under the race
		// detector (a 32 MiB block would mean 96 MiB writes).
		maxW := testutil.Scale(3*bs, min(3*bs, 4*disk.MiB))
		for w := 0; w < writes; w++ {
			n := (1 + rng.Int63n(maxW/ss)) * ss
			n = min(n, s.size)
			off := rng.Int63n((s.size-n)/ss+1) * ss
			data := make([]byte, n)
			fill.Read(data)
			im.Write(off, data)
		}
		if i > 0 && s.zeroBlocks {
			im.SetState(rng.Int63n((s.size+bs-1)/bs), disk.BlockZero)
		}
		if i > 0 && s.unmapped {
			im.SetState(rng.Int63n((s.size+bs-1)/bs), disk.BlockUnmapped)
		}
		mkdirAll(t, filepath.Dir(path))
		if err := im.Save(path); err != nil {
			t.Fatal(err)
		}
		b.paths = append(b.paths, path)
		b.images = append(b.images, im)
		var parent []byte
		if i > 0 {
			parent = b.contents[i-1]
		}
		b.contents = append(b.contents, im.Contents(parent))
		im.Forget() // saved and its contents known: only its identity is needed now
	}
	return b
}

// newZeroChild writes a child of b's base whose block 0 is ZERO.
func newZeroChild(t testing.TB, b built, dir string) string {
	t.Helper()
	im := vhdxtest.New(vhdxtest.Options{Parent: b.images[0], ParentPath: b.paths[0], BlockSize: disk.MiB})
	im.SetState(0, disk.BlockZero)
	p := filepath.Join(dir, "zero.avhdx")
	if err := im.Save(p); err != nil {
		t.Fatal(err)
	}
	return p
}
