package fat

import (
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

var _ volume.DataMapper = (*File)(nil)

// MapData implements volume.DataMapper: a file's clusters lie verbatim on
// the volume, run by run.
func (fl *File) MapData(off, n int64, dst []volume.Extent) ([]volume.Extent, bool) {
	if off < 0 || n <= 0 || off+n > fl.size {
		return dst, false
	}
	i := sort.Search(len(fl.runs), func(i int) bool { return fl.runs[i].off+fl.runs[i].n > off })
	for end := off + n; off < end; i++ {
		if i >= len(fl.runs) {
			return dst, false // the chain ends early: ReadAt reports it
		}
		r := fl.runs[i]
		d := off - r.off
		m := min(end-off, r.n-d)
		dst = append(dst, volume.Extent{Logical: off, Physical: r.disk + d, Length: m})
		off += m
	}
	return dst, true
}
