package vmconfig

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// On-disk layout of the Hyper-V storage container (.vmcx, .vmrs, .vsv), as
// documented in openvmm's support/hvs_file/FORMAT.md and cross-checked with
// dissect.hypervisor. All integers are little-endian, structures packed.
const (
	headerSignature   = 0x01282014
	headerStructSize  = 46 // bytes covered by the header checksum
	headerCopy1Offset = 4096

	objectTableOffset     = 8192
	objectTableSignature  = 0x01110001
	objectTableHeaderSize = 8
	objectEntrySize       = 18

	keyTableSignature  = 0x0002
	keyTableHeaderSize = 10
	keyEntryHeaderSize = 21

	replayLogSignature  = 0x01110003
	replayLogHeaderSize = 34

	// Object types.
	objEmpty       = 0
	objObjectTable = 1
	objKeyTable    = 2
	objFileObject  = 3
	objFree        = 4
	objLastKnown   = 7 // 5 unknown header, 6 replay log, 7 change-tracking buffer (dissect.hypervisor)

	// Key types.
	keyFree   = 1
	keyInt    = 3
	keyUint   = 4
	keyDouble = 5
	keyString = 6
	keyArray  = 7
	keyBool   = 8
	keyNode   = 9

	keyFlagFileObject = 0x01
	fileObjectPtrSize = 12
	nodeDataSize      = 12
)

// OutOfLineThreshold is the size from which the binary format stores a value
// in a separate file object instead of inline in its key table (values of
// exactly this size are stored out of line).
const OutOfLineThreshold = 2048

// Reader limits. Real configuration files are tens of kilobytes; anything
// beyond these bounds is treated as corrupt (ErrLimit) or, for out-of-line
// values, left unloaded.
const (
	// MaxObjectTableEntries bounds the entry count of one object table.
	MaxObjectTableEntries = 1 << 16
	// MaxObjectTables bounds the number of chained object tables.
	MaxObjectTables = 4096
	// MaxKeyTableSize bounds the size of one key table.
	MaxKeyTableSize = 16 << 20
	// MaxKeyTableBytes bounds the total size of all key tables of a file.
	MaxKeyTableBytes = 64 << 20
	// MaxDepth bounds the nesting of keys; deeper keys are dropped with a
	// warning.
	MaxDepth = 256
	// MaxOutOfLineValue is the largest out-of-line value Parse loads.
	MaxOutOfLineValue = 16 << 20
	// MaxOutOfLineTotal is the most out-of-line data Parse loads from one
	// file (saved-state .vmrs files hold guest memory in gigabytes of
	// out-of-line values). Values beyond it stay unloaded; see Value.Loaded.
	MaxOutOfLineTotal = 32 << 20
)

// Format versions, (major << 8) | minor.
const (
	formatVersion1_0 = 0x0100 // WCHAR key names
	formatVersion3_1 = 0x0301 // object table entry checksum fixed
	formatVersion4_0 = 0x0400
)

// Parse reads a binary Hyper-V storage file (.vmcx, .vmrs, .vsv) of the given
// size from r. If r has a Name() string method (as *os.File does), errors
// name that file.
//
// Parse verifies every CRC-32 the format has (header copies, object table
// entries, key table headers, key entries, replay log header), picks the
// valid header copy with the higher sequence number, and builds the key tree
// from all key tables. Problems that leave the data usable (one bad header
// copy, orphaned keys, pending replay-log entries) become Tree.Warnings;
// anything else is a *FormatError wrapping one of the package's sentinel
// errors.
func Parse(r io.ReaderAt, size int64) (*Tree, error) {
	name := ""
	if n, ok := r.(interface{ Name() string }); ok {
		name = n.Name()
	}
	p := &binParser{r: r, size: size, file: name}
	return p.parse()
}

// ParseFile opens path read-only and parses it as a binary storage file.
func ParseFile(path string) (*Tree, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	p := &binParser{r: f, size: st.Size(), file: path}
	return p.parse()
}

type binParser struct {
	r    io.ReaderAt
	size int64
	file string

	hdr        HeaderInfo
	warnings   []string
	suppressed int

	keyTables   []objectRef
	fileObjects map[int64]bool

	loadedOutOfLine int64
	unloadedCount   int
	unloadedBytes   int64
}

type objectRef struct {
	entryOff int64 // offset of the object table entry
	off      int64
	size     int64
	flags    byte
}

