package ntfs

import (
	"fmt"
	"slices"

	"github.com/ckptfs/ckptfs/volume"
)

// This file exposes where things lie on the volume, for tools that compare
// two versions of a volume without reading all of it (ckptfs diff): the
// MFT, single records, and the clusters of each file.

var _ volume.Extenter = (*FS)(nil)

// RecordSize returns the size of one MFT record in bytes.
func (fs *FS) RecordSize() int64 { return fs.recordSize }

// RecordCount returns the number of records the MFT holds.
func (fs *FS) RecordCount() uint64 { return fs.nrecords }

// ClusterSize returns the cluster size in bytes.
func (fs *FS) ClusterSize() int64 { return fs.clusterSize }

// MFTExtents returns where the MFT lies on the volume, in MFT order:
// Logical is the byte offset within $MFT, so record n begins at logical
// offset n×RecordSize().
func (fs *FS) MFTExtents() []volume.Extent { return fs.runExtents(fs.mft.runs) }

// runExtents converts a runlist to byte extents, holes with Physical -1.
func (fs *FS) runExtents(runs []run) []volume.Extent {
	out := make([]volume.Extent, 0, len(runs))
	for _, r := range runs {
		e := volume.Extent{Logical: r.vcn << fs.clusterShift, Physical: -1, Length: r.n << fs.clusterShift}
		if r.lcn >= 0 {
			e.Physical = r.lcn << fs.clusterShift
		}
		out = append(out, e)
	}
	return out
}

// RecordLocations returns where MFT record num is stored on the volume:
// one extent of RecordSize() bytes, or more if the record straddles two
// runs of the MFT. Logical is the offset within the record.
func (fs *FS) RecordLocations(num uint64) ([]volume.Extent, error) {
	if num >= fs.nrecords {
		return nil, fmt.Errorf("ntfs: MFT record %d beyond end of MFT (%d records): %w", num, fs.nrecords, volume.ErrNotFound)
	}
	return slice(fs.MFTExtents(), int64(num)*fs.recordSize, fs.recordSize)
}

// slice returns the part [off, off+n) of a file described by ext, with
// Logical made relative to off. It fails if the part is not fully mapped
// or falls in a hole.
func slice(ext []volume.Extent, off, n int64) ([]volume.Extent, error) {
	var out []volume.Extent
	end := off + n
	covered := int64(0)
	for _, e := range ext {
		lo, hi := max(e.Logical, off), min(e.Logical+e.Length, end)
		if lo >= hi {
			continue
		}
		if e.Physical < 0 {
			return nil, corruptf("MFT bytes %d..%d lie in a hole", lo, hi)
		}
		out = append(out, volume.Extent{Logical: lo - off, Physical: e.Physical + (lo - e.Logical), Length: hi - lo})
		covered += hi - lo
	}
	if covered != n {
		return nil, corruptf("MFT bytes %d..%d not mapped", off, end)
	}
	return out, nil
}

// RecordInfo describes one raw MFT record as it is on disk, without
// following attribute lists.
type RecordInfo struct {
	Num uint64
	// InUse is the record's in-use flag. Records never written are not in
	// use.
	InUse bool
	// Base is the base record of an extension record, 0 for a base record.
	Base uint64
	// Extents are the volume ranges of the clusters the record's
	// non-resident attributes (of every type) map, holes left out. Logical
	// is the offset within the attribute.
	Extents []volume.Extent
	// Err is set when the record is damaged (wrapping volume.ErrCorrupt);
	// the other fields are then zero.
	Err error
}

// Inode returns the inode the record belongs to: Base for an extension
// record, else Num.
func (ri RecordInfo) Inode() uint64 {
	if ri.Base != 0 {
		return ri.Base
	}
	return ri.Num
}

// ReadRecordInfo reads and describes MFT record num. Errors reading the
// device are returned; a damaged record is described with Err set.
func (fs *FS) ReadRecordInfo(num uint64) (RecordInfo, error) {
	if num >= fs.nrecords {
		return RecordInfo{}, fmt.Errorf("ntfs: MFT record %d beyond end of MFT (%d records): %w", num, fs.nrecords, volume.ErrNotFound)
	}
	buf := make([]byte, fs.recordSize)
	if err := fs.mft.fill(buf, int64(num)*fs.recordSize); err != nil {
		return RecordInfo{}, fmt.Errorf("ntfs: MFT record %d: %w", num, err)
	}
	return fs.describeRecord(buf, num), nil
}

