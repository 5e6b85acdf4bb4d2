// Package vmcxtest builds Hyper-V configuration files for tests: binary
// storage files (.vmcx/.vmrs) laid out as openvmm's
// support/hvs_file/FORMAT.md describes, and 2012 R2-style XML.
//
// A tree is given as nested Go values:
//
//	tree := vmcxtest.Node{
//		{Name: "configuration", Value: vmcxtest.Node{
//			{Name: "properties", Value: vmcxtest.Node{
//				{Name: "name", Value: "web01"},
//				{Name: "creation_time", Value: vmcxtest.FileTimeBytes(t)},
//			}},
//		}},
//	}
//	data := vmcxtest.Build(tree, nil)
//
// Leaf values map to key types: int, int32, int64 → Int; uint, uint32,
// uint64 → UInt; float64 → Double; string → String (UTF-16LE); []byte →
// Array; bool → Bool. Node (ordered) and map[string]any (sorted by name)
// are nodes. OutOfLine forces a string or []byte into a file object; Raw
// writes an arbitrary entry. ConfigTree builds a realistic VM
// configuration from a short description.
//
// The package depends only on the standard library and is meant for tests
// (including other packages' fixtures); it is not a general-purpose writer.
package vmcxtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"
	"time"
	"unicode/utf16"
)

// Item is one named key of a Node.
type Item struct {
	Name  string // the key's name
	Value any    // a leaf value, or a Node / map[string]any for a node
}

// Node is a node whose children keep the given order (their insertion
// sequence numbers follow it).
type Node []Item

// OutOfLine wraps a string or []byte value to store it in a file object
// whatever its size.
type OutOfLine struct {
	Value any // a string or []byte
}

// Raw is a key entry written verbatim: Type and Flags bytes and the data
// that follows the name (no length prefix is added). Use it for unknown key
// types or malformed values.
type Raw struct {
	Type  byte   // key type byte
	Flags byte   // key flags byte (0x01: points to a file object)
	Data  []byte // bytes after the name, written as given
}

// Header holds the fields of one file header copy (FORMAT.md, "File
// Header"). Options.EditHeader may change them before the checksum is
// computed.
type Header struct {
	Signature           uint32 // 0x01282014
	Sequence            uint16 // the higher valid copy wins
	FormatVersion       uint32 // (major << 8) | minor
	DataVersion         uint32 // application-defined
	Flags               uint32 // reserved
	Alignment           uint32 // DataAlignmentInBytes
	ReplayLogOffset     uint64 // offset of the replay log header
	ReplayLogSize       uint64 // size of the replay log
	ReplayLogHeaderSize uint32 // size of the replay log header area
}

// Options adjust the layout. The zero value (or nil) writes a file like
// openvmm's writer: 4 KiB alignment and key tables, values of 2048 bytes or
// more out of line, header copy 0 with sequence 1 and copy 1 with sequence 0.
type Options struct {
	// FormatVersion defaults to 0x0400.
	FormatVersion uint32
	// Sequences are the header copies' sequence numbers; {0, 0} means {1, 0}.
	Sequences [2]uint16
	// EditHeader, if set, may modify each header copy (copy is 0 or 1)
	// before its checksum is computed.
	EditHeader func(copy int, h *Header)
	// KeyTableSize is the size of each key table object; default 4096.
	KeyTableSize int
	// MaxEntriesPerKeyTable, if positive, starts a new key table after that
	// many entries, spreading keys over several tables.
	MaxEntriesPerKeyTable int
	// ReverseKeyTables lists and places key tables in reverse index order,
	// so children's tables come before their parents'.
	ReverseKeyTables bool
	// ObjectTableSlots is the number of entries per object table including
	// the chain slot; default (4096-8)/18 = 227. Small values force chained
	// object tables.
	ObjectTableSlots int
	// OutOfLineThreshold is the value size from which strings and arrays
	// go to file objects; default 2048.
	OutOfLineThreshold int
	// ReplayLogEntries is written as the replay log's current entry count
	// (a "dirty" file); default 0.
	ReplayLogEntries uint32
	// Compact packs objects without 4 KiB alignment (smaller files, e.g.
	// for fuzz seeds). Header copies and the first object table stay at
	// their fixed offsets.
	Compact bool
	// UTF16Names writes key names as UTF-16LE, NameSizeInSymbols counting
	// UTF-16 code units (format 1.0); set FormatVersion to 0x0100 with it.
	UTF16Names bool
}

