package disk

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
)

// Writer writes a dynamic or differencing VHDX file created by ckptfs
// (CreateDifferencing, CreateDynamic, OpenWriter). Only the new file is ever
// written; a parent is only read, through CreateOptions.Parent or
// OpenOptions.Parent.
//
// # Blocks
//
// Payload blocks and sector-bitmap blocks are appended to the file at
// 1 MiB-aligned offsets and never moved or reused. In a differencing file a
// write that covers a whole block makes it FULLY_PRESENT; a partial write to
// a block the parent holds makes it PARTIALLY_PRESENT with the sector-bitmap
// bits of the written sectors set (no parent data is copied into the block);
// a PARTIALLY_PRESENT block whose every sector has become present is promoted
// to FULLY_PRESENT. Blocks that read as zeros (ZERO, UNMAPPED, UNDEFINED,
// and NOT_PRESENT in a dynamic file) become FULLY_PRESENT with the unwritten
// part zero; writing zeros to such a block allocates nothing. A write that
// covers part of a logical sector reads the rest of that sector from this
// file if it is present here, else from the parent (or as zeros).
//
// # Metadata and the log
//
// BAT entries and sector-bitmap sectors change only through the VHDX log.
// Changes collect in memory (dirty 4 KiB sectors) and are committed by Sync,
// by Close, or when a log entry would otherwise grow past 126 sectors.
// A commit
//
//  1. fdatasyncs the file: the payload data the new entries describe, the
//     file size, and the in-place writes of the previous commit are durable;
//  2. writes one log entry holding every dirty sector at the log head
//     (wrapping round the 1 MiB ring), with Tail pointing at the entry
//     itself, the next sequence number and this session's LogGuid;
//  3. fdatasyncs it;
//  4. on the session's first commit only, writes LogGuid into both headers
//     (each write followed by fdatasync);
//  5. writes the sectors to their places in the file.
//
// Step 1 of the next commit makes step 5 durable before any later entry
// exists, so each entry forms a complete sequence by itself (Tail = itself).
// An entry is at most half the ring and never overlaps its predecessor, so
// the newest complete entry survives until a newer one is complete; replaying
// it again is harmless. LogGuid is written to the headers only after the
// first entry is durable, so the file never names a log without a valid
// entry. Close commits, fdatasyncs, and writes headers with LogGuid zero.
//
// # Headers
//
// The first write of a session updates both headers (written alternately,
// sequence number + 1, fdatasync after each) with a new FileWriteGuid and a
// new DataWriteGuid before anything else in the file changes.
//
// # Readers
//
// BlockExtents and ReadFileAt have the semantics of *File's and show the
// blocks written so far, including those whose metadata is not committed.
// A block's new BAT entry becomes visible only after its data is written.
// All methods are safe for concurrent use; writes are serialised.
type Writer struct {
	wmu sync.Mutex   // serialises WriteAt, Sync and Close
	mu  sync.RWMutex // guards what readers see: f.batPages, bitmaps, bmUnits, closed

	name   string
	osf    *os.File
	f      *File // the parsed file; f.batPages is the live BAT and f.r reads through view
	view   writerView
	parent io.ReaderAt

	bs, ss, spb, cr, vsize int64
	hasParent              bool

	hdr   writerHeaderState
	began bool // headers updated for this session

	end int64 // size of the file and offset of the next allocation (1 MiB multiple)

	logOff, logLen int64
	logGUID        GUID   // this session's LogGuid; zero until the first entry
	logHead        int64  // offset of the next entry within the log
	logSeq         uint64 // sequence number of the last entry written
	maxDirty       int    // sectors one log entry may carry
	perBlock       int    // most sectors one block write can dirty

	dirtyBAT map[int64]struct{} // 4 KiB BAT sectors (index within the BAT) changed since the last commit
	bitmaps  map[int64][]byte   // sector-bitmap sectors changed since the last commit, by file offset
	bmUnits  map[int64]int      // number of bitmaps entries in each 1 MiB unit of the file
	unsynced bool               // data written since the last fdatasync

	err    error // sticky: the file may be inconsistent on disk until reopened
	closed bool
}

