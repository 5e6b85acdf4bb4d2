// Package vhdxtest builds VHDX and AVHDX files for tests: bases and
// differencing chains with any mix of block states, sector sizes, parent
// locators and dirty logs. It writes a whole file at once from an in-memory
// model, and keeps the model so tests know the expected bytes.
//
// It is deliberately independent of disk's reader: it only uses disk's
// encoders and constants, so a reader bug cannot cancel out.
package vhdxtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ckptfs/ckptfs/disk"
)

// Options describe the file to build.
type Options struct {
	VirtualSize        int64
	BlockSize          uint32 // default 2 MiB
	SectorSize         uint32 // logical; default 512
	PhysicalSectorSize uint32 // default 4096
	Fixed              bool   // all blocks allocated (base only)
	// Parent makes a differencing file.
	Parent *Image
	// ParentPath is where the parent file will be, used for the default
	// locator's relative_path.
	ParentPath string
	// Locator replaces the default locator entries when non-nil.
	Locator []disk.LocatorEntry
	// LogSize is the log region size; default 1 MiB.
	LogSize uint32
	// DirtyLog leaves the BAT and sector bitmaps stale in place (all zero)
	// and carries their real contents only in the log, as Hyper-V leaves
	// a file after a crash between a log flush and the in-place update.
	DirtyLog bool
	// LogEntries splits the dirty log's writes over this many entries of
	// one sequence (default 1).
	LogEntries int
	// LogStart is the ring offset (4 KiB multiple) of the first entry;
	// entries wrap around the end of the log.
	LogStart uint32
	// StaleSequence writes an older, complete sequence (with wrong data)
	// after the active one, which a reader must not replay.
	StaleSequence bool
}

type block struct {
	state   disk.BlockState
	data    []byte
	present []bool // per sector; nil means all present when state is data
}

// Image is an in-memory model of one VHDX file.
type Image struct {
	opts          Options
	blocks        map[int64]*block
	DataWriteGUID disk.GUID
	FileWriteGUID disk.GUID
	VirtualDiskID disk.GUID
}

// New starts a model.
func New(o Options) *Image {
	if o.BlockSize == 0 {
		o.BlockSize = 2 * disk.MiB
	}
	if o.SectorSize == 0 {
		o.SectorSize = 512
	}
	if o.PhysicalSectorSize == 0 {
		o.PhysicalSectorSize = 4096
	}
	if o.LogSize == 0 {
		o.LogSize = disk.MiB
	}
	if o.LogEntries == 0 {
		o.LogEntries = 1
	}
	im := &Image{opts: o, blocks: map[int64]*block{}, DataWriteGUID: disk.NewGUID(), FileWriteGUID: disk.NewGUID(), VirtualDiskID: disk.NewGUID()}
	if o.Parent != nil {
		im.opts.VirtualSize = o.Parent.opts.VirtualSize
		im.opts.SectorSize = o.Parent.opts.SectorSize
		im.VirtualDiskID = o.Parent.VirtualDiskID
	}
	return im
}

// Options returns the model's options.
func (im *Image) Options() Options { return im.opts }

func (im *Image) blockCount() int64 {
	bs := int64(im.opts.BlockSize)
	return (im.opts.VirtualSize + bs - 1) / bs
}

func (im *Image) sectorsPerBlock() int64 { return int64(im.opts.BlockSize / im.opts.SectorSize) }

// Write stores p at virtual offset off; both must be sector aligned. In a
// differencing file the touched blocks become PARTIALLY_PRESENT unless
// every sector is present.
func (im *Image) Write(off int64, p []byte) {
	ss, bs := int64(im.opts.SectorSize), int64(im.opts.BlockSize)
	if off%ss != 0 || int64(len(p))%ss != 0 || off+int64(len(p)) > im.opts.VirtualSize {
		panic(fmt.Sprintf("vhdxtest: unaligned or out-of-range write %d+%d", off, len(p)))
	}
	for len(p) > 0 {
		b := off / bs
		in := off % bs
		n := min(int64(len(p)), bs-in)
		blk := im.blocks[b]
		if blk == nil || blk.data == nil {
			blk = &block{data: make([]byte, bs), present: make([]bool, im.sectorsPerBlock())}
			im.blocks[b] = blk
		}
		copy(blk.data[in:], p[:n])
		for s := in / ss; s < (in+n)/ss; s++ {
			blk.present[s] = true
		}
		blk.state = disk.BlockPartiallyPresent
		if im.opts.Parent == nil || allTrue(blk.present) {
			blk.state = disk.BlockFullyPresent
		}
		off += n
		p = p[n:]
	}
}

