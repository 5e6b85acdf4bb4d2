package disk

import (
	"fmt"
	"io"
	"sort"
)

// LogInfo describes the state of a file's log and what opening it did.
type LogInfo struct {
	GUID   GUID   // the header's LogGuid; zero means the log is empty
	Offset uint64 // log region offset
	Length uint32 // log region length
	// Replayed is true when an active sequence was found and applied to the
	// in-memory view. The file itself is never written.
	Replayed bool
	// Entries is the number of entries in the replayed active sequence.
	Entries int
	// Descriptors counts the data and zero descriptors applied.
	Descriptors int
	// HeadSequence is the sequence number of the newest replayed entry.
	HeadSequence uint64
	// Note explains an unusual state, e.g. a LogGuid with no valid entries.
	Note string
}

// logEntry is a validated log entry.
type logEntry struct {
	offset uint32 // offset within the log
	hdr    LogEntryHeader
	writes []overlayWrite
}

// ring reads the circular log region.
type ring []byte

func (r ring) read(off uint32, n uint32) []byte {
	L := uint32(len(r))
	if off+n <= L {
		return r[off : off+n]
	}
	b := make([]byte, 0, n)
	b = append(b, r[off:]...)
	return append(b, r[:n-(L-off)]...)
}

// parseLogEntry validates the entry at off. It returns ok=false for anything
// that is not a complete, valid entry for logGUID; the reason is for
// diagnostics only, since invalid entries are expected in a circular log.
func parseLogEntry(r ring, off uint32, logGUID GUID) (logEntry, string) {
	L := uint32(len(r))
	e := logEntry{offset: off}
	h, ok := unmarshalLogEntryHeader(r.read(off, logEntryHeaderSize))
	if !ok {
		return e, "no entry signature"
	}
	switch {
	case h.EntryLength == 0 || h.EntryLength%LogSectorSize != 0 || h.EntryLength > L:
		return e, fmt.Sprintf("EntryLength %d invalid", h.EntryLength)
	case h.Tail%LogSectorSize != 0 || h.Tail >= L:
		return e, fmt.Sprintf("Tail %d invalid", h.Tail)
	case h.SequenceNumber == 0:
		return e, "SequenceNumber is zero"
	case h.LogGUID != logGUID:
		return e, "LogGuid does not match the header"
	}
	body := r.read(off, h.EntryLength)
	if got, want := h.Checksum, Checksum(body, 4); got != want {
		return e, fmt.Sprintf("Checksum stored 0x%08x, computed 0x%08x", got, want)
	}
	n := int(h.DescriptorCount)
	ds := descriptorSectors(n)
	if uint64(ds)*LogSectorSize > uint64(h.EntryLength) {
		return e, fmt.Sprintf("DescriptorCount %d does not fit in EntryLength %d", n, h.EntryLength)
	}
	dataSector := uint64(ds) * LogSectorSize
	for i := 0; i < n; i++ {
		d := body[logEntryHeaderSize+logDescriptorSize*i:]
		fileOff := le.Uint64(d[16:])
		if le.Uint64(d[24:]) != h.SequenceNumber {
			return e, fmt.Sprintf("descriptor %d SequenceNumber mismatch", i)
		}
		if fileOff%LogSectorSize != 0 || fileOff > 1<<62 {
			return e, fmt.Sprintf("descriptor %d FileOffset %d not 4 KiB aligned", i, fileOff)
		}
		switch string(d[0:4]) {
		case string(sigZeroDesc):
			zl := le.Uint64(d[8:])
			if zl%LogSectorSize != 0 || zl > 1<<62 {
				return e, fmt.Sprintf("descriptor %d ZeroLength %d invalid", i, zl)
			}
			e.writes = append(e.writes, overlayWrite{off: int64(fileOff), zero: int64(zl)})
		case string(sigDataDesc):
			if dataSector+LogSectorSize > uint64(h.EntryLength) {
				return e, fmt.Sprintf("descriptor %d has no data sector", i)
			}
			s := body[dataSector : dataSector+LogSectorSize]
			dataSector += LogSectorSize
			if string(s[0:4]) != string(sigDataSect) ||
				le.Uint32(s[4:]) != uint32(h.SequenceNumber>>32) ||
				le.Uint32(s[4092:]) != uint32(h.SequenceNumber) {
				return e, fmt.Sprintf("data sector for descriptor %d invalid or torn", i)
			}
			data := make([]byte, LogSectorSize)
			copy(data[0:8], d[8:16])
			copy(data[8:4092], s[8:4092])
			le.PutUint32(data[4092:], le.Uint32(d[4:]))
			e.writes = append(e.writes, overlayWrite{off: int64(fileOff), data: data})
		default:
			return e, fmt.Sprintf("descriptor %d signature %q", i, d[0:4])
		}
	}
	e.hdr = h
	return e, ""
}