// Image is a built file with the offsets of its structures, for tests that
// damage specific parts.
type Image struct {
	// Data is the file's content.
	Data []byte
	// HeaderOffsets are 0 and 4096.
	HeaderOffsets [2]int64
	// ReplayLogOffset is the replay log header's offset.
	ReplayLogOffset int64
	// ObjectTableOffsets lists the object tables, the root (8192) first.
	ObjectTableOffsets []int64
	// ObjectEntries lists the used object table entries (key tables, file
	// objects, chain links).
	ObjectEntries []ObjectEntry
	// KeyTableOffsets lists the key tables by index (KeyTableOffsets[0] is
	// table 1).
	KeyTableOffsets []int64
	// Entries maps each key's path ("/configuration/properties/name") to
	// the offset of its key table entry.
	Entries map[string]int64
	// FileObjects maps each out-of-line key's path to its data offset.
	FileObjects map[string]int64
}

// ObjectEntry is one used object table entry.
type ObjectEntry struct {
	Offset int64 // of the 18-byte entry
	Type   byte  // 1 object table, 2 key table, 3 file object
	Target int64 // the object's offset
}

// Format constants (FORMAT.md).
const (
	HeaderSignature      = 0x01282014
	ObjectTableSignature = 0x01110001
	KeyTableSignature    = 0x0002
	ReplayLogSignature   = 0x01110003

	headerSize      = 46
	objHdrSize      = 8
	objEntrySize    = 18
	ktHdrSize       = 10
	entryHdrSize    = 21
	replayHdrSize   = 34
	rootObjectTable = 8192
	pageSize        = 4096
)

// Key types (FORMAT.md, "Key Types").
const (
	TypeFree   = 1
	TypeInt    = 3
	TypeUint   = 4
	TypeDouble = 5
	TypeString = 6
	TypeArray  = 7
	TypeBool   = 8
	TypeNode   = 9
)

// Build builds a binary storage file from tree (a Node or map[string]any).
// It panics if the tree holds an unsupported value; use BuildImage to get
// an error instead.
func Build(tree any, opts *Options) []byte {
	img, err := BuildImage(tree, opts)
	if err != nil {
		panic("vmcxtest: " + err.Error())
	}
	return img.Data
}

type entry struct {
	path      string
	name      string
	parent    int // index into entries, -1 for root
	typ       byte
	flags     byte
	data      []byte // data after the name (for out-of-line: filled later)
	blob      []byte // out-of-line content
	outOfLine bool
	ins       uint32
	children  int
	// layout
	table  int // 1-based key table index
	off    int // offset within the table
	size   int // entry size including absorbed slack
	nameB  []byte
	nameSz byte
}

