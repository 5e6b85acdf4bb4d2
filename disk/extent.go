package disk

import (
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
)

// Source says where the bytes of an extent come from, judged by one file
// alone.
type Source uint8

const (
	// FromParent: this file does not hold these bytes; the parent does.
	// Only differencing files report it.
	FromParent Source = iota
	// Zeros: the bytes read as zeros and hide any parent.
	Zeros
	// Data: the bytes are stored in this file at FileOffset.
	Data
	// Missing: this file should hold the bytes but cannot supply them
	// (a file opened in salvage mode: cut short, a damaged BAT entry, an
	// unreadable region). They hide any parent: its data there is older
	// than what was lost. FileOffset is where the bytes should be, or -1
	// when that is unknown; it must not be read.
	Missing
)

func (s Source) String() string {
	switch s {
	case FromParent:
		return "parent"
	case Zeros:
		return "zero"
	case Missing:
		return "missing"
	}
	return "data"
}

// Extent is a run of the virtual disk as one file sees it.
type Extent struct {
	Offset     int64 // virtual disk offset
	Length     int64
	Source     Source
	FileOffset int64 // where the bytes are in this file, for Source == Data
}

// Damaged is implemented by images opened in salvage mode. LostBlocks
// returns, in order and merged, the virtual ranges of the blocks some of
// whose bytes the file cannot supply, found from the block tables and the
// file's size without reading data (read errors of data blocks are not
// known until the data is read). BlockExtents says which bytes exactly.
type Damaged interface {
	LostBlocks() []Loss
}

// Loss is a range of the virtual disk a damaged file has lost bytes in.
type Loss struct {
	Offset, Length int64
	// Whole: every byte of the range is lost. Otherwise some may still
	// read (a block the end of the file cuts, a partially present block:
	// BlockExtents tells).
	Whole bool
}

// addLoss appends x to ls, merging it with the last loss when they touch
// and are of the same kind.
func addLoss(ls []Loss, x Loss) []Loss {
	if n := len(ls); n > 0 && ls[n-1].Offset+ls[n-1].Length == x.Offset && ls[n-1].Whole == x.Whole {
		ls[n-1].Length += x.Length
		return ls
	}
	return append(ls, x)
}

// BlockExtents appends to dst the extents covering payload block b, in
// order, clipped to the virtual size. Adjacent sectors of the same source
// are merged into one extent. In a file opened in salvage mode, bytes the
// file should hold but cannot supply are Missing.
func (f *File) BlockExtents(b int64, dst []Extent) ([]Extent, error) {
	if b < 0 || b >= f.dataBlocks {
		return dst, fmt.Errorf("%s: payload block %d out of range [0,%d)", f.name, b, f.dataBlocks)
	}
	bs := int64(f.Metadata.BlockSize)
	start := b * bs
	length := min(bs, int64(f.Metadata.VirtualSize)-start)
	if f.isLost(b + b/f.chunkRatio) {
		return append(dst, Extent{start, length, Missing, -1}), nil
	}
	e := f.PayloadEntry(b)
	switch e.State() {
	case BlockFullyPresent:
		return f.clip(append(dst, Extent{start, length, Data, e.FileOffset()}), len(dst)), nil
	case BlockPartiallyPresent:
		n := len(dst)
		dst, err := f.partialExtents(b, e, start, length, dst)
		if err != nil {
			if f.salvage {
				return append(dst[:n], Extent{start, length, Missing, -1}), nil
			}
			return dst, MarkSalvageable(err)
		}
		return f.clip(dst, n), nil
	case BlockNotPresent:
		if f.Metadata.HasParent {
			return append(dst, Extent{start, length, FromParent, 0}), nil
		}
	}
	// ZERO, UNMAPPED, UNDEFINED everywhere; NOT_PRESENT in a base file.
	return append(dst, Extent{start, length, Zeros, 0}), nil
}

// clip turns the Data extents of dst[from:] that lie past the readable
// end of a salvaged file (f.avail, rounded down to a sector) into Missing
// ones.
func (f *File) clip(dst []Extent, from int) []Extent {
	if !f.salvage {
		return dst
	}
	ss := int64(f.Metadata.LogicalSectorSize)
	end := f.avail / ss * ss
	for i := from; i < len(dst); i++ {
		x := &dst[i]
		if x.Source != Data || x.FileOffset+x.Length <= end {
			continue
		}
		if x.FileOffset >= end {
			x.Source = Missing
			continue
		}
		keep := end - x.FileOffset
		rest := Extent{x.Offset + keep, x.Length - keep, Missing, end}
		x.Length = keep
		dst = slices.Insert(dst, i+1, rest)
		i++
	}
	return dst
}

