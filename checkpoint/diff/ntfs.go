package diff

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/ntfs"
)

var errNotNTFS = errors.New("not NTFS on both sides")

// ntfs compares two NTFS volumes from the records that can differ. It
// returns an error, having reported nothing, when the method does not
// apply; the caller then walks the trees.
func (v *volPair) ntfs() error {
	na, okA := v.fa.(*ntfs.FS)
	nb, okB := v.fb.(*ntfs.FS)
	if !okA || !okB {
		return errNotNTFS
	}
	if na.RecordSize() != nb.RecordSize() {
		return fmt.Errorf("MFT record size changed from %d to %d", na.RecordSize(), nb.RecordSize())
	}
	rs := nb.RecordSize()
	mftA, mftB := na.MFTExtents(), nb.MFTExtents()

	// 1. Records that can differ: those in changed bytes on either side,
	// those the two MFTs place differently, those only one MFT has.
	var recs Ranges
	addBytes := func(lo, hi int64) { // logical MFT bytes → records
		recs = append(recs, Range{lo / rs, (hi+rs-1)/rs - lo/rs})
	}
	for _, mft := range [][]volume.Extent{mftA, mftB} {
		for _, e := range mft {
			if e.Physical < 0 {
				continue
			}
			for _, c := range v.changed.Clip(e.Physical, e.Length) {
				addBytes(e.Logical+(c.Off-e.Physical), e.Logical+(c.End()-e.Physical))
			}
		}
	}
	for _, r := range placedDifferently(mftA, mftB) {
		addBytes(r.Off, r.End())
	}
	nA, nB := int64(na.RecordCount()), int64(nb.RecordCount())
	if nA != nB {
		recs = append(recs, Range{min(nA, nB), max(nA, nB) - min(nA, nB)})
	}
	recs = normalize(recs)

	// 2. The inodes those records belong to, on either side.
	cand := map[uint64]bool{}
	damaged := map[uint64]error{}
	total := recs.Bytes()
	var done int64
	for _, r := range recs {
		for _, side := range []struct {
			fs *ntfs.FS
			n  int64
		}{{na, nA}, {nb, nB}} {
			lo, hi := r.Off, min(r.End(), side.n)
			if lo >= hi {
				continue
			}
			err := side.fs.ScanRecords(uint64(lo), uint64(hi), func(ri ntfs.RecordInfo) error {
				switch {
				case ri.Err != nil:
					cand[ri.Num] = true
					if damaged[ri.Num] == nil {
						damaged[ri.Num] = ri.Err
					}
				case ri.InUse:
					cand[ri.Inode()] = true
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		done += r.Len
		v.d.progress(Progress{Volume: v.prefB, Phase: "records", Done: done, Total: total})
	}

	// 3. Files whose clusters lie in changed bytes outside the MFT: one
	// scan of the newer MFT (a file whose record is the same on both
	// sides has the same clusters on both).
	var mftPlaces []Range
	for _, e := range mftB {
		if e.Physical >= 0 {
			mftPlaces = append(mftPlaces, Range{e.Physical, e.Length})
		}
	}
	if outside := v.changed.Subtract(mftPlaces); len(outside) > 0 {
		err := nb.ScanRecords(0, uint64(nB), func(ri ntfs.RecordInfo) error {
			if ri.Num%4096 == 0 {
				v.d.progress(Progress{Volume: v.prefB, Phase: "scanning", Done: int64(ri.Num), Total: nB})
			}
			if !ri.InUse || cand[ri.Inode()] {
				return nil
			}
			for _, e := range ri.Extents {
				if outside.Intersects(e.Physical, e.Length) {
					cand[ri.Inode()] = true
					break
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	v.stats.Candidates = len(cand)
	if len(cand) > 1024 && uint64(len(cand)) > uint64(nB)/2 {
		// Most of the volume changed: walking the trees is cheaper than
		// placing every candidate.
		return fmt.Errorf("%d of %d records changed", len(cand), nB)
	}

	// 4. The candidates' paths on both sides, compared in path order.
	// Paths below one already dealt with in full are skipped.
	pathSet := map[string]bool{}
	inos := make([]uint64, 0, len(cand))
	for ino := range cand {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		if ntfs.IsMetafile(ino) {
			continue
		}
		pa, errA := v.a.ntfsPaths(na).Paths(ino)
		pb, errB := v.b.ntfsPaths(nb).Paths(ino)
		for _, p := range append(pa, pb...) {
			pathSet[p] = true
		}
		if len(pa) > 0 || len(pb) > 0 {
			continue
		}
		// No path on either side: a record in use nowhere, or one too
		// damaged to place.
		err := damaged[ino]
		for _, e := range []error{errA, errB} {
			if err == nil && e != nil && !errors.Is(e, volume.ErrNotFound) {
				err = e
			}
		}
		if err != nil {
			v.d.emit(Change{Status: Error, Path: v.prefB, Type: "dir", Err: fmt.Sprintf("MFT record %d (no path found): %v", ino, err)})
		}
	}
	paths := make([]string, 0, len(pathSet))
	for p := range pathSet {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	whole := map[string]bool{}
	for _, p := range paths {
		if underAny(whole, p) {
			continue
		}
		ea, errA := v.a.lookup(p)
		eb, errB := v.b.lookup(p)
		if errA != nil || errB != nil {
			v.fail(p, "", sideErr(errA, errB))
			continue
		}
		if v.compareEntries(ea, eb, p, false) {
			whole[p] = true
		}
	}
	return nil
}

// underAny reports whether p lies strictly below a path of set.
func underAny(set map[string]bool, p string) bool {
	for i := strings.LastIndexByte(p, '/'); i >= 0; i = strings.LastIndexByte(p[:i], '/') {
		if set[p[:i]] {
			return true
		}
	}
	return set[""] && p != ""
}

// normalize sorts and merges ranges.
func normalize(rs Ranges) Ranges {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	var out Ranges
	for _, r := range rs {
		out.add(r.Off, r.Len)
	}
	return out
}

// placedDifferently returns the logical ranges where two extent lists of
// the same stream map to different places.
func placedDifferently(a, b []volume.Extent) Ranges {
	var out Ranges
	i, j := 0, 0
	cur := int64(0)
	for i < len(a) && j < len(b) {
		x, y := a[i], b[j]
		if x.Logical > cur || y.Logical > cur { // a gap: both should be contiguous
			cur = max(x.Logical, y.Logical)
		}
		xe, ye := x.Logical+x.Length, y.Logical+y.Length
		hi := min(xe, ye)
		if hi > cur {
			px, py := x.Physical, y.Physical
			if px >= 0 {
				px += cur - x.Logical
			}
			if py >= 0 {
				py += cur - y.Logical
			}
			if px != py {
				out.add(cur, hi-cur)
			}
			cur = hi
		}
		if xe <= cur {
			i++
		}
		if ye <= cur {
			j++
		}
	}
	return out
}

// ntfsPaths returns the side's NTFS path finder, made on first use.
func (s *side) ntfsPaths(f *ntfs.FS) *ntfs.PathFinder {
	if s.paths == nil {
		s.paths = ntfs.NewPathFinder(f)
	}
	return s.paths
}