// OpenOptions tunes OpenWriter.
type OpenOptions struct {
	// Parent reads the parent's virtual disk; see CreateOptions.Parent.
	Parent io.ReaderAt
}

// writerMaxLogDescriptors caps a log entry at one descriptor sector: QEMU
// cannot read entries with more than 126 descriptors.
const writerMaxLogDescriptors = 126

// OpenWriter opens a dynamic or differencing VHDX file created by ckptfs
// (its creator string starts with "ckptfs") for writing more data to it. A
// log left by a crash is first replayed into the file itself, as
// [MS-VHDX] §2.3.3 requires of a writer: the headers get a new FileWriteGuid,
// the active log sequence is written in place and made durable, and LogGuid
// is cleared. The file is locked against other writers (flock).
func OpenWriter(path string, opts OpenOptions) (*Writer, error) {
	fail := func(err error) (*Writer, error) {
		return nil, fmt.Errorf("open VHDX %s for writing: %w", path, err)
	}
	osf, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fail(err)
	}
	w, err := openWriter(osf, path, opts)
	if err != nil {
		osf.Close()
		return fail(err)
	}
	return w, nil
}

func openWriter(osf *os.File, path string, opts OpenOptions) (*Writer, error) {
	st, err := osf.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrUnsupported)
	}
	if err := writerLock(osf); err != nil {
		return nil, err
	}
	f, err := NewFile(osf, st.Size(), path)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(f.Identifier.Creator, CreatorName) {
		return nil, fmt.Errorf("%w: the file was created by %q, not by %s; refusing to write it", ErrUnsupported, f.Identifier.Creator, CreatorName)
	}
	began := false
	if !f.Header.LogGUID.IsZero() {
		if f, err = writerReplayInPlace(osf, f, path); err != nil {
			return nil, err
		}
		began = true // FileWriteGuid was changed for this session
	}
	w, err := newWriter(osf, f, path, opts.Parent)
	if err != nil {
		return nil, err
	}
	w.began = began
	return w, nil
}

// newWriterFromCreated parses a file this package has just created.
func newWriterFromCreated(osf *os.File, path string, parent io.ReaderAt) (*Writer, error) {
	if err := writerLock(osf); err != nil {
		return nil, err
	}
	st, err := osf.Stat()
	if err != nil {
		return nil, err
	}
	f, err := NewFile(osf, st.Size(), path)
	if err != nil {
		return nil, fmt.Errorf("the new file does not parse: %w", err)
	}
	return newWriter(osf, f, path, parent)
}

func newWriter(osf *os.File, f *File, path string, parent io.ReaderAt) (*Writer, error) {
	if f.Type() == Fixed {
		return nil, fmt.Errorf("%w: writing fixed VHDX files", ErrUnsupported)
	}
	h := f.Header
	if !h.LogGUID.IsZero() {
		return nil, fmt.Errorf("%w: the log has not been replayed", ErrLog)
	}
	w := &Writer{
		name:      path,
		osf:       osf,
		f:         f,
		parent:    parent,
		bs:        f.BlockSize(),
		ss:        f.SectorSize(),
		vsize:     f.VirtualSize(),
		cr:        f.chunkRatio,
		hasParent: f.Metadata.HasParent,
		hdr:       writerHeaderState{h: h, cur: f.CurrentHeader},
		end:       (f.fileSize + MiB - 1) / MiB * MiB,
		logOff:    int64(h.LogOffset),
		logLen:    int64(h.LogLength),
		dirtyBAT:  map[int64]struct{}{},
		bitmaps:   map[int64][]byte{},
		bmUnits:   map[int64]int{},
	}
	w.spb = w.bs / w.ss
	w.maxDirty = min(writerMaxLogDescriptors, int(w.logLen/LogSectorSize/2)-1)
	w.perBlock = 2 + max(1, int(w.spb/8/LogSectorSize))
	if w.logLen == 0 || w.logOff < HeaderSectionSize || w.logOff+w.logLen > f.fileSize {
		return nil, fmt.Errorf("%w: log at %d length %d", ErrCorrupt, w.logOff, w.logLen)
	}
	if w.maxDirty < w.perBlock {
		return nil, fmt.Errorf("%w: a %d-byte log is too small for %d-byte blocks", ErrUnsupported, w.logLen, w.bs)
	}
	w.view.w = w
	f.r = &w.view
	f.size = w.end
	return w, nil
}

