// Package vhd reads one VHD file (Microsoft's "Virtual Hard Disk Image
// Format Specification", the format of Virtual PC and of Hyper-V on
// Windows Server 2008 and 2008 R2, whose checkpoint differencing disks are
// .avhd files): fixed, dynamic or differencing. Open parses and validates
// every structure and reports per block which sectors this file holds and
// where, in the terms of package disk (disk.Extent), so package chain
// stacks VHD files exactly as it stacks VHDX files. Files are opened
// read-only and never written.
//
// How a read is served ([VHD] "Block Allocation Table and Data Blocks"):
//
//	fixed         the data at the same offset of the file
//	dynamic       BAT entry 0xFFFFFFFF: zeros; otherwise the block's data
//	              (its sector bitmap is read only to report it: a
//	              dynamic disk's never-written sectors hold zeros)
//	differencing  BAT entry 0xFFFFFFFF: the parent; otherwise, per
//	              sector, bitmap bit 1: this file, bit 0: the parent.
//	              The bitmap is MSB-first: bit 7 of byte 0 is the block's
//	              first sector.
//
// The virtual disk's size is the footer's Current Size, in 512-byte
// sectors; the CHS geometry is only reported.
package vhd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/ckptfs/ckptfs/disk"
)

// ErrNotVHD means the footer's cookie is missing from both copies.
var ErrNotVHD = errors.New("not a VHD file")

// File is an open VHD file. Its methods are safe for concurrent use.
type File struct {
	name     string
	osFile   *os.File
	r        io.ReaderAt
	fileSize int64

	// Footer is the footer in use: the copy at the end of the file, or
	// the one at offset 0 when FooterFromHead.
	Footer Footer
	// FooterFromHead reports that the copy at the end of the file was
	// unusable and the mirror at offset 0 was used.
	FooterFromHead bool
	// Header is the dynamic header; nil for a fixed disk.
	Header *DynamicHeader
	// Warnings are things that are wrong but do not stop reading.
	Warnings []string

	dataEnd    int64 // end of the area blocks may use (the end footer's offset)
	bat        []uint32
	blockSize  int64
	bitmapSize int64 // the sector bitmap's size on disk (a multiple of 512)
	blocks     int64 // blocks the virtual disk spans

	// What a parse found and how the file was opened (see disk.Collector).
	col   *disk.Collector
	check bool
	notes []string
	// salvage: damaged blocks read as disk.Missing.
	salvage bool
	// batKnown is the number of BAT entries read: the others lie past
	// the end of the file (salvage).
	batKnown int64
	// lost marks BAT entries whose block cannot be trusted (unreadable,
	// overlapping another block or a structure); nil when none.
	lost []uint64
}

// Open opens the VHD file at path read-only and validates it.
func Open(path string) (*File, error) { return OpenWith(path, disk.ReadOptions{}) }

