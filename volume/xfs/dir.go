package xfs

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/bits"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
)

// Directory constants.
const (
	dirBlockMagic  = 0x58443242 // "XD2B": single-block directory, v4
	dir3BlockMagic = 0x58444233 // "XDB3"
	dirDataMagic   = 0x58443244 // "XD2D": data block of a leaf/node directory, v4
	dir3DataMagic  = 0x58444433 // "XDD3"

	dirLeaf1Magic  = 0xD2F1 // leaf of a leaf directory (da_blkinfo magic)
	dir3Leaf1Magic = 0x3DF1
	dirLeafNMagic  = 0xD2FF // leaf of a node directory
	dir3LeafNMagic = 0x3DFF
	daNodeMagic    = 0xFEBE // dabtree interior node (directories and attributes)
	da3NodeMagic   = 0x3EBE

	dirDataHdrV4 = 16
	dirDataHdrV5 = 64
	daHdrV4      = 16 // node and directory leaf headers
	daHdrV5      = 64
	daInfoV4     = 12 // da_blkinfo; the entry count follows it
	daInfoV5     = 56
	daCRCOff     = 12 // CRC in a v5 da_blkinfo
	dirCRCOff    = 4  // CRC in a v5 directory data/block header

	dirLeafOffset = 32 << 30 // byte offset of the first leaf block
	maxDaDepth    = 8        // dabtree levels followed
	maxLeafChain  = 1 << 16  // sibling leaves followed for one hash value
)

// Directory entry file types (ftype).
var modeOfType = [9]fs.FileMode{
	1: 0,
	2: fs.ModeDir,
	3: fs.ModeDevice | fs.ModeCharDevice,
	4: fs.ModeDevice,
	5: fs.ModeNamedPipe,
	6: fs.ModeSocket,
	7: fs.ModeSymlink,
}

// unknownType marks entries whose type must be read from the inode.
const unknownType = fs.ModeIrregular

// dir is a parsed directory listing.
type dir struct {
	entries []volume.Entry // sorted by name
}

func (d *dir) find(name string) (volume.Entry, bool) {
	i := sort.Search(len(d.entries), func(i int) bool { return d.entries[i].Name >= name })
	if i < len(d.entries) && d.entries[i].Name == name {
		return d.entries[i], true
	}
	return volume.Entry{}, false
}

// hashName is the dabtree name hash (xfs_da_hashname).
func hashName(name []byte) uint32 {
	var h uint32
	for ; len(name) >= 4; name = name[4:] {
		h = uint32(name[0])<<21 ^ uint32(name[1])<<14 ^ uint32(name[2])<<7 ^ uint32(name[3]) ^ bits.RotateLeft32(h, 7*4)
	}
	switch len(name) {
	case 3:
		h = uint32(name[0])<<14 ^ uint32(name[1])<<7 ^ uint32(name[2]) ^ bits.RotateLeft32(h, 7*3)
	case 2:
		h = uint32(name[0])<<7 ^ uint32(name[1]) ^ bits.RotateLeft32(h, 7*2)
	case 1:
		h = uint32(name[0]) ^ bits.RotateLeft32(h, 7)
	}
	return h
}

// dirInode returns directory inode ino.
func (f *FS) dirInode(ino uint64) (*inode, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, volume.ErrNotDir)
	}
	return in, nil
}

