package diff

import (
	"fmt"
	"sort"

	"github.com/ckptfs/ckptfs/chain"
)

// Range is the byte range [Off, Off+Len).
type Range struct{ Off, Len int64 }

// End is the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// Ranges is a sorted list of disjoint ranges.
type Ranges []Range

// add appends [off, off+n), merging it with the last range if they touch.
// Callers add in increasing order.
func (rs *Ranges) add(off, n int64) {
	if n <= 0 {
		return
	}
	if k := len(*rs); k > 0 && (*rs)[k-1].End() >= off {
		last := &(*rs)[k-1]
		last.Len = max(last.End(), off+n) - last.Off
		return
	}
	*rs = append(*rs, Range{off, n})
}

// Bytes is the total length of the ranges.
func (rs Ranges) Bytes() int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

// Intersects reports whether [off, off+n) overlaps any range.
func (rs Ranges) Intersects(off, n int64) bool {
	if n <= 0 {
		return false
	}
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End() > off })
	return i < len(rs) && rs[i].Off < off+n
}

// Clip returns the parts of the ranges within [off, off+n).
func (rs Ranges) Clip(off, n int64) Ranges {
	var out Ranges
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End() > off })
	for ; i < len(rs) && rs[i].Off < off+n; i++ {
		lo, hi := max(rs[i].Off, off), min(rs[i].End(), off+n)
		out.add(lo, hi-lo)
	}
	return out
}

// Subtract returns the parts of rs not covered by o (o sorted, possibly
// overlapping).
func (rs Ranges) Subtract(o []Range) Ranges {
	sorted := append([]Range(nil), o...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Off < sorted[j].Off })
	var out Ranges
	j := 0
	for _, r := range rs {
		cur := r.Off
		for j < len(sorted) && sorted[j].End() <= cur {
			j++
		}
		for k := j; k < len(sorted) && sorted[k].Off < r.End() && cur < r.End(); k++ {
			if sorted[k].End() <= cur {
				continue
			}
			if sorted[k].Off > cur {
				out.add(cur, sorted[k].Off-cur)
			}
			cur = max(cur, sorted[k].End())
		}
		if cur < r.End() {
			out.add(cur, r.End()-cur)
		}
	}
	return out
}

// mapWindow is how much of the disks Changed maps at once.
const mapWindow = 256 << 20

// Changed returns the parts of [0, length) where the bytes of disk a read
// from offset offA on and those of disk b read from offB on can differ.
// A part cannot differ when both disks read it from the same layer file at
// the same file offset (layers are shared files), or both read zeros;
// everything else (different layers, data against zeros, a disk ending
// early) is returned, even where the bytes happen to be equal. progress,
// if not nil, is called with the bytes mapped so far.
func Changed(a *chain.Chain, offA int64, b *chain.Chain, offB int64, length int64, progress func(done int64)) (Ranges, error) {
	var out Ranges
	if a == b && offA == offB {
		return out, nil
	}
	var ra, rb []chain.Run
	for pos := int64(0); pos < length; pos += mapWindow {
		w := min(mapWindow, length-pos)
		var err error
		if ra, err = a.Map(offA+pos, w, ra[:0]); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", a.Leaf().Name(), err)
		}
		if rb, err = b.Map(offB+pos, w, rb[:0]); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", b.Leaf().Name(), err)
		}
		cur, end := pos, pos+w
		i, j := 0, 0
		for cur < end {
			if i >= len(ra) || j >= len(rb) {
				out.add(cur, end-cur) // one disk ends here
				break
			}
			x, y := ra[i], rb[j]
			xe, ye := x.End()-offA, y.End()-offB
			hi := min(xe, ye, end)
			if !sameSource(a, x, cur+offA, b, y, cur+offB) {
				out.add(cur, hi-cur)
			}
			cur = hi
			if xe <= cur {
				i++
			}
			if ye <= cur {
				j++
			}
		}
		if progress != nil {
			progress(pos + w)
		}
	}
	return out, nil
}

// sameSource reports whether run x of a at disk offset xo and run y of b
// at yo read the same bytes: the same layer file at the same file offset,
// or zeros in both.
func sameSource(a *chain.Chain, x chain.Run, xo int64, b *chain.Chain, y chain.Run, yo int64) bool {
	if x.Layer < 0 || y.Layer < 0 {
		return x.Layer < 0 && y.Layer < 0
	}
	pa, oka := layerPath(a, x.Layer)
	pb, okb := layerPath(b, y.Layer)
	if !oka || !okb || pa != pb {
		return false
	}
	return x.FileOffset+(xo-x.Offset) == y.FileOffset+(yo-y.Offset)
}

// layerPath is the file of layer i of c. A writable top layer (a chain
// made by WithTop) has no file shared with other chains: false.
func layerPath(c *chain.Chain, i int) (string, bool) {
	top := c.Depth() - len(c.Links)
	if i < top {
		return "", false
	}
	return c.Links[i-top].Path, true
}
