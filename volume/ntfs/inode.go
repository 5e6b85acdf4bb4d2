package ntfs

import (
	"errors"
	"fmt"
	"sync"
	"unicode"

	"github.com/ckptfs/ckptfs/volume"
)

// inode is a base MFT record with all its attributes, including those
// stored in extension records.
type inode struct {
	num   uint64
	seq   uint16
	flags uint16
	attrs []*attr

	idxMu sync.Mutex // guards idx
	idx   *dirIndex  // $I30 index, once loaded successfully
}

// maxAttrListSize bounds an $ATTRIBUTE_LIST (real ones are far smaller).
const maxAttrListSize = 4 << 20

// maxExtensionRecords bounds the extension records of one inode.
const maxExtensionRecords = 1 << 16

// inode returns the parsed base record num, from the cache if possible.
func (fs *FS) inode(num uint64) (*inode, error) {
	if n, ok := fs.inodes.Get(num); ok {
		return n, nil
	}
	if num >= fs.nrecords {
		return nil, fmt.Errorf("ntfs: inode %d beyond end of MFT (%d records): %w", num, fs.nrecords, volume.ErrNotFound)
	}
	rec, err := fs.readRecordFrom(fs.mft, num)
	if err != nil {
		return nil, err
	}
	if rec.flags&recInUse == 0 {
		return nil, fmt.Errorf("ntfs: inode %d is not in use: %w", num, volume.ErrNotFound)
	}
	if rec.base&refMask != 0 {
		return nil, fmt.Errorf("ntfs: inode %d is an extension record of %d: %w", num, rec.base&refMask, volume.ErrNotFound)
	}
	attrs, err := fs.resolveAttrs(rec)
	if err != nil {
		return nil, err
	}
	n := &inode{num: num, seq: rec.seq, flags: rec.flags, attrs: attrs}
	fs.inodes.Add(num, n, 1)
	return n, nil
}

// alEntry is one $ATTRIBUTE_LIST entry.
type alEntry struct {
	typ      uint32
	name     string
	startVCN int64
	ref      uint64
	id       uint16
}

