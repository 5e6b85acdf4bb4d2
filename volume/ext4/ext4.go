// Package ext4 reads ext2, ext3 and ext4 file systems through an
// io.ReaderAt.
//
// It is a reader of its own: go-diskfs's ext4 returns wrong data for holes
// and unwritten extents, and the masahiro331 reader is sequential and not
// safe across goroutines. Here an FS and its Files are immutable after
// Open apart from bounded, mutex-guarded caches, so they are safe for
// concurrent use.
//
// Supported: 1-64 KiB blocks, 64bit, flex_bg, meta_bg, bigalloc, sparse_super(2),
// 128- and 256-byte (or larger) inodes with nanosecond and epoch-extended
// timestamps, extent trees of any depth (unwritten extents and holes read as
// zeros, also past the last extent), ext2/3 indirect block maps, inline
// data, linear and htree directories (htree leaves are read linearly), fast
// and slow symlinks. Checksums (metadata_csum) are not verified. Block
// mappings are looked up per read through cached tree and indirect blocks,
// so opening a huge or badly fragmented file costs nothing up front;
// directories are parsed whole on first use and cached.
//
// A journal that needs recovery is replayed in memory at Open: the newest
// committed copy of each journalled block is read from the journal instead
// of its home location; the image is never written. Fast-commit areas and
// external journal devices are ignored (the latter cannot be reached from
// one volume), so such volumes are read as they are on disk.
//
// Not supported: encrypted files and directories (ErrUnsupported), verity,
// and case-insensitive lookup in casefold directories (names match
// exactly). Corrupt structures give errors wrapping volume.ErrCorrupt for
// the affected inode only.
package ext4

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/lru"
)

// RootIno is the inode number of the root directory.
const RootIno = 2

// Feature flags.
const (
	compatHasJournal   = 0x4
	compatSparseSuper2 = 0x200

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64Bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	supportedIncompat = incompatFiletype | incompatRecover | incompatMetaBG | incompatExtents |
		incompat64Bit | incompatMMP | incompatFlexBG | incompatEAInode | incompatCsumSeed |
		incompatLargeDir | incompatInlineData | incompatEncrypt | incompatCasefold

	roCompatSparseSuper = 0x1
	roCompatHugeFile    = 0x8
	roCompatBigalloc    = 0x200
	roCompatGdtCsum     = 0x10
	roCompatMetaCsum    = 0x400
)

// Cache bounds.
const (
	blockCacheBytes = 8 << 20   // metadata blocks (inode tables, tree nodes)
	dirCacheCost    = 1 << 18   // directory entries
	maxSymlink      = 64 << 10  // longest slow symlink target read
	maxDirBytes     = 512 << 20 // directories larger than this are refused
)

// FS is an open ext2/3/4 file system. It is safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	size int64

	bs             int64 // block size
	blocks         uint64
	firstDataBlock uint64
	blocksPerGroup uint64
	inodesPerGroup uint32
	inodesCount    uint32
	inodeSize      int64
	descSize       int64
	groups         uint64
	compat         uint32
	incompat       uint32
	roCompat       uint32
	label          string
	journalIno     uint32

	gdt []byte // all group descriptors, descSize each

	journal *overlay // replayed journal blocks, nil if none

	blockCache *lru.Cache[uint64, []byte]
	dirCache   *lru.Cache[uint64, *dir]
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("ext4: "+format+": %w", append(args, volume.ErrCorrupt)...)
}

// Probe reports whether r holds an ext2/3/4 superblock.
func Probe(r io.ReaderAt) bool {
	b := make([]byte, 2)
	if n, _ := r.ReadAt(b, 1024+0x38); n != 2 {
		return false
	}
	return binary.LittleEndian.Uint16(b) == 0xEF53
}

