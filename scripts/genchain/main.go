// Command genchain writes a VHDX base and a chain of AVHDX differencing
// layers for benchmarks and manual tests, named as Hyper-V names them
// (Disk.vhdx, Disk_<GUID>.avhdx), all in one folder. It prints the leaf's
// path. With -format vhd it writes a VHD base and AVHD layers (Disk.vhd,
// Disk_<GUID>.avhd, as Hyper-V 2008 R2), every write 4 KiB aligned so that
// libvhdi's bitmap bug does not show (see docs: field facts).
//
//	genchain -out DIR -size 1G -layers 3 -mode partial
//	genchain -format vhd -base-block 2M -out DIR -size 1G -layers 64
//
// Modes (what each child layer writes; the base is filled with -fill):
//
//	partial  every block of every child is PARTIALLY_PRESENT: child i
//	         (1..N-1) owns chunk i of every N chunks of -chunk bytes, the
//	         base the rest, so reads alternate between all layers
//	scatter  each child writes a few random extents (partial and whole
//	         blocks) adding up to about -frac of the disk
//	sparse   each child writes a few small extents (for huge disks)
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/units"
)

func main() {
	out := flag.String("out", ".", "folder to write into (created)")
	name := flag.String("name", "Disk", "base name")
	sizeS := flag.String("size", "1G", "virtual size (K, M, G, T suffixes)")
	layers := flag.Int("layers", 1, "number of files including the base")
	mode := flag.String("mode", "scatter", "what children write: partial, scatter or sparse")
	fill := flag.String("fill", "full", "what the base holds: full (random data everywhere) or sparse (a few extents)")
	baseBlockS := flag.String("base-block", "32M", "block size of the base")
	childBlockS := flag.String("child-block", "2M", "block size of the children")
	chunkS := flag.String("chunk", "64K", "partial mode: bytes each layer owns in turn")
	frac := flag.Float64("frac", 1.0/64, "scatter mode: fraction of the disk each child writes")
	seed := flag.Int64("seed", 1, "random seed")
	format := flag.String("format", "vhdx", "vhdx or vhd")
	flag.Parse()

	size, baseBlock, childBlock, chunk := must(units.ParseSize(*sizeS)), must(units.ParseSize(*baseBlockS)), must(units.ParseSize(*childBlockS)), must(units.ParseSize(*chunkS))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	rng := rand.New(rand.NewSource(*seed))
	var f layerFormat
	switch *format {
	case "vhdx":
		f = vhdxFormat{}
	case "vhd":
		f = vhdFormat{}
	default:
		fatal(fmt.Errorf("unknown -format %q", *format))
	}
	align := f.align()

	base := f.newBase(size, uint32(baseBlock))
	switch *fill {
	case "full":
		buf := make([]byte, 8<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			n := min(int64(len(buf)), size-off)
			rng.Read(buf[:n])
			base.Write(off, buf[:n])
		}
	case "sparse":
		writeRandom(base, rng, size, 16, 1<<20, align)
	default:
		fatal(fmt.Errorf("unknown -fill %q", *fill))
	}
	parentPath := filepath.Join(*out, *name+f.ext(false))
	save(base, parentPath)
	parent := base.standIn()
	leaf := parentPath

	for i := 1; i < *layers; i++ {
		im := f.newChild(parent, parentPath, uint32(childBlock))
		switch *mode {
		case "partial":
			stride := chunk * int64(*layers)
			buf := make([]byte, chunk)
			for off := int64(i) * chunk; off < size; off += stride {
				n := min(chunk, size-off)
				rng.Read(buf[:n])
				im.Write(off, buf[:n])
			}
		case "scatter":
			writeRandom(im, rng, size, 8, max(int64(float64(size)**frac)/8/align*align, align), align)
		case "sparse":
			writeRandom(im, rng, size, 4, 256<<10, align)
		default:
			fatal(fmt.Errorf("unknown -mode %q", *mode))
		}
		g := disk.NewGUID()
		p := filepath.Join(*out, fmt.Sprintf("%s_%s%s", *name, strings.ToUpper(g.String()), f.ext(true)))
		save(im, p)
		parent, parentPath, leaf = im.standIn(), p, p
	}
	fmt.Println(leaf)
}

// layer is one file being generated, of either format.
type layer interface {
	Write(off int64, p []byte)
	Save(path string) error
	// standIn is a data-less model with the layer's identity, enough to
	// be a parent: it lets the written layer's data be freed.
	standIn() layer
}

// layerFormat makes layers of one format.
type layerFormat interface {
	newBase(size int64, block uint32) layer
	newChild(parent layer, parentPath string, block uint32) layer
	ext(child bool) string
	align() int64 // write granularity
}

type vhdxLayer struct{ *vhdxtest.Image }

func (l vhdxLayer) standIn() layer {
	o := l.Options()
	s := vhdxtest.New(vhdxtest.Options{VirtualSize: o.VirtualSize, SectorSize: o.SectorSize})
	s.DataWriteGUID, s.VirtualDiskID = l.DataWriteGUID, l.VirtualDiskID
	return vhdxLayer{s}
}

type vhdxFormat struct{}

func (vhdxFormat) newBase(size int64, block uint32) layer {
	return vhdxLayer{vhdxtest.New(vhdxtest.Options{VirtualSize: size, BlockSize: block})}
}

func (vhdxFormat) newChild(parent layer, parentPath string, block uint32) layer {
	return vhdxLayer{vhdxtest.New(vhdxtest.Options{Parent: parent.(vhdxLayer).Image, ParentPath: parentPath, BlockSize: block})}
}

func (vhdxFormat) ext(child bool) string {
	if child {
		return ".avhdx"
	}
	return ".vhdx"
}

func (vhdxFormat) align() int64 { return 512 }

type vhdLayer struct{ *vhdtest.Image }

func (l vhdLayer) standIn() layer {
	s := vhdtest.New(vhdtest.Options{VirtualSize: l.Options().VirtualSize})
	s.UniqueID, s.TimeStamp = l.UniqueID, l.TimeStamp
	return vhdLayer{s}
}

type vhdFormat struct{}

func (vhdFormat) newBase(size int64, block uint32) layer {
	return vhdLayer{vhdtest.New(vhdtest.Options{VirtualSize: size, BlockSize: block})}
}

func (vhdFormat) newChild(parent layer, parentPath string, block uint32) layer {
	return vhdLayer{vhdtest.New(vhdtest.Options{Parent: parent.(vhdLayer).Image, ParentPath: parentPath, BlockSize: block})}
}

func (vhdFormat) ext(child bool) string {
	if child {
		return ".avhd"
	}
	return ".vhd"
}

func (vhdFormat) align() int64 { return 4096 }

// writeRandom writes n extents of up to maxLen random bytes at random
// offsets, all multiples of align.
func writeRandom(im layer, rng *rand.Rand, size int64, n int, maxLen, align int64) {
	for w := 0; w < n; w++ {
		l := (1 + rng.Int63n(max(maxLen/align, 1))) * align
		l = min(l, size)
		off := rng.Int63n((size-l)/align+1) * align
		b := make([]byte, l)
		rng.Read(b)
		im.Write(off, b)
	}
}

func save(im layer, path string) {
	os.Remove(path)
	if err := im.Save(path); err != nil {
		fatal(err)
	}
}

func must(n int64, err error) int64 {
	if err != nil {
		fatal(err)
	}
	return n
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "genchain:", err)
	os.Exit(1)
}
