package xfs

import (
	"bytes"
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

// Extended attribute constants.
const (
	attrLeafMagic  = 0xFBEE
	attr3LeafMagic = 0x3BEE
	attrRmtMagic   = 0x5841524D // "XARM": v5 remote value block header
	attrRmtHdr     = 56
	attrRmtCRCOff  = 12
	attrLeafHdrV4  = 32
	attrLeafHdrV5  = 80

	attrLocal      = 0x01
	attrRoot       = 0x02
	attrSecure     = 0x04
	attrParent     = 0x08
	attrIncomplete = 0x80
	attrNamespaces = attrRoot | attrSecure | attrParent

	maxAttrValue  = 64 << 10 // XATTR_SIZE_MAX
	maxAttrBlocks = 1 << 20  // attribute leaves followed
)

// attrEnt is one user.* attribute: its value is local, or stored in
// remote blocks from valueBlk of the attribute fork.
type attrEnt struct {
	name     string
	local    []byte
	remote   bool
	valueBlk uint64
	valueLen int
}

// userAttrs calls fn for every user.* attribute of in until fn returns
// true.
func (f *FS) userAttrs(in *inode, fn func(attrEnt) bool) error {
	if !in.hasAttr {
		return nil
	}
	fk := &in.attr
	if fk.format == fmtLocal {
		return f.shortFormAttrs(in, fn)
	}
	if fk.format == fmtExtents && fk.nextents == 0 {
		return nil
	}
	br := &blockReader{f: f, fk: fk, cached: true}
	read := func(lb uint64) ([]byte, error) {
		b, found, err := br.read(lb, 1)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, corrupt("inode %d: attribute block %d is a hole", in.ino, lb)
		}
		if f.v5 {
			if err := f.checkV5Header(b, daCRCOff, br.daddr(lb), in.ino, "attribute block"); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	b, err := read(0)
	if err != nil {
		return err
	}
	hdr, info := daHdrV4, daInfoV4
	if f.v5 {
		hdr, info = daHdrV5, daInfoV5
	}
	// Descend along the leftmost path to the first leaf.
	level := -1
	lb := uint64(0)
	for depth := 0; ; depth++ {
		magic := be16(b[8:])
		if magic != daNodeMagic && magic != da3NodeMagic {
			break
		}
		count, lvl := int(be16(b[info:])), int(be16(b[info+2:]))
		if depth > maxDaDepth || f.v5 != (magic == da3NodeMagic) || count == 0 || hdr+8*count > len(b) ||
			lvl < 1 || lvl > maxDaDepth || level >= 0 && lvl != level-1 {
			return corrupt("inode %d: attribute node at block %d (count %d, level %d)", in.ino, lb, count, lvl)
		}
		level = lvl
		lb = uint64(be32(b[hdr+4:]))
		if b, err = read(lb); err != nil {
			return err
		}
	}
	if level > 1 {
		return corrupt("inode %d: attribute node points to a leaf above level 1", in.ino)
	}
	visited := map[uint64]bool{lb: true}
	for {
		stop, err := f.attrLeaf(in, b, fn)
		if err != nil || stop {
			return err
		}
		next := uint64(be32(b))
		if next == 0 {
			return nil
		}
		if visited[next] || len(visited) > maxAttrBlocks {
			return corrupt("inode %d: attribute leaf chain loops at block %d", in.ino, next)
		}
		visited[next] = true
		if b, err = read(next); err != nil {
			return err
		}
	}
}

func (f *FS) shortFormAttrs(in *inode, fn func(attrEnt) bool) error {
	b := in.attr.lit
	if len(b) < 4 {
		return corrupt("inode %d: short-form attribute header", in.ino)
	}
	total, count := int(be16(b)), int(b[2])
	if total < 4 || total > len(b) {
		return corrupt("inode %d: short-form attributes of %d bytes", in.ino, total)
	}
	b = b[:total]
	pos := 4
	for i := 0; i < count; i++ {
		if pos+3 > len(b) {
			return corrupt("inode %d: short-form attribute %d", in.ino, i)
		}
		nl, vl, flags := int(b[pos]), int(b[pos+1]), b[pos+2]
		if pos+3+nl+vl > len(b) {
			return corrupt("inode %d: short-form attribute %d", in.ino, i)
		}
		name := b[pos+3 : pos+3+nl]
		value := b[pos+3+nl : pos+3+nl+vl]
		pos += 3 + nl + vl
		if flags&(attrNamespaces|attrIncomplete) != 0 {
			continue
		}
		if fn(attrEnt{name: string(name), local: value}) {
			return nil
		}
	}
	return nil
}

// attrLeaf calls fn for the user.* attributes of one leaf block.
func (f *FS) attrLeaf(in *inode, b []byte, fn func(attrEnt) bool) (bool, error) {
	hdr := attrLeafHdrV4
	magic := be16(b[8:])
	if f.v5 {
		hdr = attrLeafHdrV5
		if magic != attr3LeafMagic {
			return false, corrupt("inode %d: attribute leaf: bad magic %#04x", in.ino, magic)
		}
	} else if magic != attrLeafMagic {
		return false, corrupt("inode %d: attribute leaf: bad magic %#04x", in.ino, magic)
	}
	count := int(be16(b[daInfoV4:]))
	if f.v5 {
		count = int(be16(b[daInfoV5:]))
	}
	if hdr+8*count > len(b) {
		return false, corrupt("inode %d: attribute leaf with %d entries", in.ino, count)
	}
	for i := 0; i < count; i++ {
		e := b[hdr+8*i:]
		idx, flags := int(be16(e[4:])), e[6]
		if flags&(attrNamespaces|attrIncomplete) != 0 {
			continue
		}
		if idx < hdr+8*count || idx >= len(b) {
			return false, corrupt("inode %d: attribute entry %d at offset %d", in.ino, i, idx)
		}
		v := b[idx:]
		var a attrEnt
		if flags&attrLocal != 0 {
			if len(v) < 3 {
				return false, corrupt("inode %d: attribute entry %d", in.ino, i)
			}
			vl, nl := int(be16(v)), int(v[2])
			if 3+nl+vl > len(v) {
				return false, corrupt("inode %d: attribute entry %d overruns its block", in.ino, i)
			}
			a = attrEnt{name: string(v[3 : 3+nl]), local: v[3+nl : 3+nl+vl]}
		} else {
			if len(v) < 9 || 9+int(v[8]) > len(v) {
				return false, corrupt("inode %d: remote attribute entry %d", in.ino, i)
			}
			vl := be32(v[4:])
			if vl > maxAttrValue {
				return false, corrupt("inode %d: attribute value of %d bytes", in.ino, vl)
			}
			a = attrEnt{name: string(v[9 : 9+int(v[8])]), remote: true, valueBlk: uint64(be32(v)), valueLen: int(vl)}
		}
		if fn(a) {
			return true, nil
		}
	}
	return false, nil
}

// attrValue returns the value of an attribute, reading remote blocks.
func (f *FS) attrValue(in *inode, a attrEnt) ([]byte, error) {
	if !a.remote {
		return a.local, nil
	}
	per := f.bs
	if f.v5 {
		per -= attrRmtHdr
	}
	br := &blockReader{f: f, fk: &in.attr}
	out := make([]byte, 0, a.valueLen)
	for lb := a.valueBlk; len(out) < a.valueLen; lb++ {
		b, found, err := br.read(lb, 1)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, corrupt("inode %d: attribute %q: value block %d is a hole", in.ino, a.name, lb)
		}
		want := min(per, int64(a.valueLen-len(out)))
		if f.v5 {
			if be32(b) != attrRmtMagic || int(be32(b[4:])) != len(out) || int64(be32(b[8:])) != want {
				return nil, corrupt("inode %d: attribute %q: bad remote value header", in.ino, a.name)
			}
			if !crcOK(b, attrRmtCRCOff) || be64(b[32:]) != in.ino || string(b[16:32]) != string(f.uuid[:]) {
				return nil, corrupt("inode %d: attribute %q: remote value block: bad CRC, owner or UUID", in.ino, a.name)
			}
			b = b[attrRmtHdr:]
		}
		out = append(out, b[:want]...)
	}
	return out, nil
}

// Streams lists the user.* extended attributes of ino, without the
// "user." prefix, sorted.
func (f *FS) Streams(ino uint64) ([]string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	var names []string
	err = f.userAttrs(in, func(a attrEnt) bool {
		names = append(names, a.name)
		return false
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// OpenStream opens the value of extended attribute "user."+name of ino.
func (f *FS) OpenStream(ino uint64, name string) (volume.File, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	var found *attrEnt
	err = f.userAttrs(in, func(a attrEnt) bool {
		if a.name == name {
			found = &a
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, notExist("attribute user.%s of inode %d", name, ino)
	}
	v, err := f.attrValue(in, *found)
	if err != nil {
		return nil, err
	}
	return memFile{bytes.NewReader(v)}, nil
}

// memFile is an attribute value held in memory.
type memFile struct{ *bytes.Reader }

// Size returns the value's length.
func (m memFile) Size() int64 { return m.Reader.Size() }
