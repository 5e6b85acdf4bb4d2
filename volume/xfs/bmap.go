package xfs

import (
	"fmt"
	"sort"
)

// Block-map B+tree (bmbt) constants.
const (
	bmapMagic     = 0x424D4150 // "BMAP", v4
	bmap3Magic    = 0x424D4133 // "BMA3", v5
	bmbtHdrV4     = 24
	bmbtHdrV5     = 72
	bmbtCRCOff    = 64
	maxBmbtLevels = 9
	maxFileBlock  = 1<<54 - 1 // largest logical block an extent can address
)

// irec is a decoded extent record: count blocks from logical block off
// are stored at file-system block fsb (AG-encoded); unwritten extents read
// as zeros.
type irec struct {
	off, fsb, count uint64
	unwritten       bool
}

func decodeRec(b []byte) irec {
	l0, l1 := be64(b), be64(b[8:])
	return irec{
		unwritten: l0>>63 != 0,
		off:       (l0 &^ (1 << 63)) >> 9,
		fsb:       (l0&0x1FF)<<43 | l1>>21,
		count:     l1 & (1<<21 - 1),
	}
}

// checkRec checks that an extent lies in the file system and returns the
// linear block of its start.
func (f *FS) checkRec(fk *fork, r irec) (uint64, error) {
	blk, ok := f.extentToBlock(r.fsb, r.count)
	if !ok || r.off+r.count > maxFileBlock+1 {
		return 0, corrupt("inode %d: %s: extent of %d blocks at %d (file block %d) beyond the file system",
			fk.ino, fk.name(), r.count, r.fsb, r.off)
	}
	return blk, nil
}

// checkRecs checks n extent records: each inside the file system, in
// increasing, non-overlapping order.
func (f *FS) checkRecs(fk *fork, n int, rec func(int) irec) error {
	var end uint64
	for i := 0; i < n; i++ {
		r := rec(i)
		if _, err := f.checkRec(fk, r); err != nil {
			return err
		}
		if i > 0 && r.off < end {
			return corrupt("inode %d: %s: extents out of order at file block %d", fk.ino, fk.name(), r.off)
		}
		end = r.off + r.count
	}
	return nil
}

// bmbtNode is a checked bmbt block (or the root in the inode).
type bmbtNode struct {
	b       []byte
	level   int
	numrecs int
	keys    int // offset of keys (nodes) or records (leaves)
	ptrs    int // offset of pointers (nodes)
}

func (n *bmbtNode) key(i int) uint64 { return be64(n.b[n.keys+8*i:]) }
func (n *bmbtNode) ptr(i int) uint64 { return be64(n.b[n.ptrs+8*i:]) }
func (n *bmbtNode) rec(i int) irec   { return decodeRec(n.b[n.keys+16*i:]) }

// root returns the bmbt root stored in the fork's literal area.
func (f *FS) bmbtRoot(fk *fork) (*bmbtNode, error) {
	lit := fk.lit
	n := &bmbtNode{b: lit, level: int(be16(lit)), numrecs: int(be16(lit[2:])), keys: 4}
	maxrecs := (len(lit) - 4) / 16
	if n.level < 1 || n.level > maxBmbtLevels {
		return nil, corrupt("inode %d: %s: B+tree root level %d", fk.ino, fk.name(), n.level)
	}
	if n.numrecs < 1 || n.numrecs > maxrecs {
		return nil, corrupt("inode %d: %s: B+tree root with %d records", fk.ino, fk.name(), n.numrecs)
	}
	n.ptrs = 4 + 8*maxrecs
	return n, nil
}

// bmbtBlock reads and checks the bmbt block at fsb, which must be at
// level.
func (f *FS) bmbtBlock(fk *fork, fsb uint64, level int) (*bmbtNode, error) {
	key := checkedKey{ino: fk.ino, kind: kindBmbtData, block: fsb, level: level}
	if fk.isAttr {
		key.kind = kindBmbtAttr
	}
	if n, ok := f.checkedCache.Get(key); ok {
		return n.(*bmbtNode), nil
	}
	n, err := f.readBmbtBlock(fk, fsb, level)
	if err != nil {
		return nil, err
	}
	f.checkedCache.Add(key, n, len(n.b)+64)
	return n, nil
}

