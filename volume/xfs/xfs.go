// Package xfs reads XFS file systems (v5, as current mkfs.xfs makes them,
// and v4) through an io.ReaderAt.
//
// It is a reader of its own; docs/xfs.md tells why the masahiro331 reader
// was not adopted. An FS and its Files are immutable after Open apart from
// bounded, mutex-guarded caches, so they are safe for concurrent use.
//
// Supported: block sizes 512 B-64 KiB, directory blocks larger than a
// block (sb_dirblklog), v1/v2/v3 inodes (v3 inode CRCs are checked; a bad
// one is ErrCorrupt for that inode only), classic and bigtime timestamps,
// 64-bit extent counters (nrext64), data and attribute forks in local,
// extents and B+tree (bmbt) format, directories in short-form, block,
// leaf, node and B+tree-mapped form with and without ftype, inline and
// remote symlinks, holes and unwritten extents (both read as zeros),
// user.* extended attributes (short-form, leaf and node attribute forks,
// local and remote values) as streams. v5 metadata blocks are checked
// against their CRC, magic, block number and owner.
//
// Lookup in leaf and node directories goes through the directory's hash
// index and reads only the blocks on the way (each hit is checked against
// the entry it points to); a name the index does not have is looked up in
// the directory's parsed listing, so an index that lies is reported as
// ErrCorrupt rather than as a missing name. Listings, inodes and metadata
// blocks are cached in byte-bounded LRU caches.
//
// The log is never replayed: Open reads the on-disk state, and Dirty
// reports whether the log holds changes that recovery would have applied
// (see Dirty for what is checked). Realtime files (their data lives on a
// separate device) are not readable: ErrUnsupported.
//
// Corrupt structures give errors wrapping volume.ErrCorrupt for the
// affected inode only; B+tree depths, loops and counts are bounded, and
// allocations are capped by what the volume can hold.
package xfs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/bits"
	"strings"
	"sync"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/lru"
)

// Superblock constants.
const (
	sbMagic = 0x58465342 // "XFSB"

	versionNumMask = 0x000F
	versionAttrBit = 0x0010
	versionNlink   = 0x0020
	versionDirV2   = 0x2000
	versionBorg    = 0x4000 // ASCII case-insensitive names (v4 only)
	versionMore    = 0x8000 // sb_features2 is valid

	features2Ftype = 0x0200

	incompatFtype      = 0x01
	incompatSpinodes   = 0x02
	incompatMetaUUID   = 0x04
	incompatBigtime    = 0x08
	incompatNeedRepair = 0x10
	incompatNrext64    = 0x20
	incompatExchange   = 0x40
	incompatParent     = 0x80
	incompatMetadir    = 0x100

	supportedIncompat = incompatFtype | incompatSpinodes | incompatMetaUUID | incompatBigtime |
		incompatNeedRepair | incompatNrext64 | incompatExchange | incompatParent | incompatMetadir
)

// Cache bounds in bytes.
const (
	blockCacheBytes   = 8 << 20
	inodeCacheBytes   = 4 << 20
	dirCacheBytes     = 64 << 20
	checkedCacheBytes = 16 << 20
	maxDirBytes       = 1 << 30 // directory data read for one listing
)

// FS is an open XFS file system. It is safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	size int64

	bs        int64 // block size
	blockLog  uint
	sectSize  int64
	dblocks   uint64
	agblocks  uint64
	agcount   uint64
	agblklog  uint
	inopblog  uint
	inodeSize int64
	dirBlkLog uint
	dirBlk    int64 // directory block size in bytes
	rootIno   uint64
	v5        bool
	ftype     bool
	nrext64   bool
	uuid      [16]byte // the metadata UUID stamped into v5 blocks
	label     string
	logStart  uint64 // first log block (fs block number), 0 if external
	logBlocks uint64
	dirty     bool

	agMu  sync.Mutex
	agErr map[uint64]error // AGI checks done so far

	blockCache   *lru.Cache[uint64, []byte]
	inodeCache   *lru.Cache[uint64, *inode]
	dirCache     *lru.Cache[uint64, *dir]
	checkedCache *lru.Cache[checkedKey, any] // structures already checked
}

