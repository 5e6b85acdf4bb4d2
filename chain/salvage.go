package chain

import (
	"cmp"
	"slices"

	"github.com/ckptfs/ckptfs/disk"
)

// Range is a range of the virtual disk.
type Range struct {
	Offset int64
	Length int64
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Offset + r.Length }

// addRange appends x to rs (sorted, merged), merging it with the last
// range when they touch.
func addRange(rs []Range, x Range) []Range {
	if n := len(rs); n > 0 && rs[n-1].End() >= x.Offset {
		rs[n-1].Length = max(rs[n-1].End(), x.End()) - rs[n-1].Offset
		return rs
	}
	return append(rs, x)
}

// MissingRanges returns, in order and merged, the ranges of the virtual
// disk whose bytes are lost: those a file of the chain opened with
// Options.Salvage should hold but cannot supply (cut short, a damaged BAT
// entry or sector bitmap, an unreadable part of the BAT), where no newer
// layer hides them. It is computed from the files' block tables and sector
// bitmaps without reading data: data blocks whose read fails are found
// only by reading them (ReadAtZeroFilled). It is empty for a chain of
// undamaged files.
func (c *Chain) MissingRanges() ([]Range, error) {
	// Candidates: every layer's lost blocks, then resolved through the
	// chain, since a newer layer may hold those bytes itself.
	var cand []Range
	for _, l := range c.layers {
		d, ok := l.(disk.Damaged)
		if !ok {
			continue
		}
		for _, e := range d.LostBlocks() {
			cand = append(cand, Range{e.Offset, e.Length})
		}
	}
	if len(cand) == 0 {
		return nil, nil
	}
	slices.SortFunc(cand, func(a, b Range) int { return cmp.Compare(a.Offset, b.Offset) })
	var merged []Range
	for _, r := range cand {
		merged = addRange(merged, r)
	}
	var out []Range
	var runs []Run
	for _, r := range merged {
		// In pieces, so that a large damaged area needs little memory.
		const window = 256 << 20
		for off := r.Offset; off < min(r.End(), c.size); off += window {
			var err error
			if runs, err = c.Map(off, min(window, r.End()-off), runs[:0]); err != nil {
				return nil, err
			}
			for _, x := range runs {
				if x.Missing {
					out = addRange(out, Range{x.Offset, x.Length})
				}
			}
		}
	}
	return out, nil
}
