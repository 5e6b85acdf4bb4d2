package ext4

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

// seg is a run of n logical blocks that are either mapped to physical
// blocks pblk.. or read as zeros (a hole or an unwritten extent).
type seg struct {
	pblk, n uint64
	mapped  bool
}

const maxTreeDepth = 5

// maxLogical is the first logical block number ext4 cannot address.
const maxLogical = 1 << 32

// segment returns the run starting at logical block lb of in, at most maxN
// blocks long. The mapping is looked up afresh through the (cached) tree or
// indirect blocks, so the work is bounded by what is read.
func (f *FS) segment(in *inode, lb, maxN uint64) (seg, error) {
	if maxN == 0 {
		maxN = 1
	}
	if lb >= maxLogical {
		return seg{n: maxN}, nil
	}
	maxN = min(maxN, maxLogical-lb)
	if in.flags&flagExtents != 0 {
		return f.extentSegment(in, lb, maxN)
	}
	return f.blockMapSegment(in, lb, maxN)
}

// extentNode checks an extent tree node and returns its entry count and
// depth.
func (f *FS) extentNode(in *inode, node []byte, wantDepth int) (entries, depth int, err error) {
	if len(node) < 12 || binary.LittleEndian.Uint16(node) != 0xF30A {
		return 0, 0, corrupt("inode %d: bad extent header", in.ino)
	}
	entries = int(binary.LittleEndian.Uint16(node[2:]))
	maxEntries := int(binary.LittleEndian.Uint16(node[4:]))
	depth = int(binary.LittleEndian.Uint16(node[6:]))
	if depth > maxTreeDepth || wantDepth >= 0 && depth != wantDepth {
		return 0, 0, corrupt("inode %d: extent tree depth %d", in.ino, depth)
	}
	if entries > maxEntries || 12+12*entries > len(node) {
		return 0, 0, corrupt("inode %d: extent node with %d entries", in.ino, entries)
	}
	// Entries must be in increasing logical order.
	prev := int64(-1)
	for i := 0; i < entries; i++ {
		l := int64(binary.LittleEndian.Uint32(node[12+12*i:]))
		if l <= prev {
			return 0, 0, corrupt("inode %d: extent entries out of order at logical block %d", in.ino, l)
		}
		prev = l
	}
	return entries, depth, nil
}

// checkExtentRoot checks the extent tree root in the inode, including
// where its entries point.
func (f *FS) checkExtentRoot(in *inode) error {
	node := in.iblock[:]
	entries, depth, err := f.extentNode(in, node, -1)
	if err != nil {
		return err
	}
	for i := 0; i < entries; i++ {
		e := node[12+12*i:]
		if depth > 0 {
			child := uint64(binary.LittleEndian.Uint16(e[8:]))<<32 | uint64(binary.LittleEndian.Uint32(e[4:]))
			if child < f.firstDataBlock || child >= f.blocks {
				return corrupt("inode %d: extent tree block %d beyond file system", in.ino, child)
			}
			continue
		}
		n := uint64(binary.LittleEndian.Uint16(e[4:]))
		if n > 32768 {
			n -= 32768
		}
		pblk := uint64(binary.LittleEndian.Uint16(e[6:]))<<32 | uint64(binary.LittleEndian.Uint32(e[8:]))
		if n > 0 && (pblk < f.firstDataBlock || pblk >= f.blocks || n > f.blocks-pblk) {
			return corrupt("inode %d: extent at block %d beyond file system", in.ino, pblk)
		}
	}
	return nil
}

func (f *FS) extentSegment(in *inode, lb, maxN uint64) (seg, error) {
	node := in.iblock[:]
	wantDepth := -1
	for level := 0; level <= maxTreeDepth; level++ {
		entries, depth, err := f.extentNode(in, node, wantDepth)
		if err != nil {
			return seg{}, err
		}
		start := func(i int) uint64 { return uint64(binary.LittleEndian.Uint32(node[12+12*i:])) }
		// i is the last entry starting at or before lb.
		i := sort.Search(entries, func(i int) bool { return start(i) > lb }) - 1
		if i+1 < entries {
			maxN = min(maxN, start(i+1)-lb)
		}
		if depth == 0 {
			if i >= 0 {
				e := node[12+12*i:]
				s := start(i)
				n := uint64(binary.LittleEndian.Uint16(e[4:]))
				uninit := n > 32768
				if uninit {
					n -= 32768
				}
				if lb < s+n {
					pblk := uint64(binary.LittleEndian.Uint16(e[6:]))<<32 | uint64(binary.LittleEndian.Uint32(e[8:]))
					if pblk < f.firstDataBlock || pblk >= f.blocks || n > f.blocks-pblk {
						return seg{}, corrupt("inode %d: extent at block %d beyond file system", in.ino, pblk)
					}
					cnt := min(s+n-lb, maxN)
					if uninit {
						return seg{n: cnt}, nil
					}
					return seg{pblk: pblk + (lb - s), n: cnt, mapped: true}, nil
				}
			}
			return seg{n: maxN}, nil // a hole up to the next extent
		}
		if entries == 0 {
			return seg{}, corrupt("inode %d: empty extent index", in.ino)
		}
		if i < 0 {
			i = 0
		}
		e := node[12+12*i:]
		child := uint64(binary.LittleEndian.Uint16(e[8:]))<<32 | uint64(binary.LittleEndian.Uint32(e[4:]))
		if child < f.firstDataBlock || child >= f.blocks {
			return seg{}, corrupt("inode %d: extent tree block %d beyond file system", in.ino, child)
		}
		node, err = f.block(child)
		if err != nil {
			return seg{}, fmt.Errorf("ext4: inode %d: %w", in.ino, err)
		}
		wantDepth = depth - 1
	}
	return seg{}, corrupt("inode %d: extent tree too deep", in.ino)
}

