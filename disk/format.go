package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"unicode/utf16"
)

// Sizes and offsets fixed by the specification ([MS-VHDX] §2.2).
const (
	KiB = 1 << 10
	MiB = 1 << 20

	FileIdentifierOffset = 0
	Header1Offset        = 64 * KiB
	Header2Offset        = 128 * KiB
	RegionTable1Offset   = 192 * KiB
	RegionTable2Offset   = 256 * KiB
	HeaderSectionSize    = 1 * MiB

	HeaderSize          = 4 * KiB  // bytes covered by a header's checksum
	RegionTableSize     = 64 * KiB // bytes covered by a region table's checksum
	MetadataTableSize   = 64 * KiB
	LogSectorSize       = 4 * KiB
	SectorBitmapSize    = 1 * MiB // one sector-bitmap block
	SectorsPerBitmap    = 1 << 23 // logical sectors described by one sector-bitmap block
	MinBlockSize        = 1 * MiB
	MaxBlockSize        = 256 * MiB
	MaxVirtualSize      = 64 << 40 // 64 TiB
	maxRegionEntries    = 2047
	maxMetadataEntries  = 2047
	metadataItemMaxSize = 1 * MiB
)

// Signatures.
var (
	sigFile     = []byte("vhdxfile")
	sigHeader   = []byte("head")
	sigRegion   = []byte("regi")
	sigMetadata = []byte("metadata")
	sigLogEntry = []byte("loge")
	sigZeroDesc = []byte("zero")
	sigDataDesc = []byte("desc")
	sigDataSect = []byte("data")
)

// Well-known GUIDs ([MS-VHDX] §2.2.3.2, §2.6.2, §2.6.2.6.3).
var (
	RegionBAT      = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	RegionMetadata = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

	MetaFileParameters     = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	MetaVirtualDiskSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	MetaVirtualDiskID      = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	MetaLogicalSectorSize  = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	MetaPhysicalSectorSize = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	MetaParentLocator      = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")

	LocatorTypeVHDX = mustGUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum computes the CRC-32C of buf with the 4-byte checksum field at
// checksumOff taken as zero, as every checksummed VHDX structure requires.
func Checksum(buf []byte, checksumOff int) uint32 {
	c := crc32.Update(0, castagnoli, buf[:checksumOff])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	return crc32.Update(c, castagnoli, buf[checksumOff+4:])
}

// FileIdentifier is the structure at offset 0 ([MS-VHDX] §2.2.1).
type FileIdentifier struct {
	Creator string // diagnostic only
}

// Marshal encodes the identifier into a 64 KiB buffer.
func (id FileIdentifier) Marshal() []byte {
	b := make([]byte, 64*KiB)
	copy(b, sigFile)
	putUTF16(b[8:8+512], id.Creator)
	return b
}

// Header is one of the two 4 KiB headers ([MS-VHDX] §2.2.2).
type Header struct {
	SequenceNumber uint64
	FileWriteGUID  GUID
	DataWriteGUID  GUID
	LogGUID        GUID
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

// Marshal encodes h into a 4 KiB buffer with a valid checksum.
func (h Header) Marshal() []byte {
	b := make([]byte, HeaderSize)
	copy(b, sigHeader)
	le.PutUint64(b[8:], h.SequenceNumber)
	copy(b[16:], h.FileWriteGUID[:])
	copy(b[32:], h.DataWriteGUID[:])
	copy(b[48:], h.LogGUID[:])
	le.PutUint16(b[64:], h.LogVersion)
	le.PutUint16(b[66:], h.Version)
	le.PutUint32(b[68:], h.LogLength)
	le.PutUint64(b[72:], h.LogOffset)
	le.PutUint32(b[4:], Checksum(b, 4))
	return b
}

// unmarshalHeader decodes and validates a 4 KiB header.
func unmarshalHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: header is %d bytes", ErrTruncated, len(b))
	}
	if string(b[0:4]) != string(sigHeader) {
		return h, fmt.Errorf("%w: signature is %q, want \"head\"", ErrCorrupt, b[0:4])
	}
	if got, want := le.Uint32(b[4:]), Checksum(b[:HeaderSize], 4); got != want {
		return h, fmt.Errorf("%w: stored 0x%08x, computed 0x%08x", ErrChecksum, got, want)
	}
	h.SequenceNumber = le.Uint64(b[8:])
	copy(h.FileWriteGUID[:], b[16:])
	copy(h.DataWriteGUID[:], b[32:])
	copy(h.LogGUID[:], b[48:])
	h.LogVersion = le.Uint16(b[64:])
	h.Version = le.Uint16(b[66:])
	h.LogLength = le.Uint32(b[68:])
	h.LogOffset = le.Uint64(b[72:])
	return h, nil
}

