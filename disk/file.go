// Package disk handles one VHDX file ([MS-VHDX] v8.0): fixed, dynamic or
// differencing. Open parses and validates every structure, replays a dirty
// log in memory (the file is opened read-only and never written), and
// reports per block which sectors this file holds and where. Writer creates
// and writes new files (differencing layers, flattened exports), updating
// metadata through the log; it refuses to write files ckptfs did not
// create. The package knows nothing about chains: package chain stacks
// files into a disk, through Image, which package disk/vhd implements for
// VHD files too.
//
// Block states are interpreted as follows ([MS-VHDX] §2.5.1.1):
//
//	FULLY_PRESENT       data in this file
//	PARTIALLY_PRESENT   (differencing only) sectors whose bitmap bit is 1 are
//	                    in this file; the others come from the parent
//	NOT_PRESENT         differencing: the parent holds the data;
//	                    fixed/dynamic: zeros
//	ZERO                zeros, hiding any parent
//	UNMAPPED, UNDEFINED zeros, hiding any parent. The specification lets a
//	                    reader return zeros or the block's earlier contents;
//	                    zeros are the only choice that is deterministic,
//	                    never leaks stale data and matches what a guest that
//	                    trimmed the block expects.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Type is the kind of VHDX file.
type Type int

// The VHDX file types.
const (
	Dynamic Type = iota
	Fixed
	Differencing
)

func (t Type) String() string {
	switch t {
	case Fixed:
		return "fixed"
	case Differencing:
		return "differencing"
	}
	return "dynamic"
}

// Metadata holds the known metadata items ([MS-VHDX] §2.6.2).
type Metadata struct {
	Entries              []MetadataEntry // the whole table, including unknown items
	BlockSize            uint32
	LeaveBlocksAllocated bool
	HasParent            bool
	VirtualSize          uint64
	VirtualDiskID        GUID
	LogicalSectorSize    uint32
	PhysicalSectorSize   uint32
	ParentLocator        *ParentLocator // nil unless HasParent
}

// File is an open VHDX file. Its methods are safe for concurrent use.
type File struct {
	name     string
	osFile   *os.File    // nil when opened with NewFile
	r        io.ReaderAt // the file as replayed: reads of any structure go here
	fileSize int64       // size of the file on disk
	size     int64       // size of the replayed view

	Identifier    FileIdentifier
	Header        Header   // the current header
	CurrentHeader int      // 1 or 2
	HeaderErrs    [2]error // why a header copy was not usable, if it was not
	Regions       []RegionEntry
	RegionErrs    [2]error // why a region table copy was not usable
	Metadata      Metadata
	Log           LogInfo
	Warnings      []string // things that are wrong but do not stop reading

	batOffset    int64
	batPages     [][]BATEntry // pages of batPageEntries; nil pages are all zero
	batEntries   int64
	chunkRatio   int64
	dataBlocks   int64
	sectorsPerBl int64
}

const batPageEntries = 8192

// Open opens the VHDX file at path read-only and validates it.
func Open(path string) (*File, error) {
	osf, size, err := OpenReadOnly(path, ErrNotVHDX)
	if err != nil {
		return nil, err
	}
	f, err := NewFile(osf, size, path)
	if err != nil {
		osf.Close()
		return nil, err
	}
	f.osFile = osf
	return f, nil
}

// OpenReadOnly opens path read-only for the reader of a disk file and
// returns it with its size. Anything but a regular file or a device is
// refused with a FormatError wrapping notFormat.
func OpenReadOnly(path string, notFormat error) (*os.File, int64, error) {
	osf, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		osf.Close()
		return nil, 0, &FormatError{File: path, Field: "file", Offset: -1, Err: fmt.Errorf("%w: not a regular file", notFormat)}
	}
	return osf, st.Size(), nil
}

