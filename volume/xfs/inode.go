package xfs

import (
	"fmt"
	"io/fs"
	"time"

	"github.com/ckptfs/ckptfs/volume"
)

// Inode constants.
const (
	inodeMagic = 0x494E // "IN"

	fmtDev     = 0
	fmtLocal   = 1
	fmtExtents = 2
	fmtBtree   = 3

	diflagRealtime = 0x1

	diflag2Bigtime = 0x8
	diflag2Nrext64 = 0x10

	coreV2Size = 100 // inode core of v1/v2 inodes
	coreV3Size = 176 // inode core of v3 inodes

	bigtimeEpochOffset = 1 << 31 // seconds from 1901-12-13 to 1970
)

// Mode type bits.
const (
	sIFMT   = 0xF000
	sIFSOCK = 0xC000
	sIFLNK  = 0xA000
	sIFREG  = 0x8000
	sIFBLK  = 0x6000
	sIFDIR  = 0x4000
	sIFCHR  = 0x2000
	sIFIFO  = 0x1000
)

// inode is a decoded on-disk inode. It is immutable once decoded.
type inode struct {
	ino       uint64
	mode      uint16
	uid, gid  uint32
	nlink     uint32
	atime     time.Time
	mtime     time.Time
	ctime     time.Time
	btime     time.Time
	size      int64
	nblocks   uint64
	flags     uint16
	data      fork
	attr      fork // format 0 and no literal area if there is no attribute fork
	hasAttr   bool
	rawLength int
}

// fork is one of an inode's two forks.
type fork struct {
	ino      uint64
	isAttr   bool
	format   uint8
	lit      []byte // the fork's literal area in the inode
	nextents uint64
}

func (fk *fork) name() string {
	if fk.isAttr {
		return "attribute fork"
	}
	return "data fork"
}

func (in *inode) isDir() bool     { return in.mode&sIFMT == sIFDIR }
func (in *inode) isReg() bool     { return in.mode&sIFMT == sIFREG }
func (in *inode) isSymlink() bool { return in.mode&sIFMT == sIFLNK }

// inoLocation returns the linear block holding inode ino and the inode's
// byte offset in it.
func (f *FS) inoLocation(ino uint64) (blk uint64, off int64, ok bool) {
	shift := f.agblklog + f.inopblog
	agno := ino >> shift
	agbno := (ino >> f.inopblog) & (1<<f.agblklog - 1)
	idx := ino & (1<<f.inopblog - 1)
	if agno >= f.agcount || agbno >= f.agblocks {
		return 0, 0, false
	}
	blk = agno*f.agblocks + agbno
	if blk >= f.dblocks {
		return 0, 0, false
	}
	return blk, int64(idx) * f.inodeSize, true
}

// inode reads and decodes inode ino, through the cache.
func (f *FS) inode(ino uint64) (*inode, error) {
	if in, ok := f.inodeCache.Get(ino); ok {
		return in, nil
	}
	blk, off, ok := f.inoLocation(ino)
	if !ok {
		return nil, fmt.Errorf("xfs: inode %d out of range: %w", ino, fs.ErrNotExist)
	}
	if err := f.checkAG(blk / f.agblocks); err != nil {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, err)
	}
	b, err := f.block(blk)
	if err != nil {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, err)
	}
	raw := append([]byte(nil), b[off:off+f.inodeSize]...)
	in, err := f.decodeInode(ino, raw)
	if err != nil {
		return nil, err
	}
	f.inodeCache.Add(ino, in, len(raw)+256)
	return in, nil
}