// BuildImage builds a binary storage file and reports where its structures
// are.
func BuildImage(tree any, opts *Options) (*Image, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.FormatVersion == 0 {
		o.FormatVersion = 0x0400
	}
	if o.Sequences == [2]uint16{} {
		o.Sequences = [2]uint16{1, 0}
	}
	if o.KeyTableSize == 0 {
		o.KeyTableSize = pageSize
	}
	if o.ObjectTableSlots == 0 {
		o.ObjectTableSlots = (pageSize - objHdrSize) / objEntrySize
	}
	if o.ObjectTableSlots < 2 {
		return nil, errors.New("ObjectTableSlots must be at least 2")
	}
	if o.OutOfLineThreshold == 0 {
		o.OutOfLineThreshold = 2048
	}

	var entries []*entry
	if err := flatten(tree, "", -1, &entries, &o); err != nil {
		return nil, err
	}

	// Pack entries into key tables (FORMAT.md, "Key table filling": entries
	// fill the table exactly; a gap of 1..21 bytes is absorbed by the last
	// entry, a larger gap gets a Free entry).
	usable := o.KeyTableSize - ktHdrSize
	type table struct{ entries []*entry }
	var tables []*table
	cur := &table{}
	used := 0
	for _, e := range entries {
		if e.size > usable {
			return nil, fmt.Errorf("key %s needs %d bytes, more than a %d-byte key table holds", e.path, e.size, o.KeyTableSize)
		}
		full := used+e.size > usable || (o.MaxEntriesPerKeyTable > 0 && len(cur.entries) >= o.MaxEntriesPerKeyTable)
		// Never leave 1..21 bytes that no entry could use if the next entry
		// is what would leave them and the table already has entries: the
		// gap is absorbed when the table is closed.
		if full && len(cur.entries) > 0 {
			tables = append(tables, cur)
			cur, used = &table{}, 0
		}
		e.table = len(tables) + 1
		e.off = ktHdrSize + used
		used += e.size
		cur.entries = append(cur.entries, e)
	}
	if len(cur.entries) > 0 || len(tables) == 0 {
		tables = append(tables, cur)
	}
	// Absorb small gaps into the last entry of each table.
	for _, t := range tables {
		if len(t.entries) == 0 {
			continue
		}
		last := t.entries[len(t.entries)-1]
		gap := ktHdrSize + usable - (last.off + last.size)
		if gap > 0 && gap <= entryHdrSize {
			last.size += gap
		}
	}

	// Parent references and node data need the layout.
	for _, e := range entries {
		if e.typ == TypeNode {
			e.data = make([]byte, 12)
			binary.LittleEndian.PutUint32(e.data[8:], uint32(e.children+1))
		}
	}

	align := func(n int64) int64 {
		if o.Compact {
			return n
		}
		return (n + pageSize - 1) / pageSize * pageSize
	}
	objTableSize := int64(objHdrSize + o.ObjectTableSlots*objEntrySize)

	img := &Image{
		HeaderOffsets: [2]int64{0, pageSize},
		Entries:       map[string]int64{},
		FileObjects:   map[string]int64{},
	}
	end := rootObjectTable + align(objTableSize)

	// Key tables.
	ktOffsets := make([]int64, len(tables))
	order := make([]int, len(tables))
	for i := range order {
		order[i] = i
	}
	if o.ReverseKeyTables {
		for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
			order[i], order[j] = order[j], order[i]
		}
	}
	for _, i := range order {
		ktOffsets[i] = end
		end += align(int64(o.KeyTableSize))
	}
	// File objects.
	for _, e := range entries {
		if !e.outOfLine {
			continue
		}
		img.FileObjects[e.path] = end
		e.data = make([]byte, 12)
		binary.LittleEndian.PutUint32(e.data[0:], uint32(len(e.blob)))
		binary.LittleEndian.PutUint64(e.data[4:], uint64(end))
		end += align(int64(max(len(e.blob), 1)))
	}
	// Replay log.
	replayOff := end
	replaySize := int64(pageSize)
	if o.Compact {
		replaySize = replayHdrSize
	}
	end += align(replaySize)

	// Object table entries: key tables (in placement order), file objects.
	type objEnt struct {
		typ    byte
		off    int64
		size   uint32
		flags  byte
		isLink bool
	}
	var objs []objEnt
	for _, i := range order {
		objs = append(objs, objEnt{typ: 2, off: ktOffsets[i], size: uint32(o.KeyTableSize), flags: 1})
	}
	for _, e := range entries {
		if e.outOfLine {
			objs = append(objs, objEnt{typ: 3, off: img.FileObjects[e.path], size: uint32(align(int64(max(len(e.blob), 1)))), flags: 1})
		}
	}
	perTable := o.ObjectTableSlots - 1
	nTables := max(1, (len(objs)+perTable-1)/perTable)
	otOffsets := []int64{rootObjectTable}
	for i := 1; i < nTables; i++ {
		otOffsets = append(otOffsets, end)
		end += align(objTableSize)
	}
	img.ObjectTableOffsets = otOffsets
	img.KeyTableOffsets = ktOffsets
	img.ReplayLogOffset = replayOff

	buf := make([]byte, end)

	// Object tables.
	for t := 0; t < nTables; t++ {
		base := otOffsets[t]
		binary.LittleEndian.PutUint32(buf[base:], ObjectTableSignature)
		binary.LittleEndian.PutUint32(buf[base+4:], uint32(o.ObjectTableSlots))
		for s := 0; s < o.ObjectTableSlots; s++ {
			eoff := base + objHdrSize + int64(s)*objEntrySize
			var oe objEnt // empty
			i := t*perTable + s
			switch {
			case s < perTable && i < len(objs):
				oe = objs[i]
			case s == perTable && t+1 < nTables:
				oe = objEnt{typ: 1, off: otOffsets[t+1], size: uint32(objTableSize), flags: 1}
			}
			e := buf[eoff : eoff+objEntrySize]
			e[0] = oe.typ
			binary.LittleEndian.PutUint64(e[5:], uint64(oe.off))
			binary.LittleEndian.PutUint32(e[13:], oe.size)
			e[17] = oe.flags
			ResealObjectEntry(buf, eoff)
			if oe.typ != 0 {
				img.ObjectEntries = append(img.ObjectEntries, ObjectEntry{Offset: eoff, Type: oe.typ, Target: oe.off})
			}
		}
	}

	// Key tables.
	for ti, t := range tables {
		base := ktOffsets[ti]
		binary.LittleEndian.PutUint16(buf[base:], KeyTableSignature)
		binary.LittleEndian.PutUint16(buf[base+2:], uint16(ti+1))
		binary.LittleEndian.PutUint16(buf[base+4:], 1)
		ResealKeyTable(buf, base)
		used := ktHdrSize
		for _, e := range t.entries {
			var pt uint16
			var po uint32
			if e.parent >= 0 {
				p := entries[e.parent]
				pt, po = uint16(p.table), uint32(p.off)
			}
			at := base + int64(e.off)
			h := buf[at : at+entryHdrSize]
			h[0], h[1] = e.typ, e.flags
			binary.LittleEndian.PutUint32(h[2:], uint32(e.size))
			binary.LittleEndian.PutUint16(h[6:], pt)
			binary.LittleEndian.PutUint32(h[8:], po)
			binary.LittleEndian.PutUint32(h[16:], e.ins)
			h[20] = e.nameSz
			n := copy(buf[at+entryHdrSize:], e.nameB)
			copy(buf[at+entryHdrSize+int64(n):], e.data)
			meaningful := entryHdrSize + len(e.nameB) + len(e.data)
			binary.LittleEndian.PutUint32(h[12:], checksum(buf[at:at+int64(meaningful)], 12))
			img.Entries[e.path] = at
			used = e.off + e.size
		}
		if gap := ktHdrSize + usable - used; gap > 0 {
			at := base + int64(used)
			buf[at] = TypeFree
			binary.LittleEndian.PutUint32(buf[at+2:], uint32(gap))
		}
	}

	// File object contents.
	for _, e := range entries {
		if e.outOfLine {
			copy(buf[img.FileObjects[e.path]:], e.blob)
		}
	}

	// Replay log header.
	rl := buf[replayOff : replayOff+replayHdrSize]
	binary.LittleEndian.PutUint32(rl[0:], ReplayLogSignature)
	binary.LittleEndian.PutUint32(rl[8:], o.ReplayLogEntries)
	binary.LittleEndian.PutUint32(rl[13:], uint32((pageSize-replayHdrSize)/28))
	ResealReplayLog(buf, replayOff)

	// Header copies.
	for c := 0; c < 2; c++ {
		h := Header{
			Signature:           HeaderSignature,
			Sequence:            o.Sequences[c],
			FormatVersion:       o.FormatVersion,
			Alignment:           pageSize,
			ReplayLogOffset:     uint64(replayOff),
			ReplayLogSize:       uint64(replaySize),
			ReplayLogHeaderSize: uint32(replaySize),
		}
		if o.EditHeader != nil {
			o.EditHeader(c, &h)
		}
		PutHeader(buf, int64(c)*pageSize, h)
	}
	img.Data = buf
	return img, nil
}