// maxWarnings bounds the warnings kept for one file.
const maxWarnings = 100

func (p *binParser) warnf(format string, args ...any) {
	if len(p.warnings) >= maxWarnings {
		p.suppressed++
		return
	}
	p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
}

func (p *binParser) errf(structure string, off int64, sentinel error, format string, args ...any) error {
	return formatErr(p.file, structure, off, sentinel, format, args...)
}

// readAt reads exactly n bytes at off, reporting ErrTruncated if the file
// (as sized, or as the reader found it) ends first.
func (p *binParser) readAt(structure string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > p.size || n > p.size-off {
		return nil, p.errf(structure, off, ErrTruncated, "needs %d bytes but the file is %d bytes long", n, p.size)
	}
	buf := make([]byte, n)
	got, err := p.r.ReadAt(buf, off)
	if got == int(n) {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, p.errf(structure, off, ErrTruncated, "file ended after %d of %d bytes", got, n)
	}
	return nil, &FormatError{File: p.file, Structure: structure, Offset: off, Err: err}
}

// crcWithZeroedField computes CRC-32 (IEEE) of b with the 4 bytes at at
// treated as zero.
func crcWithZeroedField(b []byte, at int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, crc32.IEEETable, b[:at])
	c = crc32.Update(c, crc32.IEEETable, zero[:])
	return crc32.Update(c, crc32.IEEETable, b[at+4:])
}

func (p *binParser) parse() (*Tree, error) {
	if p.size < 0 {
		return nil, p.errf("file", -1, ErrCorrupt, "negative size %d", p.size)
	}
	if err := p.readHeaders(); err != nil {
		return nil, err
	}
	if err := p.readObjectTables(); err != nil {
		return nil, err
	}
	root, err := p.readKeys()
	if err != nil {
		return nil, err
	}
	if err := p.checkReplayLog(); err != nil {
		return nil, err
	}
	if p.unloadedCount > 0 {
		p.warnf("%d out-of-line values (%d bytes) were not loaded (limits: %d bytes per value, %d bytes per file)",
			p.unloadedCount, p.unloadedBytes, MaxOutOfLineValue, MaxOutOfLineTotal)
	}
	if p.suppressed > 0 {
		p.warnings = append(p.warnings, fmt.Sprintf("%d more warnings not shown", p.suppressed))
	}
	h := p.hdr
	return &Tree{root: root, format: FormatBinary, header: &h, warnings: p.warnings}, nil
}

type headerCopy struct {
	off     int64
	present bool
	raw     []byte
	problem string
	sumBad  bool
	sigOK   bool
}

func (p *binParser) readHeaders() error {
	var copies [2]headerCopy
	for i, off := range []int64{0, headerCopy1Offset} {
		c := &copies[i]
		c.off = off
		if p.size < off+headerStructSize {
			c.problem = "missing (file too short)"
			continue
		}
		raw, err := p.readAt(fmt.Sprintf("file header copy %d", i), off, headerStructSize)
		if err != nil {
			if errors.Is(err, ErrTruncated) {
				c.problem = "missing (file too short)"
				continue
			}
			return err
		}
		c.present, c.raw = true, raw
		sig := binary.LittleEndian.Uint32(raw[0:])
		if sig != headerSignature {
			c.problem = fmt.Sprintf("signature 0x%08x, want 0x%08x", sig, headerSignature)
			continue
		}
		c.sigOK = true
		stored := binary.LittleEndian.Uint32(raw[4:])
		if got := crcWithZeroedField(raw, 4); got != stored {
			c.problem = fmt.Sprintf("checksum 0x%08x, computed 0x%08x", stored, got)
			c.sumBad = true
		}
	}
	valid := func(i int) bool { return copies[i].present && copies[i].problem == "" }
	seq := func(i int) uint16 { return binary.LittleEndian.Uint16(copies[i].raw[8:]) }
	var use int
	switch {
	case valid(0) && valid(1):
		// Documented rule: the copy with the higher sequence number wins.
		// A plain comparison is used (no wrap-around arithmetic), as both
		// public readers do.
		if seq(1) > seq(0) {
			use = 1
		}
		if seq(0) == seq(1) {
			p.warnf("both header copies have sequence number %d; using copy 0", seq(0))
		}
	case valid(0):
		use = 0
		p.warnf("file header copy 1 at offset 0x%x is invalid (%s); using copy 0", copies[1].off, copies[1].problem)
	case valid(1):
		use = 1
		p.warnf("file header copy 0 at offset 0x0 is invalid (%s); using copy 1", copies[0].problem)
	default:
		sentinel := ErrBadSignature
		switch {
		case copies[0].sumBad || copies[1].sumBad:
			sentinel = ErrBadChecksum
		case !copies[0].present && !copies[1].present:
			sentinel = ErrTruncated
		}
		return p.errf("file header", 0, sentinel, "no valid copy: copy 0 (offset 0x0): %s; copy 1 (offset 0x%x): %s",
			copies[0].problem, copies[1].off, copies[1].problem)
	}
	raw := copies[use].raw
	p.hdr = HeaderInfo{
		Copy:            use,
		Sequence:        seq(use),
		FormatVersion:   binary.LittleEndian.Uint32(raw[10:]),
		DataVersion:     binary.LittleEndian.Uint32(raw[14:]),
		Alignment:       binary.LittleEndian.Uint32(raw[22:]),
		ReplayLogOffset: binary.LittleEndian.Uint64(raw[26:]),
	}
	v := p.hdr.FormatVersion
	switch {
	case v>>8 == 4:
		// Current layout (4.0), documented.
	case v>>8 >= 1 && v>>8 <= 3 && v&0xff <= 1:
		p.warnf("format version %d.%d predates 4.0; its layout is not publicly documented and was read as 4.0", v>>8, v&0xff)
	default:
		return p.errf(fmt.Sprintf("file header copy %d", use), copies[use].off, ErrUnsupportedVersion,
			"format version 0x%04x", v)
	}
	return nil
}