// Name is the path of the file.
func (w *Writer) Name() string { return w.name }

// Type is Differencing or Dynamic.
func (w *Writer) Type() Type { return w.f.Type() }

// VirtualSize is the size of the virtual disk in bytes.
func (w *Writer) VirtualSize() int64 { return w.vsize }

// BlockSize is the payload block size in bytes.
func (w *Writer) BlockSize() int64 { return w.bs }

// SectorSize is the logical sector size in bytes.
func (w *Writer) SectorSize() int64 { return w.ss }

// BlockCount is the number of payload blocks.
func (w *Writer) BlockCount() int64 { return w.f.dataBlocks }

// Metadata is the file's metadata (it does not change while writing).
func (w *Writer) Metadata() Metadata { return w.f.Metadata }

// Header is the current header.
func (w *Writer) Header() Header {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.hdr.h
}

// FileSize is the size of the file.
func (w *Writer) FileSize() int64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.end
}

// StateCounts counts payload blocks per state, as the file stands in
// memory.
func (w *Writer) StateCounts() map[BlockState]int64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.f.StateCounts()
}

// BlockExtents is (*File).BlockExtents for the file as written so far.
func (w *Writer) BlockExtents(b int64, dst []Extent) ([]Extent, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return dst, fmt.Errorf("%s: %w", w.name, os.ErrClosed)
	}
	return w.f.BlockExtents(b, dst)
}

// ReadFileAt is (*File).ReadFileAt for the file as written so far.
func (w *Writer) ReadFileAt(p []byte, off int64) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return 0, fmt.Errorf("%s: %w", w.name, os.ErrClosed)
	}
	return w.view.ReadAt(p, off)
}

// WriteAt writes p at virtual disk offset off. The whole of p must lie
// within the virtual disk. The data is durable after Sync or Close.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.vsize || int64(len(p)) > w.vsize-off {
		return 0, fmt.Errorf("%s: write of %d bytes at %d is outside the %d-byte virtual disk", w.name, len(p), off, w.vsize)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := w.begin(); err != nil {
		return 0, fmt.Errorf("%s: %w", w.name, err)
	}
	done := 0
	for done < len(p) {
		voff := off + int64(done)
		b := voff / w.bs
		n := int(min(int64(len(p)-done), (b+1)*w.bs-voff))
		if err := w.writeBlock(b, voff-b*w.bs, p[done:done+n]); err != nil {
			return done, fmt.Errorf("%s: writing %d bytes at virtual offset %d: %w", w.name, n, voff, err)
		}
		done += n
	}
	return done, nil
}

// Sync makes every completed write durable: the data and the metadata
// describing it (through the log).
func (w *Writer) Sync() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", w.name, err)
	}
	return nil
}

// Flush is Sync.
func (w *Writer) Flush() error { return w.Sync() }

func (w *Writer) sync() error {
	if len(w.dirtyBAT) > 0 || len(w.bitmaps) > 0 {
		return w.commit()
	}
	if w.unsynced {
		if err := writerDataSync(w.osf); err != nil {
			return w.fail(fmt.Errorf("syncing data: %w", err))
		}
		w.unsynced = false
	}
	return nil
}

// Close commits and syncs everything, clears the log (LogGuid zero in both
// headers) and closes the file. After a failure the log is left for the
// next open to replay.
func (w *Writer) Close() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closed {
		return fmt.Errorf("%s: %w", w.name, os.ErrClosed)
	}
	err := w.usable()
	if err == nil {
		if e := w.closeLog(); e != nil {
			err = fmt.Errorf("%s: close: %w", w.name, e)
		}
	}
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	if cerr := w.osf.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// closeLog commits what is pending and clears the log.
func (w *Writer) closeLog() error {
	if err := w.sync(); err != nil {
		return err
	}
	if w.hdr.h.LogGUID.IsZero() {
		return nil
	}
	// The last commit's in-place writes must be durable before the log
	// that covers them is dropped.
	if err := writerDataSync(w.osf); err != nil {
		return w.fail(fmt.Errorf("syncing before clearing the log: %w", err))
	}
	if err := w.updateHeaders(func(h *Header) { h.LogGUID = GUID{} }); err != nil {
		return w.fail(fmt.Errorf("clearing the log: %w", err))
	}
	return nil
}