// RegionEntry is one entry of a region table ([MS-VHDX] §2.2.3.2).
type RegionEntry struct {
	GUID       GUID
	FileOffset uint64
	Length     uint32
	Required   bool
}

// MarshalRegionTable encodes a 64 KiB region table with a valid checksum.
func MarshalRegionTable(entries []RegionEntry) []byte {
	b := make([]byte, RegionTableSize)
	copy(b, sigRegion)
	le.PutUint32(b[8:], uint32(len(entries)))
	for i, e := range entries {
		p := b[16+32*i:]
		copy(p, e.GUID[:])
		le.PutUint64(p[16:], e.FileOffset)
		le.PutUint32(p[24:], e.Length)
		if e.Required {
			le.PutUint32(p[28:], 1)
		}
	}
	le.PutUint32(b[4:], Checksum(b, 4))
	return b
}

// unmarshalRegionTable decodes and validates a 64 KiB region table.
func unmarshalRegionTable(b []byte) ([]RegionEntry, error) {
	if len(b) < RegionTableSize {
		return nil, fmt.Errorf("%w: region table is %d bytes", ErrTruncated, len(b))
	}
	if string(b[0:4]) != string(sigRegion) {
		return nil, fmt.Errorf("%w: signature is %q, want \"regi\"", ErrCorrupt, b[0:4])
	}
	if got, want := le.Uint32(b[4:]), Checksum(b[:RegionTableSize], 4); got != want {
		return nil, fmt.Errorf("%w: stored 0x%08x, computed 0x%08x", ErrChecksum, got, want)
	}
	n := le.Uint32(b[8:])
	if n > maxRegionEntries {
		return nil, fmt.Errorf("%w: EntryCount %d exceeds %d", ErrCorrupt, n, maxRegionEntries)
	}
	entries := make([]RegionEntry, n)
	for i := range entries {
		p := b[16+32*i:]
		copy(entries[i].GUID[:], p)
		entries[i].FileOffset = le.Uint64(p[16:])
		entries[i].Length = le.Uint32(p[24:])
		entries[i].Required = le.Uint32(p[28:])&1 != 0
	}
	return entries, nil
}

// MetadataEntry is one entry of the metadata table ([MS-VHDX] §2.6.1.2).
type MetadataEntry struct {
	ItemID        GUID
	Offset        uint32 // relative to the start of the metadata region
	Length        uint32
	IsUser        bool
	IsVirtualDisk bool
	IsRequired    bool
}

// MarshalMetadataTable encodes the 64 KiB metadata table.
func MarshalMetadataTable(entries []MetadataEntry) []byte {
	b := make([]byte, MetadataTableSize)
	copy(b, sigMetadata)
	le.PutUint16(b[10:], uint16(len(entries)))
	for i, e := range entries {
		p := b[32+32*i:]
		copy(p, e.ItemID[:])
		le.PutUint32(p[16:], e.Offset)
		le.PutUint32(p[20:], e.Length)
		var flags uint32
		if e.IsUser {
			flags |= 1
		}
		if e.IsVirtualDisk {
			flags |= 2
		}
		if e.IsRequired {
			flags |= 4
		}
		le.PutUint32(p[24:], flags)
	}
	return b
}