func allTrue(v []bool) bool {
	for _, x := range v {
		if !x {
			return false
		}
	}
	return true
}

// SetState gives block b a state without data (ZERO, UNMAPPED, UNDEFINED,
// NOT_PRESENT), discarding any data written to it.
func (im *Image) SetState(b int64, st disk.BlockState) {
	im.blocks[b] = &block{state: st}
}

// Contents computes the virtual disk this file presents on top of its
// parent's contents (nil for a base). Unallocated base blocks read as zeros.
func (im *Image) Contents(parent []byte) []byte {
	out := make([]byte, im.opts.VirtualSize)
	if parent != nil {
		copy(out, parent)
	}
	bs, ss := int64(im.opts.BlockSize), int64(im.opts.SectorSize)
	for b := int64(0); b < im.blockCount(); b++ {
		start := b * bs
		end := min(start+bs, im.opts.VirtualSize)
		blk := im.blocks[b]
		switch {
		case blk == nil || blk.state == disk.BlockNotPresent:
			if im.opts.Parent == nil {
				clear(out[start:end])
			}
		case blk.state == disk.BlockFullyPresent || blk.state == disk.BlockPartiallyPresent:
			for s := int64(0); s*ss < end-start; s++ {
				if blk.state == disk.BlockFullyPresent || blk.present[s] {
					copy(out[start+s*ss:min(start+(s+1)*ss, end)], blk.data[s*ss:])
				}
			}
		default:
			clear(out[start:end])
		}
	}
	return out
}

// Forget drops the data written to the model and keeps its identity
// (GUIDs, geometry): enough to be the Parent of a child, once the file is
// saved and the contents computed. Tests of long chains keep their memory
// down with it; Contents and Save are wrong after it.
func (im *Image) Forget() { clear(im.blocks) }

// ChainContents returns the virtual disk of the chain ending at im.
func (im *Image) ChainContents() []byte {
	var parent []byte
	if im.opts.Parent != nil {
		parent = im.opts.Parent.ChainContents()
	}
	return im.Contents(parent)
}

