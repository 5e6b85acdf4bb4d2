// Package ntfs is a read-only NTFS reader implementing volume.FS.
//
// It reads the on-disk format directly: boot sector, MFT records with
// update-sequence fixups, resident and non-resident attributes (including
// attributes spread over extension records through $ATTRIBUTE_LIST),
// runlists with sparse runs, LZNT1-compressed data, named $DATA streams,
// $I30 directory indexes (B-tree in $INDEX_ROOT/$INDEX_ALLOCATION), reparse
// points and the $UpCase table for case-insensitive lookups. The $LogFile is
// never replayed: a volume whose journal is dirty is read as it is on disk.
//
// Conventions:
//   - Inode numbers are MFT record numbers; the root directory is 5.
//   - The NTFS metafiles ($MFT, $MFTMirr, $LogFile, $Volume, $AttrDef, $Bitmap,
//     $Boot, $BadClus, $Secure, $UpCase, $Extend: records below 24 whose
//     names start with '$') are hidden from the root directory: ReadDir does
//     not list them and Lookup does not find them. They stay reachable by
//     inode number. "System Volume Information" and other ordinary entries
//     are shown.
//   - DOS 8.3 names (namespace 2) are neither listed nor found by Lookup; a
//     file is listed once under each of its Win32 or POSIX names, so a hard
//     link appears under every one of its names, all with the same inode.
//   - Modes: directories 0555|fs.ModeDir, regular files 0444, symbolic links
//     and junctions fs.ModeSymlink|0777. Symbolic links are reparse points
//     with the SYMLINK, MOUNT_POINT (junction) or WSL LX_SYMLINK tag, and
//     Interix symbolic links ("IntxLNK" system files, which ntfs-3g creates).
//   - Names are converted from UTF-16 to UTF-8; unpaired surrogates, which
//     NTFS allows, are encoded as WTF-8 so that Lookup finds them again.
//   - Files compressed by Windows Overlay Filter (WOF) or deduplicated, and
//     EFS-encrypted files, cannot be read: Open returns an error wrapping
//     volume.ErrUnsupported.
//
// The reader is safe for concurrent use. Parsed MFT records, index blocks
// and decompressed compression units are kept in bounded LRU caches.
package ntfs

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"slices"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/lru"
)

// Well-known MFT record numbers.
const (
	recMFT       = 0
	recMFTMirr   = 1
	recVolume    = 3
	recRoot      = 5
	recUpCase    = 10
	recFirstUser = 24 // records below this are reserved for metafiles
)

// Cache sizes.
const (
	inodeCacheSize = 4096
	blockCacheSize = 512
	cuCacheSize    = 32
	// The MFT is read in chunks of mftChunkSize bytes, and the last
	// mftChunkCacheSize of them kept: a walk of a folder meets its files'
	// records next to each other, so one read serves dozens of them.
	mftChunkSize      = 32 << 10
	mftChunkCacheSize = 256
)

// FS is an open NTFS volume. It implements volume.FS.
type FS struct {
	dev           device
	sectorSize    int
	clusterSize   int64
	clusterShift  uint
	totalClusters int64
	recordSize    int64
	serial        uint64

	mft      *stream // unnamed $DATA of $MFT
	nrecords uint64
	label    string
	upcase   []uint16 // 65536 entries

	inodes    *lru.Cache[uint64, *inode]
	blocks    *lru.Cache[blockKey, []byte]
	cus       *lru.Cache[cuKey, []byte]
	mftChunks *lru.Cache[int64, []byte]
}

var _ volume.FS = (*FS)(nil)

// Probe reports whether r starts with an NTFS boot sector (OEM ID
// "NTFS    " at offset 3). It reads only those 8 bytes.
func Probe(r io.ReaderAt) bool {
	var b [8]byte
	n, _ := r.ReadAt(b[:], 3)
	return n == len(b) && string(b[:]) == "NTFS    "
}

// Open opens the NTFS volume of size bytes in r. If size is 0 or negative
// it is taken from the boot sector. The boot sector and MFT record 0 must
// be intact; other damage is reported by the operations that meet it.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	if r == nil {
		return nil, errors.New("ntfs: nil reader")
	}
	var bs [512]byte
	if n, err := r.ReadAt(bs[:], 0); n != len(bs) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("ntfs: boot sector: volume too small (%d bytes): %w", n, volume.ErrUnknownFS)
		}
		return nil, fmt.Errorf("ntfs: reading boot sector: %w", err)
	}
	fs := &FS{
		inodes:    lru.New[uint64, *inode](inodeCacheSize),
		blocks:    lru.New[blockKey, []byte](blockCacheSize),
		cus:       lru.New[cuKey, []byte](cuCacheSize),
		mftChunks: lru.New[int64, []byte](mftChunkCacheSize),
	}
	mftLCN, mirrLCN, err := fs.parseBoot(bs[:], size)
	if err != nil {
		return nil, err
	}
	fs.dev.r = r
	if err := fs.bootstrapMFT(mftLCN, mirrLCN); err != nil {
		return nil, err
	}
	fs.label = fs.readLabel()
	fs.upcase = fs.readUpcase()
	return fs, nil
}