func (w *Writer) usable() error {
	if w.closed {
		return fmt.Errorf("%s: %w", w.name, os.ErrClosed)
	}
	if w.err != nil {
		return fmt.Errorf("%s: an earlier failure left the writer unusable: %w", w.name, w.err)
	}
	return nil
}

// fail makes err sticky and returns it.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// begin updates the headers before the session's first modification.
func (w *Writer) begin() error {
	if w.began {
		return nil
	}
	if err := w.updateHeaders(func(h *Header) {
		h.FileWriteGUID = NewGUID()
		h.DataWriteGUID = NewGUID()
	}); err != nil {
		return w.fail(fmt.Errorf("updating the headers: %w", err))
	}
	w.began = true
	return nil
}

func (w *Writer) updateHeaders(mod func(*Header)) error {
	hs := w.hdr
	err := hs.update(w.osf, mod) // hs is what was written, even after a failure
	w.mu.Lock()
	w.hdr = hs
	w.mu.Unlock()
	return err
}

// writerHeaderState is the current header and which copy it is.
type writerHeaderState struct {
	h   Header
	cur int // 1 or 2
}

// update writes the modified header over the noncurrent copy, then again
// over the other, each time with the sequence number incremented and
// followed by fdatasync ([MS-VHDX] §2.2.2.1).
func (s *writerHeaderState) update(osf *os.File, mod func(*Header)) error {
	h := s.h
	mod(&h)
	for range 2 {
		h.SequenceNumber = s.h.SequenceNumber + 1
		next, off := 2, int64(Header2Offset)
		if s.cur == 2 {
			next, off = 1, Header1Offset
		}
		if _, err := osf.WriteAt(h.Marshal(), off); err != nil {
			return err
		}
		if err := writerDataSync(osf); err != nil {
			return err
		}
		s.h, s.cur = h, next
		writerCrashPoint("header")
	}
	return nil
}

// payloadIndex and bitmapIndex are BAT indices.
func (w *Writer) payloadIndex(b int64) int64 { return b + b/w.cr }
func (w *Writer) bitmapIndex(c int64) int64  { return c*(w.cr+1) + w.cr }

// setBAT changes BAT entry i in memory and marks its sector dirty. The
// caller holds mu.
func (w *Writer) setBAT(i int64, e BATEntry) {
	f := w.f
	p := i / batPageEntries
	page := f.batPages[p]
	if page == nil {
		page = make([]BATEntry, min(int64(batPageEntries), f.batEntries-p*batPageEntries))
		f.batPages[p] = page
	}
	page[i%batPageEntries] = e
	w.dirtyBAT[i*8/LogSectorSize] = struct{}{}
}

// batSector encodes 4 KiB BAT sector k from memory.
func (w *Writer) batSector(k int64) []byte {
	b := make([]byte, LogSectorSize)
	for j := int64(0); j < LogSectorSize/8; j++ {
		le.PutUint64(b[j*8:], uint64(w.f.batEntry(k*LogSectorSize/8+j)))
	}
	return b
}

// roomFor commits first if one more block write might not fit in a log
// entry.
func (w *Writer) roomFor() error {
	if len(w.dirtyBAT)+len(w.bitmaps)+w.perBlock > w.maxDirty {
		return w.commit()
	}
	return nil
}

// allocate appends size bytes (a multiple of 1 MiB) to the file and returns
// their offset. The new space reads as zeros.
func (w *Writer) allocate(size int64) (int64, error) {
	off := w.end
	if err := w.osf.Truncate(off + size); err != nil {
		return 0, err
	}
	writerCrashPoint("allocated")
	w.mu.Lock()
	w.end = off + size
	w.f.fileSize, w.f.size = w.end, w.end
	w.mu.Unlock()
	return off, nil
}