// findActiveSequence implements the search of [MS-VHDX] §2.3.3 and returns
// the entries of the active sequence, tail first, or nil if none is valid.
func findActiveSequence(r ring, logGUID GUID) []logEntry {
	L := uint32(len(r))
	var candidate []logEntry
	var candidateSeq uint64
	curTail, oldTail := uint32(0), uint32(0)
	for {
		var seq []logEntry
		head := curTail
		for {
			e, why := parseLogEntry(r, head, logGUID)
			if why != "" || (len(seq) > 0 && e.hdr.SequenceNumber != seq[len(seq)-1].hdr.SequenceNumber+1) {
				break
			}
			seq = append(seq, e)
			head = (head + e.hdr.EntryLength) % L
			if head == curTail || len(seq) > int(L/LogSectorSize) {
				break // went all the way round
			}
		}
		valid := false
		if len(seq) > 0 {
			tail := seq[len(seq)-1].hdr.Tail
			for i := range seq {
				if seq[i].offset == tail {
					if last := seq[len(seq)-1].hdr.SequenceNumber; last > candidateSeq {
						candidate, candidateSeq = seq[i:], last
					}
					valid = true
					break
				}
			}
		}
		if !valid {
			curTail += LogSectorSize
			if curTail >= L {
				curTail = 0
			}
		} else {
			curTail = head
		}
		// The tail only moves forward; reaching or passing the old tail
		// again means the whole ring has been scanned.
		if curTail <= oldTail {
			return candidate
		}
		oldTail = curTail
	}
}

// replayLog finds and validates the active log sequence and returns the
// overlay holding its updates. The file is never written. A log that
// cannot be replayed stops every mode: the structures it would update
// cannot be trusted.
func (f *File) replayLog(base io.ReaderAt, fileSize int64) (*overlay, error) {
	h := f.Header
	info := &f.Log
	if h.LogGUID.IsZero() {
		f.logState = "clean"
		f.note("log: empty (LogGuid is zero)")
		return nil, nil
	}
	f.logState = "unreplayable"
	field := "header: LogOffset/LogLength"
	var err error
	switch {
	case h.LogVersion != 0:
		err = f.errorf("header: LogVersion", f.headerOffset(), ErrUnsupported, "log version %d (only 0 is defined)", h.LogVersion)
	case h.LogLength == 0 || h.LogLength%MiB != 0 || h.LogOffset%MiB != 0 || h.LogOffset < HeaderSectionSize:
		err = f.errorf(field, f.headerOffset(), ErrCorrupt, "log at %d length %d is not 1 MiB aligned after the header section", h.LogOffset, h.LogLength)
	case h.LogOffset+uint64(h.LogLength) > uint64(fileSize):
		err = f.errorf(field, f.headerOffset(), ErrTruncated, "log at %d length %d ends past the end of the %d-byte file", h.LogOffset, h.LogLength, fileSize)
	}
	if err != nil {
		f.note("log: cannot be replayed (see the problems)")
		return nil, f.fail(Fatal, "log", f.headerOffset(), err)
	}
	buf := make([]byte, h.LogLength)
	if _, err := base.ReadAt(buf, int64(h.LogOffset)); err != nil {
		f.note("log: cannot be replayed (see the problems)")
		return nil, f.fail(Fatal, "log", int64(h.LogOffset), f.wrap("log", int64(h.LogOffset), fmt.Errorf("reading the log: %w", err)))
	}
	seq := findActiveSequence(ring(buf), h.LogGUID)
	if len(seq) == 0 {
		// A log GUID is written to the header before the first entry; with
		// no complete entry, nothing was pending (write-ahead), so the
		// on-disk state is the consistent one.
		info.Note = "LogGuid is set but the log holds no valid entry for it; nothing to replay"
		f.logState = "clean (LogGuid set, no valid entry)"
		f.note("log: %s", info.Note)
		return nil, nil
	}
	headEntry := seq[len(seq)-1].hdr
	cut := uint64(fileSize) < headEntry.FlushedFileOffset
	if cut {
		// The log is whole, so replay it; what the file lost past its
		// end reads as missing.
		off := int64(h.LogOffset) + int64(seq[len(seq)-1].offset)
		err := f.errorf("log entry: FlushedFileOffset", off, ErrTruncated,
			"the file is %d bytes but the log says it was flushed at %d bytes", fileSize, headEntry.FlushedFileOffset)
		if err := f.fail(Salvageable, "log", off, err); err != nil {
			return nil, err
		}
	}
	o := &overlay{base: base, baseSize: fileSize, size: fileSize}
	if int64(headEntry.LastFileOffset) > o.size {
		o.size = int64(headEntry.LastFileOffset)
	}
	for _, e := range seq {
		for _, w := range e.writes {
			o.add(w)
			info.Descriptors++
		}
	}
	o.finish()
	// Past the end of a cut file, the replayed view holds zeros where
	// the file had data: only the file's own bytes are readable.
	f.avail = o.size
	if cut {
		f.avail = fileSize
	}
	info.Replayed = true
	f.logState = "dirty (replayed in memory)"
	info.Entries = len(seq)
	info.HeadSequence = headEntry.SequenceNumber
	f.note("log: dirty, %d entries (sequence %d to %d, %d descriptors) replayed in memory; the file itself is not written",
		len(seq), seq[0].hdr.SequenceNumber, headEntry.SequenceNumber, info.Descriptors)
	return o, nil
}

