package xfs

import "github.com/ckptfs/ckptfs/volume"

var _ volume.DataMapper = (*File)(nil)

// MapData implements volume.DataMapper: written extents lie verbatim on
// the volume, holes and unwritten extents read as zeros (as read reads
// them).
func (fl *File) MapData(off, n int64, dst []volume.Extent) ([]volume.Extent, bool) {
	if off < 0 || n <= 0 || off+n > fl.size || fl.in.data.format == fmtLocal {
		return dst, false
	}
	f := fl.fs
	bs := f.bs
	pos, end := off, off+n
	for pos < end {
		lb := uint64(pos / bs)
		m, err := f.lookup(&fl.in.data, lb)
		if err != nil {
			return dst, false // ReadAt reports it
		}
		runEnd := m.holeEnd
		if m.mapped {
			runEnd = m.rec.off + m.rec.count
		}
		stop := min(end, int64(min(runEnd, uint64(end/bs)+1))*bs)
		e := volume.Extent{Logical: pos, Physical: -1, Length: stop - pos}
		if m.mapped && !m.rec.unwritten {
			start, _ := f.extentToBlock(m.rec.fsb, m.rec.count)
			e.Physical = int64(start+(lb-m.rec.off))*bs + pos%bs
		}
		dst = append(dst, e)
		pos = stop
	}
	return dst, true
}