// readDir parses directory ino whole, using the cache.
func (f *FS) readDir(ino uint64) (*dir, error) {
	if d, ok := f.dirCache.Get(ino); ok {
		return d, nil
	}
	in, err := f.dirInode(ino)
	if err != nil {
		return nil, err
	}
	d := &dir{}
	if in.data.format == fmtLocal {
		err = f.parseShortForm(in, func(e volume.Entry) { d.entries = append(d.entries, e) })
	} else {
		err = f.readDirBlocks(in, d)
	}
	if err != nil {
		return nil, err
	}
	cost := 64
	for i := range d.entries {
		if d.entries[i].Mode == unknownType {
			d.entries[i].Mode = f.typeOf(d.entries[i].Ino)
		}
		cost += len(d.entries[i].Name) + 48
	}
	sort.Slice(d.entries, func(i, j int) bool { return d.entries[i].Name < d.entries[j].Name })
	for i := 1; i < len(d.entries); i++ {
		if d.entries[i].Name == d.entries[i-1].Name {
			return nil, corrupt("directory %d: name %q listed twice", ino, d.entries[i].Name)
		}
	}
	f.dirCache.Add(ino, d, cost)
	return d, nil
}

// typeOf reads the type of inode ino for directories without ftype; a
// damaged inode shows as a regular file (Stat reports the damage).
func (f *FS) typeOf(ino uint64) fs.FileMode {
	in, err := f.inode(ino)
	if err != nil {
		return 0
	}
	return fileMode(in.mode).Type()
}

// entryMode returns the type of a directory entry from its ftype byte.
func (f *FS) entryMode(ft byte) fs.FileMode {
	if !f.ftype || ft < 1 || ft > 7 {
		return unknownType
	}
	return modeOfType[ft]
}

// checkEntry validates a name and inode number found in directory dino.
func (f *FS) checkEntry(dino uint64, name []byte, ino uint64) error {
	if len(name) == 0 || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
		return corrupt("directory %d: bad name %q", dino, name)
	}
	if _, _, ok := f.inoLocation(ino); !ok {
		return corrupt("directory %d: entry %q has inode %d beyond the file system", dino, name, ino)
	}
	return nil
}

// parseShortForm calls add for each entry of a short-form directory.
func (f *FS) parseShortForm(in *inode, add func(volume.Entry)) error {
	b := in.data.lit[:in.size]
	if len(b) < 6 {
		return corrupt("directory %d: short-form header of %d bytes", in.ino, len(b))
	}
	count, i8 := int(b[0]), int(b[1])
	inoSize := 4
	if i8 != 0 {
		inoSize = 8
	}
	getIno := func(p []byte) uint64 {
		if inoSize == 8 {
			return be64(p) & (1<<56 - 1)
		}
		return uint64(be32(p))
	}
	pos := 2 + inoSize
	if pos > len(b) {
		return corrupt("directory %d: short-form header", in.ino)
	}
	ft := 0
	if f.ftype {
		ft = 1
	}
	for i := 0; i < count; i++ {
		if pos+3 > len(b) {
			return corrupt("directory %d: short-form entry %d beyond di_size", in.ino, i)
		}
		nl := int(b[pos])
		p := pos + 3 + nl
		if nl == 0 || p+ft+inoSize > len(b) {
			return corrupt("directory %d: short-form entry %d", in.ino, i)
		}
		name := b[pos+3 : p]
		mode := unknownType
		if ft == 1 {
			mode = f.entryMode(b[p])
		}
		ino := getIno(b[p+ft:])
		if err := f.checkEntry(in.ino, name, ino); err != nil {
			return err
		}
		add(volume.Entry{Name: string(name), Ino: ino, Mode: mode})
		pos = p + ft + inoSize
	}
	return nil
}

// blockReader maps and reads a fork's blocks.
type blockReader struct {
	f      *FS
	fk     *fork
	exts   []irec // all extents, or nil to look blocks up in the bmbt
	cached bool   // read through the metadata block cache
}

func (br *blockReader) lookup(lb uint64) (mapping, error) {
	if br.exts == nil {
		return br.f.lookup(br.fk, lb)
	}
	return br.f.searchRecs(br.fk, len(br.exts), func(i int) irec { return br.exts[i] }, lb, maxFileBlock+1)
}

