package xfs

import (
	"fmt"
	"io"
	"io/fs"

	"github.com/ckptfs/ckptfs/volume"
)

// Symlink constants.
const (
	symlinkMagic  = 0x58534C4D // "XSLM": v5 remote symlink block header
	symlinkHdr    = 56
	symlinkCRCOff = 12
	maxSymlink    = 1024
)

// File is an open XFS regular file. It is safe for concurrent use.
type File struct {
	fs   *FS
	in   *inode
	size int64
}

// Size returns the file size in bytes.
func (fl *File) Size() int64 { return fl.size }

// Open opens regular file ino for reading.
func (f *FS) Open(ino uint64) (volume.File, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isReg() {
		return nil, fmt.Errorf("xfs: inode %d is not a regular file: %w", ino, fs.ErrInvalid)
	}
	return f.openInode(in)
}

func (f *FS) openInode(in *inode) (*File, error) {
	if in.flags&diflagRealtime != 0 {
		return nil, fmt.Errorf("xfs: inode %d: data on the realtime device: %w", in.ino, volume.ErrUnsupported)
	}
	if in.data.format == fmtBtree {
		// Check the root now so that Open reports a damaged tree.
		if _, err := f.bmbtRoot(&in.data); err != nil {
			return nil, err
		}
	}
	return &File{fs: f, in: in, size: in.size}, nil
}

// ReadAt reads len(p) bytes at off. Holes and unwritten extents read as
// zeros; each run of contiguous blocks is read with one ReadAt.
func (fl *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("xfs: negative offset %d: %w", off, fs.ErrInvalid)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	if err := fl.read(p, off); err != nil {
		return 0, err
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}

func (fl *File) read(p []byte, off int64) error {
	f := fl.fs
	bs := f.bs
	pos, end := off, off+int64(len(p))
	for pos < end {
		lb := uint64(pos / bs)
		m, err := f.lookup(&fl.in.data, lb)
		if err != nil {
			return err
		}
		runEnd := m.holeEnd
		if m.mapped {
			runEnd = m.rec.off + m.rec.count
		}
		stop := min(end, int64(min(runEnd, uint64(end/bs)+1))*bs)
		dst := p[pos-off : stop-off]
		if !m.mapped || m.rec.unwritten {
			clear(dst)
		} else {
			start, _ := f.extentToBlock(m.rec.fsb, m.rec.count)
			phys := int64(start+(lb-m.rec.off))*bs + pos%bs
			if err := readFull(f.r, dst, phys); err != nil {
				return fmt.Errorf("xfs: inode %d: reading at byte %d: %w", fl.in.ino, phys, err)
			}
		}
		pos = stop
	}
	return nil
}

// Extents returns where the data of inode ino is stored, covering its
// size in file order. Holes and unwritten extents have Physical -1.
func (f *FS) Extents(ino uint64) ([]volume.Extent, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if in.data.format == fmtLocal {
		blk, off, _ := f.inoLocation(ino)
		lit := int64(coreV2Size)
		if f.v5 {
			lit = coreV3Size
		}
		return []volume.Extent{{Logical: 0, Physical: int64(blk)*f.bs + off + lit, Length: in.size}}, nil
	}
	if in.flags&diflagRealtime != 0 {
		return nil, fmt.Errorf("xfs: inode %d: data on the realtime device: %w", ino, volume.ErrUnsupported)
	}
	exts, err := f.extents(&in.data)
	if err != nil {
		return nil, err
	}
	var out []volume.Extent
	add := func(logical, physical, length int64) {
		if length <= 0 {
			return
		}
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Physical == -1 && physical == -1 {
				last.Length += length
				return
			}
			if physical != -1 && last.Physical != -1 && last.Physical+last.Length == physical {
				last.Length += length
				return
			}
		}
		out = append(out, volume.Extent{Logical: logical, Physical: physical, Length: length})
	}
	pos := int64(0)
	for _, r := range exts {
		if r.off > uint64(in.size/f.bs) {
			break
		}
		lo := int64(r.off) * f.bs
		if lo >= in.size {
			break
		}
		hi := min(int64(min(r.off+r.count, uint64(in.size/f.bs)+1))*f.bs, in.size)
		add(pos, -1, lo-pos)
		phys := int64(-1)
		if !r.unwritten {
			start, _ := f.extentToBlock(r.fsb, r.count)
			phys = int64(start) * f.bs
		}
		add(lo, phys, hi-lo)
		pos = hi
	}
	add(pos, -1, in.size-pos)
	return out, nil
}

// Readlink returns the target of symlink ino.
func (f *FS) Readlink(ino uint64) (string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	if !in.isSymlink() {
		return "", fmt.Errorf("xfs: inode %d is not a symlink: %w", ino, fs.ErrInvalid)
	}
	if in.size > maxSymlink || in.size == 0 {
		return "", corrupt("inode %d: symlink of %d bytes", ino, in.size)
	}
	if in.data.format == fmtLocal {
		return string(in.data.lit[:in.size]), nil
	}
	br := &blockReader{f: f, fk: &in.data, cached: false}
	per := f.bs
	if f.v5 {
		per -= symlinkHdr
	}
	n := (in.size + per - 1) / per
	out := make([]byte, 0, in.size)
	for i := int64(0); i < n; i++ {
		b, found, err := br.read(uint64(i), 1)
		if err != nil {
			return "", err
		}
		if !found {
			return "", corrupt("inode %d: symlink block %d is a hole", ino, i)
		}
		want := min(per, in.size-int64(len(out)))
		if f.v5 {
			if be32(b) != symlinkMagic || int64(be32(b[4:])) != int64(len(out)) || int64(be32(b[8:])) != want {
				return "", corrupt("inode %d: symlink block %d: bad header", ino, i)
			}
			if !crcOK(b, symlinkCRCOff) || be64(b[32:]) != ino || string(b[16:32]) != string(f.uuid[:]) {
				return "", corrupt("inode %d: symlink block %d: bad CRC, owner or UUID", ino, i)
			}
			b = b[symlinkHdr:]
		}
		out = append(out, b[:want]...)
	}
	return string(out), nil
}