func (f *FS) decodeInode(ino uint64, raw []byte) (*inode, error) {
	if m := be16(raw); m != inodeMagic {
		return nil, corrupt("inode %d: bad di_magic %#04x", ino, m)
	}
	version := raw[4]
	core := coreV2Size
	switch {
	case version == 3 && f.v5:
		core = coreV3Size
		if !crcOK(raw, 0x64) {
			return nil, corrupt("inode %d: bad di_crc", ino)
		}
		if got := be64(raw[0x98:]); got != ino {
			return nil, corrupt("inode %d: di_ino is %d", ino, got)
		}
		if string(raw[0xA0:0xB0]) != string(f.uuid[:]) {
			return nil, corrupt("inode %d: di_uuid is not the file system's", ino)
		}
	case (version == 1 || version == 2) && !f.v5:
	default:
		return nil, corrupt("inode %d: di_version %d", ino, version)
	}
	in := &inode{
		ino:       ino,
		mode:      be16(raw[2:]),
		uid:       be32(raw[8:]),
		gid:       be32(raw[0xC:]),
		nblocks:   be64(raw[0x40:]),
		flags:     be16(raw[0x5A:]),
		rawLength: len(raw),
	}
	if in.mode == 0 {
		return nil, corrupt("inode %d is not in use", ino)
	}
	if version == 1 {
		in.nlink = uint32(be16(raw[6:]))
	} else {
		in.nlink = be32(raw[0x10:])
	}
	size := int64(be64(raw[0x38:]))
	if size < 0 {
		return nil, corrupt("inode %d: di_size %d", ino, size)
	}
	in.size = size
	var flags2 uint64
	if version == 3 {
		flags2 = be64(raw[0x78:])
	}
	ts := func(o int) time.Time {
		if flags2&diflag2Bigtime != 0 {
			t := be64(raw[o:])
			return time.Unix(int64(t/1e9)-bigtimeEpochOffset, int64(t%1e9)).UTC()
		}
		return time.Unix(int64(int32(be32(raw[o:]))), int64(be32(raw[o+4:]))).UTC()
	}
	in.atime, in.mtime, in.ctime = ts(0x20), ts(0x28), ts(0x30)
	if version == 3 {
		in.btime = ts(0x90)
	}

	nextents := uint64(be32(raw[0x4C:]))
	anextents := uint64(be16(raw[0x50:]))
	if flags2&diflag2Nrext64 != 0 {
		if !f.nrext64 {
			return nil, corrupt("inode %d: nrext64 inode without the feature", ino)
		}
		nextents = be64(raw[0x18:])
		anextents = uint64(be32(raw[0x4C:]))
	}
	lit := raw[core:]
	forkoff := int(raw[0x52]) * 8
	if forkoff >= len(lit) {
		return nil, corrupt("inode %d: di_forkoff %d beyond the literal area", ino, raw[0x52])
	}
	dsize := len(lit)
	if forkoff != 0 {
		dsize = forkoff
		in.hasAttr = true
		in.attr = fork{ino: ino, isAttr: true, format: raw[0x53], lit: lit[forkoff:], nextents: anextents}
		if err := f.checkFork(&in.attr); err != nil {
			return nil, err
		}
	} else if raw[0x53] != fmtExtents && raw[0x53] != 0 || anextents != 0 {
		return nil, corrupt("inode %d: attribute fork data without di_forkoff", ino)
	}
	in.data = fork{ino: ino, format: raw[5], lit: lit[:dsize], nextents: nextents}

	switch in.mode & sIFMT {
	case sIFREG, sIFDIR, sIFLNK:
		if in.data.format == fmtDev {
			return nil, corrupt("inode %d: di_format %d for mode %#o", ino, in.data.format, in.mode)
		}
		if in.data.format == fmtLocal && in.isReg() {
			return nil, corrupt("inode %d: regular file in local format", ino)
		}
		if err := f.checkFork(&in.data); err != nil {
			return nil, err
		}
		if in.data.format == fmtLocal && in.size > int64(dsize) {
			return nil, corrupt("inode %d: di_size %d beyond the %d-byte local fork", ino, in.size, dsize)
		}
	case sIFCHR, sIFBLK, sIFIFO, sIFSOCK:
	default:
		return nil, corrupt("inode %d: di_mode %#o", ino, in.mode)
	}
	return in, nil
}

// checkFork checks a fork's format against its literal area.
func (f *FS) checkFork(fk *fork) error {
	switch fk.format {
	case fmtLocal:
	case fmtExtents:
		if fk.nextents > uint64(len(fk.lit)/16) {
			return corrupt("inode %d: %s: %d extents in a %d-byte literal area", fk.ino, fk.name(), fk.nextents, len(fk.lit))
		}
		if err := f.checkRecs(fk, int(fk.nextents), func(i int) irec { return decodeRec(fk.lit[16*i:]) }); err != nil {
			return err
		}
	case fmtBtree:
		if len(fk.lit) < 4+16 {
			return corrupt("inode %d: %s: B+tree root in %d bytes", fk.ino, fk.name(), len(fk.lit))
		}
		if fk.nextents > f.dblocks {
			return corrupt("inode %d: %s: %d extents", fk.ino, fk.name(), fk.nextents)
		}
	default:
		return corrupt("inode %d: %s: format %d", fk.ino, fk.name(), fk.format)
	}
	return nil
}

// fileMode converts an XFS mode to an fs.FileMode.
func fileMode(m uint16) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & sIFMT {
	case sIFDIR:
		mode |= fs.ModeDir
	case sIFLNK:
		mode |= fs.ModeSymlink
	case sIFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case sIFBLK:
		mode |= fs.ModeDevice
	case sIFIFO:
		mode |= fs.ModeNamedPipe
	case sIFSOCK:
		mode |= fs.ModeSocket
	}
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// Stat returns the attributes of inode ino.
func (f *FS) Stat(ino uint64) (volume.Attr, error) {
	in, err := f.inode(ino)
	if err != nil {
		return volume.Attr{}, err
	}
	return volume.Attr{
		Ino:   ino,
		Mode:  fileMode(in.mode),
		Size:  in.size,
		Nlink: in.nlink,
		Uid:   in.uid,
		Gid:   in.gid,
		Mtime: in.mtime,
		Atime: in.atime,
		Ctime: in.ctime,
		Btime: in.btime,
		Alloc: int64(min(in.nblocks, f.dblocks)) * f.bs,
	}, nil
}
