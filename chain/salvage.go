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
//
// A loss of the newest layer that its file reports as whole needs no
// resolution; any other costs one resolution per unit (the smallest block
// size of the chain) it spans.
func (c *Chain) MissingRanges() ([]Range, error) {
	var whole, cand []Range
	for li, l := range c.layers {
		d, ok := l.(disk.Damaged)
		if !ok {
			continue
		}
		for _, x := range d.LostBlocks() {
			r := Range{x.Offset, min(x.Length, c.size-x.Offset)}
			if r.Length <= 0 {
				continue
			}
			if li == 0 && x.Whole {
				whole = append(whole, r)
			} else {
				cand = append(cand, r)
			}
		}
	}
	var out []Range
	var runs []Run
	for _, r := range sortedRanges(cand) {
		// In windows, so that a large damaged area needs little memory.
		const window = 256 << 20
		for off := r.Offset; off < r.End(); off += window {
			var err error
			if runs, err = c.Map(off, min(window, r.End()-off), runs[:0]); err != nil {
				return nil, err
			}
			for _, x := range runs {
				if x.Missing {
					out = append(out, Range{x.Offset, x.Length})
				}
			}
		}
	}
	return sortedRanges(append(out, whole...)), nil
}

// sortedRanges sorts rs and merges those that overlap or touch.
func sortedRanges(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Offset, b.Offset) })
	var out []Range
	for _, r := range rs {
		out = addRange(out, r)
	}
	return out
}
