package ntfs

import "github.com/ckptfs/ckptfs/volume"

var _ volume.DataMapper = (*stream)(nil)

// MapData implements volume.DataMapper for uncompressed non-resident
// streams: their runs place the bytes verbatim on the volume, sparse runs
// and bytes past the initialized size read as zeros (as fill reads them).
func (s *stream) MapData(off, n int64, dst []volume.Extent) ([]volume.Extent, bool) {
	if s.resident || s.cuShift != 0 || off < 0 || n <= 0 || off+n > s.size {
		return dst, false
	}
	shift := s.fs.clusterShift
	end := off + n
	for off < end {
		if off >= s.initSize {
			return append(dst, volume.Extent{Logical: off, Physical: -1, Length: end - off}), true
		}
		i := s.findRun(off >> shift)
		if i >= len(s.runs) || s.runs[i].vcn > off>>shift {
			return dst, false // not mapped by the runlist: fill reports it
		}
		r := s.runs[i]
		chunk := min(end, s.initSize, (r.vcn+r.n)<<shift) - off
		e := volume.Extent{Logical: off, Physical: -1, Length: chunk}
		if r.lcn >= 0 {
			e.Physical = r.lcn<<shift + off - r.vcn<<shift
		}
		dst = append(dst, e)
		off += chunk
	}
	return dst, true
}
