// Package vhdtest builds VHD and AVHD files for tests: fixed, dynamic and
// differencing disks with any sector bitmaps, parent locators and creator
// applications, from an in-memory model that tells tests the expected
// bytes.
//
// It is independent of package vhd's reader: it has its own encoders,
// written from the specification, so that a reader bug cannot cancel out.
//
// Layout of a dynamic or differencing file: the footer's copy at 0, the
// dynamic header at HeaderOffset, the BAT at TableOffset (padded to 512
// bytes), each parent locator's data (padded to 512 bytes), the blocks in
// the order they were first written (bitmap then data, whole blocks), the
// footer. A fixed file is the disk followed by the footer.
package vhdtest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/ckptfs/ckptfs/disk"
)

// Offsets of the structures this package writes.
const (
	HeaderOffset = 512
	TableOffset  = 1536
	sector       = 512
)

// Platform codes of parent locator entries.
const (
	W2ru uint32 = 0x57327275
	W2ku uint32 = 0x57326B75
	Wi2r uint32 = 0x57693272
	Wi2k uint32 = 0x5769326B
	MacX uint32 = 0x4D616358
)

// Locator is one parent locator entry to write.
type Locator struct {
	Code uint32
	Path string // encoded as the code requires: UTF-16LE for W2ru/W2ku, bytes otherwise
}

// Options describe the file to build.
type Options struct {
	// VirtualSize is the footer's Current Size (a multiple of 512).
	VirtualSize int64
	// OriginalSize is the footer's Original Size; default VirtualSize.
	OriginalSize int64
	// BlockSize is the dynamic header's Block Size; default 2 MiB.
	BlockSize uint32
	// Fixed makes a fixed disk.
	Fixed bool
	// Parent makes a differencing disk, of Parent's size unless
	// VirtualSize is set.
	Parent *Image
	// ParentPath is where the parent file will be: the default locators
	// (W2ku and W2ru, as Hyper-V writes them) and Parent Unicode Name are
	// made from it.
	ParentPath string
	// Locators replace the default locators when non-nil.
	Locators []Locator
	// ParentName replaces the default Parent Unicode Name when non-nil.
	ParentName *string
	// Creator is the footer's Creator Application; default "win ".
	Creator string
	// Geometry replaces the footer's CHS geometry computed as the
	// specification's appendix does, when non-zero: cylinders, heads,
	// sectors per track.
	Geometry [3]int
	// TimeStamp is the footer's Time Stamp; default 2010-06-01 12:00 UTC
	// plus the model's number.
	TimeStamp uint32
	// ParentTimeStamp replaces the parent's Time Stamp in the dynamic
	// header when non-nil.
	ParentTimeStamp *uint32
	// LocatorSpaceInBytes writes Platform Data Space in bytes, as some
	// Microsoft writers do, instead of sectors as the specification says.
	LocatorSpaceInBytes bool
}

type block struct {
	data    []byte
	present []bool // per sector: the bitmap
}

// Image is an in-memory model of one VHD file.
type Image struct {
	opts      Options
	blocks    map[int64]*block
	order     []int64 // blocks in order of first write
	UniqueID  disk.GUID
	TimeStamp uint32
}

var stamps uint32

// New starts a model.
func New(o Options) *Image {
	if o.BlockSize == 0 {
		o.BlockSize = 2 << 20
	}
	if o.Creator == "" {
		o.Creator = "win "
	}
	if o.Parent != nil && o.VirtualSize == 0 {
		o.VirtualSize = o.Parent.opts.VirtualSize
		if o.OriginalSize == 0 {
			o.OriginalSize = o.Parent.opts.OriginalSize
		}
	}
	if o.OriginalSize == 0 {
		o.OriginalSize = o.VirtualSize
	}
	if o.TimeStamp == 0 {
		stamps++
		o.TimeStamp = uint32(time.Date(2010, 6, 1, 12, 0, 0, 0, time.UTC).Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Seconds()) + stamps
	}
	im := &Image{opts: o, blocks: map[int64]*block{}, TimeStamp: o.TimeStamp}
	if _, err := rand.Read(im.UniqueID[:]); err != nil {
		panic(err)
	}
	return im
}

// Options returns the model's options.
func (im *Image) Options() Options { return im.opts }

func (im *Image) bs() int64 { return int64(im.opts.BlockSize) }

func (im *Image) blockCount() int64 { return (im.opts.VirtualSize + im.bs() - 1) / im.bs() }

func (im *Image) block(b int64) *block {
	blk := im.blocks[b]
	if blk == nil {
		blk = &block{data: make([]byte, im.bs()), present: make([]bool, im.bs()/sector)}
		im.blocks[b] = blk
		im.order = append(im.order, b)
	}
	return blk
}

