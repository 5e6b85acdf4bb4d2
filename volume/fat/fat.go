// Package fat reads FAT12, FAT16 and FAT32 file systems through an
// io.ReaderAt.
//
// It is a compact reader of its own rather than a wrapper of go-diskfs,
// whose FAT code issues one read per cluster and keeps mutable state: here
// cluster chains become runs of contiguous clusters read with one ReadAt
// each, and everything after Open is immutable or behind a mutex, so an FS
// and its Files are safe for concurrent use.
//
// Names: VFAT long names are used when their checksum matches the short
// entry; otherwise the 8.3 name, lowered where the NT case flags say so
// and decoded from code page 437. Lookup is case-insensitive and matches the
// long name or the 8.3 alias.
//
// Inode numbers are the byte offset of a file's short directory entry from
// the start of the volume; the root directory is 1. FAT has no time zone:
// timestamps are the stored wall-clock values labelled UTC; Ctime repeats
// Mtime (FAT keeps no change time) and Atime is a date at midnight. FAT has
// no owner or permissions: directories are 0755, files 0644, read-only files
// 0444.
package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/lru"
)

// RootIno is the inode number of the root directory.
const RootIno = 1

const (
	attrReadOnly = 0x01
	attrVolumeID = 0x08
	attrDir      = 0x10
	attrLFN      = 0x0F

	fatChunk       = 64 << 10 // FAT32 tables are cached in chunks of this size
	fatCacheBytes  = 8 << 20  // at most this much of a FAT32 table is cached
	dirCacheCost   = 1 << 18  // parsed directory entries kept in memory
	runCacheCost   = 1 << 16  // cluster runs kept for recently opened files
	maxDirBytes    = 2 << 20  // FAT directories hold at most 65536 entries
	maxClusterSize = 2 << 20
)

// FS is an open FAT file system. It is safe for concurrent use.
type FS struct {
	r          io.ReaderAt
	size       int64
	typ        string // "fat12", "fat16", "fat32"
	bits       int    // 12, 16, 32
	bps        int64
	cluster    int64 // bytes per cluster
	fatOff     int64 // byte offset of the active FAT
	fatBytes   int64 // bytes of FAT needed for all clusters
	rootOff    int64 // FAT12/16 fixed root directory
	rootBytes  int64
	rootClus   uint32 // FAT32 root directory cluster
	dataOff    int64
	maxCluster uint32 // highest valid cluster number
	label      string

	fat      []byte                              // whole FAT for FAT12/16
	fatCache *lru.Cache[int64, []byte]           // FAT32 chunks
	dirs     *lru.Cache[uint64, *dir]            // parsed directories
	runs     *lru.Cache[[2]uint32, []clusterRun] // first cluster, count -> runs
}

// Open opens the FAT file system in r, which is size bytes long.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 512)
	if size < 512 {
		return nil, fmt.Errorf("fat: volume of %d bytes too small: %w", size, volume.ErrCorrupt)
	}
	if err := volume.ReadFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("fat: reading boot sector: %w", err)
	}
	p, err := parseBoot(b, size)
	if err != nil {
		return nil, err
	}
	f := &FS{
		r:          r,
		size:       size,
		bits:       p.bits,
		typ:        fmt.Sprintf("fat%d", p.bits),
		bps:        int64(p.bps),
		cluster:    int64(p.bps) * int64(p.spc),
		fatOff:     int64(p.rsvd+p.activeFAT*p.fatSz) * int64(p.bps),
		fatBytes:   (int64(p.clusters) + 2) * int64(p.bits) / 8,
		rootClus:   p.rootClus,
		maxCluster: p.clusters + 1,
		label:      p.label,
		dirs:       lru.New[uint64, *dir](dirCacheCost),
		runs:       lru.New[[2]uint32, []clusterRun](runCacheCost),
	}
	if p.bits == 12 {
		f.fatBytes = (int64(p.clusters)+2)*3/2 + 1
	}
	f.rootOff = int64(p.rsvd+p.nfats*p.fatSz) * int64(p.bps)
	rootSecs := (p.rootEnt*32 + p.bps - 1) / p.bps
	f.rootBytes = int64(p.rootEnt) * 32
	f.dataOff = f.rootOff + int64(rootSecs)*int64(p.bps)
	if p.bits == 32 {
		f.rootBytes = 0
		f.fatCache = lru.New[int64, []byte](fatCacheBytes / fatChunk)
	} else {
		f.fat = make([]byte, f.fatBytes)
		if err := volume.ReadFull(r, f.fat, f.fatOff); err != nil {
			return nil, fmt.Errorf("fat: reading FAT: %w", err)
		}
	}
	root, err := f.readDir(RootIno)
	if err != nil {
		return nil, fmt.Errorf("fat: reading root directory: %w", err)
	}
	if root.label != "" {
		f.label = root.label
	}
	return f, nil
}

