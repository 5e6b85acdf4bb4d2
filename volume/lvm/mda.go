package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

const (
	mdaHeaderSize  = 512 // MDA_HEADER_SIZE
	rawLocnSize    = 24  // struct raw_locn
	rawLocnsOffset = 40  // checksum, magic, version, start, size
	mdaVersion     = 1   // FMTT_VERSION
	rawLocnIgnored = 1   // RAW_LOCN_IGNORED
	// maxScanRing is the largest ring scanned for older metadata copies.
	maxScanRing = 64 << 20
)

var mdaMagic = []byte(" LVM2 x[5A%r0N*>")

// MetadataArea is one metadata area of a PV.
type MetadataArea struct {
	// Offset and Size locate the area on the PV, as listed in the PV
	// header.
	Offset, Size uint64
	// Header is the area's decoded mda_header, or nil when it is damaged
	// (see Err).
	Header *MDAHeader
	// Err says why this area gave no metadata (damaged header, bad
	// checksum, unparsable text, ...); nil when it gave a valid copy or
	// holds none.
	Err error
}

// MDAHeader is a metadata area header (struct mda_header).
type MDAHeader struct {
	Checksum uint32
	Version  uint32
	// Start and Size are the area's offset on the PV and its size
	// including the header.
	Start, Size uint64
	// RawLocations are the raw_locn entries before the end-of-list entry:
	// [0] is the committed metadata, [1] a precommitted copy if any.
	RawLocations []RawLocation
}

// RawLocation is one struct raw_locn: where a copy of the metadata text
// lies in the circular buffer.
type RawLocation struct {
	Offset   uint64 // from the start of the metadata area
	Size     uint64 // of the text, including its terminating NUL
	Checksum uint32 // lvm2 CRC-32 of those Size bytes
	Flags    uint32
}

// Ignored reports whether the area is marked ignored (RAW_LOCN_IGNORED,
// "pvchange --metadataignore y"): its text is not kept up to date.
func (l RawLocation) Ignored() bool { return l.Flags&rawLocnIgnored != 0 }

// Metadata is one copy of a VG's metadata text.
type Metadata struct {
	// VGName, VGUUID and Seqno come from the text's VG section.
	VGName, VGUUID string
	Seqno          uint64
	// Text is the metadata text without its terminating NUL.
	Text []byte
	// Verified is true when the copy is the one an mda header points to
	// and its checksum matched; false for an older copy found by scanning
	// the circular buffer (such copies carry no checksum).
	Verified bool
	// Area is the index of the metadata area it was read from and Offset
	// its offset in that area.
	Area   int
	Offset uint64

	vg *Section // the VG section of the parsed text
}

// readMetadata fills pv.Metadata, pv.MetadataErr and pv.Warnings from the
// metadata areas.
func (pv *PV) readMetadata() {
	var good []*Metadata
	var errs []error
	bad := map[int]uint64{} // area -> offset of a committed copy known to be bad
	for i, a := range pv.MetadataAreas {
		m, textBad, err := pv.readArea(i, a)
		if err != nil {
			a.Err = err
			errs = append(errs, err)
			pv.Warnings = append(pv.Warnings, err.Error())
			if textBad {
				bad[i] = a.Header.RawLocations[0].Offset
			}
			continue
		}
		if m != nil {
			good = append(good, m)
		}
	}
	if len(good) > 0 {
		sort.SliceStable(good, func(i, j int) bool { return good[i].Seqno > good[j].Seqno })
		pv.Metadata = good[0]
		for _, m := range good[1:] {
			if m.Seqno != good[0].Seqno || m.VGUUID != good[0].VGUUID {
				pv.Warnings = append(pv.Warnings, fmt.Sprintf("metadata area %d holds VG %s seqno %d, area %d holds seqno %d: using seqno %d",
					m.Area, m.VGName, m.Seqno, good[0].Area, good[0].Seqno, good[0].Seqno))
			}
		}
		return
	}
	if len(errs) == 0 {
		return // orphan PV, or no metadata areas
	}
	// No valid committed copy: look for older complete copies.
	var found []*Metadata
	for i, a := range pv.MetadataAreas {
		ms, err := pv.scanRing(i, a, bad)
		if err != nil {
			pv.Warnings = append(pv.Warnings, err.Error())
		}
		found = append(found, ms...)
	}
	if len(found) == 0 {
		pv.MetadataErr = errors.Join(errs...)
		return
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Seqno > found[j].Seqno })
	m := found[0]
	pv.Metadata = m
	pv.Warnings = append(pv.Warnings, fmt.Sprintf(
		"no valid committed metadata; using an older copy found in metadata area %d at offset %d (VG %s seqno %d), which has no checksum of its own",
		m.Area, m.Offset, m.VGName, m.Seqno))
}