// describeRecord parses raw record buf (modifying it).
func (fs *FS) describeRecord(buf []byte, num uint64) RecordInfo {
	ri := RecordInfo{Num: num}
	if le32(buf) == 0 {
		return ri // never used
	}
	rec, err := parseRecord(buf, num, fs.sectorSize)
	if err != nil {
		ri.Err = err
		return ri
	}
	if rec.flags&recInUse == 0 {
		return ri
	}
	ri.InUse = true
	ri.Base = rec.base & refMask
	for _, a := range rec.attrs {
		if a.resident {
			continue
		}
		for _, e := range fs.runExtents(a.runs) {
			if e.Physical >= 0 {
				ri.Extents = append(ri.Extents, e)
			}
		}
	}
	return ri
}

// scanChunk is how much of the MFT ScanRecords reads at once.
const scanChunk = 4 << 20

// ScanRecords calls fn for MFT records first to end-1 in order (end is
// clipped to RecordCount), reading the MFT in large sequential reads. It
// stops at the first error of fn or of a read of the device.
func (fs *FS) ScanRecords(first, end uint64, fn func(RecordInfo) error) error {
	end = min(end, fs.nrecords)
	if first >= end {
		return nil
	}
	per := min(uint64(max(1, scanChunk/fs.recordSize)), end-first)
	buf := make([]byte, int64(per)*fs.recordSize)
	for num := first; num < end; {
		n := min(per, end-num)
		b := buf[:int64(n)*fs.recordSize]
		if err := fs.mft.fill(b, int64(num)*fs.recordSize); err != nil {
			return fmt.Errorf("ntfs: reading MFT records %d..%d: %w", num, num+n-1, err)
		}
		for i := uint64(0); i < n; i++ {
			r := b[int64(i)*fs.recordSize : int64(i+1)*fs.recordSize]
			if err := fn(fs.describeRecord(r, num+i)); err != nil {
				return err
			}
		}
		num += n
	}
	return nil
}

// Name is one name of an inode: a $FILE_NAME attribute.
type Name struct {
	// Parent is the inode of the directory holding the name.
	Parent uint64
	// Name is the name, converted to UTF-8 as ReadDir converts it.
	Name string
}

// Names returns the names of inode ino from its $FILE_NAME attributes,
// Win32 and POSIX ones only (DOS 8.3 aliases are left out, as ReadDir
// leaves them out), each once.
func (fs *FS) Names(ino uint64) ([]Name, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	var out []Name
	for _, a := range n.attrs {
		if a.typ != atFileName || !a.resident {
			continue
		}
		k, ok := parseFileNameKey(a.value)
		if !ok {
			return nil, corruptf("inode %d: bad $FILE_NAME attribute", ino)
		}
		if k.ns == nsDOS {
			continue
		}
		nm := Name{Parent: le64(a.value) & refMask, Name: utf16ToString(k.name())}
		if !slices.Contains(out, nm) {
			out = append(out, nm)
		}
	}
	return out, nil
}

// Extents implements volume.Extenter: where the unnamed $DATA of ino is
// stored, holes with Physical -1. Resident data is reported as the
// location of the MFT record holding it. A directory or a file without
// data has no extents.
func (fs *FS) Extents(ino uint64) ([]volume.Extent, error) {
	return fs.StreamExtents(ino, "")
}

// StreamExtents is Extents for the $DATA stream name ("" is the unnamed
// one).
func (fs *FS) StreamExtents(ino uint64, name string) ([]volume.Extent, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	ext := n.find(atData, name)
	if len(ext) == 0 {
		if name == "" {
			return nil, nil
		}
		return nil, fmt.Errorf("ntfs: inode %d has no stream %q: %w", ino, name, volume.ErrNotFound)
	}
	if ext[0].resident {
		return fs.RecordLocations(ext[0].recNum)
	}
	s, err := fs.buildStream(ino, ext)
	if err != nil {
		return nil, err
	}
	return fs.runExtents(s.runs), nil
}