func (p *binParser) checkReplayLog() error {
	off := p.hdr.ReplayLogOffset
	const structure = "replay log header"
	if off == 0 {
		p.warnf("file header names no replay log")
		return nil
	}
	if off < objectTableOffset {
		return p.errf(structure, int64(off), ErrCorrupt, "offset overlaps the file headers")
	}
	if off > uint64(p.size) {
		return p.errf(structure, int64(min(off, math.MaxInt64)), ErrTruncated, "offset is past the end of the file (%d bytes)", p.size)
	}
	raw, err := p.readAt(structure, int64(off), replayLogHeaderSize)
	if err != nil {
		return err
	}
	if sig := binary.LittleEndian.Uint32(raw[0:]); sig != replayLogSignature {
		return p.errf(structure, int64(off), ErrBadSignature, "signature 0x%08x, want 0x%08x", sig, replayLogSignature)
	}
	stored := binary.LittleEndian.Uint32(raw[4:])
	if got := crcWithZeroedField(raw, 4); got != stored {
		return p.errf(structure, int64(off), ErrBadChecksum, "checksum 0x%08x, computed 0x%08x", stored, got)
	}
	n := binary.LittleEndian.Uint32(raw[8:])
	p.hdr.ReplayLogEntries = n
	if n > 0 {
		p.warnf("replay log at offset 0x%x holds %d uncommitted entries that were not replayed; values may be stale", off, n)
	}
	return nil
}

