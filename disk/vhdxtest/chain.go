package vhdxtest

// Chains of files with known contents, for the tests of everything that
// reads chains (chain, checkpoint, fusefs, cmd/ckptfs): generated chains,
// children of images made by other tools, and raw images.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
)

// Chain is a chain written to disk.
type Chain struct {
	Paths  []string // base first
	Images []*Image // the models, base first
}

// Leaf is the newest file.
func (c Chain) Leaf() string { return c.Paths[len(c.Paths)-1] }

// ChildName is the name Hyper-V gives a checkpoint layer of base name
// name: "<name>_<GUID>.avhdx".
func ChildName(name string) string {
	return fmt.Sprintf("%s_%s.avhdx", name, strings.ToUpper(disk.NewGUID().String()))
}

// Generate writes a chain of layers files into dir: the base name.vhdx
// with random extents, then children with random partial writes (so reads
// mix all layers). Its contents at point i are Contents()[i].
func Generate(t testing.TB, dir, name string, size int64, layers int, seed int64) Chain {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	var c Chain
	for i := 0; i < layers; i++ {
		o := Options{VirtualSize: size, BlockSize: disk.MiB}
		path := filepath.Join(dir, name+".vhdx")
		if i > 0 {
			o.Parent, o.ParentPath = c.Images[i-1], c.Paths[i-1]
			path = filepath.Join(dir, ChildName(name))
		}
		im := New(o)
		writes := 3 + rng.Intn(4)
		if i == 0 {
			writes = 12
		}
		for w := 0; w < writes; w++ {
			n := min((1+rng.Int63n(disk.MiB/512))*512, size)
			off := rng.Int63n((size-n)/512+1) * 512
			b := make([]byte, n)
			Fill(b, rng.Uint64())
			im.Write(off, b)
		}
		Save(t, im, path)
		c.Paths, c.Images = append(c.Paths, path), append(c.Images, im)
	}
	return c
}

// Contents returns the virtual disk at every point, base first.
func (c Chain) Contents() [][]byte {
	out := make([][]byte, len(c.Images))
	var parent []byte
	for i, im := range c.Images {
		out[i] = im.Contents(parent)
		parent = out[i]
	}
	return out
}

// Fill fills b with pseudo-random bytes from seed, 8 bytes at a time
// (fast under the race detector, unlike math/rand's Read).
func Fill(b []byte, seed uint64) {
	x := seed
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(b[i:], z^z>>31)
	}
	for ; i < len(b); i++ {
		x += 0x9e3779b97f4a7c15
		b[i] = byte(x >> 56)
	}
}

// Save writes a model to path.
func Save(t testing.TB, im *Image, path string) {
	t.Helper()
	if err := im.Save(path); err != nil {
		t.Fatal(err)
	}
}

// StandIn returns a data-less model with the identity (DataWriteGuid,
// virtual disk ID, geometry) of the VHDX file at path, to be the Parent of
// a generated child of a file another tool made. It reads only that
// identity, with disk's reader.
func StandIn(t testing.TB, path string) *Image {
	t.Helper()
	f, err := disk.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im := New(Options{VirtualSize: f.VirtualSize(), SectorSize: uint32(f.SectorSize())})
	im.DataWriteGUID, im.VirtualDiskID = f.Header.DataWriteGUID, f.Metadata.VirtualDiskID
	return im
}

// DiffChild writes at path a differencing child of parent (at parentPath)
// holding exactly the sectors where newRaw differs from oldRaw, the
// parent's contents: mounting the child shows newRaw.
func DiffChild(t testing.TB, parent *Image, parentPath, path string, oldRaw, newRaw []byte) *Image {
	t.Helper()
	if len(oldRaw) != len(newRaw) {
		t.Fatalf("DiffChild: sizes differ: %d and %d", len(oldRaw), len(newRaw))
	}
	im := New(Options{Parent: parent, ParentPath: parentPath, BlockSize: 2 * disk.MiB})
	ss := int(im.Options().SectorSize)
	for off := 0; off < len(newRaw); {
		if bytes.Equal(oldRaw[off:off+ss], newRaw[off:off+ss]) {
			off += ss
			continue
		}
		end := off + ss
		for end < len(newRaw) && !bytes.Equal(oldRaw[end:end+ss], newRaw[end:end+ss]) {
			end += ss
		}
		im.Write(int64(off), newRaw[off:end])
		off = end
	}
	Save(t, im, path)
	return im
}

// RawFixture writes a raw image of size bytes with random extents.
func RawFixture(t testing.TB, path string, size, seed int64) []byte {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	b := make([]byte, size)
	for i := 0; i < 30; i++ {
		n := 512 * (1 + rng.Int63n(4096))
		off := rng.Int63n(size/512) * 512
		n = min(n, size-off)
		Fill(b[off:off+n], rng.Uint64())
	}
	copy(b[size-512:], "last sector")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}