// checkArea validates a metadata area's placement on the PV.
func (pv *PV) checkArea(i int, a *MetadataArea) error {
	end, carry := bits.Add64(a.Offset, a.Size, 0)
	switch {
	case a.Offset < sectorSize*labelSectors:
		return corrupt("PV header: metadata area %d: offset %d overlaps the label sectors", i, a.Offset)
	case a.Size < 2*mdaHeaderSize:
		return corrupt("PV header: metadata area %d: size %d is smaller than %d", i, a.Size, 2*mdaHeaderSize)
	case carry != 0 || end > uint64(pv.Size):
		return corrupt("PV header: metadata area %d: offset %d + size %d past the end of the device (%d bytes)", i, a.Offset, a.Size, pv.Size)
	}
	return nil
}

// readArea reads area i's header and its committed metadata copy. It
// returns nil, false, nil for an area that holds no metadata; textBad
// reports that the committed text was read and is damaged.
func (pv *PV) readArea(i int, a *MetadataArea) (m *Metadata, textBad bool, err error) {
	if err := pv.checkArea(i, a); err != nil {
		return nil, false, err
	}
	h, err := pv.readMDAHeader(i, a)
	if err != nil {
		return nil, false, err
	}
	a.Header = h
	if len(h.RawLocations) == 0 {
		return nil, false, nil
	}
	rl := h.RawLocations[0]
	if rl.Ignored() {
		pv.Warnings = append(pv.Warnings, fmt.Sprintf("metadata area %d is marked ignored", i))
		return nil, false, nil
	}
	m, read, err := pv.readText(i, h, rl)
	return m, read && err != nil, err
}

// readText reads, checks and decodes the text rl points to; read reports
// that the location was valid and the text was read.
func (pv *PV) readText(i int, h *MDAHeader, rl RawLocation) (m *Metadata, read bool, err error) {
	where := fmt.Sprintf("metadata area %d: raw_locn[0]", i)
	ring := h.Size - mdaHeaderSize
	switch {
	case rl.Offset < mdaHeaderSize || rl.Offset >= h.Size:
		return nil, false, corrupt("%s: offset %d outside the area (%d bytes)", where, rl.Offset, h.Size)
	case rl.Size == 0 || rl.Size > ring:
		return nil, false, corrupt("%s: size %d does not fit the circular buffer (%d bytes)", where, rl.Size, ring)
	case rl.Size > MaxTextSize+1:
		return nil, false, corrupt("%s: size %d over the limit of %d", where, rl.Size, MaxTextSize)
	}
	text := make([]byte, rl.Size)
	first := min(rl.Size, h.Size-rl.Offset)
	if err := readFull(pv.r, text[:first], int64(h.Start+rl.Offset)); err != nil {
		return nil, false, fmt.Errorf("volume/lvm: %s: reading text: %w", where, err)
	}
	if first < rl.Size { // the text wraps around the end of the area
		if err := readFull(pv.r, text[first:], int64(h.Start+mdaHeaderSize)); err != nil {
			return nil, false, fmt.Errorf("volume/lvm: %s: reading wrapped text: %w", where, err)
		}
	}
	if got := lvmCRC(crcInitial, text); got != rl.Checksum {
		return nil, true, corrupt("%s: metadata text at offset %d: bad checksum (0x%08x, computed 0x%08x)", where, rl.Offset, rl.Checksum, got)
	}
	m, err = decodeMetadata(text)
	if err != nil {
		return nil, true, within(err, "%s: metadata text at offset %d", where, rl.Offset)
	}
	m.Verified, m.Area, m.Offset = true, i, rl.Offset
	return m, true, nil
}

// readMDAHeader reads and checks the mda_header of area i.
func (pv *PV) readMDAHeader(i int, a *MetadataArea) (*MDAHeader, error) {
	buf := make([]byte, mdaHeaderSize)
	if err := readFull(pv.r, buf, int64(a.Offset)); err != nil {
		return nil, fmt.Errorf("volume/lvm: metadata area %d header at offset %d: %w", i, a.Offset, err)
	}
	le := binary.LittleEndian
	where := fmt.Sprintf("metadata area %d header at offset %d", i, a.Offset)
	h := &MDAHeader{Checksum: le.Uint32(buf), Version: le.Uint32(buf[20:]), Start: le.Uint64(buf[24:]), Size: le.Uint64(buf[32:])}
	if got := lvmCRC(crcInitial, buf[4:]); got != h.Checksum {
		return nil, corrupt("%s: bad CRC (checksum_xl 0x%08x, computed 0x%08x)", where, h.Checksum, got)
	}
	if !bytes.Equal(buf[4:20], mdaMagic) {
		return nil, corrupt("%s: bad magic %q", where, buf[4:20])
	}
	if h.Version != mdaVersion {
		return nil, corrupt("%s: version %d, not %d", where, h.Version, mdaVersion)
	}
	if h.Start != a.Offset {
		return nil, corrupt("%s: start %d does not match the PV header's offset", where, h.Start)
	}
	if h.Size != a.Size {
		return nil, corrupt("%s: size %d does not match the PV header's %d", where, h.Size, a.Size)
	}
	for pos := rawLocnsOffset; pos+rawLocnSize <= mdaHeaderSize; pos += rawLocnSize {
		l := RawLocation{le.Uint64(buf[pos:]), le.Uint64(buf[pos+8:]), le.Uint32(buf[pos+16:]), le.Uint32(buf[pos+20:])}
		if l.Offset == 0 {
			break
		}
		h.RawLocations = append(h.RawLocations, l)
	}
	return h, nil
}