func (p *binParser) readObjectTables() error {
	p.fileObjects = map[int64]bool{}
	visited := map[int64]bool{objectTableOffset: true}
	queue := []int64{objectTableOffset}
	totalEntries := 0
	verify := p.hdr.FormatVersion >= formatVersion3_1
	if !verify {
		p.warnf("object table entry checksums not verified (format version before 3.1 computed them differently)")
	}
	for len(queue) > 0 {
		off := queue[0]
		queue = queue[1:]
		hdr, err := p.readAt("object table", off, objectTableHeaderSize)
		if err != nil {
			return err
		}
		if sig := binary.LittleEndian.Uint32(hdr[0:]); sig != objectTableSignature {
			return p.errf("object table", off, ErrBadSignature, "signature 0x%08x, want 0x%08x", sig, objectTableSignature)
		}
		count := int64(binary.LittleEndian.Uint32(hdr[4:]))
		if count > MaxObjectTableEntries {
			return p.errf("object table", off, ErrLimit, "%d entries (limit %d)", count, MaxObjectTableEntries)
		}
		totalEntries += int(count)
		if totalEntries > MaxObjectTableEntries*4 {
			return p.errf("object table", off, ErrLimit, "%d entries in all object tables", totalEntries)
		}
		raw, err := p.readAt("object table entries", off+objectTableHeaderSize, count*objectEntrySize)
		if err != nil {
			return err
		}
		for i := int64(0); i < count; i++ {
			e := raw[i*objectEntrySize : (i+1)*objectEntrySize]
			eoff := off + objectTableHeaderSize + i*objectEntrySize
			typ := e[0]
			structure := fmt.Sprintf("object table entry %d", i)
			if typ == objEmpty || typ == objFree {
				continue // unused; not verified (real files may leave them zeroed)
			}
			if typ > objLastKnown {
				p.warnf("object table at 0x%x: entry %d has unknown type %d; ignored", off, i, typ)
				continue
			}
			if verify && (typ == objObjectTable || typ == objKeyTable || typ == objFileObject) {
				stored := binary.LittleEndian.Uint32(e[1:])
				if got := crcWithZeroedField(e, 1); got != stored {
					return p.errf(structure, eoff, ErrBadChecksum, "checksum 0x%08x, computed 0x%08x", stored, got)
				}
			}
			objOff := binary.LittleEndian.Uint64(e[5:])
			objSize := int64(binary.LittleEndian.Uint32(e[13:]))
			flags := e[17]
			if objOff > math.MaxInt64 {
				return p.errf(structure, eoff, ErrCorrupt, "object offset 0x%x out of range", objOff)
			}
			o := int64(objOff)
			switch typ {
			case objObjectTable:
				if o < objectTableOffset {
					return p.errf(structure, eoff, ErrCorrupt, "next object table at 0x%x overlaps the file headers", o)
				}
				if visited[o] {
					return p.errf(structure, eoff, ErrCorrupt, "object table at 0x%x is listed twice (loop)", o)
				}
				if len(visited) >= MaxObjectTables {
					return p.errf(structure, eoff, ErrLimit, "more than %d object tables", MaxObjectTables)
				}
				visited[o] = true
				queue = append(queue, o)
			case objKeyTable:
				p.keyTables = append(p.keyTables, objectRef{entryOff: eoff, off: o, size: objSize, flags: flags})
			case objFileObject:
				p.fileObjects[o] = true
			}
		}
	}
	return nil
}

// keyTable is one loaded key table.
type keyTable struct {
	ref   objectRef
	index uint16
	seq   uint16
	data  []byte
}

// rawKey is a parsed key entry before it is linked into the tree.
type rawKey struct {
	v      *Value
	ptable uint16
	poff   uint32
	ins    uint32
	order  int
}

type nodeRef struct {
	table uint16
	off   uint32
}

func (p *binParser) readKeys() (*Value, error) {
	// Load and verify the key tables; where several share an index, keep the
	// one with the highest sequence number (as dissect.hypervisor does).
	var total int64
	byIndex := map[uint16]*keyTable{}
	for _, ref := range p.keyTables {
		structure := "key table"
		if ref.size < keyTableHeaderSize {
			return nil, p.errf(structure, ref.off, ErrCorrupt, "size %d is smaller than its header (object table entry at 0x%x)", ref.size, ref.entryOff)
		}
		if ref.size > MaxKeyTableSize {
			return nil, p.errf(structure, ref.off, ErrLimit, "size %d (limit %d)", ref.size, MaxKeyTableSize)
		}
		if ref.off < objectTableOffset {
			return nil, p.errf(structure, ref.off, ErrCorrupt, "overlaps the file headers (object table entry at 0x%x)", ref.entryOff)
		}
		total += ref.size
		if total > MaxKeyTableBytes {
			return nil, p.errf(structure, ref.off, ErrLimit, "key tables exceed %d bytes in all", MaxKeyTableBytes)
		}
		data, err := p.readAt(structure, ref.off, ref.size)
		if err != nil {
			return nil, err
		}
		if sig := binary.LittleEndian.Uint16(data[0:]); sig != keyTableSignature {
			return nil, p.errf(structure, ref.off, ErrBadSignature, "signature 0x%04x, want 0x%04x", sig, keyTableSignature)
		}
		stored := binary.LittleEndian.Uint32(data[6:])
		if got := crcWithZeroedField(data[:keyTableHeaderSize], 6); got != stored {
			return nil, p.errf(structure, ref.off, ErrBadChecksum, "header checksum 0x%08x, computed 0x%08x", stored, got)
		}
		kt := &keyTable{ref: ref, index: binary.LittleEndian.Uint16(data[2:]), seq: binary.LittleEndian.Uint16(data[4:]), data: data}
		if kt.index == 0 {
			p.warnf("key table at 0x%x has index 0, which parent references cannot name", ref.off)
		}
		if old, ok := byIndex[kt.index]; ok {
			keep := old
			if kt.seq > old.seq {
				keep = kt
			}
			p.warnf("key tables at 0x%x and 0x%x share index %d; using the one with sequence %d (at 0x%x)",
				old.ref.off, kt.ref.off, kt.index, keep.seq, keep.ref.off)
			byIndex[kt.index] = keep
			continue
		}
		byIndex[kt.index] = kt
	}
	indices := make([]int, 0, len(byIndex))
	for i := range byIndex {
		indices = append(indices, int(i))
	}
	sort.Ints(indices)

	var keys []rawKey
	nodes := map[nodeRef]*Value{}
	for _, i := range indices {
		kt := byIndex[uint16(i)]
		var err error
		keys, err = p.parseKeyTable(kt, keys, nodes)
		if err != nil {
			return nil, err
		}
	}
	return p.link(keys, nodes), nil
}