// PutHeader writes h as a header copy at off and computes its checksum.
func PutHeader(buf []byte, off int64, h Header) {
	b := buf[off : off+headerSize]
	binary.LittleEndian.PutUint32(b[0:], h.Signature)
	binary.LittleEndian.PutUint16(b[8:], h.Sequence)
	binary.LittleEndian.PutUint32(b[10:], h.FormatVersion)
	binary.LittleEndian.PutUint32(b[14:], h.DataVersion)
	binary.LittleEndian.PutUint32(b[18:], h.Flags)
	binary.LittleEndian.PutUint32(b[22:], h.Alignment)
	binary.LittleEndian.PutUint64(b[26:], h.ReplayLogOffset)
	binary.LittleEndian.PutUint64(b[34:], h.ReplayLogSize)
	binary.LittleEndian.PutUint32(b[42:], h.ReplayLogHeaderSize)
	ResealHeader(buf, off)
}

// checksum is CRC-32 (IEEE) of b with the 4 bytes at at taken as zero.
func checksum(b []byte, at int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, crc32.IEEETable, b[:at])
	c = crc32.Update(c, crc32.IEEETable, zero[:])
	return crc32.Update(c, crc32.IEEETable, b[at+4:])
}

// The Reseal functions recompute one structure's checksum in place. They
// are meant for tests that damage a field and want only the structural
// check to fire; a structure that does not fit in buf is left alone.

