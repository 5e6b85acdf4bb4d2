package chain

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"

	"github.com/ckptfs/ckptfs/disk"
)

// Layer is what the resolver needs of one file of a chain. Every
// disk.Image (a VHDX or VHD file) implements it; so does a writable layer.
type Layer interface {
	Name() string
	BlockSize() int64
	BlockExtents(b int64, dst []disk.Extent) ([]disk.Extent, error)
	ReadFileAt(p []byte, off int64) (int, error)
}

// Chain is the virtual disk at one point of a chain. It is an io.ReaderAt
// safe for concurrent use.
type Chain struct {
	Links   []Link // leaf first, base last
	layers  []Layer
	size    int64
	unit    int64 // resolution granularity: the smallest block size
	cache   *runCache
	salvage bool // opened with Options.Salvage
}

// Open finds the chain ending at the file leaf and returns a reader of the
// virtual disk at that point.
func Open(leaf string, opts Options) (*Chain, error) {
	links, err := locate(leaf, opts)
	if err != nil {
		return nil, err
	}
	return newChain(links, nil, opts.Salvage), nil
}

func newChain(links []Link, top Layer, salvage bool) *Chain {
	c := &Chain{Links: links, size: links[0].File.VirtualSize(), salvage: salvage}
	if top != nil {
		c.layers = append(c.layers, top)
	}
	for _, l := range links {
		c.layers = append(c.layers, l.File)
	}
	c.unit = c.layers[0].BlockSize()
	for _, l := range c.layers {
		c.unit = min(c.unit, l.BlockSize())
	}
	c.cache = newRunCache(cacheUnits(c.unit))
	return c
}

// WithTop returns a chain that reads layer top first, then c's files: the
// view through a writable layer created on top of c. Call Invalidate after
// writing to top.
func (c *Chain) WithTop(top Layer) *Chain { return newChain(c.Links, top, c.salvage) }

// Point returns the chain at the i-th link (0 is c itself, len-1 the base),
// sharing c's open files.
func (c *Chain) Point(i int) *Chain { return newChain(c.Links[i:], nil, c.salvage) }

// Size is the virtual disk size in bytes.
func (c *Chain) Size() int64 { return c.size }

// Depth is the number of layers.
func (c *Chain) Depth() int { return len(c.layers) }

// Leaf is the newest file of the chain.
func (c *Chain) Leaf() disk.Image { return c.Links[0].File }

// Base is the oldest file of the chain.
func (c *Chain) Base() disk.Image { return c.Links[len(c.Links)-1].File }

// LayerName names layer i (0 = leaf).
func (c *Chain) LayerName(i int) string { return c.layers[i].Name() }