// Open opens the file system in r, which is size bytes long. A journal
// that needs recovery is replayed in memory.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	sb := make([]byte, 1024)
	if size < 2048 {
		return nil, corrupt("volume of %d bytes too small", size)
	}
	if err := volume.ReadFull(r, sb, 1024); err != nil {
		return nil, fmt.Errorf("ext4: reading superblock: %w", err)
	}
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(sb[o:]) }
	le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(sb[o:]) }
	bad := func(field string, v any) error {
		return corrupt("superblock: invalid %s %v", field, v)
	}
	if m := le16(0x38); m != 0xEF53 {
		return nil, bad("magic", fmt.Sprintf("%#04x", m))
	}
	f := &FS{
		r:              r,
		size:           size,
		inodesCount:    le32(0x0),
		firstDataBlock: uint64(le32(0x14)),
		blocksPerGroup: uint64(le32(0x20)),
		inodesPerGroup: le32(0x28),
		compat:         le32(0x5C),
		incompat:       le32(0x60),
		roCompat:       le32(0x64),
		journalIno:     le32(0xE0),
	}
	logBS := le32(0x18)
	if logBS > 6 {
		return nil, bad("s_log_block_size", logBS)
	}
	f.bs = 1024 << logBS
	rev := le32(0x4C)
	if rev == 0 {
		f.inodeSize = 128
		f.compat, f.incompat, f.roCompat = 0, 0, 0
	} else {
		f.inodeSize = int64(le16(0x58))
		if f.inodeSize < 128 || f.inodeSize > f.bs || f.inodeSize&(f.inodeSize-1) != 0 {
			return nil, bad("s_inode_size", f.inodeSize)
		}
	}
	if u := f.incompat &^ supportedIncompat; u != 0 {
		return nil, fmt.Errorf("ext4: incompatible features %#x: %w", u, volume.ErrUnsupported)
	}
	f.blocks = uint64(le32(0x4))
	f.descSize = 32
	if f.incompat&incompat64Bit != 0 {
		f.blocks |= uint64(le32(0x150)) << 32
		f.descSize = int64(le16(0xFE))
		if f.descSize < 64 || f.descSize > 1024 || f.descSize&(f.descSize-1) != 0 {
			return nil, bad("s_desc_size", f.descSize)
		}
	}
	maxPerGroup := uint64(f.bs) * 8
	if f.roCompat&roCompatBigalloc != 0 {
		// With bigalloc the bitmaps count clusters, not blocks.
		logCluster := le32(0x1C)
		if logCluster < logBS || logCluster > logBS+16 {
			return nil, bad("s_log_cluster_size", logCluster)
		}
		maxPerGroup <<= logCluster - logBS
	}
	if f.blocksPerGroup == 0 || f.blocksPerGroup > maxPerGroup {
		return nil, bad("s_blocks_per_group", f.blocksPerGroup)
	}
	if f.inodesPerGroup == 0 || int64(f.inodesPerGroup) > f.bs*8 {
		return nil, bad("s_inodes_per_group", f.inodesPerGroup)
	}
	if f.bs == 1024 && f.firstDataBlock != 1 || f.bs > 1024 && f.firstDataBlock != 0 {
		return nil, bad("s_first_data_block", f.firstDataBlock)
	}
	if f.blocks <= f.firstDataBlock || f.blocks > (1<<62)/uint64(f.bs) {
		return nil, bad("s_blocks_count", f.blocks)
	}
	f.groups = (f.blocks - f.firstDataBlock + f.blocksPerGroup - 1) / f.blocksPerGroup
	if f.inodesCount == 0 || uint64(f.inodesCount) > f.groups*uint64(f.inodesPerGroup) {
		return nil, bad("s_inodes_count", f.inodesCount)
	}
	if f.groups*uint64(f.descSize) > 256<<20 {
		return nil, bad("s_blocks_count", fmt.Sprintf("%d (%d groups)", f.blocks, f.groups))
	}
	name := sb[0x78:0x88]
	if i := strings.IndexByte(string(name), 0); i >= 0 {
		name = name[:i]
	}
	f.label = string(name)

	f.blockCache = lru.New[uint64, []byte](int(blockCacheBytes / f.bs))
	f.dirCache = lru.New[uint64, *dir](dirCacheCost)

	if err := f.loadGDT(le32(0x104), le32(0x24C), le32(0x250)); err != nil {
		return nil, err
	}
	if f.incompat&incompatRecover != 0 && f.compat&compatHasJournal != 0 && f.journalIno != 0 {
		ov, err := f.replayJournal()
		if err != nil {
			return nil, fmt.Errorf("ext4: replaying journal: %w", err)
		}
		f.journal = ov
		if ov != nil {
			if err := f.reloadFromJournal(); err != nil {
				return nil, err
			}
		}
	}
	if _, err := f.inode(RootIno); err != nil {
		return nil, fmt.Errorf("ext4: root directory: %w", err)
	}
	return f, nil
}