// ResealHeader recomputes the checksum of the header copy at off.
func ResealHeader(buf []byte, off int64) {
	if b, ok := span(buf, off, headerSize); ok {
		binary.LittleEndian.PutUint32(b[4:], checksum(b, 4))
	}
}

// ResealObjectEntry recomputes the checksum of the object table entry at off.
func ResealObjectEntry(buf []byte, off int64) {
	if b, ok := span(buf, off, objEntrySize); ok {
		binary.LittleEndian.PutUint32(b[1:], checksum(b, 1))
	}
}

// ResealKeyTable recomputes the header checksum of the key table at off.
func ResealKeyTable(buf []byte, off int64) {
	if b, ok := span(buf, off, ktHdrSize); ok {
		binary.LittleEndian.PutUint32(b[6:], checksum(b, 6))
	}
}

// ResealReplayLog recomputes the checksum of the replay log header at off.
func ResealReplayLog(buf []byte, off int64) {
	if b, ok := span(buf, off, replayHdrSize); ok {
		binary.LittleEndian.PutUint32(b[4:], checksum(b, 4))
	}
}

// ResealEntry recomputes the checksum of the key entry at off over its
// header, name and meaningful value bytes, as the writer does. It knows the
// value length of the documented key types only; for others, and where the
// value would overrun the entry or buf, it covers what there is.
func ResealEntry(buf []byte, off int64, utf16Names bool) {
	h, ok := span(buf, off, entryHdrSize)
	if !ok {
		return
	}
	size := int64(binary.LittleEndian.Uint32(h[2:]))
	nameLen := int64(h[20])
	if utf16Names {
		nameLen *= 2
	}
	dataAt := off + entryHdrSize + nameLen
	var valLen int64
	switch {
	case h[1]&1 != 0 && h[0] != TypeNode:
		valLen = 12
	case h[0] == TypeInt || h[0] == TypeUint || h[0] == TypeDouble:
		valLen = 8
	case h[0] == TypeBool:
		valLen = 4
	case h[0] == TypeNode:
		valLen = 12
	case h[0] == TypeString || h[0] == TypeArray:
		if p, ok := span(buf, dataAt, 4); ok {
			valLen = 4 + int64(binary.LittleEndian.Uint32(p))
		}
	default:
		valLen = size - entryHdrSize - nameLen
	}
	end := min(dataAt+valLen, off+size, int64(len(buf)))
	if end < off+entryHdrSize {
		end = off + entryHdrSize
	}
	binary.LittleEndian.PutUint32(h[12:], checksum(buf[off:end], 12))
}

