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
	"sort"
	"strings"
	"time"
	"unicode/utf16"

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

// dirent is a parsed directory entry.
type dirent struct {
	name    string // long name, or the 8.3 name
	short   string // the 8.3 name
	ino     uint64
	attr    byte
	cluster uint32
	size    uint32
	raw     [32]byte
}

type dir struct {
	entries []dirent // sorted by name
	byName  map[string]int
	label   string // volume label entry (root directory only)
}

// Probe reports whether r looks like a FAT boot sector.
func Probe(r io.ReaderAt) bool {
	b := make([]byte, 512)
	if n, _ := r.ReadAt(b, 0); n != len(b) {
		return false
	}
	_, err := parseBoot(b, -1)
	return err == nil
}

// bpb holds the decoded boot sector fields.
type bpb struct {
	bps, spc, rsvd, nfats, rootEnt uint32
	totSec, fatSz                  uint32
	rootClus                       uint32
	activeFAT                      uint32
	clusters                       uint32
	bits                           int
	label                          string
}

// parseBoot decodes and checks a boot sector. size < 0 skips checks that
// need the volume size.
func parseBoot(b []byte, size int64) (*bpb, error) {
	bad := func(field string, v any) error {
		return fmt.Errorf("fat: boot sector: invalid %s %v: %w", field, v, volume.ErrCorrupt)
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return nil, bad("jump instruction", fmt.Sprintf("%#02x", b[0]))
	}
	if oem := string(b[3:11]); oem == "NTFS    " || oem == "EXFAT   " {
		return nil, bad("OEM name", oem)
	}
	p := &bpb{
		bps:     uint32(binary.LittleEndian.Uint16(b[11:])),
		spc:     uint32(b[13]),
		rsvd:    uint32(binary.LittleEndian.Uint16(b[14:])),
		nfats:   uint32(b[16]),
		rootEnt: uint32(binary.LittleEndian.Uint16(b[17:])),
		totSec:  uint32(binary.LittleEndian.Uint16(b[19:])),
		fatSz:   uint32(binary.LittleEndian.Uint16(b[22:])),
	}
	if p.bps < 512 || p.bps > 4096 || p.bps&(p.bps-1) != 0 {
		return nil, bad("bytes per sector", p.bps)
	}
	if p.spc == 0 || p.spc&(p.spc-1) != 0 || int64(p.spc)*int64(p.bps) > maxClusterSize {
		return nil, bad("sectors per cluster", p.spc)
	}
	if p.rsvd == 0 {
		return nil, bad("reserved sector count", p.rsvd)
	}
	if p.nfats == 0 || p.nfats > 4 {
		return nil, bad("number of FATs", p.nfats)
	}
	if media := b[21]; media != 0xF0 && media < 0xF8 {
		return nil, bad("media descriptor", fmt.Sprintf("%#02x", media))
	}
	if p.totSec == 0 {
		p.totSec = binary.LittleEndian.Uint32(b[32:])
	}
	if p.totSec == 0 {
		return nil, bad("total sector count", 0)
	}
	fat32 := p.fatSz == 0
	if fat32 {
		p.fatSz = binary.LittleEndian.Uint32(b[36:])
		if p.fatSz == 0 {
			return nil, bad("FAT size", 0)
		}
	}
	rootSecs := (p.rootEnt*32 + p.bps - 1) / p.bps
	meta := uint64(p.rsvd) + uint64(p.nfats)*uint64(p.fatSz) + uint64(rootSecs)
	if meta >= uint64(p.totSec) {
		return nil, bad("total sector count", fmt.Sprintf("%d (metadata needs %d)", p.totSec, meta))
	}
	p.clusters = (p.totSec - uint32(meta)) / p.spc
	switch {
	case p.clusters < 4085:
		p.bits = 12
	case p.clusters < 65525:
		p.bits = 16
	default:
		p.bits = 32
	}
	if (p.bits == 32) != fat32 {
		return nil, bad("FAT size/cluster count combination", fmt.Sprintf("FATSz16=%d clusters=%d", binary.LittleEndian.Uint16(b[22:]), p.clusters))
	}
	if p.bits == 32 && p.clusters > 0x0FFFFFF5 {
		return nil, bad("cluster count", p.clusters)
	}
	need := (uint64(p.clusters) + 2) * uint64(p.bits) / 8
	if uint64(p.fatSz)*uint64(p.bps) < need {
		return nil, bad("FAT size", fmt.Sprintf("%d sectors for %d clusters", p.fatSz, p.clusters))
	}
	labelOff := 43
	if p.bits == 32 {
		if p.rootEnt != 0 {
			return nil, bad("root entry count for FAT32", p.rootEnt)
		}
		p.rootClus = binary.LittleEndian.Uint32(b[44:])
		if p.rootClus < 2 || p.rootClus > p.clusters+1 {
			return nil, bad("root cluster", p.rootClus)
		}
		if ext := binary.LittleEndian.Uint16(b[40:]); ext&0x80 != 0 {
			p.activeFAT = uint32(ext & 0x0F)
			if p.activeFAT >= p.nfats {
				return nil, bad("active FAT", p.activeFAT)
			}
		}
		labelOff = 71
	} else if p.rootEnt == 0 {
		return nil, bad("root entry count", 0)
	}
	if sig := b[labelOff-5]; sig == 0x29 {
		l := strings.TrimRight(decodeOEM(b[labelOff:labelOff+11]), " ")
		if l != "NO NAME" {
			p.label = l
		}
	}
	if size >= 0 && int64(p.rsvd)*int64(p.bps) >= size {
		return nil, bad("reserved sector count", fmt.Sprintf("%d beyond volume of %d bytes", p.rsvd, size))
	}
	return p, nil
}