// writeBlock writes data at offset lo within payload block b.
func (w *Writer) writeBlock(b, lo int64, data []byte) error {
	blockLen := min(w.bs, w.vsize-b*w.bs)
	hi := lo + int64(len(data))
	s0, s1 := lo/w.ss, (hi+w.ss-1)/w.ss // sectors touched
	e := w.f.PayloadEntry(b)
	switch e.State() {
	case BlockFullyPresent:
		return w.putData(b, e, e.FileOffset(), lo, data)
	case BlockPartiallyPresent:
		if err := w.roomFor(); err != nil {
			return err
		}
		if err := w.putData(b, e, e.FileOffset(), lo, data); err != nil {
			return err
		}
		return w.markPresent(b, e.FileOffset(), s0, s1, blockLen, false)
	}
	// Not allocated. Unless it is a differencing file's NOT_PRESENT block
	// (the parent shows through), the block reads as zeros.
	zeroish := !(e.State() == BlockNotPresent && w.hasParent)
	if zeroish && writerIsZero(data) {
		return nil
	}
	if err := w.roomFor(); err != nil {
		return err
	}
	fo, err := w.allocate(w.bs)
	if err != nil {
		return err
	}
	if err := w.putData(b, e, fo, lo, data); err != nil {
		return err
	}
	if zeroish || (s0 == 0 && s1*w.ss >= blockLen) {
		w.mu.Lock()
		w.setBAT(w.payloadIndex(b), MakeBATEntry(BlockFullyPresent, fo))
		w.mu.Unlock()
		return nil
	}
	return w.markPresent(b, fo, s0, s1, blockLen, true)
}

// putData writes data at offset lo of the block stored at file offset fo.
// Partly covered logical sectors are completed with their current content
// as old (the block's entry before this write) describes it.
func (w *Writer) putData(b int64, old BATEntry, fo, lo int64, data []byte) error {
	ss := w.ss
	hi := lo + int64(len(data))
	hs, he := lo/ss*ss, (hi+ss-1)/ss*ss
	w.unsynced = true
	if hs == lo && he == hi {
		_, err := w.osf.WriteAt(data, fo+lo)
		return err
	}
	sector := func(at int64) ([]byte, error) {
		buf := make([]byte, ss)
		return buf, w.oldSector(b, old, at, buf)
	}
	if he-hs == ss { // one sector
		buf, err := sector(hs)
		if err != nil {
			return err
		}
		copy(buf[lo-hs:], data)
		_, err = w.osf.WriteAt(buf, fo+hs)
		return err
	}
	d, pos := data, lo
	if lo != hs {
		buf, err := sector(hs)
		if err != nil {
			return err
		}
		n := hs + ss - lo
		copy(buf[lo-hs:], d[:n])
		if _, err := w.osf.WriteAt(buf, fo+hs); err != nil {
			return err
		}
		d, pos = d[n:], hs+ss
	}
	if hi == he {
		_, err := w.osf.WriteAt(d, fo+pos)
		return err
	}
	ts := he - ss
	if ts > pos {
		if _, err := w.osf.WriteAt(d[:ts-pos], fo+pos); err != nil {
			return err
		}
	}
	buf, err := sector(ts)
	if err != nil {
		return err
	}
	copy(buf, d[ts-pos:])
	_, err = w.osf.WriteAt(buf, fo+ts)
	return err
}

// oldSector reads the current content of the logical sector at offset at
// within block b, whose entry is e.
func (w *Writer) oldSector(b int64, e BATEntry, at int64, buf []byte) error {
	switch e.State() {
	case BlockFullyPresent:
	case BlockPartiallyPresent:
		set, err := w.bitSet(b, at/w.ss)
		if err != nil {
			return err
		}
		if !set {
			return w.parentSector(b*w.bs+at, buf)
		}
	case BlockNotPresent:
		if w.hasParent {
			return w.parentSector(b*w.bs+at, buf)
		}
		clear(buf)
		return nil
	default: // ZERO, UNMAPPED, UNDEFINED
		clear(buf)
		return nil
	}
	_, err := w.osf.ReadAt(buf, e.FileOffset()+at)
	return err
}