// Write stores p at virtual offset off; both must be sector aligned. The
// sectors' bitmap bits are set.
func (im *Image) Write(off int64, p []byte) {
	if off%sector != 0 || len(p)%sector != 0 || off+int64(len(p)) > im.opts.VirtualSize {
		panic(fmt.Sprintf("vhdtest: unaligned or out-of-range write %d+%d", off, len(p)))
	}
	for len(p) > 0 {
		b, in := off/im.bs(), off%im.bs()
		n := min(int64(len(p)), im.bs()-in)
		blk := im.block(b)
		copy(blk.data[in:], p[:n])
		for s := in / sector; s < (in+n)/sector; s++ {
			blk.present[s] = true
		}
		off += n
		p = p[n:]
	}
}

// SetPresent sets the bitmap bit of the sector at virtual offset off
// without touching its data (allocating its block if needed).
func (im *Image) SetPresent(off int64, present bool) {
	im.block(off / im.bs()).present[off%im.bs()/sector] = present
}

// Allocate allocates block b (all zeros, bitmap clear) if it is not yet.
func (im *Image) Allocate(b int64) { im.block(b) }

// Contents computes the virtual disk this file presents on top of its
// parent's contents (nil for a base): in a differencing file a sector
// whose bit is clear shows the parent, in a dynamic file an allocated
// block shows its data whatever its bitmap says.
func (im *Image) Contents(parent []byte) []byte {
	out := make([]byte, im.opts.VirtualSize)
	if im.opts.Parent != nil {
		copy(out, parent)
	}
	for b, blk := range im.blocks {
		start := b * im.bs()
		for s := int64(0); s < im.bs()/sector && start+s*sector < im.opts.VirtualSize; s++ {
			if im.opts.Parent == nil || blk.present[s] {
				copy(out[start+s*sector:start+(s+1)*sector], blk.data[s*sector:])
			}
		}
	}
	return out
}

// ChainContents returns the virtual disk of the chain ending at im.
func (im *Image) ChainContents() []byte {
	var parent []byte
	if im.opts.Parent != nil {
		parent = im.opts.Parent.ChainContents()
	}
	return im.Contents(parent)
}