// NewFile reads a VHDX file from r, whose size is size. name is used in
// error messages.
func NewFile(r io.ReaderAt, size int64, name string) (*File, error) {
	f := &File{name: name, r: r, fileSize: size, size: size}
	if err := f.load(r); err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes the underlying file, if Open opened it.
func (f *File) Close() error {
	if f.osFile != nil {
		return f.osFile.Close()
	}
	return nil
}

// Name is the path the file was opened with.
func (f *File) Name() string { return f.name }

// FileSize is the size of the file on disk.
func (f *File) FileSize() int64 { return f.fileSize }

// Type is fixed, dynamic or differencing.
func (f *File) Type() Type {
	switch {
	case f.Metadata.HasParent:
		return Differencing
	case f.Metadata.LeaveBlocksAllocated:
		return Fixed
	}
	return Dynamic
}

// VirtualSize is the size of the virtual disk in bytes.
func (f *File) VirtualSize() int64 { return int64(f.Metadata.VirtualSize) }

// BlockSize is the payload block size in bytes.
func (f *File) BlockSize() int64 { return int64(f.Metadata.BlockSize) }

// SectorSize is the logical sector size in bytes.
func (f *File) SectorSize() int64 { return int64(f.Metadata.LogicalSectorSize) }

// BlockCount is the number of payload blocks.
func (f *File) BlockCount() int64 { return f.dataBlocks }

// ChunkRatio is the number of payload blocks per sector-bitmap block.
func (f *File) ChunkRatio() int64 { return f.chunkRatio }

func (f *File) headerOffset() int64 {
	if f.CurrentHeader == 2 {
		return Header2Offset
	}
	return Header1Offset
}

func (f *File) readFull(r io.ReaderAt, field string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > f.size {
		return nil, f.errorf(field, off, ErrTruncated, "%d bytes at offset %d do not fit in the %d-byte file", n, off, f.size)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+n == f.size) {
		return nil, f.wrap(field, off, err)
	}
	return b, nil
}

func (f *File) load(base io.ReaderAt) error {
	// File type identifier.
	if f.fileSize < 8 {
		return f.errorf("file type identifier: Signature", 0, ErrNotVHDX, "file is %d bytes", f.fileSize)
	}
	sig := make([]byte, 8)
	if _, err := base.ReadAt(sig, 0); err != nil {
		return f.wrap("file type identifier", 0, err)
	}
	if string(sig) != string(sigFile) {
		return f.errorf("file type identifier: Signature", 0, ErrNotVHDX, "signature is %q, want \"vhdxfile\"", sig)
	}
	if f.fileSize < HeaderSectionSize {
		return f.errorf("header section", 0, ErrTruncated, "file is %d bytes, the header section alone is 1 MiB", f.fileSize)
	}
	id, err := f.readFull(base, "file type identifier", 0, 8+512)
	if err != nil {
		return err
	}
	f.Identifier.Creator = decodeUTF16(id[8:])

	// Headers: the valid one with the higher sequence number is current.
	var hs [2]*Header
	for i, off := range []int64{Header1Offset, Header2Offset} {
		b, err := f.readFull(base, fmt.Sprintf("header %d", i+1), off, HeaderSize)
		if err != nil {
			return err
		}
		h, err := unmarshalHeader(b)
		if err != nil {
			f.HeaderErrs[i] = f.wrap(fmt.Sprintf("header %d", i+1), off, err)
			continue
		}
		hs[i] = &h
	}
	switch {
	case hs[0] == nil && hs[1] == nil:
		return f.wrap("headers", Header1Offset, fmt.Errorf("%w: neither header is valid: %v; %v", ErrCorrupt, f.HeaderErrs[0], f.HeaderErrs[1]))
	case hs[1] == nil || (hs[0] != nil && hs[0].SequenceNumber >= hs[1].SequenceNumber):
		// Equal sequence numbers mean both copies were written by the
		// same update; either will do.
		f.Header, f.CurrentHeader = *hs[0], 1
	default:
		f.Header, f.CurrentHeader = *hs[1], 2
	}
	for i, err := range f.HeaderErrs {
		if err != nil {
			f.Warnings = append(f.Warnings, fmt.Sprintf("header %d ignored: %v", i+1, err))
		}
	}
	if f.Header.Version != 1 {
		return f.errorf(fmt.Sprintf("header %d: Version", f.CurrentHeader), f.headerOffset(), ErrUnsupported, "version %d, only 1 is defined", f.Header.Version)
	}

	// The log must be replayed before anything else is read.
	f.Log = LogInfo{GUID: f.Header.LogGUID, Offset: f.Header.LogOffset, Length: f.Header.LogLength}
	ov, err := f.replayLog(base, f.fileSize)
	if err != nil {
		return err
	}
	if ov != nil {
		f.r, f.size = ov, ov.size
	}

	if err := f.loadRegions(); err != nil {
		return err
	}
	if err := f.loadMetadata(); err != nil {
		return err
	}
	return f.loadBAT()
}

func (f *File) loadRegions() error {
	var tables [2][]RegionEntry
	for i, off := range []int64{RegionTable1Offset, RegionTable2Offset} {
		field := fmt.Sprintf("region table %d", i+1)
		b, err := f.readFull(f.r, field, off, RegionTableSize)
		if err != nil {
			return err
		}
		tables[i], err = unmarshalRegionTable(b)
		if err != nil {
			f.RegionErrs[i] = f.wrap(field, off, err)
		}
	}
	switch {
	case f.RegionErrs[0] == nil:
		f.Regions = tables[0]
	case f.RegionErrs[1] == nil:
		f.Regions = tables[1]
		f.Warnings = append(f.Warnings, fmt.Sprintf("region table 1 ignored: %v", f.RegionErrs[0]))
	default:
		return f.wrap("region tables", RegionTable1Offset, fmt.Errorf("%w: neither copy is valid: %v; %v", ErrCorrupt, f.RegionErrs[0], f.RegionErrs[1]))
	}
	seen := map[GUID]bool{}
	var spans [][2]uint64
	if !f.Header.LogGUID.IsZero() || f.Header.LogLength != 0 {
		spans = append(spans, [2]uint64{f.Header.LogOffset, f.Header.LogOffset + uint64(f.Header.LogLength)})
	}
	for i, e := range f.Regions {
		field := fmt.Sprintf("region table entry %d (%s)", i, e.GUID)
		if seen[e.GUID] {
			return f.errorf(field, RegionTable1Offset, ErrCorrupt, "region listed twice")
		}
		seen[e.GUID] = true
		known := e.GUID == RegionBAT || e.GUID == RegionMetadata
		if !known {
			if e.Required {
				return f.errorf(field, RegionTable1Offset, ErrUnsupported, "unknown region is marked required")
			}
			continue
		}
		if e.FileOffset < HeaderSectionSize || e.FileOffset%MiB != 0 || e.Length == 0 || e.Length%MiB != 0 {
			return f.errorf(field+": FileOffset/Length", RegionTable1Offset, ErrCorrupt, "region at %d length %d is not 1 MiB aligned after the header section", e.FileOffset, e.Length)
		}
		if e.FileOffset+uint64(e.Length) > uint64(f.size) {
			return f.errorf(field+": FileOffset/Length", RegionTable1Offset, ErrTruncated, "region at %d length %d ends past the end of the %d-byte file", e.FileOffset, e.Length, f.size)
		}
		for _, s := range spans {
			if e.FileOffset < s[1] && s[0] < e.FileOffset+uint64(e.Length) {
				return f.errorf(field+": FileOffset", RegionTable1Offset, ErrCorrupt, "region at %d length %d overlaps another region or the log", e.FileOffset, e.Length)
			}
		}
		spans = append(spans, [2]uint64{e.FileOffset, e.FileOffset + uint64(e.Length)})
	}
	for _, g := range []GUID{RegionBAT, RegionMetadata} {
		if !seen[g] {
			name := "BAT"
			if g == RegionMetadata {
				name = "metadata"
			}
			return f.errorf("region table", RegionTable1Offset, ErrCorrupt, "required %s region is missing", name)
		}
	}
	return nil
}

func (f *File) region(g GUID) RegionEntry {
	for _, e := range f.Regions {
		if e.GUID == g {
			return e
		}
	}
	return RegionEntry{}
}

func (f *File) loadMetadata() error {
	reg := f.region(RegionMetadata)
	base := int64(reg.FileOffset)
	if reg.Length < MetadataTableSize {
		return f.errorf("metadata region: Length", base, ErrCorrupt, "region is %d bytes, smaller than its 64 KiB table", reg.Length)
	}
	tb, err := f.readFull(f.r, "metadata table", base, MetadataTableSize)
	if err != nil {
		return err
	}
	entries, err := unmarshalMetadataTable(tb)
	if err != nil {
		return f.wrap("metadata table", base, err)
	}
	m := &f.Metadata
	m.Entries = entries
	items := map[GUID][]byte{}
	type span struct{ lo, hi uint32 }
	var used []span
	for i, e := range entries {
		field := fmt.Sprintf("metadata table entry %d (%s)", i, e.ItemID)
		if e.Length == 0 {
			if e.Offset != 0 {
				return f.errorf(field+": Offset", base, ErrCorrupt, "empty item has offset %d", e.Offset)
			}
		} else {
			if e.Offset < MetadataTableSize || e.Length > metadataItemMaxSize || uint64(e.Offset)+uint64(e.Length) > uint64(reg.Length) {
				return f.errorf(field+": Offset/Length", base, ErrCorrupt, "item at %d length %d is outside the %d-byte metadata region", e.Offset, e.Length, reg.Length)
			}
			for _, u := range used {
				if e.Offset < u.hi && u.lo < e.Offset+e.Length {
					return f.errorf(field+": Offset", base, ErrCorrupt, "item at %d length %d overlaps another item", e.Offset, e.Length)
				}
			}
			used = append(used, span{e.Offset, e.Offset + e.Length})
		}
		known := false
		for _, g := range []GUID{MetaFileParameters, MetaVirtualDiskSize, MetaVirtualDiskID, MetaLogicalSectorSize, MetaPhysicalSectorSize, MetaParentLocator} {
			known = known || (g == e.ItemID && !e.IsUser)
		}
		if !known {
			if e.IsRequired {
				return f.errorf(field, base, ErrUnsupported, "unknown metadata item is marked required")
			}
			continue
		}
		if _, dup := items[e.ItemID]; dup {
			return f.errorf(field, base, ErrCorrupt, "item listed twice")
		}
		b, err := f.readFull(f.r, field, base+int64(e.Offset), int64(e.Length))
		if err != nil {
			return err
		}
		items[e.ItemID] = b
	}
	need := func(g GUID, name string, size int) ([]byte, error) {
		b, ok := items[g]
		if !ok {
			return nil, f.errorf("metadata: "+name, base, ErrCorrupt, "required item is missing")
		}
		if len(b) < size {
			return nil, f.errorf("metadata: "+name, base, ErrCorrupt, "item is %d bytes, want %d", len(b), size)
		}
		return b, nil
	}
	b, err := need(MetaFileParameters, "File Parameters", 8)
	if err != nil {
		return err
	}
	m.BlockSize = le.Uint32(b)
	m.LeaveBlocksAllocated = le.Uint32(b[4:])&1 != 0
	m.HasParent = le.Uint32(b[4:])&2 != 0
	if b, err = need(MetaVirtualDiskSize, "Virtual Disk Size", 8); err != nil {
		return err
	}
	m.VirtualSize = le.Uint64(b)
	if b, err = need(MetaVirtualDiskID, "Virtual Disk ID", 16); err != nil {
		return err
	}
	copy(m.VirtualDiskID[:], b)
	if b, err = need(MetaLogicalSectorSize, "Logical Sector Size", 4); err != nil {
		return err
	}
	m.LogicalSectorSize = le.Uint32(b)
	if b, err = need(MetaPhysicalSectorSize, "Physical Sector Size", 4); err != nil {
		return err
	}
	m.PhysicalSectorSize = le.Uint32(b)

	bs := m.BlockSize
	switch {
	case bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0:
		return f.errorf("metadata: File Parameters: BlockSize", base, ErrCorrupt, "%d is not a power of two between 1 MiB and 256 MiB", bs)
	case m.LogicalSectorSize != 512 && m.LogicalSectorSize != 4096:
		return f.errorf("metadata: Logical Sector Size", base, ErrCorrupt, "%d is neither 512 nor 4096", m.LogicalSectorSize)
	case m.PhysicalSectorSize != 512 && m.PhysicalSectorSize != 4096:
		return f.errorf("metadata: Physical Sector Size", base, ErrCorrupt, "%d is neither 512 nor 4096", m.PhysicalSectorSize)
	case m.VirtualSize == 0 || m.VirtualSize > MaxVirtualSize || m.VirtualSize%uint64(m.LogicalSectorSize) != 0:
		return f.errorf("metadata: Virtual Disk Size", base, ErrCorrupt, "%d is not a non-zero multiple of the %d-byte sector up to 64 TiB", m.VirtualSize, m.LogicalSectorSize)
	}
	if m.HasParent {
		b, ok := items[MetaParentLocator]
		if !ok {
			return f.errorf("metadata: Parent Locator", base, ErrCorrupt, "differencing file has no parent locator")
		}
		pl, err := unmarshalParentLocator(b)
		if err != nil {
			return f.wrap("metadata: Parent Locator", base, err)
		}
		if pl.Type != LocatorTypeVHDX {
			return f.errorf("metadata: Parent Locator: LocatorType", base, ErrUnsupported, "locator type %s is not the VHDX type", pl.Type)
		}
		if _, ok := pl.Get(KeyParentLinkage); !ok {
			return f.errorf("metadata: Parent Locator: parent_linkage", base, ErrCorrupt, "required key is missing")
		}
		m.ParentLocator = pl
	}
	return nil
}

func (f *File) loadBAT() error {
	m := &f.Metadata
	bs := int64(m.BlockSize)
	f.sectorsPerBl = bs / int64(m.LogicalSectorSize)
	f.chunkRatio = SectorsPerBitmap * int64(m.LogicalSectorSize) / bs
	f.dataBlocks = (int64(m.VirtualSize) + bs - 1) / bs
	if m.HasParent {
		f.batEntries = ((f.dataBlocks + f.chunkRatio - 1) / f.chunkRatio) * (f.chunkRatio + 1)
	} else {
		f.batEntries = f.dataBlocks + (f.dataBlocks-1)/f.chunkRatio
	}
	reg := f.region(RegionBAT)
	f.batOffset = int64(reg.FileOffset)
	if f.batEntries*8 > int64(reg.Length) {
		return f.errorf("region table: BAT Length", RegionTable1Offset, ErrCorrupt,
			"BAT region is %d bytes, the %d-byte disk with %d-byte blocks needs %d entries (%d bytes)",
			reg.Length, m.VirtualSize, bs, f.batEntries, f.batEntries*8)
	}
	// Structures payload blocks must not overlap.
	reserved := [][2]int64{{0, HeaderSectionSize}}
	for _, r := range f.Regions {
		reserved = append(reserved, [2]int64{int64(r.FileOffset), int64(r.FileOffset) + int64(r.Length)})
	}
	if f.Header.LogLength != 0 {
		reserved = append(reserved, [2]int64{int64(f.Header.LogOffset), int64(f.Header.LogOffset) + int64(f.Header.LogLength)})
	}
	type alloc struct {
		off, end int64
		index    int64
	}
	var allocs []alloc
	pages := (f.batEntries + batPageEntries - 1) / batPageEntries
	f.batPages = make([][]BATEntry, pages)
	buf := make([]byte, batPageEntries*8)
	for p := int64(0); p < pages; p++ {
		n := min(int64(batPageEntries), f.batEntries-p*batPageEntries)
		off := f.batOffset + p*batPageEntries*8
		if _, err := f.r.ReadAt(buf[:n*8], off); err != nil && !errors.Is(err, io.EOF) {
			return f.wrap("BAT", off, err)
		}
		var page []BATEntry
		for i := int64(0); i < n; i++ {
			e := BATEntry(le.Uint64(buf[i*8:]))
			if e == 0 {
				continue
			}
			if page == nil {
				page = make([]BATEntry, n)
			}
			page[i] = e
			index := p*batPageEntries + i
			isBitmap := (index+1)%(f.chunkRatio+1) == 0
			st := e.State()
			field := fmt.Sprintf("BAT entry %d (payload block %d)", index, index-index/(f.chunkRatio+1))
			if isBitmap {
				field = fmt.Sprintf("BAT entry %d (sector bitmap block %d)", index, index/(f.chunkRatio+1))
			}
			size := bs
			switch {
			case isBitmap && st == SectorBitmapPresent && m.HasParent:
				size = SectorBitmapSize
			case isBitmap && st == SectorBitmapNotPresent:
				continue
			case isBitmap:
				return f.errorf(field+": State", off+i*8, ErrCorrupt, "sector bitmap state %d is invalid in a %s file", st, f.Type())
			case st == BlockFullyPresent, st == BlockPartiallyPresent && m.HasParent:
			case st == BlockNotPresent, st == BlockUndefined, st == BlockZero, st == BlockUnmapped:
				continue // FileOffsetMB is reserved or only a hint
			default:
				return f.errorf(field+": State", off+i*8, ErrCorrupt, "payload state %s is invalid in a %s file", st, f.Type())
			}
			if !isBitmap {
				// The last block may hold less than a block of the disk;
				// writers allocate only what the virtual size needs.
				blockIndex := index - index/(f.chunkRatio+1)
				size = min(bs, int64(m.VirtualSize)-blockIndex*bs)
			}
			fo := e.FileOffset()
			if fo < HeaderSectionSize {
				return f.errorf(field+": FileOffsetMB", off+i*8, ErrCorrupt, "block at %d overlaps the header section", fo)
			}
			if fo+size > f.size {
				return f.errorf(field+": FileOffsetMB", off+i*8, ErrTruncated, "block at %d..%d is past the end of the %d-byte file", fo, fo+size, f.size)
			}
			allocs = append(allocs, alloc{fo, fo + size, index})
		}
		f.batPages[p] = page
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].off < allocs[j].off })
	for i, a := range allocs {
		if i > 0 && a.off < allocs[i-1].end {
			return f.errorf(fmt.Sprintf("BAT entry %d: FileOffsetMB", a.index), f.batOffset+a.index*8, ErrCorrupt,
				"block at %d overlaps the block of BAT entry %d", a.off, allocs[i-1].index)
		}
		for _, r := range reserved {
			if a.off < r[1] && r[0] < a.end {
				return f.errorf(fmt.Sprintf("BAT entry %d: FileOffsetMB", a.index), f.batOffset+a.index*8, ErrCorrupt,
					"block at %d overlaps the region or log at %d..%d", a.off, r[0], r[1])
			}
		}
	}
	if !m.HasParent && f.Header.LogGUID.IsZero() && len(allocs) == 0 && m.LeaveBlocksAllocated {
		f.Warnings = append(f.Warnings, "fixed file has no allocated blocks")
	}
	return nil
}

// batEntry returns BAT entry i (0 if beyond the table).
func (f *File) batEntry(i int64) BATEntry {
	if i < 0 || i >= f.batEntries {
		return 0
	}
	p := f.batPages[i/batPageEntries]
	if p == nil {
		return 0
	}
	return p[i%batPageEntries]
}

// PayloadEntry returns the BAT entry of payload block b.
func (f *File) PayloadEntry(b int64) BATEntry { return f.batEntry(b + b/f.chunkRatio) }

// BitmapEntry returns the BAT entry of sector-bitmap block c (chunk c).
func (f *File) BitmapEntry(c int64) BATEntry {
	return f.batEntry(c*(f.chunkRatio+1) + f.chunkRatio)
}

// StateCounts counts payload blocks per state.
func (f *File) StateCounts() map[BlockState]int64 {
	counts := map[BlockState]int64{}
	for b := int64(0); b < f.dataBlocks; b++ {
		counts[f.PayloadEntry(b).State()]++
	}
	return counts
}