func parseAttrList(b []byte) ([]alEntry, error) {
	var out []alEntry
	for off := 0; off < len(b); {
		if len(b)-off < 0x1A {
			if allZero(b[off:]) {
				break
			}
			return nil, corruptf("attribute list entry at %d truncated", off)
		}
		e := alEntry{
			typ:      le32(b[off:]),
			startVCN: int64(le64(b[off+8:])),
			ref:      le64(b[off+0x10:]),
			id:       le16(b[off+0x18:]),
		}
		if e.typ == 0 && le16(b[off+4:]) == 0 {
			break // padding
		}
		size := int(le16(b[off+4:]))
		nameLen, nameOff := int(b[off+6]), int(b[off+7])
		if size < 0x1A || size > len(b)-off {
			return nil, corruptf("attribute list entry at %d has length %d", off, size)
		}
		if nameLen > 0 {
			if nameOff+2*nameLen > size {
				return nil, corruptf("attribute list entry at %d: name out of bounds", off)
			}
			e.name = utf16ToString(utf16le(b[off+nameOff : off+nameOff+2*nameLen]))
		}
		out = append(out, e)
		off += size
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// findListed finds the attribute an attribute-list entry refers to in rec.
func findListed(rec *record, e alEntry) *attr {
	for _, a := range rec.attrs {
		if a.typ == e.typ && a.id == e.id && a.name == e.name {
			return a
		}
	}
	// Tolerate stale instance numbers: match on type, name and start VCN.
	for _, a := range rec.attrs {
		if a.typ == e.typ && a.name == e.name && (a.resident || a.startVCN == e.startVCN) {
			return a
		}
	}
	return nil
}

// attrValue returns the whole value of a single-extent attribute.
func (fs *FS) attrValue(ino uint64, a *attr, limit int64) ([]byte, error) {
	if a.resident {
		return a.value, nil
	}
	s, err := fs.buildStream(ino, []*attr{a})
	if err != nil {
		return nil, err
	}
	if s.compressed() {
		return nil, corruptf("inode %d: attribute 0x%x unexpectedly compressed", ino, a.typ)
	}
	return s.readAll(limit)
}

// resolveAttrs returns all attributes of base record rec, following its
// $ATTRIBUTE_LIST into extension records if it has one.
func (fs *FS) resolveAttrs(rec *record) ([]*attr, error) {
	var list *attr
	for _, a := range rec.attrs {
		if a.typ == atAttributeList {
			list = a
			break
		}
	}
	if list == nil {
		return rec.attrs, nil
	}
	data, err := fs.attrValue(rec.num, list, maxAttrListSize)
	if err != nil {
		return nil, fmt.Errorf("ntfs: inode %d: attribute list: %w", rec.num, err)
	}
	entries, err := parseAttrList(data)
	if err != nil {
		return nil, fmt.Errorf("ntfs: inode %d: %w", rec.num, err)
	}
	recs := map[uint64]*record{rec.num: rec}
	type key struct {
		rec uint64
		id  uint16
	}
	seen := make(map[key]bool, len(entries))
	out := make([]*attr, 0, len(entries)+1)
	out = append(out, list)
	for _, e := range entries {
		rn := e.ref & refMask
		r, ok := recs[rn]
		if !ok {
			if len(recs) > maxExtensionRecords {
				return nil, corruptf("inode %d: too many extension records", rec.num)
			}
			r, err = fs.readRecordFrom(fs.mft, rn)
			if err != nil {
				if errors.Is(err, volume.ErrNotFound) {
					err = fmt.Errorf("%v: %w", err, volume.ErrCorrupt)
				}
				return nil, fmt.Errorf("ntfs: inode %d: extension record %d: %w", rec.num, rn, err)
			}
			if r.flags&recInUse == 0 || r.base&refMask != rec.num {
				return nil, corruptf("inode %d: extension record %d belongs to %d", rec.num, rn, r.base&refMask)
			}
			recs[rn] = r
		}
		a := findListed(r, e)
		if a == nil {
			return nil, corruptf("inode %d: attribute 0x%x (id %d) listed in record %d is missing", rec.num, e.typ, e.id, rn)
		}
		if k := (key{rn, a.id}); !seen[k] {
			seen[k] = true
			if a.typ != atAttributeList {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// find returns all extents of the attributes of type typ named name.
func (n *inode) find(typ uint32, name string) []*attr {
	var out []*attr
	for _, a := range n.attrs {
		if a.typ == typ && a.name == name {
			out = append(out, a)
		}
	}
	return out
}

// first returns the first attribute of type typ, or nil.
func (n *inode) first(typ uint32) *attr {
	for _, a := range n.attrs {
		if a.typ == typ {
			return a
		}
	}
	return nil
}

// dataHeader returns the $DATA extent named name that carries the sizes
// (the resident value or the extent starting at VCN 0), or nil.
func (n *inode) dataHeader(name string) *attr {
	for _, a := range n.attrs {
		if a.typ == atData && a.name == name && (a.resident || a.startVCN == 0) {
			return a
		}
	}
	return nil
}

// stdInfo returns the $STANDARD_INFORMATION value (at least 48 bytes).
func (n *inode) stdInfo() ([]byte, error) {
	a := n.first(atStandardInformation)
	if a == nil || !a.resident || len(a.value) < 0x30 {
		return nil, corruptf("inode %d: missing or short $STANDARD_INFORMATION", n.num)
	}
	return a.value, nil
}

// fileAttributes returns the DOS-style attribute flags, or 0.
func (n *inode) fileAttributes() uint32 {
	if si, err := n.stdInfo(); err == nil {
		return le32(si[0x20:])
	}
	return 0
}

// nlink counts the names of n that are listed (all but DOS-only names).
func (n *inode) nlink() uint32 {
	var c uint32
	for _, a := range n.attrs {
		if a.typ == atFileName && a.resident && len(a.value) >= 0x42 && a.value[0x41] != nsDOS {
			c++
		}
	}
	return max(c, 1)
}

// readUpcase loads $UpCase, falling back to Unicode simple case mapping if
// it is missing or damaged.
func (fs *FS) readUpcase() []uint16 {
	if n, err := fs.inode(recUpCase); err == nil {
		if s, err := fs.openData(n, ""); err == nil && s.size == 2*65536 {
			if b, err := s.readAll(2 * 65536); err == nil {
				return utf16le(b)
			}
		}
	}
	return defaultUpcase()
}

// defaultUpcase returns the shared fallback table (read-only).
var defaultUpcase = sync.OnceValue(func() []uint16 {
	up := make([]uint16, 65536)
	for i := range up {
		up[i] = uint16(i)
		if i < 0xD800 || i >= 0xE000 {
			if r := unicode.ToUpper(rune(i)); r <= 0xFFFF {
				up[i] = uint16(r)
			}
		}
	}
	return up
})

// collate compares two names as the $I30 index orders them: code unit by
// code unit after mapping through $UpCase, a shorter prefix first.
func (fs *FS) collate(a, b []uint16) int {
	up := fs.upcase
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := up[a[i]], up[b[i]]
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return cmpInt(int64(len(a)), int64(len(b)))
}

// collateRaw is collate with b given as little-endian UTF-16 bytes.
func (fs *FS) collateRaw(a []uint16, b []byte) int {
	up := fs.upcase
	nb := len(b) / 2
	for i := 0; i < len(a) && i < nb; i++ {
		x, y := up[a[i]], up[le16(b[2*i:])]
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return cmpInt(int64(len(a)), int64(nb))
}