// Close closes the chain's files. Chains sharing a FileSet should close the
// set instead.
func (c *Chain) Close() error {
	var first error
	for _, l := range c.Links {
		if err := l.File.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Run is a range of the virtual disk and the layer that holds it.
type Run struct {
	Offset     int64
	Length     int64
	Layer      int   // index into the chain's layers (0 = leaf); -1 for zeros
	FileOffset int64 // where the bytes are in that layer's file
	// Missing: layer Layer should hold these bytes but has lost them
	// (a damaged file opened in salvage mode; see disk.Missing). Reading
	// them fails with disk.ErrMissingData. FileOffset is then far below
	// zero, so that no comparison of file offsets takes lost bytes for
	// data.
	Missing bool
}

// missingFileOffset is the FileOffset of Missing runs: offsets derived
// from it (adding a distance within the disk) stay far below zero.
const missingFileOffset = math.MinInt64 / 2

// End is the virtual offset just past the run.
func (r Run) End() int64 { return r.Offset + r.Length }

// resolveUnit walks the layers once for resolution unit u and returns its
// runs, merged where adjacent runs continue each other.
func (c *Chain) resolveUnit(u int64) ([]Run, error) {
	start := u * c.unit
	end := min(start+c.unit, c.size)
	pending := []Run{{Offset: start, Length: end - start, Layer: -1}}
	var runs []Run
	var ext []disk.Extent
	for li, l := range c.layers {
		if len(pending) == 0 {
			break
		}
		bs := l.BlockSize()
		var next []Run
		// pending is sorted; walk it against the layer's extents with two
		// cursors, fetching each layer block's extents once. A unit never
		// spans two blocks of a layer (block sizes are powers of two no
		// smaller than the unit), but pieces of it share one block.
		block, j := int64(-1), 0
		for _, p := range pending {
			if b := p.Offset / bs; b != block {
				var err error
				if ext, err = l.BlockExtents(b, ext[:0]); err != nil {
					return nil, err
				}
				block, j = b, 0
			}
			for j < len(ext) && ext[j].Offset+ext[j].Length <= p.Offset {
				j++
			}
			for k := j; k < len(ext) && ext[k].Offset < p.End(); k++ {
				e := ext[k]
				lo, hi := max(e.Offset, p.Offset), min(e.Offset+e.Length, p.End())
				switch e.Source {
				case disk.Data:
					runs = append(runs, Run{lo, hi - lo, li, e.FileOffset + (lo - e.Offset), false})
				case disk.Zeros:
					runs = append(runs, Run{lo, hi - lo, -1, 0, false})
				case disk.FromParent:
					next = append(next, Run{lo, hi - lo, -1, 0, false})
				case disk.Missing:
					// What this layer held is lost; the layers below
					// hold older data, which it hid: never read them.
					runs = append(runs, Run{lo, hi - lo, li, missingFileOffset + lo, true})
				}
			}
		}
		pending = next
	}
	runs = append(runs, pending...) // nobody holds these: zeros
	sortRuns(runs)
	return mergeRuns(runs), nil
}

func sortRuns(r []Run) {
	slices.SortFunc(r, func(a, b Run) int { return cmp.Compare(a.Offset, b.Offset) })
}

// mergeRuns joins runs that continue each other in the same layer (and
// file offset) or are both zeros.
func mergeRuns(r []Run) []Run {
	out := r[:0]
	for _, x := range r {
		if n := len(out); n > 0 && continues(out[n-1], x) {
			out[n-1].Length += x.Length
			continue
		}
		out = append(out, x)
	}
	return out
}

// continues reports whether x continues p: adjacent, from the same place.
func continues(p, x Run) bool {
	return p.End() == x.Offset && p.Layer == x.Layer && p.Missing == x.Missing &&
		(x.Layer < 0 || p.FileOffset+p.Length == x.FileOffset)
}

// unitRuns returns the cached runs of unit u, resolving on a miss.
func (c *Chain) unitRuns(u int64) ([]Run, error) {
	if r, ok := c.cache.get(u); ok {
		return r, nil
	}
	gen := c.cache.gen.Load()
	r, err := c.resolveUnit(u)
	if err != nil {
		return nil, err
	}
	c.cache.put(u, r, gen)
	return r, nil
}

// Map appends to dst the runs covering [off, off+length), clipped to the
// disk, adjacent runs from the same place merged.
func (c *Chain) Map(off, length int64, dst []Run) ([]Run, error) {
	if off < 0 || length < 0 {
		return dst, fmt.Errorf("chain: invalid range %d+%d", off, length)
	}
	end := min(off+length, c.size)
	first := len(dst)
	for u := off / c.unit; u*c.unit < end; u++ {
		runs, err := c.unitRuns(u)
		if err != nil {
			return dst, err
		}
		for _, r := range runs {
			lo, hi := max(r.Offset, off), min(r.End(), end)
			if lo >= hi {
				continue
			}
			x := Run{lo, hi - lo, r.Layer, r.FileOffset + (lo - r.Offset), r.Missing}
			if r.Layer < 0 {
				x.FileOffset = 0
			}
			if n := len(dst); n > first && continues(dst[n-1], x) {
				dst[n-1].Length += x.Length
				continue
			}
			dst = append(dst, x)
		}
	}
	return dst, nil
}

var runPool = sync.Pool{New: func() any { s := make([]Run, 0, 16); return &s }}

// ReadAt reads the virtual disk. Each run of the range costs one ReadAt of
// the layer holding it. Bytes a damaged file has lost (see
// Options.Salvage) fail the read with an error wrapping
// disk.ErrMissingData; so does, in a chain opened with Options.Salvage, a
// read the operating system fails. n is then the number of bytes read
// before them. Without Options.Salvage, a failed read of a file's data
// matches disk.ErrSalvageable.
func (c *Chain) ReadAt(p []byte, off int64) (int, error) {
	return c.read(p, off, nil)
}

// ReadAtZeroFilled reads like ReadAt, but bytes a damaged file has lost,
// and in a chain opened with Options.Salvage bytes whose read fails, read
// as zeros and are appended to missing (merged, in order). It is the read
// for an export that must go on past damage and list it.
func (c *Chain) ReadAtZeroFilled(p []byte, off int64, missing []Range) (int, []Range, error) {
	if missing == nil {
		missing = []Range{}
	}
	n, err := c.read(p, off, &missing)
	return n, missing, err
}

// read is ReadAt, or ReadAtZeroFilled when missing is not nil.
func (c *Chain) read(p []byte, off int64, missing *[]Range) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("chain: negative offset %d", off)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	var eof error
	if rem := c.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	rp := runPool.Get().(*[]Run)
	defer runPool.Put(rp)
	runs, err := c.Map(off, int64(len(p)), (*rp)[:0])
	*rp = runs
	if err != nil {
		return 0, err
	}
	for _, r := range runs {
		b := p[r.Offset-off : r.End()-off]
		if r.Layer < 0 {
			clear(b)
			continue
		}
		if r.Missing {
			if missing == nil {
				return int(r.Offset - off), fmt.Errorf("%s: bytes %d to %d of the virtual disk: %w", c.layers[r.Layer].Name(), r.Offset, r.End()-1, disk.ErrMissingData)
			}
			clear(b)
			*missing = addRange(*missing, Range{r.Offset, r.Length})
			continue
		}
		n, err := c.layers[r.Layer].ReadFileAt(b, r.FileOffset)
		if err == nil || err == io.EOF && n == len(b) {
			continue
		}
		err = fmt.Errorf("%s: reading %d bytes at file offset %d: %w", c.layers[r.Layer].Name(), len(b), r.FileOffset, err)
		if !c.salvage {
			return 0, disk.MarkSalvageable(err)
		}
		if n, err := c.readPieces(r, b, missing); err != nil {
			return int(r.Offset-off) + n, err
		}
	}
	return len(p), eof
}

// salvagePiece is the granularity at which a salvage read narrows down a
// failing read: what fails reads as missing, the rest is served.
const salvagePiece = 4096

// readPieces reads run r into b again in salvagePiece pieces of the
// virtual disk, after the whole read failed. Without missing, it returns
// how many bytes of b read before the first piece that fails and an error
// wrapping disk.ErrMissingData and the read's error; with missing, the
// failing pieces read as zeros and are added to it.
func (c *Chain) readPieces(r Run, b []byte, missing *[]Range) (int, error) {
	for lo := int64(0); lo < r.Length; {
		hi := min(r.Length, (r.Offset+lo)/salvagePiece*salvagePiece+salvagePiece-r.Offset)
		n, err := c.layers[r.Layer].ReadFileAt(b[lo:hi], r.FileOffset+lo)
		if err != nil && !(err == io.EOF && int64(n) == hi-lo) {
			if missing == nil {
				return int(lo), fmt.Errorf("%s: reading %d bytes at file offset %d: %w (%w)", c.layers[r.Layer].Name(), hi-lo, r.FileOffset+lo, err, disk.ErrMissingData)
			}
			clear(b[lo:hi])
			*missing = addRange(*missing, Range{r.Offset + lo, hi - lo})
		}
		lo = hi
	}
	return 0, nil
}

// Invalidate forgets cached resolutions of [off, off+length), after a
// write to a writable top layer.
func (c *Chain) Invalidate(off, length int64) {
	for u := off / c.unit; u*c.unit < off+length; u++ {
		c.cache.drop(u)
	}
}

// fileRanger is implemented by layers whose bytes can be read straight
// from an open file (every disk.Image).
type fileRanger interface {
	FileRange(off, n int64) *os.File
}

// Piece is a part of a range of the disk as it lies on disk: Length bytes
// of File at Offset, or Length zero bytes when File is nil.
type Piece struct {
	File   *os.File
	Offset int64
	Length int64
}

// Pieces appends to dst, in order, where the bytes of [off, off+n) lie:
// each in one open layer file, or zeros. The bytes can then be handed to
// the kernel (splice) without being copied through memory. It reports
// false, and dst unchanged, when a part can only be read through ReadAt
// (a block touched by a replayed log, or a layer that is not a plain
// file, such as a writable one) or the range is not within the disk.
func (c *Chain) Pieces(off, n int64, dst []Piece) ([]Piece, bool) {
	if off < 0 || n <= 0 || off+n > c.size {
		return dst, false
	}
	rp := runPool.Get().(*[]Run)
	defer runPool.Put(rp)
	runs, err := c.Map(off, n, (*rp)[:0])
	*rp = runs
	if err != nil {
		return dst, false
	}
	out := dst
	for _, r := range runs {
		if r.Missing {
			return dst, false // ReadAt says what is lost
		}
		if r.Layer < 0 {
			out = append(out, Piece{Length: r.Length})
			continue
		}
		fr, ok := c.layers[r.Layer].(fileRanger)
		if !ok {
			return dst, false
		}
		f := fr.FileRange(r.FileOffset, r.Length)
		if f == nil {
			return dst, false
		}
		out = append(out, Piece{File: f, Offset: r.FileOffset, Length: r.Length})
	}
	return out, true
}