// DefaultLocator is the locator Hyper-V would write for a parent at
// parentPath, seen from a child at childPath.
func DefaultLocator(linkage disk.GUID, childPath, parentPath string) []disk.LocatorEntry {
	rel, err := filepath.Rel(filepath.Dir(childPath), parentPath)
	if err != nil {
		rel = filepath.Base(parentPath)
	}
	win := `\\?\C:\Hyper-V\Virtual Hard Disks\` + filepath.Base(parentPath)
	return []disk.LocatorEntry{
		{Key: disk.KeyParentLinkage, Value: linkage.Braced()},
		{Key: disk.KeyRelativePath, Value: toWin(rel)},
		{Key: disk.KeyVolumePath, Value: `\\?\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\Hyper-V\Virtual Hard Disks\` + filepath.Base(parentPath)},
		{Key: disk.KeyAbsoluteWin32Path, Value: win},
	}
}

func toWin(p string) string {
	b := []byte(filepath.ToSlash(p))
	for i := range b {
		if b[i] == '/' {
			b[i] = '\\'
		}
	}
	return string(b)
}

// layout of the built file
const (
	logOffset = disk.HeaderSectionSize
)

// Save writes the file to path, as a sparse file: only the structures and
// the data blocks are written.
func (im *Image) Save(path string) error {
	return im.encode(path).writeFile(path)
}

// Bytes encodes the file. path is only used to compute the locator's
// relative path.
func (im *Image) Bytes(path string) ([]byte, error) {
	return im.encode(path).bytes(), nil
}

// encode lays the file out.
func (im *Image) encode(path string) *sparseFile {
	o := im.opts
	bs := int64(o.BlockSize)
	ss := int64(o.SectorSize)
	spb := im.sectorsPerBlock()
	chunkRatio := int64(disk.SectorsPerBitmap) * ss / bs
	nblocks := im.blockCount()
	var batEntries int64
	if o.Parent != nil {
		batEntries = ((nblocks + chunkRatio - 1) / chunkRatio) * (chunkRatio + 1)
	} else {
		batEntries = nblocks + (nblocks-1)/chunkRatio
	}
	batLen := roundUp(batEntries*8, disk.MiB)
	metaOff := int64(logOffset) + int64(o.LogSize)
	batOff := metaOff + disk.MiB
	next := batOff + batLen

	keys := make([]int64, 0, len(im.blocks))
	for b := range im.blocks {
		keys = append(keys, b)
	}
	if o.Fixed {
		keys = keys[:0]
		for b := int64(0); b < nblocks; b++ {
			keys = append(keys, b)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })

	out := &sparseFile{}
	put := out.put
	grow := out.grow
	grow(next)

	// Payload and sector bitmap blocks.
	bat := make([]byte, batEntries*8)
	bitmaps := map[int64][]byte{} // chunk -> 1 MiB bitmap
	for _, b := range keys {
		blk := im.blocks[b]
		idx := b + b/chunkRatio
		if blk == nil {
			blk = &block{state: disk.BlockFullyPresent} // a fixed file's unwritten block: zeros
		}
		var e disk.BATEntry
		switch blk.state {
		case disk.BlockFullyPresent, disk.BlockPartiallyPresent:
			put(next, blk.data)
			e = disk.MakeBATEntry(blk.state, next)
			next += bs
			grow(next)
			if blk.state == disk.BlockPartiallyPresent {
				c := b / chunkRatio
				if bitmaps[c] == nil {
					bitmaps[c] = make([]byte, disk.SectorBitmapSize)
				}
				base := (b % chunkRatio) * spb
				for s, p := range blk.present {
					if p {
						bit := base + int64(s)
						bitmaps[c][bit/8] |= 1 << (bit % 8)
					}
				}
			}
		default:
			e = disk.MakeBATEntry(blk.state, 0)
		}
		le64(bat[idx*8:], uint64(e))
	}
	chunks := make([]int64, 0, len(bitmaps))
	for c := range bitmaps {
		chunks = append(chunks, c)
	}
	sort.Slice(chunks, func(i, j int) bool { return chunks[i] < chunks[j] })
	for _, c := range chunks {
		put(next, bitmaps[c])
		le64(bat[(c*(chunkRatio+1)+chunkRatio)*8:], uint64(disk.MakeBATEntry(disk.SectorBitmapPresent, next)))
		next += disk.SectorBitmapSize
	}
	grow(next)

	// Metadata region.
	var items []disk.MetadataEntry
	var payload []byte
	add := func(id disk.GUID, data []byte, virtualDisk bool) {
		items = append(items, disk.MetadataEntry{ItemID: id, Offset: uint32(disk.MetadataTableSize + len(payload)), Length: uint32(len(data)), IsVirtualDisk: virtualDisk, IsRequired: true})
		payload = append(payload, data...)
	}
	add(disk.MetaFileParameters, disk.FileParameters{BlockSize: o.BlockSize, LeaveBlocksAlloced: o.Fixed, HasParent: o.Parent != nil}.Marshal(), false)
	add(disk.MetaVirtualDiskSize, u64(uint64(o.VirtualSize)), true)
	add(disk.MetaVirtualDiskID, im.VirtualDiskID[:], true)
	add(disk.MetaLogicalSectorSize, u32(o.SectorSize), true)
	add(disk.MetaPhysicalSectorSize, u32(o.PhysicalSectorSize), true)
	if o.Parent != nil {
		entries := o.Locator
		if entries == nil {
			entries = DefaultLocator(o.Parent.DataWriteGUID, path, o.ParentPath)
		}
		add(disk.MetaParentLocator, disk.ParentLocator{Type: disk.LocatorTypeVHDX, Entries: entries}.Marshal(), false)
	}
	put(metaOff, disk.MarshalMetadataTable(items))
	put(metaOff+disk.MetadataTableSize, payload)

	// BAT, in place or only in the log.
	var logGUID disk.GUID
	if o.DirtyLog {
		logGUID = disk.NewGUID()
		var writes []disk.LogWrite
		for s := int64(0); s < int64(len(bat)); s += disk.LogSectorSize {
			sec := make([]byte, disk.LogSectorSize)
			copy(sec, bat[s:])
			if !bytes.Equal(sec, make([]byte, disk.LogSectorSize)) {
				writes = append(writes, disk.LogWrite{FileOffset: uint64(batOff + s), Data: sec})
			}
		}
		// The in-place bitmaps are stale too: zero them and log them.
		for i, c := range chunks {
			off := next - int64(len(chunks)-i)*disk.SectorBitmapSize
			bm := bitmaps[c]
			put(off, make([]byte, disk.SectorBitmapSize))
			for s := 0; s < len(bm); s += disk.LogSectorSize {
				if !bytes.Equal(bm[s:s+disk.LogSectorSize], make([]byte, disk.LogSectorSize)) {
					writes = append(writes, disk.LogWrite{FileOffset: uint64(off + int64(s)), Data: bm[s : s+disk.LogSectorSize]})
				}
			}
		}
		// A zero descriptor over a stretch of the (unused) metadata region
		// tail exercises zero replay.
		writes = append(writes, disk.LogWrite{FileOffset: uint64(metaOff + disk.MiB - 8*disk.KiB), ZeroLength: 8 * disk.KiB})
		put(metaOff+disk.MiB-8*disk.KiB, bytes.Repeat([]byte{0xEE}, 8*disk.KiB))
		im.writeLog(out, logGUID, writes, next)
	} else {
		put(batOff, bat)
	}

	// Region tables, headers, identifier.
	regions := []disk.RegionEntry{
		{GUID: disk.RegionBAT, FileOffset: uint64(batOff), Length: uint32(batLen), Required: true},
		{GUID: disk.RegionMetadata, FileOffset: uint64(metaOff), Length: disk.MiB, Required: true},
	}
	rt := disk.MarshalRegionTable(regions)
	put(disk.RegionTable1Offset, rt)
	put(disk.RegionTable2Offset, rt)
	h := disk.Header{SequenceNumber: 1, FileWriteGUID: im.FileWriteGUID, DataWriteGUID: im.DataWriteGUID, LogGUID: logGUID, Version: 1, LogLength: o.LogSize, LogOffset: logOffset}
	put(disk.Header1Offset, h.Marshal())
	h.SequenceNumber = 2
	put(disk.Header2Offset, h.Marshal())
	put(0, disk.FileIdentifier{Creator: "ckptfs vhdxtest"}.Marshal())
	return out
}

// writeLog writes the dirty log: writes split over LogEntries entries of
// one sequence starting at LogStart, wrapping around the ring.
func (im *Image) writeLog(out *sparseFile, logGUID disk.GUID, writes []disk.LogWrite, fileSize int64) {
	o := im.opts
	ring := make([]byte, o.LogSize)
	n := o.LogEntries
	per := (len(writes) + n - 1) / n
	pos := o.LogStart
	tail := o.LogStart
	seq := uint64(1000)
	for i := 0; i < n; i++ {
		lo, hi := min(i*per, len(writes)), min((i+1)*per, len(writes))
		e := disk.MarshalLogEntry(disk.LogEntryHeader{Tail: tail, SequenceNumber: seq, LogGUID: logGUID,
			FlushedFileOffset: uint64(fileSize), LastFileOffset: uint64(fileSize)}, writes[lo:hi])
		for j := range e {
			ring[(pos+uint32(j))%o.LogSize] = e[j]
		}
		pos = (pos + uint32(len(e))) % o.LogSize
		seq++
	}
	if o.StaleSequence {
		// An older sequence (lower numbers) that would zero the BAT's first
		// sector: replaying it would lose data.
		stale := disk.MarshalLogEntry(disk.LogEntryHeader{Tail: pos, SequenceNumber: 10, LogGUID: logGUID,
			FlushedFileOffset: uint64(fileSize), LastFileOffset: uint64(fileSize)},
			[]disk.LogWrite{{FileOffset: writes[0].FileOffset, Data: make([]byte, disk.LogSectorSize)}})
		for j := range stale {
			ring[(pos+uint32(j))%o.LogSize] = stale[j]
		}
	}
	out.put(logOffset, ring)
}

// sparseFile is a file being laid out: pieces at offsets, zeros between
// them. A later piece wins where pieces overlap.
type sparseFile struct {
	size   int64
	pieces []filePiece
}

type filePiece struct {
	off  int64
	data []byte
}

// put places p at off (p is kept: it must not change until the file is
// written).
func (f *sparseFile) put(off int64, p []byte) {
	f.grow(off + int64(len(p)))
	if len(p) > 0 {
		f.pieces = append(f.pieces, filePiece{off, p})
	}
}

// grow makes the file at least n bytes long.
func (f *sparseFile) grow(n int64) { f.size = max(f.size, n) }

// bytes is the whole file.
func (f *sparseFile) bytes() []byte {
	b := make([]byte, f.size)
	for _, p := range f.pieces {
		copy(b[p.off:], p.data)
	}
	return b
}

// writeFile writes the file to path, leaving holes where nothing was put.
func (f *sparseFile) writeFile(path string) error {
	fl, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for _, p := range f.pieces {
		if _, err := fl.WriteAt(p.data, p.off); err != nil {
			fl.Close()
			return err
		}
	}
	if err := fl.Truncate(f.size); err != nil {
		fl.Close()
		return err
	}
	return fl.Close()
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

func le64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

func u64(v uint64) []byte { b := make([]byte, 8); le64(b, v); return b }
func u32(v uint32) []byte { b := make([]byte, 8); le64(b, uint64(v)); return b[:4] }