// decodeMetadata parses a metadata text (with or without its NUL) and
// checks its top level: contents, version and one VG section with id and
// seqno.
func decodeMetadata(text []byte) (*Metadata, error) {
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	root, err := ParseMetadata(text)
	if err != nil {
		return nil, err
	}
	if v, ok := root.Value("contents"); !ok || v.Kind != KindString || v.Str != "Text Format Volume Group" {
		return nil, corrupt("metadata text: contents is not \"Text Format Volume Group\"")
	}
	if v, ok := root.Value("version"); !ok || v.Kind != KindInt || v.Int != 1 {
		return nil, corrupt("metadata text: version is not 1")
	}
	if len(root.Children) != 1 {
		return nil, corrupt("metadata text: %d top-level sections, want one VG", len(root.Children))
	}
	vg := root.Children[0]
	id, err := getString(vg, "id", vg.Name)
	if err != nil {
		return nil, err
	}
	seq, err := getUint(vg, "seqno", vg.Name)
	if err != nil {
		return nil, err
	}
	return &Metadata{VGName: vg.Name, VGUUID: id, Seqno: seq, Text: text, vg: vg}, nil
}

// scanRing looks through area i's circular buffer for complete metadata
// copies (each starts on a 512-byte boundary with "<vg name> {") that list
// this PV, other than the known-bad committed copy at bad[i].
func (pv *PV) scanRing(i int, a *MetadataArea, bad map[int]uint64) ([]*Metadata, error) {
	if pv.checkArea(i, a) != nil {
		return nil, nil
	}
	ringSize := a.Size - mdaHeaderSize
	if ringSize > maxScanRing {
		return nil, fmt.Errorf("volume/lvm: metadata area %d: circular buffer of %d bytes too big to scan for older copies", i, ringSize)
	}
	ring := make([]byte, ringSize)
	if err := readFull(pv.r, ring, int64(a.Offset+mdaHeaderSize)); err != nil {
		return nil, fmt.Errorf("volume/lvm: metadata area %d: reading the circular buffer: %w", i, err)
	}
	firstNul := bytes.IndexByte(ring, 0)
	if firstNul < 0 {
		return nil, nil
	}
	var out []*Metadata
	budget := 4 * len(ring) // bytes of text parsed at most
	nextNul := -1
	for p := (len(ring) - 1) / sectorSize * sectorSize; p >= 0; p -= sectorSize {
		// nextNul: the first NUL at or after p, found scanning backwards.
		if j := bytes.IndexByte(ring[p:min(len(ring), p+sectorSize)], 0); j >= 0 {
			nextNul = p + j
		}
		off := uint64(p) + mdaHeaderSize
		if b, ok := bad[i]; ok && b == off || !looksLikeVGStart(ring[p:]) {
			continue
		}
		var text []byte
		if nextNul >= 0 {
			text = ring[p:nextNul]
		} else { // wraps around the end of the area
			text = append(append([]byte(nil), ring[p:]...), ring[:firstNul]...)
		}
		if budget -= len(text); budget < 0 {
			break
		}
		m, err := decodeMetadata(text)
		if err != nil || !m.listsPV(pv.UUID) {
			continue
		}
		m.Area, m.Offset = i, off
		m.Text = append([]byte(nil), m.Text...)
		out = append(out, m)
	}
	return out, nil
}

// looksLikeVGStart reports whether b starts with a name followed by " {".
func looksLikeVGStart(b []byte) bool {
	for i, c := range b {
		if i > 128 {
			return false
		}
		if c == ' ' {
			return i > 0 && i+1 < len(b) && b[i+1] == '{'
		}
		if !validNameChar(c) {
			return false
		}
	}
	return false
}

// validNameChar reports whether c may appear in a VG or LV name.
func validNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '_' || c == '.' || c == '-'
}

// listsPV reports whether the VG's physical_volumes name the PV uuid.
func (m *Metadata) listsPV(uuid string) bool {
	for _, p := range m.vg.Child("physical_volumes").childrenOrNil() {
		if v, ok := p.Value("id"); ok && v.Kind == KindString && normID(v.Str) == normID(uuid) {
			return true
		}
	}
	return false
}

func (s *Section) childrenOrNil() []*Section {
	if s == nil {
		return nil
	}
	return s.Children
}

// String describes the copy: VG, seqno and where it was read.
func (m *Metadata) String() string {
	how := "verified"
	if !m.Verified {
		how = "unverified"
	}
	return fmt.Sprintf("VG %s (%s) seqno %d from metadata area %d offset %d, %s", m.VGName, m.VGUUID, m.Seqno, m.Area, m.Offset, how)
}