func (p *binParser) parseKeyTable(kt *keyTable, keys []rawKey, nodes map[nodeRef]*Value) ([]rawKey, error) {
	data := kt.data
	end := len(data)
	pos := keyTableHeaderSize
	utf16Names := p.hdr.FormatVersion == formatVersion1_0
	// The storage DLL walks entries while offset + header size < end (see
	// FORMAT.md, "Key table filling"); a shorter tail is slack.
	for pos+keyEntryHeaderSize < end {
		h := data[pos : pos+keyEntryHeaderSize]
		abs := kt.ref.off + int64(pos)
		typ := h[0]
		flags := h[1]
		size := int(binary.LittleEndian.Uint32(h[2:]))
		if size == 0 {
			if !allZero(data[pos:]) {
				p.warnf("key table %d at 0x%x: zero-sized entry at 0x%x followed by non-zero data; rest of the table ignored", kt.index, kt.ref.off, abs)
			}
			break
		}
		structure := fmt.Sprintf("key table %d entry", kt.index)
		if size < keyEntryHeaderSize || size > end-pos {
			return nil, p.errf(structure, abs, ErrCorrupt, "entry size %d does not fit the %d bytes left in the table", size, end-pos)
		}
		entry := data[pos : pos+size]
		next := pos + size
		if typ == keyFree {
			pos = next
			continue
		}
		ptable := binary.LittleEndian.Uint16(h[6:])
		poff := binary.LittleEndian.Uint32(h[8:])
		stored := binary.LittleEndian.Uint32(h[12:])
		ins := binary.LittleEndian.Uint32(h[16:])
		nameLen := int(h[20])
		if utf16Names {
			nameLen *= 2
		}
		if nameLen > size-keyEntryHeaderSize {
			return nil, p.errf(structure, abs, ErrCorrupt, "name of %d bytes overruns the %d-byte entry", nameLen, size)
		}
		nameBytes := entry[keyEntryHeaderSize : keyEntryHeaderSize+nameLen]
		name := p.decodeName(nameBytes, utf16Names, abs)
		body := entry[keyEntryHeaderSize+nameLen:]

		if typ < keyInt || typ > keyNode {
			p.warnf("key table %d: entry %q at 0x%x has unknown type %d; ignored", kt.index, name, abs, typ)
			pos = next
			continue
		}
		structure = fmt.Sprintf("key table %d entry %q", kt.index, name)

		// The meaningful length of the data that follows the name.
		var valLen int
		switch {
		case flags&keyFlagFileObject != 0 && typ != keyNode:
			valLen = fileObjectPtrSize
		case typ == keyInt || typ == keyUint || typ == keyDouble:
			valLen = 8
		case typ == keyBool:
			valLen = 4
		case typ == keyNode:
			// Documented as 12 bytes; the DLL reportedly counts 8. Accept 8.
			valLen = min(nodeDataSize, len(body))
			if valLen < 8 {
				valLen = nodeDataSize
			}
		case typ == keyString || typ == keyArray:
			if len(body) < 4 {
				return nil, p.errf(structure, abs, ErrCorrupt, "value length prefix missing")
			}
			n := int64(binary.LittleEndian.Uint32(body))
			if n > int64(len(body)-4) {
				return nil, p.errf(structure, abs, ErrCorrupt, "value of %d bytes overruns the entry (%d bytes left)", n, len(body)-4)
			}
			valLen = 4 + int(n)
		}
		if valLen > len(body) {
			return nil, p.errf(structure, abs, ErrCorrupt, "%d-byte value overruns the entry (%d bytes left)", valLen, len(body))
		}
		if !entryChecksumOK(entry, keyEntryHeaderSize+nameLen, valLen, typ == keyNode, stored) {
			prefix := entry[:keyEntryHeaderSize+nameLen+valLen]
			return nil, p.errf(structure, abs, ErrBadChecksum, "checksum 0x%08x, computed 0x%08x", stored, crcWithZeroedField(prefix, 12))
		}

		v := &Value{name: name, loaded: true}
		val := body[:valLen]
		if flags&keyFlagFileObject != 0 && typ != keyNode {
			if err := p.loadFileObject(v, typ, val, structure, abs); err != nil {
				return nil, err
			}
		} else if err := p.decodeInline(v, typ, val, structure, abs); err != nil {
			return nil, err
		}
		if typ == keyNode {
			nodes[nodeRef{kt.index, uint32(pos)}] = v
		}
		keys = append(keys, rawKey{v: v, ptable: ptable, poff: poff, ins: ins, order: len(keys)})
		pos = next
	}
	return keys, nil
}