func span(buf []byte, off, n int64) ([]byte, bool) {
	if off < 0 || off > int64(len(buf)) || n > int64(len(buf))-off {
		return nil, false
	}
	return buf[off : off+n], true
}

// flatten appends the keys under tree in pre-order.
func flatten(tree any, path string, parent int, out *[]*entry, o *Options) error {
	var items []Item
	switch t := tree.(type) {
	case Node:
		items = t
	case map[string]any:
		names := make([]string, 0, len(t))
		for n := range t {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			items = append(items, Item{n, t[n]})
		}
	default:
		return fmt.Errorf("%s: a node must be a Node or map[string]any, not %T", path, tree)
	}
	for i, it := range items {
		p := path + "/" + it.Name
		e := &entry{path: p, name: it.Name, parent: parent, ins: uint32(i + 1)}
		if err := e.setName(o.UTF16Names); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		isNode := false
		switch v := it.Value.(type) {
		case Node, map[string]any:
			e.typ, isNode = TypeNode, true
			e.data = make([]byte, 12)
		default:
			if err := e.setValue(v, o); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		e.size = entryHdrSize + len(e.nameB) + len(e.data)
		if e.outOfLine {
			e.flags |= 1
			e.size = entryHdrSize + len(e.nameB) + 12
		}
		*out = append(*out, e)
		if parent >= 0 {
			(*out)[parent].children++
		}
		if isNode {
			if err := flatten(it.Value, p, len(*out)-1, out, o); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *entry) setName(utf16Names bool) error {
	if utf16Names {
		u := utf16.Encode([]rune(e.name))
		u = append(u, 0)
		if len(u) > 255 {
			return errors.New("key name too long")
		}
		e.nameB = make([]byte, 2*len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(e.nameB[2*i:], c)
		}
		e.nameSz = byte(len(u))
		return nil
	}
	e.nameB = append([]byte(e.name), 0)
	if len(e.nameB) > 255 {
		return errors.New("key name too long")
	}
	e.nameSz = byte(len(e.nameB))
	return nil
}

// utf16LE encodes s as UTF-16LE with a terminating NUL, as Hyper-V stores
// strings.
func utf16LE(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u)+2)
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func (e *entry) setValue(v any, o *Options) error {
	forced := false
	if w, ok := v.(OutOfLine); ok {
		forced, v = true, w.Value
	}
	le8 := func(x uint64) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, x)
		return b
	}
	var content []byte
	switch x := v.(type) {
	case int:
		e.typ, e.data = TypeInt, le8(uint64(int64(x)))
	case int32:
		e.typ, e.data = TypeInt, le8(uint64(int64(x)))
	case int64:
		e.typ, e.data = TypeInt, le8(uint64(x))
	case uint:
		e.typ, e.data = TypeUint, le8(uint64(x))
	case uint32:
		e.typ, e.data = TypeUint, le8(uint64(x))
	case uint64:
		e.typ, e.data = TypeUint, le8(x)
	case float64:
		e.typ, e.data = TypeDouble, le8(math.Float64bits(x))
	case bool:
		e.typ, e.data = TypeBool, make([]byte, 4)
		if x {
			e.data[0] = 1
		}
	case string:
		e.typ, content = TypeString, utf16LE(x)
	case []byte:
		e.typ, content = TypeArray, x
	case Raw:
		e.typ, e.flags, e.data = x.Type, x.Flags, x.Data
	case time.Time:
		e.typ, content = TypeArray, FileTimeBytes(x)
	default:
		return fmt.Errorf("unsupported value type %T", v)
	}
	if e.typ == TypeString || e.typ == TypeArray {
		if _, raw := v.(Raw); !raw {
			if forced || len(content) >= o.OutOfLineThreshold {
				e.outOfLine, e.blob = true, content
				return nil
			}
			e.data = make([]byte, 4+len(content))
			binary.LittleEndian.PutUint32(e.data, uint32(len(content)))
			copy(e.data[4:], content)
		}
	} else if forced {
		return errors.New("OutOfLine needs a string or []byte")
	}
	return nil
}