func (w *Writer) parentSector(voff int64, buf []byte) error {
	if w.parent == nil {
		return fmt.Errorf("the write covers part of the logical sector at %d, which the parent holds, but no parent reader was given", voff)
	}
	n, err := w.parent.ReadAt(buf, voff)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading the parent's sector at %d: %w", voff, err)
}

// bitmapOffset returns the file offset of chunk c's sector bitmap, or -1.
func (w *Writer) bitmapOffset(c int64) int64 {
	e := w.f.batEntry(w.bitmapIndex(c))
	if e.State() != SectorBitmapPresent {
		return -1
	}
	return e.FileOffset()
}

// bitSet reports whether sector s of block b is present in this file.
func (w *Writer) bitSet(b, s int64) (bool, error) {
	bm := w.bitmapOffset(b / w.cr)
	if bm < 0 {
		return false, fmt.Errorf("%w: payload block %d is PARTIALLY_PRESENT without a sector bitmap", ErrCorrupt, b)
	}
	bit := (b%w.cr)*w.spb + s
	var x [1]byte
	if err := w.bitmapBytes(x[:], bm+bit/8); err != nil {
		return false, err
	}
	return x[0]>>(bit%8)&1 != 0, nil
}

// bitmapBytes reads sector-bitmap bytes at file offset off: uncommitted
// sectors from memory, the others from the file. Only the writer calls it.
func (w *Writer) bitmapBytes(p []byte, off int64) error {
	for len(p) > 0 {
		so := off &^ (LogSectorSize - 1)
		n := min(int64(len(p)), so+LogSectorSize-off)
		if sec, ok := w.bitmaps[so]; ok {
			copy(p[:n], sec[off-so:])
		} else if _, err := w.osf.ReadAt(p[:n], off); err != nil {
			return fmt.Errorf("reading sector bitmap at %d: %w", off, err)
		}
		p, off = p[n:], off+n
	}
	return nil
}