// entryChecksumOK checks a key entry's CRC-32. FORMAT.md says it covers the
// 21-byte header (checksum zeroed), the name and the value's meaningful
// bytes, without slack. Because that statement has not been checked against
// files written by Hyper-V itself here, two near variants are also
// accepted: node data counted as 8 bytes (the size the DLL reports for
// nodes, per dissect.hypervisor), and the whole entry including slack.
func entryChecksumOK(entry []byte, dataStart, valLen int, isNode bool, stored uint32) bool {
	if crcWithZeroedField(entry[:dataStart+valLen], 12) == stored {
		return true
	}
	if isNode && valLen > 8 && crcWithZeroedField(entry[:dataStart+8], 12) == stored {
		return true
	}
	return dataStart+valLen < len(entry) && crcWithZeroedField(entry, 12) == stored
}

func (p *binParser) decodeName(b []byte, utf16Names bool, abs int64) string {
	var s string
	if utf16Names {
		s = decodeUTF16(b)
	} else {
		s = string(b)
		if !utf8.ValidString(s) {
			p.warnf("key name at 0x%x is not valid UTF-8", abs)
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
	}
	return strings.TrimRight(s, "\x00")
}

// decodeUTF16 decodes little-endian UTF-16, ignoring a trailing odd byte and
// replacing unpaired surrogates with U+FFFD.
func decodeUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// decodeInline fills v from inline value bytes (with the u32 length prefix
// for strings and arrays).
func (p *binParser) decodeInline(v *Value, typ byte, val []byte, structure string, abs int64) error {
	switch typ {
	case keyString, keyArray:
		return p.decodeData(v, typ, val[4:], structure, abs)
	default:
		return p.decodeData(v, typ, val, structure, abs)
	}
}

// decodeData fills v from the value's content bytes.
func (p *binParser) decodeData(v *Value, typ byte, b []byte, structure string, abs int64) error {
	need := 0
	switch typ {
	case keyInt, keyUint, keyDouble:
		need = 8
	case keyBool:
		need = 4
	}
	if len(b) < need {
		return p.errf(structure, abs, ErrCorrupt, "%d-byte value, want %d", len(b), need)
	}
	switch typ {
	case keyInt:
		v.kind, v.num = KindInt, binary.LittleEndian.Uint64(b)
	case keyUint:
		v.kind, v.num = KindUint, binary.LittleEndian.Uint64(b)
	case keyDouble:
		v.kind, v.num = KindDouble, binary.LittleEndian.Uint64(b)
	case keyBool:
		v.kind = KindBool
		if binary.LittleEndian.Uint32(b) != 0 {
			v.num = 1
		}
	case keyString:
		v.kind = KindString
		if len(b)%2 != 0 {
			p.warnf("%s at 0x%x: UTF-16 string has an odd byte count %d", structure, abs, len(b))
		}
		v.str = strings.TrimRight(decodeUTF16(b), "\x00")
	case keyArray:
		v.kind = KindBytes
		v.data = append([]byte(nil), b...)
	case keyNode:
		v.kind = KindNode
	}
	return nil
}

// loadFileObject resolves a value stored out of line.
func (p *binParser) loadFileObject(v *Value, typ byte, ptr []byte, structure string, abs int64) error {
	size := int64(binary.LittleEndian.Uint32(ptr[0:]))
	off64 := binary.LittleEndian.Uint64(ptr[4:])
	if off64 > math.MaxInt64 {
		return p.errf(structure, abs, ErrCorrupt, "file object offset 0x%x out of range", off64)
	}
	off := int64(off64)
	if off < objectTableOffset {
		return p.errf(structure, abs, ErrCorrupt, "file object at 0x%x overlaps the file headers", off)
	}
	if off > p.size || size > p.size-off {
		return p.errf(structure, abs, ErrTruncated, "file object [0x%x, +%d) extends past the end of the file (%d bytes)", off, size, p.size)
	}
	if !p.fileObjects[off] {
		p.warnf("%s at 0x%x: file object at 0x%x is not listed in the object table", structure, abs, off)
	}
	v.outOfLine, v.dataOff, v.dataSize = true, off, size
	switch typ {
	case keyString, keyArray:
		if size > MaxOutOfLineValue || p.loadedOutOfLine+size > MaxOutOfLineTotal {
			v.loaded = false
			v.kind = KindBytes
			if typ == keyString {
				v.kind = KindString
			}
			p.unloadedCount++
			p.unloadedBytes += size
			return nil
		}
		p.loadedOutOfLine += size
	default:
		size = min(size, 8) // fixed-size types need at most 8 bytes
	}
	b, err := p.readAt(structure+" file object", off, size)
	if err != nil {
		return err
	}
	return p.decodeData(v, typ, b, structure, abs)
}

// link builds the tree from parsed keys: parent references become
// children lists ordered by insertion sequence; keys whose parent is
// missing, or that are not reachable from the root, are reported.
func (p *binParser) link(keys []rawKey, nodes map[nodeRef]*Value) *Value {
	root := newRoot()
	orphans := 0
	var firstOrphan string
	for i := range keys {
		k := &keys[i]
		var parent *Value
		if k.ptable == 0 {
			parent = root
		} else if n, ok := nodes[nodeRef{k.ptable, k.poff}]; ok {
			parent = n
		} else {
			orphans++
			if firstOrphan == "" {
				firstOrphan = fmt.Sprintf("%q (parent table %d offset 0x%x)", k.v.name, k.ptable, k.poff)
			}
			continue
		}
		addChild(parent, k.v)
	}
	if orphans > 0 {
		p.warnf("%d keys refer to a parent node that does not exist, e.g. %s; dropped", orphans, firstOrphan)
	}

	// Insertion sequence order (stable on table order for ties).
	seqOf := make(map[*Value]rawKey, len(keys))
	for _, k := range keys {
		seqOf[k.v] = k
	}
	sortChildren := func(n *Value) {
		sort.SliceStable(n.children, func(a, b int) bool {
			ka, kb := seqOf[n.children[a]], seqOf[n.children[b]]
			if ka.ins != kb.ins {
				return ka.ins < kb.ins
			}
			return ka.order < kb.order
		})
	}

	// Walk from the root: only reachable keys form the tree, and depth is
	// bounded. A key is reachable at most once because it has one parent.
	reached := 0
	dropped := 0
	dupWarned := 0
	type item struct {
		v     *Value
		depth int
	}
	stack := []item{{root, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := it.v
		if n.kind != KindNode {
			continue
		}
		if len(n.children) > 0 && it.depth >= MaxDepth {
			dropped += len(n.children)
			n.children = nil
			continue
		}
		sortChildren(n)
		seen := make(map[string]bool, len(n.children))
		for _, c := range n.children {
			if seen[c.name] && dupWarned < 10 {
				dupWarned++
				p.warnf("node %s holds more than one key named %q; lookups return the first", n.Path(), c.name)
			}
			seen[c.name] = true
			reached++
			stack = append(stack, item{c, it.depth + 1})
		}
	}
	if dropped > 0 {
		p.warnf("keys nested deeper than %d levels were dropped (%d subtrees)", MaxDepth, dropped)
	}
	attached := len(keys) - orphans
	if unreachable := attached - reached - dropped; unreachable > 0 {
		p.warnf("%d keys are not reachable from the root (their parent chain loops or was dropped); ignored", unreachable)
	}
	return root
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