// checkedKey names a structure of one inode's fork that has passed its
// checks (magic, CRC, owner, records): a bmbt node by file-system block,
// or a directory block by fork block.
type checkedKey struct {
	ino   uint64
	kind  uint8 // kindBmbt|fork, kindDirBlock
	block uint64
	level int
}

const (
	kindBmbtData = iota
	kindBmbtAttr
	kindDirBlock
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcOK checks the little-endian CRC-32C stored at off in b, computed over
// b with that field taken as zero.
func crcOK(b []byte, off int) bool {
	if off+4 > len(b) {
		return false
	}
	h := crc32.Update(0, castagnoli, b[:off])
	h = crc32.Update(h, castagnoli, []byte{0, 0, 0, 0})
	h = crc32.Update(h, castagnoli, b[off+4:])
	return h == binary.LittleEndian.Uint32(b[off:])
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func corrupt(format string, args ...any) error {
	return fmt.Errorf("xfs: "+format+": %w", append(args, volume.ErrCorrupt)...)
}

// Probe reports whether r starts with an XFS superblock magic.
func Probe(r io.ReaderAt) bool {
	b := make([]byte, 4)
	if n, _ := r.ReadAt(b, 0); n != 4 {
		return false
	}
	return be32(b) == sbMagic
}

// Open opens the XFS file system in r, which is size bytes long. A dirty
// log is not replayed (see Dirty).
func Open(r io.ReaderAt, size int64) (*FS, error) {
	sb := make([]byte, 512)
	if size < 512 {
		return nil, corrupt("volume of %d bytes too small", size)
	}
	if err := readFull(r, sb, 0); err != nil {
		return nil, fmt.Errorf("xfs: reading superblock: %w", err)
	}
	bad := func(field string, v any) error {
		return corrupt("superblock: invalid %s %v", field, v)
	}
	if m := be32(sb); m != sbMagic {
		return nil, bad("sb_magicnum", fmt.Sprintf("%#08x", m))
	}
	f := &FS{r: r, size: size, agErr: map[uint64]error{}}
	bs := be32(sb[0x04:])
	blockLog := uint(sb[0x78])
	if bs < 512 || bs > 65536 || bs&(bs-1) != 0 {
		return nil, bad("sb_blocksize", bs)
	}
	if 1<<blockLog != bs {
		return nil, bad("sb_blocklog", blockLog)
	}
	f.bs, f.blockLog = int64(bs), blockLog
	sect := be16(sb[0x66:])
	if sect < 512 || sect > 32768 || sect&(sect-1) != 0 || int64(sect) > f.bs {
		return nil, bad("sb_sectsize", sect)
	}
	if 1<<sb[0x79] != int(sect) {
		return nil, bad("sb_sectlog", sb[0x79])
	}
	f.sectSize = int64(sect)
	version := be16(sb[0x64:])
	switch version & versionNumMask {
	case 4:
		if version&versionDirV2 == 0 {
			return nil, fmt.Errorf("xfs: version 1 directories: %w", volume.ErrUnsupported)
		}
		if version&versionBorg != 0 {
			return nil, fmt.Errorf("xfs: ASCII case-insensitive directories: %w", volume.ErrUnsupported)
		}
		if version&versionMore != 0 && be32(sb[0xC8:])&features2Ftype != 0 {
			f.ftype = true
		}
	case 5:
		f.v5 = true
		if !crcOK(make512(r, sb, f.sectSize), 0xE0) {
			return nil, bad("sb_crc", fmt.Sprintf("%#08x", binary.LittleEndian.Uint32(sb[0xE0:])))
		}
		incompat := be32(sb[0xD8:])
		if u := incompat &^ supportedIncompat; u != 0 {
			return nil, fmt.Errorf("xfs: incompatible features %#x: %w", u, volume.ErrUnsupported)
		}
		f.ftype = incompat&incompatFtype != 0
		f.nrext64 = incompat&incompatNrext64 != 0
		copy(f.uuid[:], sb[0x20:0x30])
		if incompat&incompatMetaUUID != 0 {
			copy(f.uuid[:], sb[0xF8:0x108])
		}
	default:
		return nil, bad("sb_versionnum", fmt.Sprintf("%#04x", version))
	}
	isz := be16(sb[0x68:])
	minInode := uint16(256)
	if f.v5 {
		minInode = 512
	}
	if isz < minInode || isz > 2048 || isz&(isz-1) != 0 || int64(isz) > f.bs {
		return nil, bad("sb_inodesize", isz)
	}
	if 1<<sb[0x7A] != int(isz) {
		return nil, bad("sb_inodelog", sb[0x7A])
	}
	f.inodeSize = int64(isz)
	if ipb := be16(sb[0x6A:]); int64(ipb) != f.bs/f.inodeSize {
		return nil, bad("sb_inopblock", ipb)
	}
	f.inopblog = uint(sb[0x7B])
	if 1<<f.inopblog != f.bs/f.inodeSize {
		return nil, bad("sb_inopblog", f.inopblog)
	}
	f.agblocks = uint64(be32(sb[0x54:]))
	if f.agblocks < 64 {
		return nil, bad("sb_agblocks", f.agblocks)
	}
	f.agblklog = uint(sb[0x7C])
	if want := uint(bits.Len64(f.agblocks - 1)); f.agblklog != want {
		return nil, bad("sb_agblklog", f.agblklog)
	}
	f.agcount = uint64(be32(sb[0x58:]))
	if f.agcount == 0 {
		return nil, bad("sb_agcount", f.agcount)
	}
	f.dblocks = be64(sb[0x08:])
	if f.dblocks <= (f.agcount-1)*f.agblocks || f.dblocks > f.agcount*f.agblocks {
		return nil, bad("sb_dblocks", fmt.Sprintf("%d (%d AGs of %d blocks)", f.dblocks, f.agcount, f.agblocks))
	}
	if f.dblocks > uint64(size)/uint64(f.bs) {
		return nil, bad("sb_dblocks", fmt.Sprintf("%d: %d bytes, beyond the %d-byte volume", f.dblocks, f.dblocks*uint64(f.bs), size))
	}
	f.dirBlkLog = uint(sb[0xC0])
	if f.dirBlkLog > 16 || f.bs<<f.dirBlkLog > 65536 {
		return nil, bad("sb_dirblklog", f.dirBlkLog)
	}
	f.dirBlk = f.bs << f.dirBlkLog
	f.rootIno = be64(sb[0x38:])
	if _, _, ok := f.inoLocation(f.rootIno); !ok {
		return nil, bad("sb_rootino", f.rootIno)
	}
	f.logStart = be64(sb[0x30:])
	f.logBlocks = uint64(be32(sb[0x60:]))
	if f.logStart != 0 {
		start, ok := f.fsbToBlock(f.logStart)
		if !ok || f.logBlocks == 0 || f.logBlocks > f.dblocks-start {
			return nil, bad("sb_logstart/sb_logblocks", fmt.Sprintf("%d/%d", f.logStart, f.logBlocks))
		}
	}
	name := sb[0x6C:0x78]
	if i := strings.IndexByte(string(name), 0); i >= 0 {
		name = name[:i]
	}
	f.label = string(name)

	f.blockCache = lru.New[uint64, []byte](blockCacheBytes)
	f.inodeCache = lru.New[uint64, *inode](inodeCacheBytes)
	f.dirCache = lru.New[uint64, *dir](dirCacheBytes)
	f.checkedCache = lru.New[checkedKey, any](checkedCacheBytes)

	f.dirty = sb[0x7E] != 0 || f.logDirty()
	in, err := f.inode(f.rootIno)
	if err != nil {
		return nil, fmt.Errorf("xfs: root directory: %w", err)
	}
	if !in.isDir() {
		return nil, corrupt("root inode %d is not a directory", f.rootIno)
	}
	return f, nil
}

// make512 returns the superblock sector (sectSize bytes) for the CRC
// check, re-reading it when the sector is larger than what was read.
func make512(r io.ReaderAt, sb []byte, sect int64) []byte {
	if int64(len(sb)) >= sect {
		return sb[:sect]
	}
	b := make([]byte, sect)
	if err := readFull(r, b, 0); err != nil {
		return sb
	}
	return b
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// fsbToBlock converts a file-system block number (AG number in the high
// bits, block in AG in the low sb_agblklog bits) to a linear block
// number, checking that it lies in the file system.
func (f *FS) fsbToBlock(fsb uint64) (uint64, bool) {
	agno := fsb >> f.agblklog
	agbno := fsb & (1<<f.agblklog - 1)
	if agno >= f.agcount || agbno >= f.agblocks {
		return 0, false
	}
	b := agno*f.agblocks + agbno
	return b, b < f.dblocks
}

// extentToBlock converts an extent of n blocks at fsb to a linear block
// number, checking that the whole extent lies in one AG of the file
// system.
func (f *FS) extentToBlock(fsb, n uint64) (uint64, bool) {
	b, ok := f.fsbToBlock(fsb)
	if !ok || n == 0 || n > f.agblocks-(fsb&(1<<f.agblklog-1)) || n > f.dblocks-b {
		return 0, false
	}
	return b, true
}

// block returns metadata block blk (linear) through the cache. The
// result must not be modified.
func (f *FS) block(blk uint64) ([]byte, error) {
	if b, ok := f.blockCache.Get(blk); ok {
		return b, nil
	}
	if blk >= f.dblocks {
		return nil, corrupt("block %d beyond end of file system", blk)
	}
	b := make([]byte, f.bs)
	if err := readFull(f.r, b, int64(blk)*f.bs); err != nil {
		return nil, fmt.Errorf("xfs: reading block %d: %w", blk, err)
	}
	f.blockCache.Add(blk, b, len(b))
	return b, nil
}

// checkAG checks the AGI header of AG agno once; inodes of an AG whose
// header is damaged are not trusted.
func (f *FS) checkAG(agno uint64) error {
	f.agMu.Lock()
	err, done := f.agErr[agno]
	f.agMu.Unlock()
	if done {
		return err
	}
	err = f.readAGI(agno)
	f.agMu.Lock()
	f.agErr[agno] = err
	f.agMu.Unlock()
	return err
}

func (f *FS) readAGI(agno uint64) error {
	const agiMagic = 0x58414749 // "XAGI"
	b := make([]byte, f.sectSize)
	off := int64(agno*f.agblocks)*f.bs + 2*f.sectSize
	if err := readFull(f.r, b, off); err != nil {
		return fmt.Errorf("xfs: reading AGI of AG %d: %w", agno, err)
	}
	if m := be32(b); m != agiMagic {
		return corrupt("AGI of AG %d: bad agi_magicnum %#08x", agno, m)
	}
	if v := be32(b[4:]); v != 1 {
		return corrupt("AGI of AG %d: agi_versionnum %d", agno, v)
	}
	if s := be32(b[8:]); uint64(s) != agno {
		return corrupt("AGI of AG %d: agi_seqno %d", agno, s)
	}
	want := min(f.agblocks, f.dblocks-agno*f.agblocks)
	if l := be32(b[12:]); uint64(l) != want {
		return corrupt("AGI of AG %d: agi_length %d, want %d", agno, l, want)
	}
	if f.v5 && !crcOK(b, 312) {
		return corrupt("AGI of AG %d: bad agi_crc", agno)
	}
	return nil
}

// Type returns "xfs".
func (f *FS) Type() string { return "xfs" }

// Label returns the volume name (sb_fname).
func (f *FS) Label() string { return f.label }

// Root returns the root directory's inode number (sb_rootino).
func (f *FS) Root() uint64 { return f.rootIno }

// CaseInsensitive reports false: XFS names are compared as bytes.
func (f *FS) CaseInsensitive() bool { return false }

// BlockSize returns the file system block size in bytes.
func (f *FS) BlockSize() int64 { return f.bs }

// Dirty reports whether the log was not cleanly unmounted, so that what
// Open shows is the on-disk state without the changes log recovery would
// apply. It is true when sb_inprogress is set, or when the newest record
// of the internal log (found like the kernel finds the log head: the
// point where the cycle number stamped in every 512-byte log sector
// drops) is not a lone unmount record that ends at the head. An external
// log cannot be checked: Dirty then reports only sb_inprogress.
func (f *FS) Dirty() bool { return f.dirty }

var (
	_ volume.FS       = (*FS)(nil)
	_ volume.Extenter = (*FS)(nil)
)

// notExist wraps fs.ErrNotExist for a missing stream.
func notExist(format string, args ...any) error {
	return fmt.Errorf("xfs: "+format+": %w", append(args, fs.ErrNotExist)...)
}