// Open opens the FAT file system in r, which is size bytes long.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 512)
	if size < 512 {
		return nil, fmt.Errorf("fat: volume of %d bytes too small: %w", size, volume.ErrCorrupt)
	}
	if err := readFull(r, b, 0); err != nil {
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
		if err := readFull(r, f.fat, f.fatOff); err != nil {
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

// fatEntry returns the FAT entry of cluster c.
func (f *FS) fatEntry(c uint32) (uint32, error) {
	switch f.bits {
	case 12:
		o := int64(c) + int64(c)/2
		if o+1 >= int64(len(f.fat)) {
			return 0, fmt.Errorf("fat: cluster %d beyond FAT: %w", c, volume.ErrCorrupt)
		}
		v := uint32(binary.LittleEndian.Uint16(f.fat[o:]))
		if c&1 != 0 {
			return v >> 4, nil
		}
		return v & 0xFFF, nil
	case 16:
		o := int64(c) * 2
		if o+2 > int64(len(f.fat)) {
			return 0, fmt.Errorf("fat: cluster %d beyond FAT: %w", c, volume.ErrCorrupt)
		}
		return uint32(binary.LittleEndian.Uint16(f.fat[o:])), nil
	}
	o := int64(c) * 4
	if o+4 > f.fatBytes {
		return 0, fmt.Errorf("fat: cluster %d beyond FAT: %w", c, volume.ErrCorrupt)
	}
	base := o &^ (fatChunk - 1)
	chunk, ok := f.fatCache.Get(base)
	if !ok {
		n := min(int64(fatChunk), f.fatBytes-base)
		chunk = make([]byte, n)
		if err := readFull(f.r, chunk, f.fatOff+base); err != nil {
			return 0, fmt.Errorf("fat: reading FAT at %d: %w", f.fatOff+base, err)
		}
		f.fatCache.Add(base, chunk, 1)
	}
	return binary.LittleEndian.Uint32(chunk[o-base:]) & 0x0FFFFFFF, nil
}

func (f *FS) isEOC(v uint32) bool {
	switch f.bits {
	case 12:
		return v >= 0xFF8
	case 16:
		return v >= 0xFFF8
	}
	return v >= 0x0FFFFFF8
}

// clusterRun is a run of contiguous clusters.
type clusterRun struct {
	first uint32
	n     uint32
}

// chain follows the cluster chain from first for at most limit clusters.
// With exact set, a chain shorter than limit is an error.
func (f *FS) chain(first uint32, limit uint32, exact bool) ([]clusterRun, error) {
	key := [2]uint32{first, limit}
	if exact {
		if r, ok := f.runs.Get(key); ok {
			return r, nil
		}
	}
	var runs []clusterRun
	c := first
	var count uint32
	for count < limit {
		if c < 2 || c > f.maxCluster {
			return nil, fmt.Errorf("fat: cluster %d out of range in chain from %d: %w", c, first, volume.ErrCorrupt)
		}
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].n == c {
			runs[n-1].n++
		} else {
			runs = append(runs, clusterRun{c, 1})
		}
		count++
		if count == limit {
			break
		}
		next, err := f.fatEntry(c)
		if err != nil {
			return nil, err
		}
		if f.isEOC(next) {
			if exact {
				return nil, fmt.Errorf("fat: chain from cluster %d ends after %d of %d clusters: %w", first, count, limit, volume.ErrCorrupt)
			}
			break
		}
		c = next
	}
	if err := checkOverlap(runs); err != nil {
		return nil, fmt.Errorf("fat: chain from cluster %d: %w", first, err)
	}
	if exact {
		f.runs.Add(key, runs, len(runs))
	}
	return runs, nil
}

// checkOverlap reports a chain that visits a cluster twice (a loop).
func checkOverlap(runs []clusterRun) error {
	if len(runs) < 2 {
		return nil
	}
	s := append([]clusterRun(nil), runs...)
	sort.Slice(s, func(i, j int) bool { return s[i].first < s[j].first })
	for i := 1; i < len(s); i++ {
		if s[i-1].first+s[i-1].n > s[i].first {
			return fmt.Errorf("cluster %d used twice: %w", s[i].first, volume.ErrCorrupt)
		}
	}
	return nil
}

func (f *FS) clusterOff(c uint32) int64 {
	return f.dataOff + int64(c-2)*f.cluster
}

// readRuns reads the clusters of runs into one buffer, one ReadAt per run.
func (f *FS) readRuns(runs []clusterRun) ([]byte, error) {
	var total int64
	for _, r := range runs {
		total += int64(r.n) * f.cluster
	}
	buf := make([]byte, total)
	pos := int64(0)
	for _, r := range runs {
		n := int64(r.n) * f.cluster
		if err := readFull(f.r, buf[pos:pos+n], f.clusterOff(r.first)); err != nil {
			return nil, fmt.Errorf("fat: reading cluster %d: %w", r.first, err)
		}
		pos += n
	}
	return buf, nil
}

// entryAt reads and checks the short directory entry that inode ino names.
func (f *FS) entryAt(ino uint64) (dirent, error) {
	var d dirent
	if ino%32 != 0 || ino < uint64(f.rootOff) || ino+32 > uint64(f.size) {
		return d, fmt.Errorf("fat: inode %d: %w", ino, fs.ErrNotExist)
	}
	if err := readFull(f.r, d.raw[:], int64(ino)); err != nil {
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

// readDir parses directory ino, using the cache.
func (f *FS) readDir(ino uint64) (*dir, error) {
	if d, ok := f.dirs.Get(ino); ok {
		return d, nil
	}
	var data []byte
	var base []clusterRun
	if ino == RootIno && f.bits != 32 {
		data = make([]byte, f.rootBytes)
		if err := readFull(f.r, data, f.rootOff); err != nil {
			return nil, fmt.Errorf("fat: reading root directory: %w", err)
		}
	} else {
		first := f.rootClus
		if ino != RootIno {
			e, err := f.entryAt(ino)
			if err != nil {
				return nil, err
			}
			if e.attr&attrDir == 0 {
				return nil, fmt.Errorf("fat: inode %d: %w", ino, volume.ErrNotDir)
			}
			first = e.cluster
			if first == 0 {
				return nil, fmt.Errorf("fat: directory inode %d has no clusters: %w", ino, volume.ErrCorrupt)
			}
		}
		runs, err := f.chain(first, uint32(maxDirBytes/f.cluster), false)
		if err != nil {
			return nil, fmt.Errorf("fat: directory inode %d: %w", ino, err)
		}
		base = runs
		data, err = f.readRuns(runs)
		if err != nil {
			return nil, err
		}
	}
	// offset maps a position in data to a volume byte offset (the inode).
	offset := func(pos int) uint64 {
		if base == nil {
			return uint64(f.rootOff) + uint64(pos)
		}
		p := int64(pos)
		for _, r := range base {
			n := int64(r.n) * f.cluster
			if p < n {
				return uint64(f.clusterOff(r.first) + p)
			}
			p -= n
		}
		return 0
	}
	d := &dir{byName: map[string]int{}}
	var lfn []uint16
	var lfnSum byte
	var lfnNext int // sequence number expected next; 0 = none in progress
	for pos := 0; pos+32 <= len(data); pos += 32 {
		e := data[pos : pos+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			lfnNext = 0
			continue
		}
		if e[11]&0x3F == attrLFN {
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				if seq == 0 || seq > 20 {
					lfnNext = 0
					continue
				}
				lfn = make([]uint16, seq*13)
				lfnSum = e[13]
			} else if lfnNext == 0 || seq != lfnNext || e[13] != lfnSum {
				lfnNext = 0
				continue
			}
			o := (seq - 1) * 13
			for i, at := range lfnCharOffsets {
				lfn[o+i] = binary.LittleEndian.Uint16(e[at:])
			}
			lfnNext = seq - 1
			if lfnNext == 0 {
				lfnNext = -1 // complete; the short entry follows
			}
			continue
		}
		long := ""
		if lfnNext == -1 && checksum(e) == lfnSum {
			long = decodeLFN(lfn)
		}
		lfnNext = 0
		if e[11]&attrVolumeID != 0 {
			if d.label == "" {
				d.label = strings.TrimRight(decodeOEM(e[:11]), " ")
			}
			continue
		}
		short := shortName(e)
		if short == "." || short == ".." {
			continue
		}
		de := dirent{short: short, name: short, ino: offset(pos), attr: e[11]}
		if long != "" {
			de.name = long
		}
		de.cluster = uint32(binary.LittleEndian.Uint16(e[26:]))
		if f.bits == 32 {
			de.cluster |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
		}
		de.size = binary.LittleEndian.Uint32(e[28:])
		d.entries = append(d.entries, de)
	}
	sort.SliceStable(d.entries, func(i, j int) bool { return d.entries[i].name < d.entries[j].name })
	for i := len(d.entries) - 1; i >= 0; i-- {
		d.byName[strings.ToLower(d.entries[i].short)] = i
	}
	for i := len(d.entries) - 1; i >= 0; i-- {
		d.byName[strings.ToLower(d.entries[i].name)] = i
	}
	f.dirs.Add(ino, d, len(d.entries)+1)
	return d, nil
}

var lfnCharOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

// checksum is the VFAT checksum of an 11-byte short name.
func checksum(name []byte) byte {
	var s byte
	for i := 0; i < 11; i++ {
		s = (s&1)<<7 + s>>1 + name[i]
	}
	return s
}

// decodeLFN converts the UTF-16 characters of a long name, up to the NUL
// terminator. Names that Linux cannot represent yield "".
func decodeLFN(u []uint16) string {
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	s := string(utf16.Decode(u))
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return ""
	}
	return s
}

// shortName formats an 8.3 name, applying the NT lower-case flags.
func shortName(e []byte) string {
	n := make([]byte, 11)
	copy(n, e[:11])
	if n[0] == 0x05 {
		n[0] = 0xE5
	}
	base := strings.TrimRight(decodeOEM(n[:8]), " ")
	ext := strings.TrimRight(decodeOEM(n[8:11]), " ")
	if e[12]&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if e[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	s := base
	if ext != "" {
		s += "." + ext
	}
	return strings.ReplaceAll(s, "/", "_")
}

// cp437 holds code page 437 characters 0x80-0xFF.
var cp437 = []rune("ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0")

func decodeOEM(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c >= 0x80:
			sb.WriteRune(cp437[c-0x80])
		case c < 0x20:
			sb.WriteByte('_')
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func entryMode(attr byte) fs.FileMode {
	if attr&attrDir != 0 {
		return fs.ModeDir
	}
	return 0
}

// ReadDir lists directory ino sorted by name.
func (f *FS) ReadDir(ino uint64) ([]volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return nil, err
	}
	out := make([]volume.Entry, len(d.entries))
	for i, e := range d.entries {
		out[i] = volume.Entry{Name: e.name, Ino: e.ino, Mode: entryMode(e.attr)}
	}
	return out, nil
}

// Lookup finds name in directory ino, ignoring case; the 8.3 alias of a
// long name matches too.
func (f *FS) Lookup(ino uint64, name string) (volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return volume.Entry{}, err
	}
	i, ok := d.byName[strings.ToLower(name)]
	if !ok {
		for j, e := range d.entries {
			if strings.EqualFold(e.name, name) || strings.EqualFold(e.short, name) {
				i, ok = j, true
				break
			}
		}
		if !ok {
			return volume.Entry{}, fmt.Errorf("fat: %q in directory %d: %w", name, ino, volume.ErrNotFound)
		}
	}
	e := d.entries[i]
	return volume.Entry{Name: e.name, Ino: e.ino, Mode: entryMode(e.attr)}, nil
}

// Open opens regular file ino for reading.
func (f *FS) Open(ino uint64) (volume.File, error) {
	if ino == RootIno {
		return nil, fmt.Errorf("fat: inode %d is a directory: %w", ino, fs.ErrInvalid)
	}
	d, err := f.entryAt(ino)
	if err != nil {
		return nil, err
	}
	if d.attr&attrDir != 0 {
		return nil, fmt.Errorf("fat: inode %d is a directory: %w", ino, fs.ErrInvalid)
	}
	file := &File{fs: f, size: int64(d.size)}
	if d.size == 0 {
		return file, nil
	}
	n := (int64(d.size) + f.cluster - 1) / f.cluster
	if n > int64(f.maxCluster) {
		return nil, fmt.Errorf("fat: inode %d: size %d larger than the volume: %w", ino, d.size, volume.ErrCorrupt)
	}
	runs, err := f.chain(d.cluster, uint32(n), true)
	if err != nil {
		return nil, fmt.Errorf("fat: inode %d: %w", ino, err)
	}
	file.runs = make([]fileRun, len(runs))
	var pos int64
	for i, r := range runs {
		file.runs[i] = fileRun{off: pos, disk: f.clusterOff(r.first), n: int64(r.n) * f.cluster}
		pos += file.runs[i].n
	}
	return file, nil
}

// Readlink fails: FAT has no symbolic links.
func (f *FS) Readlink(ino uint64) (string, error) {
	return "", fmt.Errorf("fat: inode %d is not a symlink: %w", ino, fs.ErrInvalid)
}

// Streams returns nil: FAT has no alternate data streams.
func (f *FS) Streams(ino uint64) ([]string, error) { return nil, nil }

// OpenStream fails: FAT has no alternate data streams.
func (f *FS) OpenStream(ino uint64, name string) (volume.File, error) {
	return nil, fmt.Errorf("fat: stream %q of inode %d: %w", name, ino, volume.ErrNotFound)
}

// fileRun maps file bytes [off, off+n) to volume bytes [disk, disk+n).
type fileRun struct {
	off, disk, n int64
}

// File is an open FAT file. It is safe for concurrent use.
type File struct {
	fs   *FS
	size int64
	runs []fileRun
}

// Size returns the file size in bytes.
func (fl *File) Size() int64 { return fl.size }

// ReadAt reads len(p) bytes at off, one ReadAt per run of contiguous
// clusters.
func (fl *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fat: negative offset %d: %w", off, fs.ErrInvalid)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	i := sort.Search(len(fl.runs), func(i int) bool { return fl.runs[i].off+fl.runs[i].n > off })
	n := 0
	for n < len(p) && i < len(fl.runs) {
		r := fl.runs[i]
		d := off + int64(n) - r.off
		m := min(int64(len(p)-n), r.n-d)
		if err := readFull(fl.fs.r, p[n:n+int(m)], r.disk+d); err != nil {
			return n, fmt.Errorf("fat: reading at %d: %w", r.disk+d, err)
		}
		n += int(m)
		i++
	}
	if n < len(p) {
		return n, fmt.Errorf("fat: file data ends at %d: %w", off+int64(n), volume.ErrCorrupt)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

var _ volume.FS = (*FS)(nil)