// read reads n fork blocks from logical block lb, which must all be
// mapped to written extents. It reports found=false if lb itself is a
// hole.
func (br *blockReader) read(lb, n uint64) (b []byte, found bool, err error) {
	f, fk := br.f, br.fk
	b = make([]byte, n*uint64(f.bs))
	for i := uint64(0); i < n; {
		m, err := br.lookup(lb + i)
		if err != nil {
			return nil, false, err
		}
		if !m.mapped {
			if i == 0 {
				return nil, false, nil
			}
			return nil, false, corrupt("inode %d: %s: hole inside a %d-block structure at file block %d", fk.ino, fk.name(), n, lb)
		}
		if m.rec.unwritten {
			return nil, false, corrupt("inode %d: %s: unwritten extent at file block %d", fk.ino, fk.name(), lb+i)
		}
		start, _ := f.extentToBlock(m.rec.fsb, m.rec.count)
		phys := start + (lb + i - m.rec.off)
		run := min(n-i, m.rec.off+m.rec.count-(lb+i))
		dst := b[i*uint64(f.bs) : (i+run)*uint64(f.bs)]
		if br.cached {
			for j := uint64(0); j < run; j++ {
				blk, err := f.block(phys + j)
				if err != nil {
					return nil, false, err
				}
				copy(dst[j*uint64(f.bs):], blk)
			}
		} else if err := readFull(f.r, dst, int64(phys)*f.bs); err != nil {
			return nil, false, fmt.Errorf("xfs: inode %d: reading block %d: %w", fk.ino, phys, err)
		}
		i += run
	}
	return b, true, nil
}

// daddr returns the 512-byte sector address of fork block lb (for the
// block number v5 headers carry).
func (br *blockReader) daddr(lb uint64) uint64 {
	m, err := br.lookup(lb)
	if err != nil || !m.mapped {
		return 0
	}
	start, _ := br.f.extentToBlock(m.rec.fsb, m.rec.count)
	return (start + lb - m.rec.off) * uint64(br.f.bs/512)
}

// checkV5Header checks a v5 block's CRC, block number, UUID and owner;
// off is where its CRC is (the others follow at fixed distances).
func (f *FS) checkV5Header(b []byte, crcOff int, daddr, owner uint64, what string) error {
	var blkno, uuid, own int
	switch crcOff {
	case dirCRCOff: // xfs_dir3_blk_hdr
		blkno, uuid, own = 8, 24, 40
	default: // xfs_da3_blkinfo
		blkno, uuid, own = 16, 32, 48
	}
	if !crcOK(b, crcOff) {
		return corrupt("inode %d: %s: bad CRC", owner, what)
	}
	if be64(b[blkno:]) != daddr || be64(b[own:]) != owner || string(b[uuid:uuid+16]) != string(f.uuid[:]) {
		return corrupt("inode %d: %s: wrong block number, owner or UUID", owner, what)
	}
	return nil
}

// readDirBlocks lists the data blocks of a block, leaf or node directory.
func (f *FS) readDirBlocks(in *inode, d *dir) error {
	exts, err := f.extents(&in.data)
	if err != nil {
		return err
	}
	br := &blockReader{f: f, fk: &in.data, exts: exts}
	fsbPerDir := uint64(1) << f.dirBlkLog
	leafLB := uint64(dirLeafOffset) >> f.blockLog
	var read int64
	prev := ^uint64(0)
	for _, r := range exts {
		for lb := r.off; lb < r.off+r.count && lb < leafLB; lb++ {
			db := lb >> f.dirBlkLog
			if db == prev {
				continue
			}
			prev = db
			if read += f.dirBlk; read > maxDirBytes {
				return corrupt("directory %d: more than %d bytes of data blocks", in.ino, maxDirBytes)
			}
			b, found, err := br.read(db*fsbPerDir, fsbPerDir)
			if err != nil {
				return err
			}
			if !found {
				return corrupt("directory %d: directory block %d does not start its extent", in.ino, db)
			}
			err = f.parseDataBlock(in, b, br.daddr(db*fsbPerDir), func(e volume.Entry, _ int) error {
				d.entries = append(d.entries, e)
				return nil
			})
			if err != nil {
				return fmt.Errorf("%w (directory block %d)", err, db)
			}
		}
	}
	return nil
}