// Type returns "fat12", "fat16" or "fat32".
func (f *FS) Type() string { return f.typ }

// Label returns the volume label from the root directory, or else from the
// boot sector.
func (f *FS) Label() string { return f.label }

// Root returns the root directory's inode number, 1.
func (f *FS) Root() uint64 { return RootIno }

// CaseInsensitive reports true: FAT names ignore case.
func (f *FS) CaseInsensitive() bool { return true }

// ClusterSize returns the bytes per cluster.
func (f *FS) ClusterSize() int64 { return f.cluster }

// entryAt reads and checks the short directory entry that inode ino names.
func (f *FS) entryAt(ino uint64) (dirent, error) {
	var d dirent
	if ino%32 != 0 || ino < uint64(f.rootOff) || ino+32 > uint64(f.size) {
		return d, fmt.Errorf("fat: inode %d: %w", ino, fs.ErrNotExist)
	}
	if err := volume.ReadFull(f.r, d.raw[:], int64(ino)); err != nil {
		return d, fmt.Errorf("fat: inode %d: %w", ino, err)
	}
	e := d.raw[:]
	if e[0] == 0 || e[0] == 0xE5 || e[11]&0x3F == attrLFN || e[11]&attrVolumeID != 0 {
		return d, fmt.Errorf("fat: inode %d is not a directory entry: %w", ino, fs.ErrNotExist)
	}
	d.ino = ino
	d.attr = e[11]
	d.cluster = uint32(binary.LittleEndian.Uint16(e[26:]))
	if f.bits == 32 {
		d.cluster |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
	}
	d.size = binary.LittleEndian.Uint32(e[28:])
	d.short = shortName(e)
	d.name = d.short
	return d, nil
}

// Stat returns the attributes of inode ino.
func (f *FS) Stat(ino uint64) (volume.Attr, error) {
	if ino == RootIno {
		return volume.Attr{Ino: RootIno, Mode: fs.ModeDir | 0o755, Nlink: 2, Size: f.rootSize()}, nil
	}
	d, err := f.entryAt(ino)
	if err != nil {
		return volume.Attr{}, err
	}
	e := d.raw[:]
	a := volume.Attr{
		Ino:   ino,
		Nlink: 1,
		Mtime: fatTime(binary.LittleEndian.Uint16(e[24:]), binary.LittleEndian.Uint16(e[22:]), 0),
		Atime: fatTime(binary.LittleEndian.Uint16(e[18:]), 0, 0),
		Btime: fatTime(binary.LittleEndian.Uint16(e[16:]), binary.LittleEndian.Uint16(e[14:]), e[13]),
	}
	a.Ctime = a.Mtime
	if d.attr&attrDir != 0 {
		a.Mode = fs.ModeDir | 0o755
		a.Nlink = 2
		if d.cluster != 0 {
			runs, err := f.chain(d.cluster, uint32(maxDirBytes/f.cluster), false)
			if err != nil {
				return volume.Attr{}, fmt.Errorf("fat: inode %d: %w", ino, err)
			}
			for _, r := range runs {
				a.Size += int64(r.n) * f.cluster
			}
		}
		a.Alloc = a.Size
	} else {
		a.Mode = 0o644
		a.Size = int64(d.size)
		a.Alloc = (a.Size + f.cluster - 1) / f.cluster * f.cluster
	}
	if d.attr&attrReadOnly != 0 {
		a.Mode &^= 0o222
	}
	return a, nil
}

func (f *FS) rootSize() int64 {
	if f.bits != 32 {
		return f.rootBytes
	}
	runs, err := f.chain(f.rootClus, uint32(maxDirBytes/f.cluster), false)
	if err != nil {
		return 0
	}
	var n int64
	for _, r := range runs {
		n += int64(r.n) * f.cluster
	}
	return n
}

// fatTime converts a FAT date, time and 10 ms count to a time.Time in UTC.
func fatTime(date, tm uint16, tenths byte) time.Time {
	if date == 0 {
		return time.Time{}
	}
	day := int(date & 0x1F)
	month := int(date>>5) & 0x0F
	year := 1980 + int(date>>9)
	if day == 0 || month == 0 || month > 12 {
		return time.Time{}
	}
	sec := int(tm&0x1F) * 2
	minute := int(tm>>5) & 0x3F
	hour := int(tm >> 11)
	ns := 0
	if tenths < 200 {
		sec += int(tenths) / 100
		ns = int(tenths%100) * 10_000_000
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, ns, time.UTC)
}

var _ volume.FS = (*FS)(nil)