// loadGDT reads all group descriptors.
func (f *FS) loadGDT(firstMetaBG, backup1, backup2 uint32) error {
	perBlock := uint64(f.bs / f.descSize)
	nblocks := (f.groups + perBlock - 1) / perBlock
	f.gdt = make([]byte, f.groups*uint64(f.descSize))
	metaBG := f.incompat&incompatMetaBG != 0
	for i := uint64(0); i < nblocks; {
		var blk uint64
		n := uint64(1)
		if !metaBG || i < uint64(firstMetaBG) {
			blk = f.firstDataBlock + 1 + i
			// Read the run of classic descriptor blocks at once.
			n = nblocks - i
			if metaBG && uint64(firstMetaBG) < nblocks {
				n = uint64(firstMetaBG) - i
			}
		} else {
			g := i * perBlock
			blk = f.firstDataBlock + g*f.blocksPerGroup
			if f.groupHasSuper(g, backup1, backup2) {
				blk++
			}
		}
		if blk+n > f.blocks {
			return corrupt("group descriptor block %d beyond end of file system", blk)
		}
		off := i * uint64(f.bs)
		end := min(off+n*uint64(f.bs), uint64(len(f.gdt)))
		if err := f.readBlocks(f.gdt[off:end], blk); err != nil {
			return fmt.Errorf("ext4: reading group descriptors: %w", err)
		}
		i += n
	}
	return nil
}

// groupHasSuper reports whether group g holds a superblock backup.
func (f *FS) groupHasSuper(g uint64, backup1, backup2 uint32) bool {
	if g == 0 {
		return true
	}
	if f.compat&compatSparseSuper2 != 0 {
		return g == uint64(backup1) || g == uint64(backup2)
	}
	if f.roCompat&roCompatSparseSuper == 0 || g == 1 {
		return true
	}
	if g&1 == 0 {
		return false
	}
	for _, base := range []uint64{3, 5, 7} {
		p := base
		for p < g {
			p *= base
		}
		if p == g {
			return true
		}
	}
	return false
}

// reloadFromJournal re-reads what Open read before the journal overlay
// existed: the superblock's volume name and the group descriptors.
func (f *FS) reloadFromJournal() error {
	sbBlock := uint64(1024 / f.bs) // 1 for 1 KiB blocks, else 0
	if b, ok := f.journal.get(sbBlock); ok {
		off := 1024 % f.bs
		name := b[off+0x78 : off+0x88]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		f.label = string(name)
	}
	sb := make([]byte, 1024)
	if err := f.readAt(sb, 1024); err != nil {
		return fmt.Errorf("ext4: reading superblock: %w", err)
	}
	return f.loadGDT(binary.LittleEndian.Uint32(sb[0x104:]), binary.LittleEndian.Uint32(sb[0x24C:]), binary.LittleEndian.Uint32(sb[0x250:]))
}

// readAt reads p at byte offset off, with journalled blocks replaced.
func (f *FS) readAt(p []byte, off int64) error {
	if err := volume.ReadFull(f.r, p, off); err != nil {
		return err
	}
	if f.journal != nil {
		f.journal.patch(p, off, f.bs)
	}
	return nil
}

// readBlocks reads consecutive blocks from blk into p (journal applied).
func (f *FS) readBlocks(p []byte, blk uint64) error {
	if blk >= f.blocks || uint64(len(p)) > (f.blocks-blk)*uint64(f.bs) {
		return corrupt("block %d beyond end of file system", blk)
	}
	if err := f.readAt(p, int64(blk)*f.bs); err != nil {
		return fmt.Errorf("ext4: reading block %d: %w", blk, err)
	}
	return nil
}

// block returns metadata block blk through the cache. The result must not
// be modified.
func (f *FS) block(blk uint64) ([]byte, error) {
	if b, ok := f.blockCache.Get(blk); ok {
		return b, nil
	}
	b := make([]byte, f.bs)
	if err := f.readBlocks(b, blk); err != nil {
		return nil, err
	}
	f.blockCache.Add(blk, b, 1)
	return b, nil
}

// Type returns "ext4" (also for ext2 and ext3 volumes).
func (f *FS) Type() string { return "ext4" }

// Label returns the volume name.
func (f *FS) Label() string { return f.label }

// Root returns the root directory's inode number, 2.
func (f *FS) Root() uint64 { return RootIno }

// CaseInsensitive reports false: ext4 names are case-sensitive.
func (f *FS) CaseInsensitive() bool { return false }

// HasUnixPermissions reports true: ext2/3/4 store permission bits and
// owners (volume.UnixPermissions).
func (f *FS) HasUnixPermissions() bool { return true }

// BlockSize returns the file system block size in bytes.
func (f *FS) BlockSize() int64 { return f.bs }

// Streams returns nil: ext4 has no alternate data streams.
func (f *FS) Streams(ino uint64) ([]string, error) { return nil, nil }

// OpenStream fails: ext4 has no alternate data streams.
func (f *FS) OpenStream(ino uint64, name string) (volume.File, error) {
	return nil, fmt.Errorf("ext4: stream %q of inode %d: %w", name, ino, fs.ErrNotExist)
}

var _ volume.FS = (*FS)(nil)