// bmap returns the physical block of logical block lb in an ext2/3 block
// map, or 0 and the number of blocks from lb to the end of the hole.
func (f *FS) bmap(in *inode, lb uint64) (p, hole uint64, err error) {
	if lb < 12 {
		return uint64(binary.LittleEndian.Uint32(in.iblock[4*lb:])), 1, nil
	}
	ptrs := uint64(f.bs / 4)
	lb -= 12
	span := ptrs
	level := 1
	for lb >= span {
		lb -= span
		level++
		if level > 3 {
			return 0, maxLogical, nil
		}
		span *= ptrs
	}
	ptr := uint64(binary.LittleEndian.Uint32(in.iblock[4*(11+level):]))
	for ; level > 0; level-- {
		if ptr == 0 {
			return 0, span - lb, nil
		}
		if ptr < f.firstDataBlock || ptr >= f.blocks {
			return 0, 0, corrupt("inode %d: indirect block %d beyond file system", in.ino, ptr)
		}
		b, err := f.block(ptr)
		if err != nil {
			return 0, 0, fmt.Errorf("ext4: inode %d: %w", in.ino, err)
		}
		span /= ptrs
		ptr = uint64(binary.LittleEndian.Uint32(b[4*(lb/span):]))
		lb %= span
	}
	return ptr, 1, nil
}

func (f *FS) blockMapSegment(in *inode, lb, maxN uint64) (seg, error) {
	p, hole, err := f.bmap(in, lb)
	if err != nil {
		return seg{}, err
	}
	if p == 0 {
		return seg{n: min(hole, maxN)}, nil
	}
	if p < f.firstDataBlock || p >= f.blocks {
		return seg{}, corrupt("inode %d: block %d beyond file system", in.ino, p)
	}
	n := uint64(1)
	for n < maxN {
		q, _, err := f.bmap(in, lb+n)
		if err != nil || q != p+n || q >= f.blocks {
			break
		}
		n++
	}
	return seg{pblk: p, n: n, mapped: true}, nil
}

// File is an open ext4 file. It is safe for concurrent use.
type File struct {
	fs     *FS
	in     *inode
	size   int64
	inline []byte // inline data, if the file has it
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
		return nil, fmt.Errorf("ext4: inode %d is not a regular file: %w", ino, fs.ErrInvalid)
	}
	return f.openInode(in)
}

func (f *FS) openInode(in *inode) (*File, error) {
	if in.flags&flagEncrypt != 0 {
		return nil, fmt.Errorf("ext4: inode %d is encrypted: %w", in.ino, volume.ErrUnsupported)
	}
	fl := &File{fs: f, in: in, size: in.size}
	if in.flags&flagInline != 0 {
		data, err := in.inlineData()
		if err != nil {
			return nil, err
		}
		fl.inline = data[:in.size]
		return fl, nil
	}
	if in.flags&flagExtents != 0 {
		// Check the root node now so Open reports a damaged tree.
		if err := f.checkExtentRoot(in); err != nil {
			return nil, err
		}
	}
	return fl, nil
}

// ReadAt reads len(p) bytes at off. Holes and unwritten extents read as
// zeros; each run of contiguous blocks is read with one ReadAt.
func (fl *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ext4: negative offset %d: %w", off, fs.ErrInvalid)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	if fl.inline != nil {
		copy(p, fl.inline[off:])
	} else if err := fl.read(p, off); err != nil {
		return 0, err
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}

func (fl *File) read(p []byte, off int64) error {
	bs := fl.fs.bs
	pos, end := off, off+int64(len(p))
	for pos < end {
		lb := uint64(pos / bs)
		maxN := (uint64(end-1)/uint64(bs) - lb) + 1
		s, err := fl.fs.segment(fl.in, lb, maxN)
		if err != nil {
			return err
		}
		stop := min(end, int64(lb+max(s.n, 1))*bs)
		dst := p[pos-off : stop-off]
		if !s.mapped {
			clear(dst)
		} else if err := fl.fs.readAt(dst, int64(s.pblk)*bs+pos%bs); err != nil {
			return fmt.Errorf("ext4: inode %d: reading block %d: %w", fl.in.ino, s.pblk, err)
		}
		pos = stop
	}
	return nil
}

// Readlink returns the target of symlink ino.
func (f *FS) Readlink(ino uint64) (string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	if !in.isSymlink() {
		return "", fmt.Errorf("ext4: inode %d is not a symlink: %w", ino, fs.ErrInvalid)
	}
	if in.flags&flagEncrypt != 0 {
		return "", fmt.Errorf("ext4: symlink %d is encrypted: %w", ino, volume.ErrUnsupported)
	}
	eaBlocks := uint64(0)
	if in.fileACL != 0 {
		eaBlocks = uint64(f.bs / 512)
	}
	if in.flags&(flagInline|flagExtents) == 0 && in.blocks512 <= eaBlocks {
		if in.size > 60 {
			return "", corrupt("inode %d: fast symlink of %d bytes", ino, in.size)
		}
		return string(in.iblock[:in.size]), nil
	}
	if in.size > maxSymlink {
		return "", corrupt("inode %d: symlink of %d bytes", ino, in.size)
	}
	fl, err := f.openInode(in)
	if err != nil {
		return "", err
	}
	buf := make([]byte, in.size)
	if _, err := fl.ReadAt(buf, 0); err != nil && err != io.EOF {
		return "", err
	}
	return string(buf), nil
}