// unmarshalMetadataTable decodes the metadata table header and entries.
func unmarshalMetadataTable(b []byte) ([]MetadataEntry, error) {
	if len(b) < MetadataTableSize {
		return nil, fmt.Errorf("%w: metadata table is %d bytes", ErrTruncated, len(b))
	}
	if string(b[0:8]) != string(sigMetadata) {
		return nil, fmt.Errorf("%w: signature is %q, want \"metadata\"", ErrCorrupt, b[0:8])
	}
	n := int(le.Uint16(b[10:]))
	if n > maxMetadataEntries {
		return nil, fmt.Errorf("%w: EntryCount %d exceeds %d", ErrCorrupt, n, maxMetadataEntries)
	}
	entries := make([]MetadataEntry, n)
	for i := range entries {
		p := b[32+32*i:]
		e := &entries[i]
		copy(e.ItemID[:], p)
		e.Offset = le.Uint32(p[16:])
		e.Length = le.Uint32(p[20:])
		flags := le.Uint32(p[24:])
		e.IsUser = flags&1 != 0
		e.IsVirtualDisk = flags&2 != 0
		e.IsRequired = flags&4 != 0
	}
	return entries, nil
}

// LocatorEntry is one key/value pair of a parent locator.
type LocatorEntry struct {
	Key   string
	Value string
}

// ParentLocator is the parent locator metadata item ([MS-VHDX] §2.6.2.6).
type ParentLocator struct {
	Type    GUID
	Entries []LocatorEntry
}

// Standard keys of the VHDX parent locator ([MS-VHDX] §2.6.2.6.3).
const (
	KeyParentLinkage     = "parent_linkage"
	KeyParentLinkage2    = "parent_linkage2"
	KeyRelativePath      = "relative_path"
	KeyVolumePath        = "volume_path"
	KeyAbsoluteWin32Path = "absolute_win32_path"
)