// parseDataBlock calls add for every named entry in a directory data or
// single block (without "." and ".."), with the entry's offset.
func (f *FS) parseDataBlock(in *inode, b []byte, daddr uint64, add func(volume.Entry, int) error) error {
	hdr, end := dirDataHdrV4, len(b)
	magic := be32(b)
	switch {
	case !f.v5 && magic == dirDataMagic, f.v5 && magic == dir3DataMagic:
	case !f.v5 && magic == dirBlockMagic, f.v5 && magic == dir3BlockMagic:
		count := int64(be32(b[len(b)-8:]))
		if count > int64(len(b)/8) {
			return corrupt("directory %d: block with %d leaf entries", in.ino, count)
		}
		end = len(b) - 8 - int(count)*8
	default:
		return corrupt("directory %d: bad data block magic %#08x", in.ino, magic)
	}
	if f.v5 {
		hdr = dirDataHdrV5
		if err := f.checkV5Header(b, dirCRCOff, daddr, in.ino, "directory data block"); err != nil {
			return err
		}
	}
	if end < hdr {
		return corrupt("directory %d: block leaf array overlaps the header", in.ino)
	}
	ft := 0
	if f.ftype {
		ft = 1
	}
	for pos := hdr; pos < end; {
		if pos+8 > end {
			return corrupt("directory %d: truncated entry at offset %d", in.ino, pos)
		}
		if be16(b[pos:]) == 0xFFFF {
			l := int(be16(b[pos+2:]))
			if l < 8 || l%8 != 0 || pos+l > end {
				return corrupt("directory %d: free space of %d bytes at offset %d", in.ino, l, pos)
			}
			pos += l
			continue
		}
		nl := int(b[pos+8])
		l := (8 + 1 + nl + ft + 2 + 7) &^ 7
		if nl == 0 || pos+l > end {
			return corrupt("directory %d: entry at offset %d", in.ino, pos)
		}
		if tag := int(be16(b[pos+l-2:])); tag != pos {
			return corrupt("directory %d: entry at offset %d has tag %d", in.ino, pos, tag)
		}
		name := b[pos+9 : pos+9+nl]
		ino := be64(b[pos:])
		if !(nl == 1 && name[0] == '.' || nl == 2 && name[0] == '.' && name[1] == '.') {
			if err := f.checkEntry(in.ino, name, ino); err != nil {
				return err
			}
			mode := unknownType
			if ft == 1 {
				mode = f.entryMode(b[pos+9+nl])
			}
			if err := add(volume.Entry{Name: string(name), Ino: ino, Mode: mode}, pos); err != nil {
				return err
			}
		}
		pos += l
	}
	return nil
}

// ReadDir lists directory ino sorted by name, without "." and "..".
func (f *FS) ReadDir(ino uint64) ([]volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return nil, err
	}
	return append([]volume.Entry(nil), d.entries...), nil
}

// Lookup finds name in directory ino. Leaf and node directories are
// searched through their hash index; others (and names the index does not
// have) through the parsed listing.
func (f *FS) Lookup(ino uint64, name string) (volume.Entry, error) {
	if d, ok := f.dirCache.Get(ino); ok {
		return f.found(d, ino, name)
	}
	in, err := f.dirInode(ino)
	if err != nil {
		return volume.Entry{}, err
	}
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\x00") {
		return volume.Entry{}, fmt.Errorf("xfs: %q in directory %d: %w", name, ino, volume.ErrNotFound)
	}
	if in.data.format != fmtLocal && in.size != f.dirBlk {
		e, ok, err := f.hashLookup(in, name)
		if err != nil {
			return volume.Entry{}, err
		}
		if ok {
			if e.Mode == unknownType {
				e.Mode = f.typeOf(e.Ino)
			}
			return e, nil
		}
		d, err := f.readDir(ino)
		if err != nil {
			return volume.Entry{}, err
		}
		if _, ok := d.find(name); ok {
			return volume.Entry{}, corrupt("directory %d: hash index does not list %q", ino, name)
		}
		return volume.Entry{}, fmt.Errorf("xfs: %q in directory %d: %w", name, ino, volume.ErrNotFound)
	}
	d, err := f.readDir(ino)
	if err != nil {
		return volume.Entry{}, err
	}
	return f.found(d, ino, name)
}