func (f *FS) readBmbtBlock(fk *fork, fsb uint64, level int) (*bmbtNode, error) {
	blk, ok := f.fsbToBlock(fsb)
	if !ok {
		return nil, corrupt("inode %d: %s: B+tree block %d beyond the file system", fk.ino, fk.name(), fsb)
	}
	b, err := f.block(blk)
	if err != nil {
		return nil, fmt.Errorf("xfs: inode %d: %s: %w", fk.ino, fk.name(), err)
	}
	hdr := bmbtHdrV4
	magic := uint32(bmapMagic)
	if f.v5 {
		hdr, magic = bmbtHdrV5, bmap3Magic
	}
	if m := be32(b); m != magic {
		return nil, corrupt("inode %d: %s: B+tree block %d: bad magic %#08x", fk.ino, fk.name(), fsb, m)
	}
	if f.v5 {
		if !crcOK(b, bmbtCRCOff) {
			return nil, corrupt("inode %d: %s: B+tree block %d: bad CRC", fk.ino, fk.name(), fsb)
		}
		if be64(b[24:]) != blk*uint64(f.bs/512) || be64(b[56:]) != fk.ino || string(b[40:56]) != string(f.uuid[:]) {
			return nil, corrupt("inode %d: %s: B+tree block %d: wrong block number, owner or UUID", fk.ino, fk.name(), fsb)
		}
	}
	n := &bmbtNode{b: b, level: int(be16(b[4:])), numrecs: int(be16(b[6:])), keys: hdr}
	if n.level != level {
		return nil, corrupt("inode %d: %s: B+tree block %d at level %d, want %d", fk.ino, fk.name(), fsb, n.level, level)
	}
	maxrecs := (len(b) - hdr) / 16
	if n.numrecs < 1 || n.numrecs > maxrecs {
		return nil, corrupt("inode %d: %s: B+tree block %d with %d records", fk.ino, fk.name(), fsb, n.numrecs)
	}
	n.ptrs = hdr + 8*maxrecs
	if n.level == 0 {
		if err := f.checkRecs(fk, n.numrecs, n.rec); err != nil {
			return nil, fmt.Errorf("%w (B+tree block %d)", err, fsb)
		}
	}
	return n, nil
}

// mapping is the answer to "where is logical block lb": either an extent
// that contains it, or a hole that ends at holeEnd (exclusive).
type mapping struct {
	rec     irec
	mapped  bool
	holeEnd uint64
}

// lookup finds logical block lb of a fork in extents or btree format,
// reading only the bmbt blocks on the way (cached).
func (f *FS) lookup(fk *fork, lb uint64) (mapping, error) {
	switch fk.format {
	case fmtExtents:
		n := int(fk.nextents)
		rec := func(i int) irec { return decodeRec(fk.lit[16*i:]) }
		return f.searchRecs(fk, n, rec, lb, maxFileBlock+1)
	case fmtBtree:
	default:
		return mapping{}, corrupt("inode %d: %s: format %d has no block map", fk.ino, fk.name(), fk.format)
	}
	node, err := f.bmbtRoot(fk)
	if err != nil {
		return mapping{}, err
	}
	upper := uint64(maxFileBlock + 1)
	for {
		if node.level == 0 {
			return f.searchRecs(fk, node.numrecs, node.rec, lb, upper)
		}
		i := sort.Search(node.numrecs, func(i int) bool { return node.key(i) > lb }) - 1
		if i < 0 {
			i = 0
		}
		if i+1 < node.numrecs {
			upper = min(upper, node.key(i+1))
		}
		child, err := f.bmbtBlock(fk, node.ptr(i), node.level-1)
		if err != nil {
			return mapping{}, err
		}
		// A node's key is its child's first key: this catches pointers
		// to the wrong block (a loop, a duplicate) that the level check
		// lets through.
		first := child.key(0)
		if child.level == 0 {
			first = child.rec(0).off
		}
		if first != node.key(i) {
			return mapping{}, corrupt("inode %d: %s: B+tree block %d starts at file block %d, its key says %d",
				fk.ino, fk.name(), node.ptr(i), first, node.key(i))
		}
		node = child
	}
}