// parseBoot validates the boot sector and fills in the geometry.
func (fs *FS) parseBoot(bs []byte, size int64) (mftLCN, mirrLCN int64, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ntfs: bad boot sector: "+format+": %w", append(args, volume.ErrCorrupt)...)
	}
	if string(bs[3:11]) != "NTFS    " {
		return 0, 0, fmt.Errorf("ntfs: boot sector OEM ID is %q, not \"NTFS    \": %w", bs[3:11], volume.ErrUnknownFS)
	}
	bps := int64(le16(bs[0x0B:]))
	if bps < 256 || bps > 4096 || log2(bps) < 0 {
		return 0, 0, bad("%d bytes per sector", bps)
	}
	spc := int64(bs[0x0D])
	switch {
	case spc == 0:
		return 0, 0, bad("0 sectors per cluster")
	case spc > 0x80:
		if 256-spc > 20 {
			return 0, 0, bad("sectors per cluster code 0x%x", spc)
		}
		spc = 1 << (256 - spc)
	case log2(spc) < 0:
		return 0, 0, bad("%d sectors per cluster", spc)
	}
	cs := bps * spc
	if cs > 2<<20 {
		return 0, 0, bad("cluster size %d", cs)
	}
	totalSectors := int64(le64(bs[0x28:]))
	if totalSectors <= 0 || totalSectors > 1<<50 {
		return 0, 0, bad("%d total sectors", totalSectors)
	}
	fs.sectorSize = int(bps)
	fs.clusterSize = cs
	fs.clusterShift = uint(log2(cs))
	fs.totalClusters = totalSectors * bps / cs
	mftLCN = int64(le64(bs[0x30:]))
	mirrLCN = int64(le64(bs[0x38:]))
	if mftLCN <= 0 || mftLCN >= fs.totalClusters {
		return 0, 0, bad("$MFT at cluster %d of %d", mftLCN, fs.totalClusters)
	}
	if mirrLCN < 0 || mirrLCN >= fs.totalClusters {
		mirrLCN = 0 // only a fallback
	}
	fs.recordSize, err = recordSizeCode(int8(bs[0x40]), cs)
	if err != nil {
		return 0, 0, bad("MFT record size: %v", err)
	}
	if idx, err := recordSizeCode(int8(bs[0x44]), cs); err != nil || idx < 512 {
		return 0, 0, bad("index block size code 0x%x", bs[0x44])
	}
	fs.serial = le64(bs[0x48:])
	if size <= 0 {
		size = (totalSectors + 1) * bps
	}
	fs.dev.size = size
	if mftLCN*cs+fs.recordSize > size {
		return 0, 0, fmt.Errorf("ntfs: $MFT at offset %d lies beyond the end of the %d-byte volume: %w", mftLCN*cs, size, volume.ErrCorrupt)
	}
	return mftLCN, mirrLCN, nil
}

// recordSizeCode decodes the "clusters per record" byte of the boot sector:
// positive values count clusters, negative ones give a power of two bytes.
func recordSizeCode(v int8, cs int64) (int64, error) {
	var size int64
	switch {
	case v > 0:
		size = int64(v) * cs
	case v < 0 && v >= -31:
		size = 1 << -v
	default:
		return 0, fmt.Errorf("code %d", v)
	}
	if size < 512 || size > 64<<10 || log2(size) < 0 {
		return 0, fmt.Errorf("%d bytes", size)
	}
	return size, nil
}