// overlayWrite is one replayed update: data, or zero bytes of zeros.
type overlayWrite struct {
	off  int64
	data []byte
	zero int64
}

func (w overlayWrite) end() int64 {
	if w.data != nil {
		return w.off + int64(len(w.data))
	}
	return w.off + w.zero
}

// overlay is an io.ReaderAt presenting a file as if its log had been
// replayed: the base file's bytes with the log's writes applied in order.
type overlay struct {
	base     io.ReaderAt
	baseSize int64
	size     int64
	writes   []overlayWrite
	spans    [][2]int64 // merged, sorted ranges touched by writes
}

func (o *overlay) add(w overlayWrite) {
	o.writes = append(o.writes, w)
	if e := w.end(); e > o.size {
		o.size = e
	}
}

func (o *overlay) finish() {
	spans := make([][2]int64, 0, len(o.writes))
	for _, w := range o.writes {
		spans = append(spans, [2]int64{w.off, w.end()})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var merged [][2]int64
	for _, s := range spans {
		if n := len(merged); n > 0 && s[0] <= merged[n-1][1] {
			if s[1] > merged[n-1][1] {
				merged[n-1][1] = s[1]
			}
			continue
		}
		merged = append(merged, s)
	}
	o.spans = merged
}

// touches reports whether [off, end) intersects a replayed write.
func (o *overlay) touches(off, end int64) bool {
	i := sort.Search(len(o.spans), func(i int) bool { return o.spans[i][1] > off })
	return i < len(o.spans) && o.spans[i][0] < end
}

// ReadAt reads the replayed view.
func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	var err error
	if rem := o.size - off; int64(len(p)) > rem {
		p, err = p[:rem], io.EOF
	}
	end := off + int64(len(p))
	// Bytes from the file itself, zeros past its end.
	if off < o.baseSize {
		n := len(p)
		if rem := o.baseSize - off; int64(n) > rem {
			n = int(rem)
		}
		if m, rerr := o.base.ReadAt(p[:n], off); rerr != nil && !(rerr == io.EOF && m == n) {
			return 0, rerr
		}
		clear(p[n:])
	} else {
		clear(p)
	}
	if !o.touches(off, end) {
		return len(p), err
	}
	for _, w := range o.writes {
		lo, hi := max(w.off, off), min(w.end(), end)
		if lo >= hi {
			continue
		}
		if w.data != nil {
			copy(p[lo-off:hi-off], w.data[lo-w.off:])
		} else {
			clear(p[lo-off : hi-off])
		}
	}
	return len(p), err
}