// searchRecs finds lb among n sorted records; upper bounds what the
// records can cover.
func (f *FS) searchRecs(fk *fork, n int, rec func(int) irec, lb, upper uint64) (mapping, error) {
	i := sort.Search(n, func(i int) bool { return rec(i).off > lb }) - 1
	end := upper
	if i+1 < n {
		end = min(end, rec(i+1).off)
	}
	if i >= 0 {
		r := rec(i)
		if lb < r.off+r.count {
			if _, err := f.checkRec(fk, r); err != nil {
				return mapping{}, err
			}
			if r.off+r.count > end {
				return mapping{}, corrupt("inode %d: %s: overlapping extents at file block %d", fk.ino, fk.name(), r.off)
			}
			return mapping{rec: r, mapped: true}, nil
		}
	}
	if end <= lb {
		return mapping{}, corrupt("inode %d: %s: extents out of order near file block %d", fk.ino, fk.name(), lb)
	}
	return mapping{holeEnd: end}, nil
}

// extents returns every extent of a fork in logical order, checked to be
// sorted, non-overlapping and inside the file system. A bmbt is walked
// with a visited set and a budget derived from the fork's extent count,
// so loops and shared subtrees are reported, not followed.
func (f *FS) extents(fk *fork) ([]irec, error) {
	var out []irec
	add := func(r irec) error {
		if _, err := f.checkRec(fk, r); err != nil {
			return err
		}
		if len(out) > 0 {
			p := out[len(out)-1]
			if r.off < p.off+p.count {
				return corrupt("inode %d: %s: extents out of order at file block %d", fk.ino, fk.name(), r.off)
			}
		}
		if uint64(len(out)) >= fk.nextents {
			return corrupt("inode %d: %s: more extents than di_nextents %d", fk.ino, fk.name(), fk.nextents)
		}
		out = append(out, r)
		return nil
	}
	switch fk.format {
	case fmtExtents:
		for i := 0; i < int(fk.nextents); i++ {
			if err := add(decodeRec(fk.lit[16*i:])); err != nil {
				return nil, err
			}
		}
		return out, nil
	case fmtBtree:
	default:
		return nil, corrupt("inode %d: %s: format %d has no block map", fk.ino, fk.name(), fk.format)
	}
	root, err := f.bmbtRoot(fk)
	if err != nil {
		return nil, err
	}
	visited := map[uint64]bool{}
	budget := fk.nextents + maxBmbtLevels
	var walk func(n *bmbtNode) error
	walk = func(n *bmbtNode) error {
		if n.level == 0 {
			for i := 0; i < n.numrecs; i++ {
				if err := add(n.rec(i)); err != nil {
					return err
				}
			}
			return nil
		}
		for i := 0; i < n.numrecs; i++ {
			p := n.ptr(i)
			if visited[p] {
				return corrupt("inode %d: %s: B+tree block %d reached twice", fk.ino, fk.name(), p)
			}
			visited[p] = true
			if budget == 0 {
				return corrupt("inode %d: %s: B+tree has more blocks than extents", fk.ino, fk.name())
			}
			budget--
			child, err := f.bmbtBlock(fk, p, n.level-1)
			if err != nil {
				return err
			}
			first := child.key(0)
			if child.level == 0 {
				first = child.rec(0).off
			}
			if first != n.key(i) {
				return corrupt("inode %d: %s: B+tree block %d starts at file block %d, its key says %d", fk.ino, fk.name(), p, first, n.key(i))
			}
			if err := walk(child); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	if uint64(len(out)) != fk.nextents {
		return nil, corrupt("inode %d: %s: %d extents in the B+tree, di_nextents %d", fk.ino, fk.name(), len(out), fk.nextents)
	}
	return out, nil
}
