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
	"slices"
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

	// What a parse found (see Collector) and how the file was opened.
	col      *Collector
	mode     parseMode
	notes    []string // for Check's report
	logState string   // for Check's report (Report.Log)
	// salvage: damaged blocks read as Missing (see ReadOptions.Salvage).
	salvage bool
	// avail is where the file's readable bytes end: size, or the size on
	// disk when the file is shorter than its log says it was flushed.
	avail int64
	// lost marks BAT entries whose value is unknown (unreadable, past
	// the end of the file) or whose block cannot be trusted (invalid
	// state, overlapping another block or a structure); nil when none.
	lost []uint64
}

const batPageEntries = 8192

// parseMode is what a parse is for.
type parseMode uint8

const (
	parseStrict  parseMode = iota // Open: any error refuses the file
	parseSalvage                  // ReadOptions.Salvage
	parseCheck                    // Check: record everything
)

// Open opens the VHDX file at path read-only and validates it.
func Open(path string) (*File, error) { return OpenWith(path, ReadOptions{}) }

// OpenWith opens the VHDX file at path read-only with options o.
func OpenWith(path string, o ReadOptions) (*File, error) {
	osf, size, err := OpenReadOnly(path, ErrNotVHDX)
	if err != nil {
		return nil, err
	}
	f, err := NewFileWith(osf, size, path, o)
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
	return NewFileWith(r, size, name, ReadOptions{})
}

// NewFileWith is NewFile with options o.
func NewFileWith(r io.ReaderAt, size int64, name string, o ReadOptions) (*File, error) {
	mode := parseStrict
	if o.Salvage {
		mode = parseSalvage
	}
	f := parse(r, size, name, mode)
	if !o.Salvage {
		if err := f.col.StrictError(); err != nil {
			return nil, err
		}
		return f, nil
	}
	if err := f.col.Fatal(); err != nil {
		return nil, err
	}
	f.salvage = true
	f.Warnings = append(f.Warnings, f.col.Passed()...)
	return f, nil
}

