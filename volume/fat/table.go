package fat

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

// fatEntry returns the FAT entry of cluster c.
func (f *FS) fatEntry(c uint32) (uint32, error) {
	switch f.bits {
	case 12:
		o := int64(c) + int64(c)/2
		if o+1 >= int64(len(f.fat)) {
			return 0, fmt.Errorf("fat: cluster %d beyond FAT: %w", c, volume.ErrCorrupt)
		}
		v := uint32(binary.LittleEndian.Uint16(f.fat[o:]))
		if c&1 != 0 {
			return v >> 4, nil
		}
		return v & 0xFFF, nil
	case 16:
		o := int64(c) * 2
		if o+2 > int64(len(f.fat)) {
			return 0, fmt.Errorf("fat: cluster %d beyond FAT: %w", c, volume.ErrCorrupt)
		}
		return uint32(binary.LittleEndian.Uint16(f.fat[o:])), nil
	}
	o := int64(c) * 4
	if o+4 > f.fatBytes {
		return 0, fmt.Errorf("fat: cluster %d beyond FAT: %w", c, volume.ErrCorrupt)
	}
	base := o &^ (fatChunk - 1)
	chunk, ok := f.fatCache.Get(base)
	if !ok {
		n := min(int64(fatChunk), f.fatBytes-base)
		chunk = make([]byte, n)
		if err := volume.ReadFull(f.r, chunk, f.fatOff+base); err != nil {
			return 0, fmt.Errorf("fat: reading FAT at %d: %w", f.fatOff+base, err)
		}
		f.fatCache.Add(base, chunk, 1)
	}
	return binary.LittleEndian.Uint32(chunk[o-base:]) & 0x0FFFFFFF, nil
}

func (f *FS) isEOC(v uint32) bool {
	switch f.bits {
	case 12:
		return v >= 0xFF8
	case 16:
		return v >= 0xFFF8
	}
	return v >= 0x0FFFFFF8
}

// clusterRun is a run of contiguous clusters.
type clusterRun struct {
	first uint32
	n     uint32
}

// chain follows the cluster chain from first for at most limit clusters.
// With exact set, a chain shorter than limit is an error.
func (f *FS) chain(first uint32, limit uint32, exact bool) ([]clusterRun, error) {
	key := [2]uint32{first, limit}
	if exact {
		if r, ok := f.runs.Get(key); ok {
			return r, nil
		}
	}
	var runs []clusterRun
	c := first
	var count uint32
	for count < limit {
		if c < 2 || c > f.maxCluster {
			return nil, fmt.Errorf("fat: cluster %d out of range in chain from %d: %w", c, first, volume.ErrCorrupt)
		}
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].n == c {
			runs[n-1].n++
		} else {
			runs = append(runs, clusterRun{c, 1})
		}
		count++
		if count == limit {
			break
		}
		next, err := f.fatEntry(c)
		if err != nil {
			return nil, err
		}
		if f.isEOC(next) {
			if exact {
				return nil, fmt.Errorf("fat: chain from cluster %d ends after %d of %d clusters: %w", first, count, limit, volume.ErrCorrupt)
			}
			break
		}
		c = next
	}
	if err := checkOverlap(runs); err != nil {
		return nil, fmt.Errorf("fat: chain from cluster %d: %w", first, err)
	}
	if exact {
		f.runs.Add(key, runs, len(runs))
	}
	return runs, nil
}

// checkOverlap reports a chain that visits a cluster twice (a loop).
func checkOverlap(runs []clusterRun) error {
	if len(runs) < 2 {
		return nil
	}
	s := append([]clusterRun(nil), runs...)
	sort.Slice(s, func(i, j int) bool { return s[i].first < s[j].first })
	for i := 1; i < len(s); i++ {
		if s[i-1].first+s[i-1].n > s[i].first {
			return fmt.Errorf("cluster %d used twice: %w", s[i].first, volume.ErrCorrupt)
		}
	}
	return nil
}

func (f *FS) clusterOff(c uint32) int64 {
	return f.dataOff + int64(c-2)*f.cluster
}

// readRuns reads the clusters of runs into one buffer, one ReadAt per run.
func (f *FS) readRuns(runs []clusterRun) ([]byte, error) {
	var total int64
	for _, r := range runs {
		total += int64(r.n) * f.cluster
	}
	buf := make([]byte, total)
	pos := int64(0)
	for _, r := range runs {
		n := int64(r.n) * f.cluster
		if err := volume.ReadFull(f.r, buf[pos:pos+n], f.clusterOff(r.first)); err != nil {
			return nil, fmt.Errorf("fat: reading cluster %d: %w", r.first, err)
		}
		pos += n
	}
	return buf, nil
}
