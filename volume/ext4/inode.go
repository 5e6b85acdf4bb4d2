package ext4

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"time"

	"github.com/ckptfs/ckptfs/volume"
)

// Inode flags.
const (
	flagEncrypt   = 0x800
	flagIndex     = 0x1000
	flagHugeFile  = 0x40000
	flagExtents   = 0x80000
	flagVerity    = 0x100000
	flagInline    = 0x10000000
	bgInodeUninit = 0x1
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

// inode is a decoded on-disk inode.
type inode struct {
	ino        uint64
	mode       uint16
	uid, gid   uint32
	size       int64
	links      uint16
	blocks512  uint64 // allocated space in 512-byte units
	flags      uint32
	iblock     [60]byte
	fileACL    uint64
	atime      time.Time
	ctime      time.Time
	mtime      time.Time
	btime      time.Time
	ibodyXattr []byte // in-inode extended attribute area (after i_extra_isize)
}

func (in *inode) isDir() bool     { return in.mode&sIFMT == sIFDIR }
func (in *inode) isReg() bool     { return in.mode&sIFMT == sIFREG }
func (in *inode) isSymlink() bool { return in.mode&sIFMT == sIFLNK }

// inode reads and decodes inode ino.
func (f *FS) inode(ino uint64) (*inode, error) {
	if ino < 1 || ino > uint64(f.inodesCount) {
		return nil, fmt.Errorf("ext4: inode %d out of range: %w", ino, fs.ErrNotExist)
	}
	g := (ino - 1) / uint64(f.inodesPerGroup)
	idx := (ino - 1) % uint64(f.inodesPerGroup)
	if g >= f.groups {
		return nil, fmt.Errorf("ext4: inode %d out of range: %w", ino, fs.ErrNotExist)
	}
	gd := f.gdt[g*uint64(f.descSize) : (g+1)*uint64(f.descSize)]
	table := uint64(binary.LittleEndian.Uint32(gd[8:]))
	if f.descSize >= 64 {
		table |= uint64(binary.LittleEndian.Uint32(gd[0x28:])) << 32
	}
	if f.roCompat&(roCompatGdtCsum|roCompatMetaCsum) != 0 {
		if binary.LittleEndian.Uint16(gd[0x12:])&bgInodeUninit != 0 {
			return nil, corrupt("inode %d is in an uninitialised inode table", ino)
		}
	}
	off := idx * uint64(f.inodeSize)
	blk := table + off/uint64(f.bs)
	if table == 0 || blk >= f.blocks {
		return nil, corrupt("inode %d: inode table of group %d at block %d", ino, g, table)
	}
	b, err := f.block(blk)
	if err != nil {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	raw := b[off%uint64(f.bs) : off%uint64(f.bs)+uint64(f.inodeSize)]
	return f.decodeInode(ino, raw)
}

func (f *FS) decodeInode(ino uint64, raw []byte) (*inode, error) {
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(raw[o:]) }
	le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(raw[o:]) }
	in := &inode{
		ino:   ino,
		mode:  le16(0x0),
		uid:   uint32(le16(0x2)) | uint32(le16(0x78))<<16,
		gid:   uint32(le16(0x18)) | uint32(le16(0x7A))<<16,
		links: le16(0x1A),
		flags: le32(0x20),
	}
	if in.mode == 0 || in.links == 0 {
		return nil, corrupt("inode %d is not in use", ino)
	}
	size := uint64(le32(0x4))
	if in.isReg() || f.incompat&incompatLargeDir != 0 {
		size |= uint64(le32(0x6C)) << 32
	}
	if size > 1<<62 {
		return nil, corrupt("inode %d: size %d", ino, size)
	}
	in.size = int64(size)
	in.blocks512 = uint64(le32(0x1C))
	if f.roCompat&roCompatHugeFile != 0 {
		in.blocks512 |= uint64(le16(0x74)) << 32
		if in.flags&flagHugeFile != 0 {
			in.blocks512 *= uint64(f.bs / 512)
		}
	}
	copy(in.iblock[:], raw[0x28:0x28+60])
	in.fileACL = uint64(le32(0x68)) | uint64(le16(0x76))<<32

	extra := 0
	if len(raw) > 128 {
		extra = int(le16(0x80))
		if 128+extra > len(raw) || extra%4 != 0 {
			return nil, corrupt("inode %d: i_extra_isize %d", ino, extra)
		}
		in.ibodyXattr = raw[128+extra:]
	}
	has := func(o int) bool { return 128+extra >= o+4 }
	ts := func(secOff, extraOff int) time.Time {
		sec := int64(int32(le32(secOff)))
		var ns int64
		if has(extraOff) {
			x := le32(extraOff)
			sec += int64(x&3) << 32
			ns = int64(x >> 2)
			if ns > 999_999_999 {
				ns = 0
			}
		}
		return time.Unix(sec, ns).UTC()
	}
	in.atime = ts(0x8, 0x8C)
	in.ctime = ts(0xC, 0x84)
	in.mtime = ts(0x10, 0x88)
	if has(0x90) && (le32(0x90) != 0 || has(0x94) && le32(0x94) != 0) {
		in.btime = ts(0x90, 0x94)
	}
	return in, nil
}

// fileMode converts an ext4 mode to an fs.FileMode.
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
		Nlink: uint32(in.links),
		Uid:   in.uid,
		Gid:   in.gid,
		Mtime: in.mtime,
		Atime: in.atime,
		Ctime: in.ctime,
		Btime: in.btime,
		Alloc: int64(in.blocks512) * 512,
	}, nil
}

// xattr returns the value of in-inode extended attribute
// (index, name), or nil.
func (in *inode) xattr(index byte, name string) ([]byte, error) {
	a := in.ibodyXattr
	if len(a) < 4 || binary.LittleEndian.Uint32(a) != 0xEA020000 {
		return nil, nil
	}
	ents := a[4:]
	for pos := 0; pos+16 <= len(ents); {
		e := ents[pos:]
		if binary.LittleEndian.Uint32(e) == 0 {
			break
		}
		nameLen := int(e[0])
		if pos+16+nameLen > len(ents) {
			return nil, corrupt("inode %d: extended attribute entry", in.ino)
		}
		if e[1] == index && string(e[16:16+nameLen]) == name {
			voff := int(binary.LittleEndian.Uint16(e[2:]))
			vsize := int(binary.LittleEndian.Uint32(e[8:]))
			if binary.LittleEndian.Uint32(e[4:]) != 0 {
				return nil, fmt.Errorf("ext4: inode %d: attribute value in a separate inode: %w", in.ino, volume.ErrUnsupported)
			}
			if voff+vsize > len(ents) || vsize < 0 {
				return nil, corrupt("inode %d: extended attribute value", in.ino)
			}
			return ents[voff : voff+vsize], nil
		}
		pos += (16 + nameLen + 3) &^ 3
	}
	return nil, nil
}

// inlineData returns the inline data of in (i_block plus system.data).
func (in *inode) inlineData() ([]byte, error) {
	data := append([]byte(nil), in.iblock[:]...)
	if in.size > int64(len(data)) {
		more, err := in.xattr(7, "data")
		if err != nil {
			return nil, err
		}
		data = append(data, more...)
	}
	if in.size > int64(len(data)) {
		return nil, corrupt("inode %d: inline data shorter than size %d", in.ino, in.size)
	}
	return data, nil
}