// bootstrapMFT reads record 0 ($MFT) and assembles the runlist of the MFT
// itself, following its attribute list if the MFT is very fragmented. If
// record 0 is damaged, the copy in $MFTMirr is used.
func (fs *FS) bootstrapMFT(mftLCN, mirrLCN int64) error {
	rec0, err := fs.readRawRecord0(mftLCN)
	if err != nil && mirrLCN > 0 {
		if r, err2 := fs.readRawRecord0(mirrLCN); err2 == nil {
			rec0, err = r, nil
		}
	}
	if err != nil {
		return fmt.Errorf("ntfs: cannot read $MFT record: %w", err)
	}
	if rec0.flags&recInUse == 0 {
		return corruptf("$MFT record 0 is not in use")
	}
	var exts []*attr
	var list *attr
	for _, a := range rec0.attrs {
		switch {
		case a.typ == atData && a.name == "":
			exts = append(exts, a)
		case a.typ == atAttributeList:
			list = a
		}
	}
	if list != nil {
		// Extension records holding later $DATA extents lie in the part of
		// the MFT mapped by earlier extents.
		data, err := fs.attrValue(recMFT, list, maxAttrListSize)
		if err != nil {
			return fmt.Errorf("ntfs: $MFT attribute list: %w", err)
		}
		entries, err := parseAttrList(data)
		if err != nil {
			return fmt.Errorf("ntfs: $MFT attribute list: %w", err)
		}
		var want []alEntry
		for _, e := range entries {
			if e.typ == atData && e.name == "" && e.ref&refMask != recMFT {
				want = append(want, e)
			}
		}
		slices.SortStableFunc(want, func(a, b alEntry) int { return cmpInt(a.startVCN, b.startVCN) })
		for _, e := range want {
			partial, err := fs.buildStream(recMFT, exts)
			if err != nil {
				return fmt.Errorf("ntfs: $MFT: %w", err)
			}
			rec, err := fs.readRecordFrom(partial, e.ref&refMask)
			if err != nil {
				return fmt.Errorf("ntfs: $MFT extension: %w", err)
			}
			if rec.flags&recInUse == 0 || rec.base&refMask != recMFT {
				return corruptf("$MFT extension record %d does not belong to $MFT", e.ref&refMask)
			}
			a := findListed(rec, e)
			if a == nil {
				return corruptf("$MFT extension record %d lacks listed $DATA extent", e.ref&refMask)
			}
			exts = append(exts, a)
		}
	}
	mft, err := fs.buildStream(recMFT, exts)
	if err != nil {
		return fmt.Errorf("ntfs: $MFT: %w", err)
	}
	if mft.resident || mft.compressed() {
		return corruptf("$MFT data is resident or compressed")
	}
	fs.mft = mft
	fs.nrecords = uint64(mft.size / fs.recordSize)
	if fs.nrecords <= recRoot {
		return corruptf("$MFT holds only %d records", fs.nrecords)
	}
	return nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (fs *FS) readRawRecord0(lcn int64) (*record, error) {
	buf := make([]byte, fs.recordSize)
	if err := fs.dev.readFull(buf, lcn*fs.clusterSize); err != nil {
		return nil, err
	}
	return parseRecord(buf, recMFT, fs.sectorSize)
}

// readRecordFrom reads and parses record num through the MFT stream s.
func (fs *FS) readRecordFrom(s *stream, num uint64) (*record, error) {
	if num >= uint64(s.size/fs.recordSize) {
		return nil, fmt.Errorf("ntfs: MFT record %d beyond end of MFT: %w", num, volume.ErrNotFound)
	}
	buf := make([]byte, fs.recordSize)
	if err := fs.readMFT(s, buf, int64(num)*fs.recordSize); err != nil {
		return nil, fmt.Errorf("ntfs: MFT record %d: %w", num, err)
	}
	if le32(buf) == 0 {
		return nil, fmt.Errorf("ntfs: MFT record %d never used: %w", num, volume.ErrNotFound)
	}
	return parseRecord(buf, num, fs.sectorSize)
}

// readMFT fills buf (one record) from offset off of the MFT stream s,
// through the chunk cache when s is the volume's MFT.
func (fs *FS) readMFT(s *stream, buf []byte, off int64) error {
	if s != fs.mft || mftChunkSize%fs.recordSize != 0 {
		return s.fill(buf, off)
	}
	c := off / mftChunkSize
	chunk, ok := fs.mftChunks.Get(c)
	if !ok {
		start := c * mftChunkSize
		chunk = make([]byte, min(mftChunkSize, s.size-start))
		if err := s.fill(chunk, start); err != nil {
			// A damaged part of the MFT: read just this record, so
			// that its neighbours stay readable.
			return s.fill(buf, off)
		}
		fs.mftChunks.Add(c, chunk, 1)
	}
	if in := off - c*mftChunkSize; in+int64(len(buf)) <= int64(len(chunk)) {
		copy(buf, chunk[in:])
		return nil
	}
	return s.fill(buf, off)
}

// Type returns "ntfs".
func (fs *FS) Type() string { return "ntfs" }

// Label returns the volume label from $Volume, or "".
func (fs *FS) Label() string { return fs.label }

// Root returns 5, the MFT record of the root directory.
func (fs *FS) Root() uint64 { return recRoot }

// CaseInsensitive reports true: Lookup folds case with the volume's $UpCase.
func (fs *FS) CaseInsensitive() bool { return true }

// Serial returns the volume serial number from the boot sector.
func (fs *FS) Serial() uint64 { return fs.serial }

func (fs *FS) readLabel() string {
	n, err := fs.inode(recVolume)
	if err != nil {
		return ""
	}
	for _, a := range n.attrs {
		if a.typ == atVolumeName && a.resident {
			return utf16ToString(utf16le(a.value))
		}
	}
	return ""
}

// Stat returns the attributes of inode ino.
func (fs *FS) Stat(ino uint64) (volume.Attr, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return volume.Attr{}, err
	}
	si, err := n.stdInfo()
	if err != nil {
		return volume.Attr{}, err
	}
	a := volume.Attr{
		Ino:   ino,
		Nlink: n.nlink(),
		Btime: filetime(le64(si[0x00:])),
		Mtime: filetime(le64(si[0x08:])),
		Ctime: filetime(le64(si[0x10:])),
		Atime: filetime(le64(si[0x18:])),
	}
	k, target, err := fs.classify(n)
	if err != nil {
		return volume.Attr{}, err
	}
	switch k {
	case kindDir:
		a.Mode = iofs.ModeDir | 0o555
		for _, x := range n.attrs {
			if x.typ == atIndexAllocation && x.name == "$I30" && x.startVCN == 0 && !x.resident {
				a.Alloc = x.allocSize
			}
		}
	case kindSymlink:
		a.Mode = iofs.ModeSymlink | 0o777
		a.Size = int64(len(target))
	default:
		a.Mode = 0o444
		if d := n.dataHeader(""); d != nil {
			if d.resident {
				a.Size = int64(len(d.value))
			} else {
				a.Size = d.dataSize
				a.Alloc = d.allocSize
				if d.flags&(attrFlagCompressionMask|attrFlagSparse) != 0 {
					a.Alloc = d.compSize
				}
			}
		}
	}
	return a, nil
}