// DefaultLocators are the entries Hyper-V writes for a parent at
// parentPath seen from a child at childPath: W2ku (absolute) and W2ru
// (relative, ".\" for the same folder).
func DefaultLocators(childPath, parentPath string) []Locator {
	rel, err := filepath.Rel(filepath.Dir(childPath), parentPath)
	if err != nil {
		rel = filepath.Base(parentPath)
	}
	rel = strings.ReplaceAll(rel, "/", `\`)
	if !strings.HasPrefix(rel, "..") {
		rel = `.\` + rel
	}
	return []Locator{
		{W2ku, `C:\Hyper-V\Virtual Hard Disks\` + filepath.Base(parentPath)},
		{W2ru, rel},
	}
}

// CHS computes the geometry of a disk of size bytes as the
// specification's appendix does.
func CHS(size int64) (cyl, heads, spt int) {
	total := size / sector
	total = min(total, 65535*16*255)
	var cth int64
	if total >= 65535*16*63 {
		spt, heads = 255, 16
		cth = total / int64(spt)
	} else {
		spt = 17
		cth = total / int64(spt)
		heads = int((cth + 1023) / 1024)
		heads = max(heads, 4)
		if cth >= int64(heads)*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = total / int64(spt)
		}
		if cth >= int64(heads)*1024 {
			spt, heads = 63, 16
			cth = total / int64(spt)
		}
	}
	return int(cth / int64(heads)), heads, spt
}

// checksum is the one's complement of the byte sum, skipping the field at.
func checksum(b []byte, at int) uint32 {
	var s uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			s += uint32(c)
		}
	}
	return ^s
}

// guidBytes stores a GUID as vhd.GUIDFromBytes expects (String() order).
func guidBytes(g disk.GUID) []byte {
	return []byte{g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]}
}

// Footer encodes the model's footer.
func (im *Image) Footer() []byte {
	o := im.opts
	b := make([]byte, 512)
	copy(b, "conectix")
	binary.BigEndian.PutUint32(b[8:], 2)
	binary.BigEndian.PutUint32(b[12:], 0x00010000)
	typ := uint32(3)
	binary.BigEndian.PutUint64(b[16:], HeaderOffset)
	switch {
	case o.Fixed:
		typ = 2
		binary.BigEndian.PutUint64(b[16:], ^uint64(0))
	case o.Parent != nil:
		typ = 4
	}
	binary.BigEndian.PutUint32(b[24:], im.TimeStamp)
	copy(b[28:32], o.Creator+"    ")
	binary.BigEndian.PutUint32(b[32:], 0x000a0000)
	copy(b[36:], "Wi2k")
	binary.BigEndian.PutUint64(b[40:], uint64(o.OriginalSize))
	binary.BigEndian.PutUint64(b[48:], uint64(o.VirtualSize))
	c, h, s := CHS(o.VirtualSize)
	if o.Geometry != [3]int{} {
		c, h, s = o.Geometry[0], o.Geometry[1], o.Geometry[2]
	}
	binary.BigEndian.PutUint16(b[56:], uint16(c))
	b[58], b[59] = byte(h), byte(s)
	binary.BigEndian.PutUint32(b[60:], typ)
	copy(b[68:], guidBytes(im.UniqueID))
	binary.BigEndian.PutUint32(b[64:], checksum(b, 64))
	return b
}

func (im *Image) locators(path string) []Locator {
	if im.opts.Parent == nil {
		return nil
	}
	if im.opts.Locators != nil {
		return im.opts.Locators
	}
	return DefaultLocators(path, im.opts.ParentPath)
}

func encodeLocator(l Locator) []byte {
	if l.Code == W2ru || l.Code == W2ku {
		u := utf16.Encode([]rune(l.Path))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(b[2*i:], c)
		}
		return b
	}
	return []byte(l.Path)
}

func pad(n int64) int64 { return (n + sector - 1) / sector * sector }

// bitmapSize is the on-disk sector bitmap size.
func (im *Image) bitmapSize() int64 { return pad(im.bs() / sector / 8) }

// Save writes the file to path (which must not exist).
func (im *Image) Save(path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	o := im.opts
	footer := im.Footer()
	if o.Fixed {
		for b, blk := range im.blocks {
			n := min(im.bs(), o.VirtualSize-b*im.bs())
			if _, err := f.WriteAt(blk.data[:n], b*im.bs()); err != nil {
				return err
			}
		}
		_, err := f.WriteAt(footer, o.VirtualSize)
		return err
	}
	entries := im.blockCount()
	hdr := make([]byte, 1024)
	copy(hdr, "cxsparse")
	binary.BigEndian.PutUint64(hdr[8:], ^uint64(0))
	binary.BigEndian.PutUint64(hdr[16:], TableOffset)
	binary.BigEndian.PutUint32(hdr[24:], 0x00010000)
	binary.BigEndian.PutUint32(hdr[28:], uint32(entries))
	binary.BigEndian.PutUint32(hdr[32:], o.BlockSize)
	next := TableOffset + pad(entries*4)
	if p := o.Parent; p != nil {
		copy(hdr[40:], guidBytes(p.UniqueID))
		ts := p.TimeStamp
		if o.ParentTimeStamp != nil {
			ts = *o.ParentTimeStamp
		}
		binary.BigEndian.PutUint32(hdr[56:], ts)
		name := filepath.Base(o.ParentPath)
		if o.ParentName != nil {
			name = *o.ParentName
		}
		for i, c := range utf16.Encode([]rune(name)) {
			if 2*i+2 <= 512 {
				binary.BigEndian.PutUint16(hdr[64+2*i:], c)
			}
		}
		for i, l := range im.locators(path) {
			data := encodeLocator(l)
			e := hdr[576+24*i:]
			space := pad(int64(len(data)))
			binary.BigEndian.PutUint32(e, l.Code)
			if o.LocatorSpaceInBytes {
				binary.BigEndian.PutUint32(e[4:], uint32(space))
			} else {
				binary.BigEndian.PutUint32(e[4:], uint32(space/sector))
			}
			binary.BigEndian.PutUint32(e[8:], uint32(len(data)))
			binary.BigEndian.PutUint64(e[16:], uint64(next))
			if _, err := f.WriteAt(data, next); err != nil {
				return err
			}
			next += space
		}
	}
	binary.BigEndian.PutUint32(hdr[36:], checksum(hdr, 36))
	bat := make([]byte, pad(entries*4))
	for i := range bat {
		bat[i] = 0xff
	}
	for _, b := range im.order {
		blk := im.blocks[b]
		binary.BigEndian.PutUint32(bat[4*b:], uint32(next/sector))
		bm := make([]byte, im.bitmapSize())
		for s, p := range blk.present {
			if p {
				bm[s/8] |= 0x80 >> (s % 8)
			}
		}
		if _, err := f.WriteAt(bm, next); err != nil {
			return err
		}
		if _, err := f.WriteAt(blk.data, next+int64(len(bm))); err != nil {
			return err
		}
		next += int64(len(bm)) + im.bs()
	}
	for _, w := range []struct {
		b   []byte
		off int64
	}{{footer, 0}, {hdr, HeaderOffset}, {bat, TableOffset}, {footer, next}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	return nil
}

// Reseal recomputes the checksum of the footer or dynamic header at off
// in the file b after a test changed a field (at is the checksum's offset
// within the structure: 64 for a footer, 36 for a dynamic header).
func Reseal(b []byte, off, size, at int) {
	binary.BigEndian.PutUint32(b[off+at:], checksum(b[off:off+size], at))
}