// markPresent sets the sector-bitmap bits of sectors [s0, s1) of block b,
// stored at fo, allocating the chunk's sector bitmap if needed; a new block
// becomes PARTIALLY_PRESENT and a block with every sector present becomes
// FULLY_PRESENT.
func (w *Writer) markPresent(b, fo, s0, s1, blockLen int64, newBlock bool) error {
	c := b / w.cr
	bm := w.bitmapOffset(c)
	var bmEntry BATEntry
	if bm < 0 {
		off, err := w.allocate(SectorBitmapSize)
		if err != nil {
			return err
		}
		bm, bmEntry = off, MakeBATEntry(SectorBitmapPresent, off)
	}
	first := (b%w.cr)*w.spb + s0 // first bit to set
	last := (b%w.cr)*w.spb + s1  // one past the last
	loads := map[int64][]byte{}
	for so := bm + first/8/LogSectorSize*LogSectorSize; so <= bm+(last-1)/8/LogSectorSize*LogSectorSize; so += LogSectorSize {
		if _, ok := w.bitmaps[so]; !ok {
			buf := make([]byte, LogSectorSize)
			if _, err := w.osf.ReadAt(buf, so); err != nil {
				return fmt.Errorf("reading sector bitmap at %d: %w", so, err)
			}
			loads[so] = buf
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for so, buf := range loads {
		w.bitmaps[so] = buf
		w.bmUnits[so&^(MiB-1)]++
	}
	if bmEntry != 0 {
		w.setBAT(w.bitmapIndex(c), bmEntry)
	}
	for bit := first; bit < last; {
		byteOff := bit / 8
		sec := w.bitmaps[bm+byteOff&^(LogSectorSize-1)]
		if bit%8 == 0 && last-bit >= 8 {
			end := min(last/8, byteOff&^(LogSectorSize-1)+LogSectorSize)
			for i := byteOff; i < end; i++ {
				sec[i%LogSectorSize] = 0xFF
			}
			bit = end * 8
			continue
		}
		sec[byteOff%LogSectorSize] |= 1 << (bit % 8)
		bit++
	}
	state := BlockPartiallyPresent
	full, err := w.allPresent(b, bm, blockLen)
	if err != nil {
		return err
	}
	if full {
		state = BlockFullyPresent
	} else if !newBlock {
		return nil
	}
	w.setBAT(w.payloadIndex(b), MakeBATEntry(state, fo))
	return nil
}

// allPresent reports whether every sector of block b within the virtual
// disk has its bitmap bit set.
func (w *Writer) allPresent(b, bm, blockLen int64) (bool, error) {
	n := blockLen / w.ss // bits; the virtual size is a multiple of the sector size
	first := (b % w.cr) * w.spb
	buf := make([]byte, (n+7)/8)
	if err := w.bitmapBytes(buf, bm+first/8); err != nil {
		return false, err
	}
	for i, x := range buf {
		want := byte(0xFF)
		if rem := n - int64(i)*8; rem < 8 {
			want = byte(1)<<rem - 1
		}
		if x&want != want {
			return false, nil
		}
	}
	return true, nil
}

// commit writes the dirty metadata through the log; see the Writer
// documentation for the order of operations.
func (w *Writer) commit() error {
	if len(w.dirtyBAT) == 0 && len(w.bitmaps) == 0 {
		return nil
	}
	if err := writerDataSync(w.osf); err != nil {
		return w.fail(fmt.Errorf("syncing data before the log entry: %w", err))
	}
	w.unsynced = false
	writerCrashPoint("data-synced")
	var writes []LogWrite
	for k := range w.dirtyBAT {
		writes = append(writes, LogWrite{FileOffset: uint64(w.f.batOffset + k*LogSectorSize), Data: w.batSector(k)})
	}
	for off, sec := range w.bitmaps {
		writes = append(writes, LogWrite{FileOffset: uint64(off), Data: bytes.Clone(sec)})
	}
	slices.SortFunc(writes, func(a, b LogWrite) int { return cmp.Compare(a.FileOffset, b.FileOffset) })
	g := w.logGUID
	if g.IsZero() {
		g = NewGUID()
	}
	entry := MarshalLogEntry(LogEntryHeader{
		Tail:              uint32(w.logHead),
		SequenceNumber:    w.logSeq + 1,
		LogGUID:           g,
		FlushedFileOffset: uint64(w.end),
		LastFileOffset:    uint64(w.end),
	}, writes)
	if int64(len(entry)) > w.logLen/2 {
		return w.fail(fmt.Errorf("internal error: a %d-byte log entry does not fit half of the %d-byte log", len(entry), w.logLen))
	}
	first := min(int64(len(entry)), w.logLen-w.logHead)
	if _, err := w.osf.WriteAt(entry[:first], w.logOff+w.logHead); err != nil {
		return w.fail(fmt.Errorf("writing the log: %w", err))
	}
	if first < int64(len(entry)) {
		writerCrashPoint("log-wrapping")
		if _, err := w.osf.WriteAt(entry[first:], w.logOff); err != nil {
			return w.fail(fmt.Errorf("writing the log: %w", err))
		}
	}
	writerCrashPoint("log-written")
	if err := writerDataSync(w.osf); err != nil {
		return w.fail(fmt.Errorf("syncing the log: %w", err))
	}
	w.logGUID = g
	w.logSeq++
	w.logHead = (w.logHead + int64(len(entry))) % w.logLen
	writerCrashPoint("log-synced")
	if w.hdr.h.LogGUID != g {
		if err := w.updateHeaders(func(h *Header) { h.LogGUID = g }); err != nil {
			return w.fail(fmt.Errorf("writing LogGuid to the headers: %w", err))
		}
	}
	for _, lw := range writes {
		if _, err := w.osf.WriteAt(lw.Data, int64(lw.FileOffset)); err != nil {
			return w.fail(fmt.Errorf("writing metadata in place after logging it: %w", err))
		}
		writerCrashPoint("in-place")
	}
	clear(w.dirtyBAT)
	w.mu.Lock()
	clear(w.bitmaps)
	clear(w.bmUnits)
	w.mu.Unlock()
	return nil
}

// writerView reads the file as the Writer's readers must see it: the file
// on disk with the uncommitted BAT and sector-bitmap sectors laid over it.
// Callers hold w.mu (or are the writer itself).
type writerView struct{ w *Writer }

// ReadAt implements io.ReaderAt.
func (v *writerView) ReadAt(p []byte, off int64) (int, error) {
	w := v.w
	n, err := w.osf.ReadAt(p, off)
	if n > 0 {
		w.overlay(p[:n], off)
	}
	return n, err
}

// overlay copies the in-memory BAT and uncommitted bitmap sectors over p,
// which was read from file offset off.
func (w *Writer) overlay(p []byte, off int64) {
	end := off + int64(len(p))
	f := w.f
	bo, be := f.batOffset, f.batOffset+f.batEntries*8
	if off < be && bo < end {
		lo, hi := max(off, bo), min(end, be)
		var eb [8]byte
		for i := (lo - bo) / 8; bo+i*8 < hi; i++ {
			le.PutUint64(eb[:], uint64(f.batEntry(i)))
			eo := bo + i*8
			s, t := max(eo, lo), min(eo+8, hi)
			copy(p[s-off:t-off], eb[s-eo:t-eo])
		}
	}
	if len(w.bmUnits) == 0 {
		return
	}
	for u := off &^ (MiB - 1); u < end; u += MiB {
		if w.bmUnits[u] == 0 {
			continue
		}
		for so := max(u, off&^(LogSectorSize-1)); so < min(u+MiB, end); so += LogSectorSize {
			sec, ok := w.bitmaps[so]
			if !ok {
				continue
			}
			s, t := max(so, off), min(so+LogSectorSize, end)
			copy(p[s-off:t-off], sec[s-so:t-so])
		}
	}
}

// writerCrashHook, when set (by tests, before any Writer is used), is called
// at the points where a crash matters most; the crash tests kill the
// process there.
var writerCrashHook func(point string)

func writerCrashPoint(point string) {
	if writerCrashHook != nil {
		writerCrashHook(point)
	}
}

var writerZeroBuf = make([]byte, 64*KiB)

func writerIsZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(writerZeroBuf))
		if !bytes.Equal(p[:n], writerZeroBuf[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// writerReplayInPlace writes the active log sequence of f (already found and
// validated by NewFile) into the file and clears the log, following
// [MS-VHDX] §2.2.2.1 and §2.3.3: new FileWriteGuid first, then the replay,
// made durable, then LogGuid zero. It returns the file parsed again.
func writerReplayInPlace(osf *os.File, f *File, path string) (*File, error) {
	hs := writerHeaderState{h: f.Header, cur: f.CurrentHeader}
	if err := hs.update(osf, func(h *Header) { h.FileWriteGUID = NewGUID() }); err != nil {
		return nil, fmt.Errorf("updating the headers before replaying the log: %w", err)
	}
	if f.Log.Replayed {
		o, ok := f.r.(*overlay)
		if !ok {
			return nil, fmt.Errorf("internal error: replayed log without an overlay")
		}
		for _, wr := range o.writes {
			var err error
			if wr.data != nil {
				_, err = osf.WriteAt(wr.data, wr.off)
			} else {
				if wr.zero > MaxBlockSize {
					return nil, fmt.Errorf("%w: log zero descriptor of %d bytes", ErrUnsupported, wr.zero)
				}
				_, err = osf.WriteAt(make([]byte, wr.zero), wr.off)
			}
			if err != nil {
				return nil, fmt.Errorf("replaying the log: %w", err)
			}
			writerCrashPoint("replay")
		}
		st, err := osf.Stat()
		if err != nil {
			return nil, err
		}
		if o.size > st.Size() {
			if err := osf.Truncate(o.size); err != nil {
				return nil, fmt.Errorf("replaying the log: %w", err)
			}
		}
		if err := writerDataSync(osf); err != nil {
			return nil, fmt.Errorf("replaying the log: %w", err)
		}
	}
	if err := hs.update(osf, func(h *Header) { h.LogGUID = GUID{} }); err != nil {
		return nil, fmt.Errorf("clearing the log after replaying it: %w", err)
	}
	st, err := osf.Stat()
	if err != nil {
		return nil, err
	}
	nf, err := NewFile(osf, st.Size(), path)
	if err != nil {
		return nil, fmt.Errorf("after replaying the log: %w", err)
	}
	return nf, nil
}