// Open opens the unnamed $DATA stream of a non-directory inode.
func (fs *FS) Open(ino uint64) (volume.File, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	if n.flags&recDirectory != 0 && n.dataHeader("") == nil {
		return nil, fmt.Errorf("ntfs: inode %d is a directory: %w", ino, iofs.ErrInvalid)
	}
	if tag, ok, err := fs.reparseTag(n); err != nil {
		return nil, err
	} else if ok && (tag == tagWOF || tag == tagDedup) {
		return nil, fmt.Errorf("ntfs: inode %d: data held by reparse point 0x%08x (WOF/dedup): %w", ino, tag, volume.ErrUnsupported)
	}
	return fs.openData(n, "")
}

// Streams lists the names of the named $DATA streams of inode ino, sorted.
func (fs *FS) Streams(ino uint64) ([]string, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range n.attrs {
		if a.typ == atData && a.name != "" && !slices.Contains(names, a.name) {
			names = append(names, a.name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// OpenStream opens the named $DATA stream name of inode ino. Stream names
// are matched exactly first, then ignoring case. An empty name opens the
// unnamed stream, like Open.
func (fs *FS) OpenStream(ino uint64, name string) (volume.File, error) {
	if name == "" {
		return fs.Open(ino)
	}
	n, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	if n.dataHeader(name) == nil {
		// Fall back to a case-insensitive match.
		want, ok := stringToUTF16(name)
		if ok {
			for _, a := range n.attrs {
				if a.typ != atData || a.name == "" {
					continue
				}
				if u, ok := stringToUTF16(a.name); ok && fs.collate(u, want) == 0 {
					name = a.name
					break
				}
			}
		}
	}
	return fs.openData(n, name)
}

// openData opens the $DATA stream name of n.
func (fs *FS) openData(n *inode, name string) (*stream, error) {
	ext := n.find(atData, name)
	if len(ext) == 0 {
		if name == "" {
			// Some files (e.g. Windows symbolic links) have no $DATA at all.
			return &stream{fs: fs, ino: n.num, typ: atData, resident: true}, nil
		}
		return nil, fmt.Errorf("ntfs: inode %d has no stream %q: %w", n.num, name, volume.ErrNotFound)
	}
	s, err := fs.buildStream(n.num, ext)
	if err != nil {
		return nil, err
	}
	if s.flags&attrFlagEncrypted != 0 {
		return nil, fmt.Errorf("ntfs: inode %d: stream %q is EFS-encrypted: %w", n.num, name, volume.ErrUnsupported)
	}
	return s, nil
}
