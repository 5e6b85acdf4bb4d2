package vhd

import (
	"fmt"
	"os"
	"slices"

	"github.com/ckptfs/ckptfs/disk"
)

// BlockExtents appends to dst the extents covering block b
// ([b·BlockSize, (b+1)·BlockSize)), in order, adjacent sectors of the same
// source merged. Unlike a VHDX file's, they cover the whole block, also
// past the virtual size, which reads as zeros there: a parent whose
// Current Size is smaller than its child's (see CheckParent) then serves
// the child's last sectors as zeros instead of leaving them unresolved.
// In a file opened in salvage mode, bytes the file should hold but cannot
// supply are disk.Missing.
func (f *File) BlockExtents(b int64, dst []disk.Extent) ([]disk.Extent, error) {
	if b < 0 {
		return dst, fmt.Errorf("%s: block %d out of range", f.name, b)
	}
	bs := f.blockSize
	start, end := b*bs, (b+1)*bs
	size := int64(f.Footer.CurrentSize)
	in := min(end, size) - start // bytes of the block inside the disk
	if in <= 0 {
		return append(dst, disk.Extent{Offset: start, Length: bs, Source: disk.Zeros}), nil
	}
	n := len(dst)
	var err error
	switch e := f.BATEntry(b); {
	case f.Footer.DiskType == TypeFixed:
		dst = append(dst, disk.Extent{Offset: start, Length: in, Source: disk.Data, FileOffset: start})
	case f.isLost(b):
		dst = append(dst, disk.Extent{Offset: start, Length: in, Source: disk.Missing, FileOffset: -1})
	case e == Unallocated && f.Footer.DiskType == TypeDifferencing:
		dst = append(dst, disk.Extent{Offset: start, Length: in, Source: disk.FromParent})
	case e == Unallocated:
		dst = append(dst, disk.Extent{Offset: start, Length: in, Source: disk.Zeros})
	case f.Footer.DiskType == TypeDifferencing:
		dst, err = f.bitmapExtents(b, int64(e)*SectorSize, start, in, dst)
		if err != nil {
			if !f.salvage {
				return dst, disk.MarkSalvageable(err)
			}
			dst = append(dst[:n], disk.Extent{Offset: start, Length: in, Source: disk.Missing, FileOffset: -1})
		}
	default:
		dst = append(dst, disk.Extent{Offset: start, Length: in, Source: disk.Data, FileOffset: int64(e)*SectorSize + f.bitmapSize})
	}
	dst = f.clip(dst, n)
	if in < bs {
		dst = append(dst, disk.Extent{Offset: start + in, Length: bs - in, Source: disk.Zeros})
	}
	return dst, nil
}

// clip turns the Data extents of dst[from:] that lie past the end of a
// salvaged file's data into Missing ones.
func (f *File) clip(dst []disk.Extent, from int) []disk.Extent {
	if !f.salvage {
		return dst
	}
	end := f.dataEnd / SectorSize * SectorSize
	for i := from; i < len(dst); i++ {
		x := &dst[i]
		if x.Source != disk.Data || x.FileOffset+x.Length <= end {
			continue
		}
		if x.FileOffset >= end {
			x.Source = disk.Missing
			continue
		}
		keep := end - x.FileOffset
		rest := disk.Extent{Offset: x.Offset + keep, Length: x.Length - keep, Source: disk.Missing, FileOffset: end}
		x.Length = keep
		dst = slices.Insert(dst, i+1, rest)
		i++
	}
	return dst
}

// LostBlocks returns the blocks that may read as disk.Missing in a file
// opened in salvage mode (see disk.Damaged); nil otherwise. Blocks whose
// BAT entries lie past the end of the file are one loss, however many.
func (f *File) LostBlocks() []disk.Loss {
	if !f.salvage {
		return nil
	}
	size := int64(f.Footer.CurrentSize)
	var out []disk.Loss
	add := func(start, end int64, whole bool) {
		if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == start && out[n-1].Whole == whole {
			out[n-1].Length += end - start
			return
		}
		out = append(out, disk.Loss{Offset: start, Length: end - start, Whole: whole})
	}
	if f.Footer.DiskType == TypeFixed {
		if end := f.dataEnd / SectorSize * SectorSize; size > end {
			add(end, size, true)
		}
		return out
	}
	known := min(f.blocks, f.batKnown)
	for b := int64(0); b < known; b++ {
		start := b * f.blockSize
		length := min(f.blockSize, size-start)
		e := f.BATEntry(b)
		switch {
		case f.isLost(b):
			add(start, start+length, true)
		case e != Unallocated && int64(e)*SectorSize+f.bitmapSize+length > f.dataEnd:
			// Whole when what decides the block is past the end: a
			// differencing block's bitmap, a dynamic block's data.
			off := int64(e) * SectorSize
			whole := off+f.bitmapSize >= f.dataEnd/SectorSize*SectorSize
			if f.Footer.DiskType == TypeDifferencing {
				whole = off+(length/SectorSize+7)/8 > f.dataEnd
			}
			add(start, start+length, whole)
		}
	}
	if known < f.blocks {
		add(known*f.blockSize, size, true)
	}
	return out
}