// parse decodes the file once, recording every problem in f.col; the
// modes differ only in what they make of the problems (see Collector).
func parse(r io.ReaderAt, size int64, name string, mode parseMode) *File {
	f := &File{name: name, r: r, fileSize: size, size: size, avail: size, mode: mode,
		col: &Collector{Check: mode == parseCheck}}
	f.load(r)
	return f
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

// fail records an error found at level lv (see Collector.Error) and
// returns non-nil when the parse must stop.
func (f *File) fail(lv Level, structure string, off int64, err error) error {
	return f.col.Error(lv, structure, off, err)
}

// warn records a warning both as a Problem and in Warnings.
func (f *File) warn(structure string, off int64, err error, msg string) {
	f.col.Warning(structure, off, err)
	f.Warnings = append(f.Warnings, msg)
}

func (f *File) note(format string, args ...any) {
	if f.mode == parseCheck {
		f.notes = append(f.notes, fmt.Sprintf(format, args...))
	}
}

func (f *File) readFull(r io.ReaderAt, field string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > f.avail || n > f.avail-off {
		return nil, f.errorf(field, off, ErrTruncated, "%d bytes at offset %d do not fit in the %d-byte file", n, off, f.avail)
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
		return f.fail(Fatal, "file type identifier", 0, f.errorf("file type identifier: Signature", 0, ErrNotVHDX, "file is %d bytes", f.fileSize))
	}
	sig := make([]byte, 8)
	if _, err := base.ReadAt(sig, 0); err != nil {
		return f.fail(Fatal, "file type identifier", 0, f.wrap("file type identifier", 0, err))
	}
	if string(sig) != string(sigFile) {
		return f.fail(Fatal, "file type identifier", 0, f.errorf("file type identifier: Signature", 0, ErrNotVHDX, "signature is %q, want \"vhdxfile\"", sig))
	}
	if f.fileSize < HeaderSectionSize {
		err := f.errorf("header section", 0, ErrTruncated, "file is %d bytes, the header section alone is 1 MiB", f.fileSize)
		if err := f.fail(Salvageable, "header section", 0, err); err != nil {
			return err
		}
	}
	if id, err := f.readFull(base, "file type identifier", 0, 8+512); err != nil {
		if err := f.fail(Salvageable, "file type identifier", 0, err); err != nil {
			return err
		}
	} else {
		f.Identifier.Creator = decodeUTF16(id[8:])
	}
	if err := f.loadHeaders(base); err != nil {
		return err
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

// loadHeaders picks the current header: the valid one with the higher
// sequence number.
func (f *File) loadHeaders(base io.ReaderAt) error {
	var hs [2]*Header
	var unread [2]bool
	for i, off := range []int64{Header1Offset, Header2Offset} {
		structure := fmt.Sprintf("header %d", i+1)
		b, err := f.readFull(base, structure, off, HeaderSize)
		if err != nil {
			f.HeaderErrs[i], unread[i] = err, true
			if err := f.fail(Salvageable, structure, off, err); err != nil {
				return err
			}
			continue
		}
		h, err := unmarshalHeader(b)
		if err != nil {
			f.HeaderErrs[i] = f.wrap(structure, off, err)
			continue
		}
		hs[i] = &h
	}
	switch {
	case hs[0] == nil && hs[1] == nil:
		err := f.wrap("headers", Header1Offset, fmt.Errorf("%w: neither header is valid: %v; %v", ErrCorrupt, f.HeaderErrs[0], f.HeaderErrs[1]))
		return f.fail(Fatal, "headers", Header1Offset, err)
	case hs[1] == nil || (hs[0] != nil && hs[0].SequenceNumber >= hs[1].SequenceNumber):
		// Equal sequence numbers mean both copies were written by the
		// same update; either will do.
		f.Header, f.CurrentHeader = *hs[0], 1
	default:
		f.Header, f.CurrentHeader = *hs[1], 2
	}
	for i, err := range f.HeaderErrs {
		if err != nil && !unread[i] {
			f.warn(fmt.Sprintf("header %d", i+1), []int64{Header1Offset, Header2Offset}[i], err, fmt.Sprintf("header %d ignored: %v", i+1, err))
		}
	}
	for i, h := range hs {
		if h != nil {
			cur := ""
			if f.CurrentHeader == i+1 {
				cur = " (current)"
			}
			f.note("header %d: SequenceNumber %d%s, DataWriteGuid %s, LogGuid %s", i+1, h.SequenceNumber, cur, h.DataWriteGUID, h.LogGUID)
		}
	}
	if f.Header.Version != 1 {
		err := f.errorf(fmt.Sprintf("header %d: Version", f.CurrentHeader), f.headerOffset(), ErrUnsupported, "version %d, only 1 is defined", f.Header.Version)
		return f.fail(Fatal, fmt.Sprintf("header %d", f.CurrentHeader), f.headerOffset(), err)
	}
	return nil
}

func (f *File) loadRegions() error {
	var tables [2][]RegionEntry
	var unread [2]bool
	for i, off := range []int64{RegionTable1Offset, RegionTable2Offset} {
		field := fmt.Sprintf("region table %d", i+1)
		b, err := f.readFull(f.r, field, off, RegionTableSize)
		if err != nil {
			f.RegionErrs[i], unread[i] = err, true
			if err := f.fail(Salvageable, field, off, err); err != nil {
				return err
			}
			continue
		}
		tables[i], err = unmarshalRegionTable(b)
		if err != nil {
			f.RegionErrs[i] = f.wrap(field, off, err)
		}
	}
	switch {
	case f.RegionErrs[0] == nil:
		f.Regions = tables[0]
		if f.RegionErrs[1] != nil && !unread[1] {
			// Not a warning before: the second copy is only a fallback.
			f.col.Warning("region table 2", RegionTable2Offset, f.RegionErrs[1])
		} else if f.RegionErrs[1] == nil && !slices.Equal(tables[0], tables[1]) {
			f.col.Warning("region table 2", RegionTable2Offset, f.errorf("region table 2", RegionTable2Offset, ErrCorrupt, "differs from region table 1, which was used"))
		}
	case f.RegionErrs[1] == nil:
		f.Regions = tables[1]
		if !unread[0] {
			f.warn("region table 1", RegionTable1Offset, f.RegionErrs[0], fmt.Sprintf("region table 1 ignored: %v", f.RegionErrs[0]))
		}
	default:
		err := f.wrap("region tables", RegionTable1Offset, fmt.Errorf("%w: neither copy is valid: %v; %v", ErrCorrupt, f.RegionErrs[0], f.RegionErrs[1]))
		return f.fail(Fatal, "region tables", RegionTable1Offset, err)
	}
	seen := map[GUID]bool{}
	var spans [][2]uint64
	if !f.Header.LogGUID.IsZero() || f.Header.LogLength != 0 {
		spans = append(spans, [2]uint64{f.Header.LogOffset, f.Header.LogOffset + uint64(f.Header.LogLength)})
	}
	var keep []RegionEntry
	for i, e := range f.Regions {
		field := fmt.Sprintf("region table entry %d (%s)", i, e.GUID)
		structure := "region " + regionName(e.GUID)
		if seen[e.GUID] {
			if err := f.fail(Checkable, structure, RegionTable1Offset, f.errorf(field, RegionTable1Offset, ErrCorrupt, "region listed twice")); err != nil {
				return err
			}
			continue
		}
		seen[e.GUID] = true
		known := e.GUID == RegionBAT || e.GUID == RegionMetadata
		if !known {
			if e.Required {
				if err := f.fail(Checkable, structure, RegionTable1Offset, f.errorf(field, RegionTable1Offset, ErrUnsupported, "unknown region is marked required")); err != nil {
					return err
				}
			}
			keep = append(keep, e)
			continue
		}
		if e.FileOffset < HeaderSectionSize || e.FileOffset%MiB != 0 || e.Length == 0 || e.Length%MiB != 0 {
			err := f.errorf(field+": FileOffset/Length", RegionTable1Offset, ErrCorrupt, "region at %d length %d is not 1 MiB aligned after the header section", e.FileOffset, e.Length)
			if err := f.fail(Checkable, structure, RegionTable1Offset, err); err != nil {
				return err
			}
		}
		if e.FileOffset+uint64(e.Length) > uint64(f.avail) {
			err := f.errorf(field+": FileOffset/Length", RegionTable1Offset, ErrTruncated, "region at %d length %d ends past the end of the %d-byte file", e.FileOffset, e.Length, f.avail)
			if err := f.fail(Salvageable, structure, RegionTable1Offset, err); err != nil {
				return err
			}
		}
		for _, s := range spans {
			if e.FileOffset < s[1] && s[0] < e.FileOffset+uint64(e.Length) {
				err := f.errorf(field+": FileOffset", RegionTable1Offset, ErrCorrupt, "region at %d length %d overlaps another region or the log", e.FileOffset, e.Length)
				if err := f.fail(Checkable, structure, RegionTable1Offset, err); err != nil {
					return err
				}
				break
			}
		}
		spans = append(spans, [2]uint64{e.FileOffset, e.FileOffset + uint64(e.Length)})
		keep = append(keep, e)
	}
	f.Regions = keep
	for _, g := range []GUID{RegionBAT, RegionMetadata} {
		if !seen[g] {
			err := f.errorf("region table", RegionTable1Offset, ErrCorrupt, "required %s region is missing", regionName(g))
			return f.fail(Fatal, "region "+regionName(g), RegionTable1Offset, err)
		}
	}
	return nil
}

// regionName names a region for messages: "BAT", "metadata" or its GUID.
func regionName(g GUID) string {
	switch g {
	case RegionBAT:
		return "BAT"
	case RegionMetadata:
		return "metadata"
	}
	return g.String()
}

func (f *File) region(g GUID) RegionEntry {
	for _, e := range f.Regions {
		if e.GUID == g {
			return e
		}
	}
	return RegionEntry{}
}

// metadataItems are the known metadata items and their names.
var metadataItems = []struct {
	id   GUID
	name string
}{
	{MetaFileParameters, "File Parameters"},
	{MetaVirtualDiskSize, "Virtual Disk Size"},
	{MetaVirtualDiskID, "Virtual Disk ID"},
	{MetaLogicalSectorSize, "Logical Sector Size"},
	{MetaPhysicalSectorSize, "Physical Sector Size"},
	{MetaParentLocator, "Parent Locator"},
}

// metadataItemName names item g for problem reports.
func metadataItemName(g GUID) string {
	for _, k := range metadataItems {
		if k.id == g {
			return "metadata item " + k.name
		}
	}
	return "metadata item " + g.String()
}

func (f *File) loadMetadata() error {
	reg := f.region(RegionMetadata)
	base := int64(reg.FileOffset)
	if reg.Length < MetadataTableSize {
		err := f.errorf("metadata region: Length", base, ErrCorrupt, "region is %d bytes, smaller than its 64 KiB table", reg.Length)
		return f.fail(Fatal, "region metadata", RegionTable1Offset, err)
	}
	tb, err := f.readFull(f.r, "metadata table", base, MetadataTableSize)
	if err != nil {
		return f.fail(Fatal, "metadata table", base, err)
	}
	entries, err := unmarshalMetadataTable(tb)
	if err != nil {
		return f.fail(Fatal, "metadata table", base, f.wrap("metadata table", base, err))
	}
	m := &f.Metadata
	m.Entries = entries
	items := map[GUID][]byte{}
	unreadable := map[GUID]error{}
	type span struct{ lo, hi uint32 }
	var used []span
	for i, e := range entries {
		field := fmt.Sprintf("metadata table entry %d (%s)", i, e.ItemID)
		structure := metadataItemName(e.ItemID)
		if e.Length == 0 {
			if e.Offset != 0 {
				if err := f.fail(Checkable, structure, base, f.errorf(field+": Offset", base, ErrCorrupt, "empty item has offset %d", e.Offset)); err != nil {
					return err
				}
			}
		} else {
			if e.Offset < MetadataTableSize || e.Length > metadataItemMaxSize || uint64(e.Offset)+uint64(e.Length) > uint64(reg.Length) {
				err := f.errorf(field+": Offset/Length", base, ErrCorrupt, "item at %d length %d is outside the %d-byte metadata region", e.Offset, e.Length, reg.Length)
				if err := f.fail(Checkable, structure, base, err); err != nil {
					return err
				}
				continue
			}
			for _, u := range used {
				if e.Offset < u.hi && u.lo < e.Offset+e.Length {
					err := f.errorf(field+": Offset", base, ErrCorrupt, "item at %d length %d overlaps another item", e.Offset, e.Length)
					if err := f.fail(Checkable, structure, base, err); err != nil {
						return err
					}
					break
				}
			}
			used = append(used, span{e.Offset, e.Offset + e.Length})
		}
		known := false
		for _, k := range metadataItems {
			known = known || (k.id == e.ItemID && !e.IsUser)
		}
		if !known {
			if e.IsRequired {
				if err := f.fail(Checkable, structure, base, f.errorf(field, base, ErrUnsupported, "unknown metadata item is marked required")); err != nil {
					return err
				}
			}
			continue
		}
		if _, dup := items[e.ItemID]; dup {
			if err := f.fail(Checkable, structure, base, f.errorf(field, base, ErrCorrupt, "item listed twice")); err != nil {
				return err
			}
			continue
		}
		b, err := f.readFull(f.r, field, base+int64(e.Offset), int64(e.Length))
		if err != nil {
			unreadable[e.ItemID] = err
			if err := f.fail(Checkable, structure, base+int64(e.Offset), err); err != nil {
				return err
			}
			continue
		}
		items[e.ItemID] = b
	}
	need := func(g GUID, name string, size int) ([]byte, error) {
		b, ok := items[g]
		if err, bad := unreadable[g]; bad {
			return nil, f.col.Stop(err) // recorded above
		}
		if !ok {
			return nil, f.fail(Fatal, "metadata item "+name, base, f.errorf("metadata: "+name, base, ErrCorrupt, "required item is missing"))
		}
		if len(b) < size {
			return nil, f.fail(Fatal, "metadata item "+name, base, f.errorf("metadata: "+name, base, ErrCorrupt, "item is %d bytes, want %d", len(b), size))
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
	bad := func(name, field, format string, args ...any) error {
		return f.fail(Fatal, "metadata item "+name, base, f.errorf(field, base, ErrCorrupt, format, args...))
	}
	switch {
	case bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0:
		return bad("File Parameters", "metadata: File Parameters: BlockSize", "%d is not a power of two between 1 MiB and 256 MiB", bs)
	case m.LogicalSectorSize != 512 && m.LogicalSectorSize != 4096:
		return bad("Logical Sector Size", "metadata: Logical Sector Size", "%d is neither 512 nor 4096", m.LogicalSectorSize)
	case m.PhysicalSectorSize != 512 && m.PhysicalSectorSize != 4096:
		return bad("Physical Sector Size", "metadata: Physical Sector Size", "%d is neither 512 nor 4096", m.PhysicalSectorSize)
	case m.VirtualSize == 0 || m.VirtualSize > MaxVirtualSize || m.VirtualSize%uint64(m.LogicalSectorSize) != 0:
		return bad("Virtual Disk Size", "metadata: Virtual Disk Size", "%d is not a non-zero multiple of the %d-byte sector up to 64 TiB", m.VirtualSize, m.LogicalSectorSize)
	}
	if m.HasParent {
		if err := f.loadParentLocator(items, unreadable, base); err != nil {
			return err
		}
	}
	return nil
}

// loadParentLocator decodes the parent locator of a differencing file.
// Check goes on without it (the block table does not need it).
func (f *File) loadParentLocator(items map[GUID][]byte, unreadable map[GUID]error, base int64) error {
	const structure = "metadata item Parent Locator"
	if _, bad := unreadable[MetaParentLocator]; bad {
		return nil // recorded
	}
	b, ok := items[MetaParentLocator]
	if !ok {
		return f.fail(Checkable, structure, base, f.errorf("metadata: Parent Locator", base, ErrCorrupt, "differencing file has no parent locator"))
	}
	pl, err := unmarshalParentLocator(b)
	if err != nil {
		return f.fail(Checkable, structure, base, f.wrap("metadata: Parent Locator", base, err))
	}
	if pl.Type != LocatorTypeVHDX {
		return f.fail(Checkable, structure, base, f.errorf("metadata: Parent Locator: LocatorType", base, ErrUnsupported, "locator type %s is not the VHDX type", pl.Type))
	}
	if _, ok := pl.Get(KeyParentLinkage); !ok {
		return f.fail(Checkable, structure, base, f.errorf("metadata: Parent Locator: parent_linkage", base, ErrCorrupt, "required key is missing"))
	}
	f.Metadata.ParentLocator = pl
	return nil
}

// Lost-entry marks (see File.lost).
func (f *File) setLost(lo, hi int64) {
	if f.lost == nil {
		f.lost = make([]uint64, (f.batEntries+63)/64)
	}
	for i := max(lo, 0); i < min(hi, f.batEntries); i++ {
		if i%64 == 0 && i+64 <= hi {
			f.lost[i/64] = ^uint64(0)
			i += 63
			continue
		}
		f.lost[i/64] |= 1 << (i % 64)
	}
}

func (f *File) isLost(i int64) bool {
	return f.lost != nil && i >= 0 && i < f.batEntries && f.lost[i/64]&(1<<(i%64)) != 0
}

// batField names BAT entry index in messages.
func (f *File) batField(index int64) string {
	if (index+1)%(f.chunkRatio+1) == 0 {
		return fmt.Sprintf("BAT entry %d (sector bitmap block %d)", index, index/(f.chunkRatio+1))
	}
	return fmt.Sprintf("BAT entry %d (payload block %d)", index, index-index/(f.chunkRatio+1))
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
		err := f.errorf("region table: BAT Length", RegionTable1Offset, ErrCorrupt,
			"BAT region is %d bytes, the %d-byte disk with %d-byte blocks needs %d entries (%d bytes)",
			reg.Length, m.VirtualSize, bs, f.batEntries, f.batEntries*8)
		return f.fail(Fatal, "region BAT", RegionTable1Offset, err)
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
	// Entries whose bytes lie past the end of the file are unknown.
	known := f.batEntries
	if f.batOffset+f.batEntries*8 > f.avail {
		known = max(0, min(f.batEntries, (f.avail-f.batOffset)/8))
		f.setLost(known, f.batEntries)
		err := f.errorf("BAT", f.batOffset+known*8, ErrTruncated, "entries %d to %d are past the end of the %d-byte file", known, f.batEntries-1, f.avail)
		if err := f.fail(Salvageable, "BAT", f.batOffset+known*8, err); err != nil {
			return err
		}
	}
	pages := (f.batEntries + batPageEntries - 1) / batPageEntries
	f.batPages = make([][]BATEntry, pages)
	buf := make([]byte, batPageEntries*8)
	for p := int64(0); p*batPageEntries < known; p++ {
		n := min(int64(batPageEntries), known-p*batPageEntries)
		off := f.batOffset + p*batPageEntries*8
		if err := f.readTable(buf[:n*8], off, p*batPageEntries); err != nil {
			return err
		}
		var page []BATEntry
		for i := int64(0); i < n; i++ {
			e := BATEntry(le.Uint64(buf[i*8:]))
			if e == 0 {
				continue
			}
			if page == nil {
				page = make([]BATEntry, min(int64(batPageEntries), f.batEntries-p*batPageEntries))
			}
			page[i] = e
			index := p*batPageEntries + i
			isBitmap := (index+1)%(f.chunkRatio+1) == 0
			st := e.State()
			field := f.batField(index)
			structure := fmt.Sprintf("BAT entry %d", index)
			entryOff := off + i*8
			// damaged records a problem with this entry: its block
			// cannot be trusted.
			damaged := func(err error) error {
				f.setLost(index, index+1)
				return f.fail(Salvageable, structure, entryOff, err)
			}
			size := bs
			switch {
			case isBitmap && st == SectorBitmapPresent && m.HasParent:
				size = SectorBitmapSize
			case isBitmap && st == SectorBitmapNotPresent:
				continue
			case isBitmap:
				if err := damaged(f.errorf(field+": State", entryOff, ErrCorrupt, "sector bitmap state %d is invalid in a %s file", st, f.Type())); err != nil {
					return err
				}
				continue
			case st == BlockFullyPresent, st == BlockPartiallyPresent && m.HasParent:
			case st == BlockNotPresent, st == BlockUndefined, st == BlockZero, st == BlockUnmapped:
				continue // FileOffsetMB is reserved or only a hint
			default:
				if err := damaged(f.errorf(field+": State", entryOff, ErrCorrupt, "payload state %s is invalid in a %s file", st, f.Type())); err != nil {
					return err
				}
				continue
			}
			if !isBitmap {
				// The last block may hold less than a block of the disk;
				// writers allocate only what the virtual size needs.
				blockIndex := index - index/(f.chunkRatio+1)
				size = min(bs, int64(m.VirtualSize)-blockIndex*bs)
			}
			fo := e.FileOffset()
			if fo < HeaderSectionSize {
				if err := damaged(f.errorf(field+": FileOffsetMB", entryOff, ErrCorrupt, "block at %d overlaps the header section", fo)); err != nil {
					return err
				}
				continue
			}
			if fo+size > f.avail {
				// Not lost: what lies before the end of the file reads.
				err := f.errorf(field+": FileOffsetMB", entryOff, ErrTruncated, "block at %d..%d is past the end of the %d-byte file", fo, fo+size, f.avail)
				if err := f.fail(Salvageable, structure, entryOff, err); err != nil {
					return err
				}
			}
			allocs = append(allocs, alloc{fo, fo + size, index})
		}
		f.batPages[p] = page
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].off < allocs[j].off })
	var last alloc // the block reaching furthest so far
	for i, a := range allocs {
		structure := fmt.Sprintf("BAT entry %d", a.index)
		field, entryOff := structure+": FileOffsetMB", f.batOffset+a.index*8
		if i > 0 && a.off < last.end {
			f.setLost(a.index, a.index+1)
			f.setLost(last.index, last.index+1)
			err := f.errorf(field, entryOff, ErrCorrupt, "block at %d overlaps the block of BAT entry %d", a.off, last.index)
			if err := f.fail(Salvageable, structure, entryOff, err); err != nil {
				return err
			}
		}
		for _, r := range reserved {
			if a.off < r[1] && r[0] < a.end {
				f.setLost(a.index, a.index+1)
				err := f.errorf(field, entryOff, ErrCorrupt, "block at %d overlaps the region or log at %d..%d", a.off, r[0], r[1])
				if err := f.fail(Salvageable, structure, entryOff, err); err != nil {
					return err
				}
				break
			}
		}
		if i == 0 || a.end > last.end {
			last = a
		}
	}
	if !m.HasParent && f.Header.LogGUID.IsZero() && len(allocs) == 0 && m.LeaveBlocksAllocated {
		f.warn("BAT", f.batOffset, f.errorf("BAT", f.batOffset, ErrCorrupt, "fixed file has no allocated blocks"), "fixed file has no allocated blocks")
	}
	if m.HasParent && f.mode != parseStrict {
		// A strict open lets the read of such a block fail instead.
		if err := f.checkBitmaps(); err != nil {
			return err
		}
	}
	if len(allocs) > 0 {
		f.note("blocks end at %d, the file at %d (%d bytes after the last block)", last.end, f.fileSize, f.fileSize-last.end)
	}
	return nil
}

// readTable reads the BAT bytes b at file offset off, whose first entry
// is entry first. The entries of pieces that cannot be read are marked
// lost and read as 0 (see ReadTable).
func (f *File) readTable(b []byte, off, first int64) error {
	return ReadTable(f.r, b, off, f.size, func(lo, hi int64, err error) error {
		f.setLost(first+lo/8, first+(hi+7)/8)
		return f.fail(Salvageable, "BAT", off+lo, f.wrap("BAT", off+lo, err))
	})
}

// checkBitmaps finds PARTIALLY_PRESENT payload blocks whose chunk has no
// usable sector bitmap block.
func (f *File) checkBitmaps() error {
	for c := int64(0); c*f.chunkRatio < f.dataBlocks; c++ {
		bi := c*(f.chunkRatio+1) + f.chunkRatio
		if !f.isLost(bi) && f.batEntry(bi).State() == SectorBitmapPresent {
			continue
		}
		for b := c * f.chunkRatio; b < min((c+1)*f.chunkRatio, f.dataBlocks); b++ {
			if f.PayloadEntry(b).State() != BlockPartiallyPresent || f.isLost(b+b/f.chunkRatio) {
				continue
			}
			structure := fmt.Sprintf("sector bitmap of chunk %d", c)
			why := "is not present"
			if f.isLost(bi) {
				why = "is damaged"
			}
			err := f.errorf(fmt.Sprintf("BAT: sector bitmap block %d", c), f.batOffset+bi*8, ErrCorrupt,
				"payload block %d is PARTIALLY_PRESENT but its sector bitmap %s", b, why)
			if err := f.fail(Salvageable, structure, f.batOffset+bi*8, err); err != nil {
				return err
			}
			break
		}
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