// blockLoss says whether payload block b of a salvaged file may read as
// Missing, from the BAT and the file's size alone, and whether all of it
// does.
func (f *File) blockLoss(b int64) (lost, whole bool) {
	if f.isLost(b + b/f.chunkRatio) {
		return true, true
	}
	bs := int64(f.Metadata.BlockSize)
	length := min(bs, int64(f.Metadata.VirtualSize)-b*bs)
	e := f.PayloadEntry(b)
	switch e.State() {
	case BlockFullyPresent:
		return e.FileOffset()+length > f.avail, e.FileOffset() >= f.avail
	case BlockPartiallyPresent:
		c := b / f.chunkRatio
		sb := f.BitmapEntry(c)
		bmEnd := sb.FileOffset() + (b%f.chunkRatio+1)*f.sectorsPerBl/8
		if f.isLost(c*(f.chunkRatio+1)+f.chunkRatio) || sb.State() != SectorBitmapPresent || bmEnd > f.avail {
			return true, true
		}
		return e.FileOffset()+length > f.avail, false
	}
	return false, false
}

// LostBlocks returns the blocks that may read as Missing in a file opened
// in salvage mode (see Damaged); nil otherwise.
func (f *File) LostBlocks() []Loss {
	if !f.salvage {
		return nil
	}
	bs := int64(f.Metadata.BlockSize)
	var out []Loss
	for b := int64(0); b < f.dataBlocks; b++ {
		if lost, whole := f.blockLoss(b); lost {
			start := b * bs
			out = addLoss(out, Loss{start, min(bs, int64(f.Metadata.VirtualSize)-start), whole})
		}
	}
	return out
}

// partialExtents reads the sector bitmap of a PARTIALLY_PRESENT block: bit
// n set (bit 0 of byte 0 first) means sector n is in this file.
func (f *File) partialExtents(b int64, e BATEntry, start, length int64, dst []Extent) ([]Extent, error) {
	chunk := b / f.chunkRatio
	sb := f.BitmapEntry(chunk)
	if sb.State() != SectorBitmapPresent || f.isLost(chunk*(f.chunkRatio+1)+f.chunkRatio) {
		return dst, f.errorf(fmt.Sprintf("BAT: sector bitmap block %d", chunk), f.batOffset+(chunk*(f.chunkRatio+1)+f.chunkRatio)*8,
			ErrCorrupt, "payload block %d is PARTIALLY_PRESENT but its sector bitmap is not present", b)
	}
	spb := f.sectorsPerBl
	bmOff := sb.FileOffset() + (b%f.chunkRatio)*spb/8
	bm := make([]byte, spb/8)
	if f.salvage && bmOff+spb/8 > f.avail {
		return dst, f.errorf(fmt.Sprintf("sector bitmap block %d", chunk), bmOff, ErrTruncated, "past the end of the file")
	}
	if _, err := f.r.ReadAt(bm, bmOff); err != nil {
		return dst, f.wrap(fmt.Sprintf("sector bitmap block %d", chunk), bmOff, err)
	}
	ss := int64(f.Metadata.LogicalSectorSize)
	sectors := (length + ss - 1) / ss
	emit := func(from, to int64, present bool) {
		if from >= to {
			return
		}
		off, end := start+from*ss, min(start+to*ss, start+length)
		x := Extent{Offset: off, Length: end - off, Source: FromParent}
		if present {
			x.Source, x.FileOffset = Data, e.FileOffset()+from*ss
		}
		dst = append(dst, x)
	}
	runStart, runPresent := int64(0), bm[0]&1 != 0
	for s := int64(0); s < sectors; {
		// Skip whole 64-sector words that continue the current run.
		if s%64 == 0 && s+64 <= sectors {
			w := le.Uint64(bm[s/8:])
			if (runPresent && w == ^uint64(0)) || (!runPresent && w == 0) {
				s += 64
				continue
			}
			var flip uint64
			if runPresent {
				flip = ^w
			} else {
				flip = w
			}
			s += int64(bits.TrailingZeros64(flip))
			emit(runStart, s, runPresent)
			runStart, runPresent = s, !runPresent
			continue
		}
		bit := bm[s/8]>>(s%8)&1 != 0
		if bit != runPresent {
			emit(runStart, s, runPresent)
			runStart, runPresent = s, bit
		}
		s++
	}
	emit(runStart, sectors, runPresent)
	return dst, nil
}

// ReadFileAt reads bytes of the file itself (as replayed from its log) at
// file offset off. It is how callers read the data an Extent points to.
func (f *File) ReadFileAt(p []byte, off int64) (int, error) {
	return f.r.ReadAt(p, off)
}

// FileRange returns the open file from which [off, off+n) of this VHDX
// file, as replayed, can be read unchanged: when Open opened it, the range
// lies within the file on disk and no replayed log entry touches it. It
// returns nil otherwise. Callers may hand the file to the kernel
// (splice(2)) instead of copying its bytes through ReadFileAt; they must
// not write to it or close it.
func (f *File) FileRange(off, n int64) *os.File {
	if f.osFile == nil || off < 0 || n < 0 || off+n > f.fileSize {
		return nil
	}
	switch r := f.r.(type) {
	case *os.File:
		if r != f.osFile {
			return nil
		}
	case *overlay:
		if r.base != io.ReaderAt(f.osFile) || r.touches(off, off+n) {
			return nil
		}
	default:
		return nil
	}
	return f.osFile
}
