package vhd

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ckptfs/ckptfs/disk"
)

// Sizes and values fixed by the specification.
const (
	FooterSize        = 512
	DynamicHeaderSize = 1024
	SectorSize        = 512
	// NoDataOffset is the footer's Data Offset of a fixed disk.
	NoDataOffset = ^uint64(0)
	// Unallocated is a BAT entry of a block without data.
	Unallocated = ^uint32(0)
	// Version is the only file format and dynamic header version defined.
	Version = 0x00010000

	MinBlockSize = SectorSize * 8 // one bitmap byte
	MaxBlockSize = 256 << 20
	// MaxVirtualSize bounds Current Size, as the VHDX reader bounds its
	// virtual size.
	MaxVirtualSize = disk.MaxVirtualSize
	// maxLocatorData bounds one parent locator's data (a path of 32 767
	// UTF-16 code units plus a terminator).
	maxLocatorData = 64 << 10
	// fixedBlockSize is the granularity a fixed disk reports its extents in.
	fixedBlockSize = 2 << 20
)

var (
	cookieFooter  = []byte("conectix")
	cookieDynamic = []byte("cxsparse")
	be            = binary.BigEndian
)

// DiskType is the footer's Disk Type.
type DiskType uint32

// The disk types.
const (
	TypeFixed        DiskType = 2
	TypeDynamic      DiskType = 3
	TypeDifferencing DiskType = 4
)

func (t DiskType) String() string {
	switch t {
	case TypeFixed:
		return "fixed"
	case TypeDynamic:
		return "dynamic"
	case TypeDifferencing:
		return "differencing"
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// Geometry is the footer's CHS Disk Geometry.
type Geometry struct {
	Cylinders       uint16
	Heads           uint8
	SectorsPerTrack uint8
}

// Capacity is the number of bytes the geometry addresses.
func (g Geometry) Capacity() int64 {
	return int64(g.Cylinders) * int64(g.Heads) * int64(g.SectorsPerTrack) * SectorSize
}

func (g Geometry) String() string {
	return fmt.Sprintf("%d/%d/%d", g.Cylinders, g.Heads, g.SectorsPerTrack)
}

// Footer is the 512-byte hard disk footer, at the end of every VHD file and
// mirrored at offset 0 of dynamic and differencing files.
type Footer struct {
	Features       uint32
	FormatVersion  uint32
	DataOffset     uint64 // the dynamic header's offset; NoDataOffset for fixed disks
	TimeStamp      uint32 // seconds since 2000-01-01 00:00:00 UTC
	CreatorApp     string // four characters, e.g. "win ", "vpc ", "qemu"
	CreatorVersion uint32
	CreatorHostOS  string // "Wi2k", "Mac "
	OriginalSize   uint64
	CurrentSize    uint64
	Geometry       Geometry
	DiskType       DiskType
	Checksum       uint32
	UniqueID       disk.GUID // see GUIDFromBytes for the byte order
	SavedState     uint8
}

// vhdEpoch is the origin of VHD time stamps.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Time converts a VHD time stamp (seconds since 2000-01-01 UTC).
func Time(stamp uint32) time.Time { return vhdEpoch.Add(time.Duration(stamp) * time.Second) }

// Checksum is the one's complement of the sum of all bytes of b except the
// four at at (the checksum field itself).
func Checksum(b []byte, at int) uint32 {
	var sum uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			sum += uint32(c)
		}
	}
	return ^sum
}

// GUIDFromBytes stores the 16 bytes of a VHD unique ID in a disk.GUID so
// that its String method shows them in stored order, as libvhdi's tools
// show VHD identifiers (the specification does not fix a byte order; only
// equality matters for linkage).
func GUIDFromBytes(b []byte) disk.GUID {
	var g disk.GUID
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:16])
	return g
}

// GUIDBytes is the inverse of GUIDFromBytes: the 16 bytes as stored.
func GUIDBytes(g disk.GUID) [16]byte {
	var b [16]byte
	b[0], b[1], b[2], b[3] = g[3], g[2], g[1], g[0]
	b[4], b[5] = g[5], g[4]
	b[6], b[7] = g[7], g[6]
	copy(b[8:], g[8:])
	return b
}

// parseFooter decodes and validates the cookie and checksum of a footer.
func parseFooter(b []byte) (Footer, error) {
	var f Footer
	if len(b) < FooterSize {
		return f, fmt.Errorf("%w: footer is %d bytes", disk.ErrTruncated, len(b))
	}
	if string(b[0:8]) != string(cookieFooter) {
		return f, fmt.Errorf("%w: Cookie is %q, want \"conectix\"", ErrNotVHD, b[0:8])
	}
	f.Checksum = be.Uint32(b[64:])
	if want := Checksum(b[:FooterSize], 64); f.Checksum != want {
		return f, fmt.Errorf("%w: Checksum stored 0x%08x, computed 0x%08x", disk.ErrChecksum, f.Checksum, want)
	}
	f.Features = be.Uint32(b[8:])
	f.FormatVersion = be.Uint32(b[12:])
	f.DataOffset = be.Uint64(b[16:])
	f.TimeStamp = be.Uint32(b[24:])
	f.CreatorApp = string(b[28:32])
	f.CreatorVersion = be.Uint32(b[32:])
	f.CreatorHostOS = string(b[36:40])
	f.OriginalSize = be.Uint64(b[40:])
	f.CurrentSize = be.Uint64(b[48:])
	f.Geometry = Geometry{be.Uint16(b[56:]), b[58], b[59]}
	f.DiskType = DiskType(be.Uint32(b[60:]))
	f.UniqueID = GUIDFromBytes(b[68:84])
	f.SavedState = b[84]
	return f, nil
}