// ResealAll recomputes every checksum it can find in buf by following the
// layout: both header copies, the replay log header the copies name, the
// object tables from offset 8192 (and those they chain to), their used
// entries, and the key tables they list with all their entries. It accepts
// any input without panicking; fuzz tests use it to get past the checksums.
func ResealAll(buf []byte) {
	ResealHeader(buf, 0)
	ResealHeader(buf, pageSize)
	utf16Names := false
	for _, h := range []int64{0, pageSize} {
		if b, ok := span(buf, h, headerSize); ok {
			if off := binary.LittleEndian.Uint64(b[26:]); off < uint64(len(buf)) {
				ResealReplayLog(buf, int64(off))
			}
			if binary.LittleEndian.Uint32(b[10:]) == 0x0100 {
				utf16Names = true // format 1.0 key names
			}
		}
	}
	seen := map[int64]bool{}
	queue := []int64{rootObjectTable}
	for len(queue) > 0 && len(seen) < 64 {
		ot := queue[0]
		queue = queue[1:]
		if seen[ot] {
			continue
		}
		seen[ot] = true
		hdr, ok := span(buf, ot, objHdrSize)
		if !ok {
			continue
		}
		count := int64(binary.LittleEndian.Uint32(hdr[4:]))
		count = min(count, (int64(len(buf))-ot-objHdrSize)/objEntrySize, 1<<16)
		for i := int64(0); i < count; i++ {
			eoff := ot + objHdrSize + i*objEntrySize
			e := buf[eoff : eoff+objEntrySize]
			typ := e[0]
			if typ == 0 || typ == 4 {
				continue
			}
			ResealObjectEntry(buf, eoff)
			target := binary.LittleEndian.Uint64(e[5:])
			if target >= uint64(len(buf)) {
				continue
			}
			switch typ {
			case 1:
				queue = append(queue, int64(target))
			case 2:
				size := int64(binary.LittleEndian.Uint32(e[13:]))
				resealKeyTableEntries(buf, int64(target), size, utf16Names)
			}
		}
	}
}

func resealKeyTableEntries(buf []byte, off, size int64, utf16Names bool) {
	ResealKeyTable(buf, off)
	end := min(off+size, int64(len(buf)))
	pos := off + ktHdrSize
	for n := 0; pos+entryHdrSize < end && n < 1<<16; n++ {
		h := buf[pos : pos+entryHdrSize]
		esize := int64(binary.LittleEndian.Uint32(h[2:]))
		if esize < entryHdrSize || esize > end-pos {
			return
		}
		if h[0] != TypeFree {
			ResealEntry(buf, pos, utf16Names)
		}
		pos += esize
	}
}