// readBitmap reads the sector bitmap bytes of the first length bytes of
// the block at file offset blockOff.
func (f *File) readBitmap(b, blockOff, length int64) ([]byte, error) {
	bm := make([]byte, (length/SectorSize+7)/8)
	if f.salvage && blockOff+int64(len(bm)) > f.dataEnd {
		return nil, f.errorf(fmt.Sprintf("sector bitmap of block %d", b), blockOff, disk.ErrTruncated, "past the end of the data at %d", f.dataEnd)
	}
	if _, err := f.r.ReadAt(bm, blockOff); err != nil {
		return nil, f.wrap(fmt.Sprintf("sector bitmap of block %d", b), blockOff, err)
	}
	return bm, nil
}

// bitmapExtents splits an allocated block of a differencing file by its
// sector bitmap: bit 1 (bit 7 of byte 0 first) means the sector is in this
// file, 0 that the parent holds it.
func (f *File) bitmapExtents(b, blockOff, start, length int64, dst []disk.Extent) ([]disk.Extent, error) {
	bm, err := f.readBitmap(b, blockOff, length)
	if err != nil {
		return dst, err
	}
	data := blockOff + f.bitmapSize
	sectors := length / SectorSize
	emit := func(from, to int64, present bool) {
		x := disk.Extent{Offset: start + from*SectorSize, Length: (to - from) * SectorSize, Source: disk.FromParent}
		if present {
			x.Source, x.FileOffset = disk.Data, data+from*SectorSize
		}
		dst = append(dst, x)
	}
	runStart, runPresent := int64(0), bm[0]&0x80 != 0
	for s := int64(0); s < sectors; {
		// Whole bytes that continue the run.
		if s%8 == 0 && s+8 <= sectors {
			if c := bm[s/8]; (runPresent && c == 0xff) || (!runPresent && c == 0) {
				s += 8
				continue
			}
		}
		if bit := bm[s/8]>>(7-s%8)&1 != 0; bit != runPresent {
			emit(runStart, s, runPresent)
			runStart, runPresent = s, bit
		}
		s++
	}
	emit(runStart, sectors, runPresent)
	return dst, nil
}

// ReadFileAt reads bytes of the file itself at file offset off: where an
// Extent's FileOffset points.
func (f *File) ReadFileAt(p []byte, off int64) (int, error) { return f.r.ReadAt(p, off) }

// FileRange returns the open file when Open opened it and [off, off+n)
// lies within it, else nil. Callers may splice from it; they must not
// write to it or close it.
func (f *File) FileRange(off, n int64) *os.File {
	if f.osFile == nil || off < 0 || n < 0 || off+n > f.fileSize {
		return nil
	}
	return f.osFile
}

// AllocatedBlocks counts the blocks of the virtual disk the BAT allocates
// (all of them for a fixed disk).
func (f *File) AllocatedBlocks() int64 {
	if f.Footer.DiskType == TypeFixed {
		return f.blocks
	}
	var n int64
	for b := int64(0); b < min(f.blocks, int64(len(f.bat))); b++ {
		if f.bat[b] != Unallocated {
			n++
		}
	}
	return n
}

// OwnBytes is the size of the blocks this file holds.
func (f *File) OwnBytes() int64 {
	if f.Footer.DiskType == TypeFixed {
		return f.VirtualSize()
	}
	return f.AllocatedBlocks() * f.blockSize
}

// BlockStates counts the blocks of the virtual disk by what their BAT
// entry and sector bitmap say: "not allocated", and for allocated blocks
// "allocated, bitmap full" (every sector's bit set), "allocated, bitmap
// partial" and "allocated, bitmap empty". For a fixed disk every block is
// "fixed". It reads every allocated block's bitmap. A file opened in
// salvage mode counts blocks it cannot read as "damaged".
func (f *File) BlockStates() (map[string]int64, error) {
	out := map[string]int64{}
	if f.Footer.DiskType == TypeFixed {
		out["fixed"] = f.blocks
		return out, nil
	}
	size := int64(f.Footer.CurrentSize)
	known := min(f.blocks, f.batKnown)
	if known < f.blocks {
		out["damaged"] += f.blocks - known // entries past the end of the file
	}
	for b := int64(0); b < known; b++ {
		e := f.BATEntry(b)
		if f.isLost(b) {
			out["damaged"]++
			continue
		}
		if e == Unallocated {
			out["not allocated"]++
			continue
		}
		length := min(f.blockSize, size-b*f.blockSize)
		bm, err := f.readBitmap(b, int64(e)*SectorSize, length)
		if err != nil {
			if f.salvage {
				out["damaged"]++
				continue
			}
			return nil, err
		}
		set := int64(0)
		for s := int64(0); s < length/SectorSize; s++ {
			set += int64(bm[s/8] >> (7 - s%8) & 1)
		}
		switch set {
		case length / SectorSize:
			out["allocated, bitmap full"]++
		case 0:
			out["allocated, bitmap empty"]++
		default:
			out["allocated, bitmap partial"]++
		}
	}
	return out, nil
}