// Get returns the value stored under key (keys are case sensitive).
func (p *ParentLocator) Get(key string) (string, bool) {
	if p == nil {
		return "", false
	}
	for _, e := range p.Entries {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// Marshal encodes the locator item: a 20-byte header, 12-byte entries,
// then the UTF-16LE keys and values.
func (p ParentLocator) Marshal() []byte {
	head := 20 + 12*len(p.Entries)
	b := make([]byte, head, head+256)
	copy(b, p.Type[:])
	le.PutUint16(b[18:], uint16(len(p.Entries)))
	for i, e := range p.Entries {
		k, v := encodeUTF16(e.Key), encodeUTF16(e.Value)
		q := b[20+12*i:]
		le.PutUint32(q[0:], uint32(len(b)))
		le.PutUint16(q[8:], uint16(len(k)))
		b = append(b, k...)
		q = b[20+12*i:]
		le.PutUint32(q[4:], uint32(len(b)))
		le.PutUint16(q[10:], uint16(len(v)))
		b = append(b, v...)
	}
	return b
}

// unmarshalParentLocator decodes a parent locator item.
func unmarshalParentLocator(b []byte) (*ParentLocator, error) {
	if len(b) < 20 {
		return nil, fmt.Errorf("%w: parent locator is %d bytes, need at least 20", ErrTruncated, len(b))
	}
	p := &ParentLocator{}
	copy(p.Type[:], b)
	n := int(le.Uint16(b[18:]))
	if 20+12*n > len(b) {
		return nil, fmt.Errorf("%w: KeyValueCount %d needs %d bytes, item has %d", ErrCorrupt, n, 20+12*n, len(b))
	}
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		q := b[20+12*i:]
		ko, vo := int64(le.Uint32(q[0:])), int64(le.Uint32(q[4:]))
		kl, vl := int64(le.Uint16(q[8:])), int64(le.Uint16(q[10:]))
		if ko == 0 || vo == 0 || kl == 0 || vl == 0 || kl%2 != 0 || vl%2 != 0 ||
			ko+kl > int64(len(b)) || vo+vl > int64(len(b)) {
			return nil, fmt.Errorf("%w: entry %d (key at %d+%d, value at %d+%d) outside the %d-byte item or empty",
				ErrCorrupt, i, ko, kl, vo, vl, len(b))
		}
		e := LocatorEntry{Key: decodeUTF16(b[ko : ko+kl]), Value: decodeUTF16(b[vo : vo+vl])}
		if seen[e.Key] {
			return nil, fmt.Errorf("%w: key %q appears twice", ErrCorrupt, e.Key)
		}
		seen[e.Key] = true
		p.Entries = append(p.Entries, e)
	}
	return p, nil
}

// BAT entry layout ([MS-VHDX] §2.5.1).
const (
	batStateMask  = 0x7
	batOffsetMask = uint64(0xFFFFFFFFFFF00000)
)

// BATEntry is one 64-bit BAT entry.
type BATEntry uint64

// State is the entry's block state.
func (e BATEntry) State() BlockState { return BlockState(e & batStateMask) }

// FileOffset is the byte offset the entry points to (FileOffsetMB × 1 MiB).
func (e BATEntry) FileOffset() int64 { return int64(uint64(e) & batOffsetMask) }

// MakeBATEntry builds an entry from a state and a 1 MiB-aligned file offset.
func MakeBATEntry(state BlockState, fileOffset int64) BATEntry {
	return BATEntry(uint64(fileOffset)&batOffsetMask | uint64(state))
}

// BlockState is the state of a payload or sector-bitmap BAT entry
// ([MS-VHDX] §2.5.1.1, §2.5.1.2).
type BlockState uint8

// Payload block states, and the sector-bitmap states that share their values.
const (
	BlockNotPresent       BlockState = 0
	BlockUndefined        BlockState = 1
	BlockZero             BlockState = 2
	BlockUnmapped         BlockState = 3
	BlockFullyPresent     BlockState = 6
	BlockPartiallyPresent BlockState = 7

	SectorBitmapNotPresent BlockState = 0
	SectorBitmapPresent    BlockState = 6
)

// String names the state as the specification does.
func (s BlockState) String() string {
	switch s {
	case BlockNotPresent:
		return "NOT_PRESENT"
	case BlockUndefined:
		return "UNDEFINED"
	case BlockZero:
		return "ZERO"
	case BlockUnmapped:
		return "UNMAPPED"
	case BlockFullyPresent:
		return "FULLY_PRESENT"
	case BlockPartiallyPresent:
		return "PARTIALLY_PRESENT"
	}
	return fmt.Sprintf("RESERVED(%d)", uint8(s))
}

// Log structures ([MS-VHDX] §2.3.1).
const (
	logEntryHeaderSize = 64
	logDescriptorSize  = 32
)

// LogEntryHeader is the 64-byte header at the start of a log entry.
type LogEntryHeader struct {
	Checksum          uint32
	EntryLength       uint32
	Tail              uint32
	SequenceNumber    uint64
	DescriptorCount   uint32
	LogGUID           GUID
	FlushedFileOffset uint64
	LastFileOffset    uint64
}

func unmarshalLogEntryHeader(b []byte) (LogEntryHeader, bool) {
	var h LogEntryHeader
	if len(b) < logEntryHeaderSize || string(b[0:4]) != string(sigLogEntry) {
		return h, false
	}
	h.Checksum = le.Uint32(b[4:])
	h.EntryLength = le.Uint32(b[8:])
	h.Tail = le.Uint32(b[12:])
	h.SequenceNumber = le.Uint64(b[16:])
	h.DescriptorCount = le.Uint32(b[24:])
	copy(h.LogGUID[:], b[32:])
	h.FlushedFileOffset = le.Uint64(b[48:])
	h.LastFileOffset = le.Uint64(b[56:])
	return h, true
}

// LogWrite is one 4 KiB-aligned update carried by a log entry: Data (a
// multiple of 4 KiB) written at FileOffset, or, when Data is nil, ZeroLength
// bytes of zeros.
type LogWrite struct {
	FileOffset uint64
	Data       []byte
	ZeroLength uint64
}

// descriptorSectors is the number of 4 KiB sectors holding the header and n
// descriptors (126 fit beside the header, 128 in each further sector).
func descriptorSectors(n int) int {
	return (logEntryHeaderSize + logDescriptorSize*n + LogSectorSize - 1) / LogSectorSize
}

// MarshalLogEntry encodes one log entry carrying writes. Data writes are
// split into 4 KiB data sectors.
func MarshalLogEntry(h LogEntryHeader, writes []LogWrite) []byte {
	type desc struct {
		zero bool
		off  uint64
		zlen uint64
		data []byte
	}
	var ds []desc
	for _, w := range writes {
		if w.Data == nil {
			ds = append(ds, desc{zero: true, off: w.FileOffset, zlen: w.ZeroLength})
			continue
		}
		for i := 0; i+LogSectorSize <= len(w.Data); i += LogSectorSize {
			ds = append(ds, desc{off: w.FileOffset + uint64(i), data: w.Data[i : i+LogSectorSize]})
		}
	}
	nd := 0
	for _, d := range ds {
		if !d.zero {
			nd++
		}
	}
	hs := descriptorSectors(len(ds)) * LogSectorSize
	b := make([]byte, hs+nd*LogSectorSize)
	h.EntryLength = uint32(len(b))
	h.DescriptorCount = uint32(len(ds))
	copy(b, sigLogEntry)
	le.PutUint32(b[8:], h.EntryLength)
	le.PutUint32(b[12:], h.Tail)
	le.PutUint64(b[16:], h.SequenceNumber)
	le.PutUint32(b[24:], h.DescriptorCount)
	copy(b[32:], h.LogGUID[:])
	le.PutUint64(b[48:], h.FlushedFileOffset)
	le.PutUint64(b[56:], h.LastFileOffset)
	sector := hs
	for i, d := range ds {
		p := b[logEntryHeaderSize+logDescriptorSize*i:]
		if d.zero {
			copy(p, sigZeroDesc)
			le.PutUint64(p[8:], d.zlen)
		} else {
			copy(p, sigDataDesc)
			le.PutUint32(p[4:], le.Uint32(d.data[4092:]))
			copy(p[8:16], d.data[0:8])
			s := b[sector : sector+LogSectorSize]
			copy(s, sigDataSect)
			le.PutUint32(s[4:], uint32(h.SequenceNumber>>32))
			copy(s[8:4092], d.data[8:4092])
			le.PutUint32(s[4092:], uint32(h.SequenceNumber))
			sector += LogSectorSize
		}
		le.PutUint64(p[16:], d.off)
		le.PutUint64(p[24:], h.SequenceNumber)
	}
	le.PutUint32(b[4:], Checksum(b, 4))
	return b
}

// FileParameters is the file parameters metadata item ([MS-VHDX] §2.6.2.1).
type FileParameters struct {
	BlockSize          uint32
	LeaveBlocksAlloced bool
	HasParent          bool
}

// Marshal encodes the 8-byte item.
func (p FileParameters) Marshal() []byte {
	b := make([]byte, 8)
	le.PutUint32(b, p.BlockSize)
	var f uint32
	if p.LeaveBlocksAlloced {
		f |= 1
	}
	if p.HasParent {
		f |= 2
	}
	le.PutUint32(b[4:], f)
	return b
}

var le = binary.LittleEndian

func encodeUTF16(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		le.PutUint16(b[2*i:], c)
	}
	return b
}

func putUTF16(dst []byte, s string) {
	b := encodeUTF16(s)
	if len(b) > len(dst) {
		b = b[:len(dst)&^1]
	}
	copy(dst, b)
}

func decodeUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le.Uint16(b[2*i:])
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	return string(utf16.Decode(u))
}