func (f *FS) found(d *dir, ino uint64, name string) (volume.Entry, error) {
	if e, ok := d.find(name); ok {
		return e, nil
	}
	return volume.Entry{}, fmt.Errorf("xfs: %q in directory %d: %w", name, ino, volume.ErrNotFound)
}

// hashLookup looks name up through the hash index of a leaf or node
// directory. ok is false if the index does not have it.
func (f *FS) hashLookup(in *inode, name string) (e volume.Entry, ok bool, err error) {
	br := &blockReader{f: f, fk: &in.data, cached: true}
	hash := hashName([]byte(name))
	hdr, info := daHdrV4, daInfoV4
	if f.v5 {
		hdr, info = daHdrV5, daInfoV5
	}
	readDa := func(lb uint64) ([]byte, error) {
		return f.dirBlock(in, br, lb, func(b []byte) error {
			if f.v5 {
				return f.checkV5Header(b, daCRCOff, br.daddr(lb), in.ino, "directory index block")
			}
			return nil
		})
	}
	lb := uint64(dirLeafOffset) >> f.blockLog
	level := -1
	var b []byte
	for depth := 0; ; depth++ {
		if depth > maxDaDepth {
			return e, false, corrupt("directory %d: index deeper than %d levels", in.ino, maxDaDepth)
		}
		if b, err = readDa(lb); err != nil {
			return e, false, err
		}
		magic := be16(b[8:])
		if magic != daNodeMagic && magic != da3NodeMagic {
			break
		}
		if f.v5 != (magic == da3NodeMagic) {
			return e, false, corrupt("directory %d: node magic %#04x", in.ino, magic)
		}
		count, lvl := int(be16(b[info:])), int(be16(b[info+2:]))
		if count == 0 || hdr+8*count > len(b) || lvl < 1 || lvl > maxDaDepth || level >= 0 && lvl != level-1 {
			return e, false, corrupt("directory %d: index node at block %d (count %d, level %d)", in.ino, lb, count, lvl)
		}
		level = lvl
		i := sort.Search(count, func(i int) bool { return be32(b[hdr+8*i:]) >= hash })
		if i == count {
			i = count - 1
		}
		lb = uint64(be32(b[hdr+8*i+4:]))
	}
	if level > 1 {
		return e, false, corrupt("directory %d: index node points to a leaf above level 1", in.ino)
	}
	for hops := 0; ; hops++ {
		magic := be16(b[8:])
		switch {
		case !f.v5 && (magic == dirLeaf1Magic || magic == dirLeafNMagic):
		case f.v5 && (magic == dir3Leaf1Magic || magic == dir3LeafNMagic):
		default:
			return e, false, corrupt("directory %d: bad leaf magic %#04x at block %d", in.ino, magic, lb)
		}
		count := int(be16(b[info:]))
		if hdr+8*count > len(b) {
			return e, false, corrupt("directory %d: leaf with %d entries", in.ino, count)
		}
		ents := b[hdr : hdr+8*count]
		e, ok, more, err := f.searchLeaf(in, br, ents, hash, name)
		if err != nil || ok || !more {
			return e, ok, err
		}
		// Entries with this hash may go on in the next leaf.
		next := uint64(be32(b))
		if next == 0 || hops >= maxLeafChain {
			return e, false, nil
		}
		lb = next
		if b, err = readDa(lb); err != nil {
			return e, false, err
		}
	}
}