// DynamicHeader is the 1024-byte header of dynamic and differencing disks.
type DynamicHeader struct {
	DataOffset      uint64
	TableOffset     uint64 // the BAT's file offset
	HeaderVersion   uint32
	MaxTableEntries uint32
	BlockSize       uint32
	Checksum        uint32
	ParentUniqueID  disk.GUID
	ParentTimeStamp uint32
	ParentName      string // Parent Unicode Name (UTF-16 big-endian)
	Locators        [8]Locator
}

// PlatformCode says how a parent locator entry stores its path.
type PlatformCode uint32

// Platform codes of parent locator entries.
const (
	PlatformNone PlatformCode = 0
	PlatformWi2r PlatformCode = 0x57693272 // relative path, ANSI (deprecated)
	PlatformWi2k PlatformCode = 0x5769326B // absolute path, ANSI (deprecated)
	PlatformW2ru PlatformCode = 0x57327275 // relative path, UTF-16LE
	PlatformW2ku PlatformCode = 0x57326B75 // absolute path, UTF-16LE
	PlatformMac  PlatformCode = 0x4D616320 // Mac OS alias blob
	PlatformMacX PlatformCode = 0x4D616358 // file URL, UTF-8
)

func (c PlatformCode) String() string {
	if c == PlatformNone {
		return "none"
	}
	var b [4]byte
	be.PutUint32(b[:], uint32(c))
	for _, x := range b {
		if x < 0x20 || x > 0x7e {
			return fmt.Sprintf("0x%08x", uint32(c))
		}
	}
	return string(b[:])
}

// Relative reports whether the code's path is relative to the child.
func (c PlatformCode) Relative() bool { return c == PlatformW2ru || c == PlatformWi2r }

// Locator is one parent locator entry and the path it stores.
type Locator struct {
	Code       PlatformCode
	DataSpace  uint32 // as stored (sectors by the specification, bytes by some writers)
	DataLength uint32 // bytes
	DataOffset uint64
	// Path is the decoded path for W2ru, W2ku, Wi2r, Wi2k and MacX
	// entries; empty for others.
	Path string
}

// parseDynamicHeader decodes and validates the cookie and checksum of a
// dynamic header. Locator paths are read later.
func parseDynamicHeader(b []byte) (DynamicHeader, error) {
	var h DynamicHeader
	if len(b) < DynamicHeaderSize {
		return h, fmt.Errorf("%w: header is %d bytes", disk.ErrTruncated, len(b))
	}
	if string(b[0:8]) != string(cookieDynamic) {
		return h, fmt.Errorf("%w: Cookie is %q, want \"cxsparse\"", disk.ErrCorrupt, b[0:8])
	}
	h.Checksum = be.Uint32(b[36:])
	if want := Checksum(b[:DynamicHeaderSize], 36); h.Checksum != want {
		return h, fmt.Errorf("%w: Checksum stored 0x%08x, computed 0x%08x", disk.ErrChecksum, h.Checksum, want)
	}
	h.DataOffset = be.Uint64(b[8:])
	h.TableOffset = be.Uint64(b[16:])
	h.HeaderVersion = be.Uint32(b[24:])
	h.MaxTableEntries = be.Uint32(b[28:])
	h.BlockSize = be.Uint32(b[32:])
	h.ParentUniqueID = GUIDFromBytes(b[40:56])
	h.ParentTimeStamp = be.Uint32(b[56:])
	h.ParentName = decodeUTF16(b[64:576], binary.BigEndian)
	for i := range h.Locators {
		p := b[576+24*i:]
		h.Locators[i] = Locator{
			Code:       PlatformCode(be.Uint32(p)),
			DataSpace:  be.Uint32(p[4:]),
			DataLength: be.Uint32(p[8:]),
			DataOffset: be.Uint64(p[16:]),
		}
	}
	return h, nil
}

// decodeUTF16 decodes UTF-16 text up to its first NUL.
func decodeUTF16(b []byte, order binary.ByteOrder) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := order.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// decodeLocator decodes a locator's path data.
func decodeLocator(code PlatformCode, b []byte) string {
	switch code {
	case PlatformW2ru, PlatformW2ku:
		return decodeUTF16(b, binary.LittleEndian)
	case PlatformWi2r, PlatformWi2k, PlatformMacX:
		for i, c := range b {
			if c == 0 {
				b = b[:i]
				break
			}
		}
		if utf8.Valid(b) {
			return string(b)
		}
		// An ANSI code page: keep ASCII and map the rest as Latin-1,
		// the best that can be done without knowing the host's code page.
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r)
	}
	return ""
}
