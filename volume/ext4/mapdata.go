package ext4

import (
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

var _ volume.DataMapper = (*File)(nil)

// MapData implements volume.DataMapper: mapped runs lie verbatim on the
// volume, holes and unwritten extents read as zeros. Inline data, and
// blocks the replayed journal holds a newer copy of, are not mappable.
func (fl *File) MapData(off, n int64, dst []volume.Extent) ([]volume.Extent, bool) {
	if fl.inline != nil || off < 0 || n <= 0 || off+n > fl.size {
		return dst, false
	}
	bs := fl.fs.bs
	pos, end := off, off+n
	for pos < end {
		lb := uint64(pos / bs)
		maxN := (uint64(end-1)/uint64(bs) - lb) + 1
		s, err := fl.fs.segment(fl.in, lb, maxN)
		if err != nil {
			return dst, false // ReadAt reports it
		}
		stop := min(end, int64(lb+max(s.n, 1))*bs)
		e := volume.Extent{Logical: pos, Physical: -1, Length: stop - pos}
		if s.mapped {
			if fl.fs.journal.touches(s.pblk, uint64(stop-1)/uint64(bs)-lb+1) {
				return dst, false
			}
			e.Physical = int64(s.pblk)*bs + pos%bs
		}
		if k := len(dst); k > 0 && dst[k-1].Physical >= 0 && e.Physical == dst[k-1].Physical+dst[k-1].Length {
			dst[k-1].Length += e.Length // contiguous with the previous run
		} else {
			dst = append(dst, e)
		}
		pos = stop
	}
	return dst, true
}

// touches reports whether the overlay holds a copy of any of the n blocks
// from blk (false for no overlay).
func (o *overlay) touches(blk, n uint64) bool {
	if o == nil || len(o.sorted) == 0 {
		return false
	}
	i := sort.Search(len(o.sorted), func(i int) bool { return o.sorted[i] >= blk })
	return i < len(o.sorted) && o.sorted[i] < blk+n
}