// OpenWith opens the VHD file at path read-only with options o (see
// disk.ReadOptions: Salvage opens a file cut short or with a damaged BAT).
func OpenWith(path string, o disk.ReadOptions) (*File, error) {
	osf, size, err := disk.OpenReadOnly(path, ErrNotVHD)
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

// NewFile reads a VHD file from r, whose size is size. name is used in
// error messages.
func NewFile(r io.ReaderAt, size int64, name string) (*File, error) {
	return NewFileWith(r, size, name, disk.ReadOptions{})
}

// NewFileWith is NewFile with options o.
func NewFileWith(r io.ReaderAt, size int64, name string, o disk.ReadOptions) (*File, error) {
	f := parse(r, size, name, false)
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

// parse decodes the file once, recording every problem (see
// disk.Collector).
func parse(r io.ReaderAt, size int64, name string, check bool) *File {
	f := &File{name: name, r: r, fileSize: size, check: check, col: &disk.Collector{Check: check}}
	f.load()
	return f
}

// Check examines the VHD file at path, read-only, and reports every
// problem it finds: both footer copies, the dynamic header, every BAT entry
// (inside the file, not overlapping another block or a structure) and the
// parent locators' data. It goes on past every problem it can. The error
// is only for a file that cannot be opened at all.
func Check(path string) (*disk.Report, error) {
	f, r, err := OpenCheck(path)
	if f != nil {
		f.Close()
	}
	return r, err
}

// OpenCheck is Check, and also returns the file opened in salvage mode
// when its structures allow reading it (nil otherwise); the caller closes
// it.
func OpenCheck(path string) (*File, *disk.Report, error) {
	osf, size, err := disk.OpenReadOnly(path, ErrNotVHD)
	if err != nil {
		return nil, nil, err
	}
	f, r := CheckReader(osf, size, path)
	if f == nil {
		osf.Close()
		return nil, r, nil
	}
	f.osFile = osf
	return f, r, nil
}

// CheckReader is OpenCheck for a file read through r, of size bytes.
func CheckReader(r io.ReaderAt, size int64, name string) (*File, *disk.Report) {
	f := parse(r, size, name, true)
	rep := &disk.Report{Path: name, Format: "VHD", FileSize: size}
	c := f.col
	if f.blockSize > 0 {
		rep.Known, rep.Type, rep.VirtualSize = true, f.Type(), f.VirtualSize()
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s file, virtual size %d, block size %d, %d blocks", f.Type(), f.VirtualSize(), f.blockSize, f.blocks))
	}
	rep.Notes = append(rep.Notes, f.notes...)
	c.Report(rep)
	if c.Fatal() != nil || !c.Salvageable() {
		return nil, rep
	}
	rep.Usable = true
	f.salvage = true
	return f, rep
}

// Detect reports whether r (of size bytes) looks like a VHD file: a footer
// cookie at the end or, for a dynamic file whose end copy is damaged, at
// offset 0. It checks nothing else.
func Detect(r io.ReaderAt, size int64) bool {
	var b [8]byte
	for _, off := range []int64{size - FooterSize, 0} {
		if off >= 0 && size >= FooterSize {
			if n, _ := r.ReadAt(b[:], off); n == 8 && string(b[:]) == string(cookieFooter) {
				return true
			}
		}
	}
	return false
}

func (f *File) errorf(field string, off int64, sentinel error, format string, args ...any) error {
	return &disk.FormatError{File: f.name, Field: field, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

func (f *File) wrap(field string, off int64, err error) error {
	return &disk.FormatError{File: f.name, Field: field, Offset: off, Err: err}
}

// fail records an error found at level lv and returns non-nil when the
// parse must stop (see disk.Collector).
func (f *File) fail(lv disk.Level, structure string, off int64, err error) error {
	return f.col.Error(lv, structure, off, err)
}

// warn records a warning both as a Problem and in Warnings.
func (f *File) warn(structure string, off int64, msg string) {
	f.col.Warning(structure, off, f.errorf(structure, off, disk.ErrCorrupt, "%s", msg))
	f.Warnings = append(f.Warnings, msg)
}

// readFull reads n bytes at off, which must lie within the file.
func (f *File) readFull(field string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > f.fileSize || n > f.fileSize-off {
		return nil, f.errorf(field, off, disk.ErrTruncated, "%d bytes at offset %d do not fit in the %d-byte file", n, off, f.fileSize)
	}
	b := make([]byte, n)
	if _, err := f.r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+n == f.fileSize) {
		return nil, f.wrap(field, off, err)
	}
	return b, nil
}

func (f *File) load() error {
	if f.fileSize < FooterSize {
		return f.fail(disk.Fatal, "footer", 0, f.errorf("footer", 0, disk.ErrTruncated, "file is %d bytes, the footer alone is 512", f.fileSize))
	}
	if err := f.loadFooter(); err != nil {
		return err
	}
	ft := &f.Footer
	footerField := "footer"
	if f.FooterFromHead {
		footerField = "footer (copy at offset 0)"
	}
	fatal := func(field string, sentinel error, format string, args ...any) error {
		return f.fail(disk.Fatal, "footer", f.footerOffset(), f.errorf(footerField+": "+field, f.footerOffset(), sentinel, format, args...))
	}
	if ft.FormatVersion>>16 != Version>>16 {
		return fatal("File Format Version", disk.ErrUnsupported, "version 0x%08x, only 0x%08x is defined", ft.FormatVersion, Version)
	}
	if ft.CurrentSize == 0 || ft.CurrentSize%SectorSize != 0 || ft.CurrentSize > MaxVirtualSize {
		return fatal("Current Size", disk.ErrCorrupt, "%d is not a non-zero multiple of 512 up to 64 TiB", ft.CurrentSize)
	}
	switch ft.DiskType {
	case TypeFixed:
		return f.loadFixed()
	case TypeDynamic, TypeDifferencing:
		return f.loadDynamic(footerField)
	}
	return fatal("Disk Type", disk.ErrUnsupported, "disk type %d is not fixed (2), dynamic (3) or differencing (4)", uint32(ft.DiskType))
}

func (f *File) footerOffset() int64 {
	if f.FooterFromHead {
		return 0
	}
	return f.fileSize - FooterSize
}

// readFooter reads and decodes the footer copy at off. A read error is
// recorded (the copy is then unusable, the other may do).
func (f *File) readFooter(field string, off int64) (Footer, error) {
	b, err := f.readFull(field, off, FooterSize)
	if err != nil {
		f.fail(disk.Salvageable, "footer", off, err) // never stops
		return Footer{}, err
	}
	return parseFooter(b)
}

// loadFooter picks the footer: the copy at the end of the file, or the
// mirror at offset 0 if the end copy is unusable.
func (f *File) loadFooter() error {
	endOff := f.fileSize - FooterSize
	end, endErr := f.readFooter("footer", endOff)
	head, headErr := f.readFooter("footer (copy at offset 0)", 0)
	f.note("footer at the end (offset %d): %s", endOff, footerState(end, endErr))
	f.note("footer copy at offset 0: %s", footerState(head, headErr))
	switch {
	case endErr == nil:
		f.Footer, f.dataEnd = end, endOff
		if end.DiskType == TypeDynamic || end.DiskType == TypeDifferencing {
			switch {
			case headErr != nil:
				f.warn("footer (copy at offset 0)", 0, fmt.Sprintf("footer copy at offset 0 is unusable (%v); the copy at the end was used", headErr))
			case head != end:
				f.warn("footer (copy at offset 0)", 0, "footer copy at offset 0 differs from the copy at the end; the copy at the end was used")
			}
		}
		return nil
	case headErr == nil && (head.DiskType == TypeDynamic || head.DiskType == TypeDifferencing):
		f.Footer, f.FooterFromHead = head, true
		// Where the end copy should be is unknown: blocks may reach the
		// end of the file.
		f.dataEnd = f.fileSize
		f.warn("footer", endOff, fmt.Sprintf("footer at the end of the file (offset %d) is unusable (%v); the copy at offset 0 was used", endOff, endErr))
		return nil
	}
	var err error
	switch {
	case errors.Is(endErr, ErrNotVHD) && errors.Is(headErr, ErrNotVHD):
		err = f.wrap("footer: Cookie", endOff, endErr)
	case headErr == nil:
		err = f.wrap("footer", endOff, fmt.Errorf("%w (the copy at offset 0 is valid but describes a %s disk, which has no copy there)", endErr, head.DiskType))
	case errors.Is(headErr, ErrNotVHD):
		err = f.wrap("footer", endOff, endErr)
	default:
		err = f.wrap("footer", endOff, fmt.Errorf("%w; the copy at offset 0 is unusable too: %v", endErr, headErr))
	}
	return f.fail(disk.Fatal, "footer", endOff, err)
}

func footerState(ft Footer, err error) string {
	if err != nil {
		return "unusable: " + err.Error()
	}
	return fmt.Sprintf("valid, %s disk of %d bytes, unique ID %s", ft.DiskType, ft.CurrentSize, ft.UniqueID)
}

func (f *File) note(format string, args ...any) {
	if f.check {
		f.notes = append(f.notes, fmt.Sprintf(format, args...))
	}
}

func (f *File) loadFixed() error {
	ft := &f.Footer
	if ft.DataOffset != NoDataOffset {
		f.warn("footer", f.footerOffset(), fmt.Sprintf("fixed disk has Data Offset 0x%x, not 0xFFFFFFFFFFFFFFFF; ignored", ft.DataOffset))
	}
	f.blockSize = fixedBlockSize
	f.blocks = (int64(ft.CurrentSize) + f.blockSize - 1) / f.blockSize
	if int64(ft.CurrentSize) > f.dataEnd {
		// Salvage: what lies past the end reads as missing.
		err := f.errorf("footer: Current Size", f.footerOffset(), disk.ErrTruncated, "fixed disk of %d bytes needs a %d-byte file, the file is %d bytes", ft.CurrentSize, int64(ft.CurrentSize)+FooterSize, f.fileSize)
		return f.fail(disk.Salvageable, "footer", f.footerOffset(), err)
	}
	if int64(ft.CurrentSize) < f.dataEnd {
		f.warn("footer", f.footerOffset(), fmt.Sprintf("fixed disk of %d bytes is followed by %d bytes that are not part of it", ft.CurrentSize, f.dataEnd-int64(ft.CurrentSize)))
	}
	return nil
}

// span is a range of the file some structure uses.
type span struct {
	off, end int64
	what     string
}

func (f *File) loadDynamic(footerField string) error {
	ft := &f.Footer
	ho := ft.DataOffset
	if ho < FooterSize || ho > uint64(f.dataEnd) || uint64(f.dataEnd)-ho < DynamicHeaderSize {
		// Where the header starts inside the file but ends past it, the
		// file was cut short.
		sentinel, structure := disk.ErrCorrupt, "footer"
		if ho >= FooterSize && ho < uint64(f.dataEnd) {
			sentinel, structure = disk.ErrTruncated, "dynamic header"
		}
		err := f.errorf(footerField+": Data Offset", f.footerOffset(), sentinel, "dynamic header at %d does not fit between the footer copy at 0 and the end of the data at %d", ho, f.dataEnd)
		return f.fail(disk.Fatal, structure, f.footerOffset(), err)
	}
	hb, err := f.readFull("dynamic header", int64(ho), DynamicHeaderSize)
	if err != nil {
		return f.fail(disk.Fatal, "dynamic header", int64(ho), err)
	}
	h, err := parseDynamicHeader(hb)
	if err != nil {
		return f.fail(disk.Fatal, "dynamic header", int64(ho), f.wrap("dynamic header", int64(ho), err))
	}
	f.Header = &h
	hoff := int64(ho)
	fatal := func(field string, sentinel error, format string, args ...any) error {
		return f.fail(disk.Fatal, "dynamic header", hoff, f.errorf("dynamic header: "+field, hoff, sentinel, format, args...))
	}
	switch {
	case h.HeaderVersion>>16 != Version>>16:
		return fatal("Header Version", disk.ErrUnsupported, "version 0x%08x, only 0x%08x is defined", h.HeaderVersion, Version)
	case h.BlockSize < MinBlockSize || h.BlockSize > MaxBlockSize || h.BlockSize&(h.BlockSize-1) != 0:
		return fatal("Block Size", disk.ErrCorrupt, "%d is not a power of two from 4 KiB to 256 MiB", h.BlockSize)
	}
	blocks := (int64(ft.CurrentSize) + int64(h.BlockSize) - 1) / int64(h.BlockSize)
	if int64(h.MaxTableEntries) < blocks {
		return fatal("Max Table Entries", disk.ErrCorrupt, "%d entries of %d-byte blocks cover less than the Current Size of %d bytes", h.MaxTableEntries, h.BlockSize, ft.CurrentSize)
	}
	f.blockSize = int64(h.BlockSize)
	f.blocks = blocks
	f.bitmapSize = (f.blockSize/SectorSize/8 + SectorSize - 1) / SectorSize * SectorSize
	tableLen := int64(h.MaxTableEntries) * 4
	tableOff := int64(h.TableOffset)
	if h.TableOffset > uint64(f.dataEnd) || tableLen > f.dataEnd-tableOff {
		// Salvage: the entries past the end are unknown.
		err := f.errorf("dynamic header: Table Offset", hoff, disk.ErrTruncated, "BAT of %d entries at %d ends past the end of the data at %d", h.MaxTableEntries, h.TableOffset, f.dataEnd)
		if err := f.fail(disk.Salvageable, "dynamic header", hoff, err); err != nil {
			return err
		}
		if h.TableOffset > uint64(f.dataEnd) {
			tableOff, tableLen = -1, 0 // nothing of it
		} else {
			tableLen = (f.dataEnd - tableOff) / 4 * 4
		}
	}
	used := []span{
		{0, FooterSize, "the footer copy at offset 0"},
		{hoff, hoff + DynamicHeaderSize, "the dynamic header"},
	}
	if tableOff >= 0 {
		used = append(used, span{tableOff, tableOff + int64(h.MaxTableEntries)*4, "the BAT"})
	}
	if used, err = f.loadLocators(used); err != nil {
		return err
	}
	if ft.DiskType == TypeDifferencing && h.ParentUniqueID.IsZero() {
		f.warn("dynamic header", hoff, "differencing disk has a zero Parent Unique ID")
	}
	return f.loadBAT(tableOff, tableLen, used)
}

// loadLocators reads the parent locator entries' paths and appends the
// ranges their data use to used.
func (f *File) loadLocators(used []span) ([]span, error) {
	h := f.Header
	for i := range h.Locators {
		l := &h.Locators[i]
		if l.Code == PlatformNone {
			continue
		}
		field := fmt.Sprintf("dynamic header: Parent Locator Entry %d (%s)", i+1, l.Code)
		structure := fmt.Sprintf("parent locator %d", i+1)
		off := f.Footer.DataOffset + 576 + uint64(24*i)
		if l.DataLength > maxLocatorData {
			err := f.errorf(field+": Platform Data Length", int64(off), disk.ErrCorrupt, "%d bytes is more than a path can need", l.DataLength)
			if err := f.fail(disk.Checkable, structure, int64(off), err); err != nil {
				return nil, err
			}
			continue
		}
		if l.DataOffset > uint64(f.fileSize) || uint64(l.DataLength) > uint64(f.fileSize)-l.DataOffset {
			// Salvage: this locator's path is unknown; others may do.
			err := f.errorf(field+": Platform Data Offset", int64(off), disk.ErrTruncated, "%d bytes at %d are past the end of the %d-byte file", l.DataLength, l.DataOffset, f.fileSize)
			if err := f.fail(disk.Salvageable, structure, int64(off), err); err != nil {
				return nil, err
			}
			continue
		}
		if l.DataLength == 0 {
			continue
		}
		b, err := f.readFull(field, int64(l.DataOffset), int64(l.DataLength))
		if err != nil {
			if err := f.fail(disk.Salvageable, structure, int64(l.DataOffset), err); err != nil {
				return nil, err
			}
			continue
		}
		l.Path = decodeLocator(l.Code, b)
		f.note("parent locator %d (%s): %q", i+1, l.Code, l.Path)
		used = append(used, span{int64(l.DataOffset), int64(l.DataOffset) + int64(l.DataLength), fmt.Sprintf("parent locator %d's data", i+1)})
	}
	return used, nil
}

// Lost-entry marks (see File.lost).
func (f *File) setLost(i int64) {
	if f.lost == nil {
		f.lost = make([]uint64, (len(f.bat)+63)/64)
	}
	if i >= 0 && i < int64(len(f.bat)) {
		f.lost[i/64] |= 1 << (i % 64)
	}
}

// isLost reports whether the block of BAT entry i cannot be trusted.
func (f *File) isLost(i int64) bool {
	if f.Header != nil && i >= f.batKnown {
		return true // past the end of the file
	}
	return f.lost != nil && i >= 0 && i < int64(len(f.bat)) && f.lost[i/64]&(1<<(i%64)) != 0
}

// loadBAT reads the BAT (tableLen bytes at tableOff: all of it unless
// the file is cut short) and checks that every allocated block (its
// bitmap and the part of it the disk uses) lies inside the data area and
// overlaps nothing else.
func (f *File) loadBAT(tableOff, tableLen int64, used []span) error {
	n := tableLen / 4
	b := make([]byte, n*4)
	f.bat = make([]uint32, n)
	f.batKnown = n
	if n > 0 {
		err := disk.ReadTable(f.r, b, tableOff, f.fileSize, func(lo, hi int64, err error) error {
			for i := lo / 4; i < (hi+3)/4; i++ {
				f.setLost(i)
			}
			return f.fail(disk.Salvageable, "BAT", tableOff+lo, f.wrap("BAT", tableOff+lo, err))
		})
		if err != nil {
			return err
		}
	}
	for i := range f.bat {
		f.bat[i] = be.Uint32(b[4*i:])
	}
	// Structures must not overlap one another.
	sort.Slice(used, func(i, j int) bool { return used[i].off < used[j].off })
	for i := 1; i < len(used); i++ {
		if used[i].off < used[i-1].end {
			err := f.errorf("dynamic header", int64(f.Footer.DataOffset), disk.ErrCorrupt, "%s (%d..%d) overlaps %s (%d..%d)",
				used[i].what, used[i].off, used[i].end, used[i-1].what, used[i-1].off, used[i-1].end)
			if err := f.fail(disk.Checkable, "dynamic header", int64(f.Footer.DataOffset), err); err != nil {
				return err
			}
		}
	}
	type alloc struct{ off, end, index int64 }
	var allocs []alloc
	size := int64(f.Footer.CurrentSize)
	for i, e := range f.bat {
		if e == Unallocated || f.isLost(int64(i)) {
			continue
		}
		idx := int64(i)
		off := int64(e) * SectorSize
		need := f.bitmapSize + min(f.blockSize, max(size-idx*f.blockSize, 0))
		if off+need > f.dataEnd {
			// Salvage: what lies before the end reads.
			err := f.errorf(fmt.Sprintf("BAT entry %d", i), tableOff+4*idx, disk.ErrTruncated, "block at %d..%d is past the end of the data at %d", off, off+need, f.dataEnd)
			if err := f.fail(disk.Salvageable, fmt.Sprintf("BAT entry %d", i), tableOff+4*idx, err); err != nil {
				return err
			}
		}
		allocs = append(allocs, alloc{off, off + need, idx})
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].off < allocs[j].off })
	var last alloc // the block reaching furthest so far
	k := 0
	for i, a := range allocs {
		structure := fmt.Sprintf("BAT entry %d", a.index)
		if i > 0 && a.off < last.end {
			f.setLost(a.index)
			f.setLost(last.index)
			err := f.errorf(structure, tableOff+4*a.index, disk.ErrCorrupt, "block at %d..%d overlaps the block of BAT entry %d", a.off, a.end, last.index)
			if err := f.fail(disk.Salvageable, structure, tableOff+4*a.index, err); err != nil {
				return err
			}
		}
		for k < len(used) && used[k].end <= a.off {
			k++
		}
		for j := k; j < len(used) && used[j].off < a.end; j++ {
			if used[j].end > a.off {
				f.setLost(a.index)
				err := f.errorf(structure, tableOff+4*a.index, disk.ErrCorrupt, "block at %d..%d overlaps %s (%d..%d)", a.off, a.end, used[j].what, used[j].off, used[j].end)
				if err := f.fail(disk.Salvageable, structure, tableOff+4*a.index, err); err != nil {
					return err
				}
				break
			}
		}
		if i == 0 || a.end > last.end {
			last = a
		}
	}
	if len(allocs) > 0 {
		f.note("blocks end at %d, the data area at %d", last.end, f.dataEnd)
	}
	return nil
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

// Format is "VHD".
func (f *File) Format() string { return "VHD" }

// Type is fixed, dynamic or differencing.
func (f *File) Type() disk.Type {
	switch f.Footer.DiskType {
	case TypeFixed:
		return disk.Fixed
	case TypeDifferencing:
		return disk.Differencing
	}
	return disk.Dynamic
}

// VirtualSize is the footer's Current Size.
func (f *File) VirtualSize() int64 { return int64(f.Footer.CurrentSize) }

// BlockSize is the dynamic header's Block Size; a fixed disk reports its
// extents in 2 MiB blocks.
func (f *File) BlockSize() int64 { return f.blockSize }

// SectorSize is 512: VHD has no other.
func (f *File) SectorSize() int64 { return SectorSize }

// BlockCount is the number of blocks the virtual disk spans.
func (f *File) BlockCount() int64 { return f.blocks }

// BitmapSize is the size of a block's sector bitmap on disk (a multiple
// of 512 bytes); 0 for a fixed disk.
func (f *File) BitmapSize() int64 { return f.bitmapSize }

// BATEntry returns the BAT entry of block b (Unallocated past the table
// and for fixed disks).
func (f *File) BATEntry(b int64) uint32 {
	if b < 0 || b >= int64(len(f.bat)) {
		return Unallocated
	}
	return f.bat[b]
}