// searchLeaf looks for name among leaf entries (hash, address) sorted by
// hash. more reports that the entries with this hash reach the end.
func (f *FS) searchLeaf(in *inode, br *blockReader, ents []byte, hash uint32, name string) (e volume.Entry, ok, more bool, err error) {
	n := len(ents) / 8
	i := sort.Search(n, func(i int) bool { return be32(ents[8*i:]) >= hash })
	for ; i < n && be32(ents[8*i:]) == hash; i++ {
		addr := uint64(be32(ents[8*i+4:]))
		if addr == 0 {
			continue // stale
		}
		e, ok, err := f.entryAt(in, br, addr*8, hash, name)
		if err != nil || ok {
			return e, ok, false, err
		}
	}
	return e, false, i == n, nil
}

// dirBlock reads directory block lb (fork block number) through the cache
// of checked blocks; check runs once, on a cache miss.
func (f *FS) dirBlock(in *inode, br *blockReader, lb uint64, check func([]byte) error) ([]byte, error) {
	key := checkedKey{ino: in.ino, kind: kindDirBlock, block: lb}
	if b, ok := f.checkedCache.Get(key); ok {
		return b.([]byte), nil
	}
	b, found, err := br.read(lb, uint64(1)<<f.dirBlkLog)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, corrupt("directory %d: block %d is a hole", in.ino, lb)
	}
	if err := check(b); err != nil {
		return nil, err
	}
	f.checkedCache.Add(key, b, len(b)+64)
	return b, nil
}

// entryAt decodes the data entry at directory byte offset off (from the
// index), checks it against the index's hash and reports whether it is
// name. The data block is checked whole once (then cached); the entry is
// checked to be one (its tag is its offset).
func (f *FS) entryAt(in *inode, br *blockReader, off uint64, hash uint32, name string) (volume.Entry, bool, error) {
	db, o := off/uint64(f.dirBlk), int(off%uint64(f.dirBlk))
	fsbPerDir := uint64(1) << f.dirBlkLog
	if off >= dirLeafOffset {
		return volume.Entry{}, false, corrupt("directory %d: index points to offset %d", in.ino, off)
	}
	lb := db * fsbPerDir
	b, err := f.dirBlock(in, br, lb, func(b []byte) error {
		return f.parseDataBlock(in, b, br.daddr(lb), func(volume.Entry, int) error { return nil })
	})
	if err != nil {
		return volume.Entry{}, false, err
	}
	ft, hdr := 0, dirDataHdrV4
	if f.ftype {
		ft = 1
	}
	if f.v5 {
		hdr = dirDataHdrV5
	}
	if o < hdr || o%8 != 0 || o+12 > len(b) || be16(b[o:]) == 0xFFFF {
		return volume.Entry{}, false, corrupt("directory %d: index points to no entry at offset %d", in.ino, off)
	}
	nl := int(b[o+8])
	l := (8 + 1 + nl + ft + 2 + 7) &^ 7
	if nl == 0 || o+l > len(b) || int(be16(b[o+l-2:])) != o {
		return volume.Entry{}, false, corrupt("directory %d: index points to no entry at offset %d", in.ino, off)
	}
	got := b[o+9 : o+9+nl]
	if h := hashName(got); h != hash {
		return volume.Entry{}, false, corrupt("directory %d: index has hash %#x for %q, whose hash is %#x", in.ino, hash, got, h)
	}
	if string(got) != name {
		return volume.Entry{}, false, nil
	}
	mode := unknownType
	if ft == 1 {
		mode = f.entryMode(b[o+9+nl])
	}
	return volume.Entry{Name: name, Ino: be64(b[o:]), Mode: mode}, true, nil
}
