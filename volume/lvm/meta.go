package lvm

import (
	"math/bits"
	"sort"
	"strings"
)

// maxBytes bounds every byte offset and size computed from metadata, so
// that sums of them fit an int64.
const maxBytes = 1 << 62

// VGPV is a physical volume as a VG's metadata lists it.
type VGPV struct {
	// Name is the PV's name inside the metadata ("pv0").
	Name string
	// UUID is the PV's identifier, with dashes.
	UUID string
	// Device is the device path the tools saw last (a hint only).
	Device string
	// PEStart is the byte offset of the first physical extent.
	PEStart uint64
	// PECount is the number of physical extents.
	PECount uint64
	// DevSize is the device size in bytes recorded in the metadata.
	DevSize uint64
	// Flags are the PV's flags in the metadata; "MISSING" means the tools
	// lost the PV once, and its data is not trusted even if it is present.
	Flags []string
	// PV is the PV given to Assemble, or nil when it is missing.
	PV *PV
}

// Area is where part of a segment is stored: extents of a PV, or of
// another (hidden) LV.
type Area struct {
	PV    string // PV name in the metadata ("pv0"), or ""
	LV    string // LV name, when the area is on another LV
	Start uint64 // first extent
}

// Segment is one segment of an LV.
type Segment struct {
	// StartExtent and ExtentCount place the segment in the LV.
	StartExtent, ExtentCount uint64
	// Type is the segment type as written in the metadata: "striped"
	// (linear when StripeCount is 1), "mirror", "raid1", "thin", ...
	Type string
	// StripeCount is the number of stripes of a striped segment.
	StripeCount int
	// StripeSize is the stripe size in bytes (striped, StripeCount > 1).
	StripeSize uint64
	// Areas are the stripes (striped), legs (mirror) or data images
	// (raid); other types have none.
	Areas []Area

	sec *Section
}

// lvMeta is an LV as decoded from the metadata, before resolution.
type lvMeta struct {
	lv  *LV
	err error // decoding error: the LV is unusable
}

// decodeVG decodes the VG section of a metadata copy.
func decodeVG(m *Metadata) (*VG, error) {
	s := m.vg
	vg := &VG{Name: m.VGName, UUID: m.VGUUID, Seqno: m.Seqno, Metadata: m, pvByName: map[string]*VGPV{}, lvByName: map[string]*LV{}}
	path := "VG " + vg.Name
	if !validName(vg.Name) {
		return nil, corrupt("metadata: VG name %q is not a valid name", vg.Name)
	}
	var err error
	if vg.ExtentSize, err = getSectors(s, "extent_size", path); err != nil {
		return nil, err
	}
	vg.Status, _ = getStrings(s, "status", path)
	pvs := s.Child("physical_volumes")
	if pvs == nil {
		return nil, corrupt("metadata: %s: no physical_volumes section", path)
	}
	for _, ps := range pvs.Children {
		p, err := decodePV(ps, path+"/physical_volumes/"+ps.Name)
		if err != nil {
			return nil, err
		}
		vg.PVs = append(vg.PVs, p)
		vg.pvByName[p.Name] = p
	}
	for _, ls := range s.Child("logical_volumes").childrenOrNil() {
		lv := decodeLV(ls, vg, path+"/logical_volumes/"+ls.Name)
		if vg.pvByName[lv.Name] != nil {
			lv.fail(corrupt("metadata: %s: LV name %q is also a PV name", path, lv.Name))
		}
		vg.all = append(vg.all, lv)
		vg.lvByName[lv.Name] = lv
	}
	return vg, nil
}

func decodePV(s *Section, path string) (*VGPV, error) {
	p := &VGPV{Name: s.Name}
	var err error
	if p.UUID, err = getString(s, "id", path); err != nil {
		return nil, err
	}
	p.Device, _ = getString(s, "device", path)
	p.Flags, _ = getStrings(s, "flags", path)
	start, err := getUint(s, "pe_start", path)
	if err != nil {
		return nil, err
	}
	if p.PECount, err = getUint(s, "pe_count", path); err != nil {
		return nil, err
	}
	size, _ := getUint(s, "dev_size", path)
	if start >= maxBytes/sectorSize || size >= maxBytes/sectorSize {
		return nil, corrupt("metadata: %s: pe_start %d or dev_size %d out of range", path, start, size)
	}
	p.PEStart, p.DevSize = start*sectorSize, size*sectorSize
	return p, nil
}

// decodeLV decodes one LV section. Errors are recorded on the LV.
func decodeLV(s *Section, vg *VG, path string) *LV {
	lv := &LV{Name: s.Name, vg: vg}
	var err error
	if !validName(lv.Name) {
		lv.fail(corrupt("metadata: %s: not a valid LV name", path))
		return lv
	}
	if lv.UUID, err = getString(s, "id", path); err != nil {
		lv.fail(err)
		return lv
	}
	if lv.Status, err = getStrings(s, "status", path); err != nil {
		lv.fail(err)
		return lv
	}
	lv.Flags, _ = getStrings(s, "flags", path)
	lv.Visible = lv.HasStatus("VISIBLE")
	for _, ss := range s.Children {
		if !strings.HasPrefix(ss.Name, "segment") {
			continue
		}
		seg, err := decodeSegment(ss, path+"/"+ss.Name)
		if err != nil {
			lv.fail(err)
			return lv
		}
		lv.Segments = append(lv.Segments, seg)
	}
	sort.SliceStable(lv.Segments, func(i, j int) bool { return lv.Segments[i].StartExtent < lv.Segments[j].StartExtent })
	var next uint64
	for _, seg := range lv.Segments {
		if seg.StartExtent != next {
			lv.fail(corrupt("metadata: %s: segments leave a gap or overlap at extent %d (next segment starts at %d)", path, next, seg.StartExtent))
			return lv
		}
		next += seg.ExtentCount // both checked < 2^40 in decodeSegment
	}
	if len(lv.Segments) == 0 {
		lv.fail(corrupt("metadata: %s: no segments", path))
		return lv
	}
	hi, lo := bits.Mul64(next, vg.ExtentSize)
	if hi != 0 || lo >= maxBytes {
		lv.fail(corrupt("metadata: %s: %d extents of %d bytes overflow", path, next, vg.ExtentSize))
		return lv
	}
	lv.Extents, lv.Size = next, int64(lo)
	return lv
}

// maxExtents bounds extent numbers and counts (lvm2 uses 32-bit counts).
const maxExtents = 1 << 40

func decodeSegment(s *Section, path string) (Segment, error) {
	seg := Segment{sec: s}
	var err error
	if seg.StartExtent, err = getUint(s, "start_extent", path); err != nil {
		return seg, err
	}
	if seg.ExtentCount, err = getUint(s, "extent_count", path); err != nil {
		return seg, err
	}
	if seg.StartExtent >= maxExtents || seg.ExtentCount == 0 || seg.ExtentCount >= maxExtents {
		return seg, corrupt("metadata: %s: start_extent %d, extent_count %d out of range", path, seg.StartExtent, seg.ExtentCount)
	}
	if seg.Type, err = getString(s, "type", path); err != nil {
		return seg, err
	}
	switch seg.Type {
	case "striped", "linear":
		n, err := getUint(s, "stripe_count", path)
		if err != nil {
			return seg, err
		}
		if n == 0 || n > 1<<16 {
			return seg, corrupt("metadata: %s: stripe_count %d out of range", path, n)
		}
		seg.StripeCount = int(n)
		if n > 1 {
			if seg.StripeSize, err = getSectors(s, "stripe_size", path); err != nil {
				return seg, err
			}
		}
		if seg.Areas, err = getAreas(s, "stripes", path, true); err != nil {
			return seg, err
		}
		if len(seg.Areas) != seg.StripeCount {
			return seg, corrupt("metadata: %s: stripes lists %d areas, stripe_count is %d", path, len(seg.Areas), n)
		}
	case "mirror":
		if seg.Areas, err = getAreas(s, "mirrors", path, true); err != nil {
			return seg, err
		}
	case "raid1":
		if seg.Areas, err = raidImages(s, path); err != nil {
			return seg, err
		}
	}
	return seg, nil
}

// getAreas decodes an array of areas: ["pv0", 0, "pv1", 10] (withStart) or
// ["lv_rimage_0", ...].
func getAreas(s *Section, key, path string, withStart bool) ([]Area, error) {
	v, ok := s.Value(key)
	if !ok {
		return nil, corrupt("metadata: %s/%s: missing", path, key)
	}
	if v.Kind != KindList || len(v.List) == 0 {
		return nil, corrupt("metadata: %s/%s: not a non-empty array", path, key)
	}
	step := 1
	if withStart {
		step = 2
		if len(v.List)%2 != 0 {
			return nil, corrupt("metadata: %s/%s: odd number of elements", path, key)
		}
	}
	var out []Area
	for i := 0; i < len(v.List); i += step {
		name := v.List[i]
		if name.Kind != KindString || name.Str == "" {
			return nil, corrupt("metadata: %s/%s[%d]: not a name", path, key, i)
		}
		a := Area{PV: name.Str}
		if withStart {
			st := v.List[i+1]
			if st.Kind != KindInt || st.Int < 0 || st.Int >= maxExtents {
				return nil, corrupt("metadata: %s/%s[%d]: bad start extent %s", path, key, i+1, st)
			}
			a.Start = uint64(st.Int)
		}
		out = append(out, a)
	}
	return out, nil
}

// raidImages returns the data images of a raid segment: "raids" lists
// metadata/image pairs (or only images when device_count says so).
func raidImages(s *Section, path string) ([]Area, error) {
	n, err := getUint(s, "device_count", path)
	if err != nil {
		return nil, err
	}
	all, err := getAreas(s, "raids", path, false)
	if err != nil {
		return nil, err
	}
	switch {
	case n == 0:
		return nil, corrupt("metadata: %s: device_count 0", path)
	case uint64(len(all)) == 2*n:
		var imgs []Area
		for i := 1; i < len(all); i += 2 {
			imgs = append(imgs, all[i])
		}
		return imgs, nil
	case uint64(len(all)) == n:
		return all, nil
	}
	return nil, corrupt("metadata: %s: raids lists %d names for device_count %d", path, len(all), n)
}

func validName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '-' || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !validNameChar(s[i]) {
			return false
		}
	}
	return true
}

func getValue(s *Section, key, path string, kind ValueKind) (Value, error) {
	v, ok := s.Value(key)
	if !ok {
		return v, corrupt("metadata: %s/%s: missing", path, key)
	}
	if v.Kind != kind {
		return v, corrupt("metadata: %s/%s: is %s, want %s", path, key, kindName(v.Kind), kindName(kind))
	}
	return v, nil
}

func getString(s *Section, key, path string) (string, error) {
	v, err := getValue(s, key, path, KindString)
	return v.Str, err
}

func getUint(s *Section, key, path string) (uint64, error) {
	v, err := getValue(s, key, path, KindInt)
	if err != nil {
		return 0, err
	}
	if v.Int < 0 {
		return 0, corrupt("metadata: %s/%s: negative value %d", path, key, v.Int)
	}
	return uint64(v.Int), nil
}

// getSectors decodes a size in sectors (1 to 2^32) and returns it in
// bytes.
func getSectors(s *Section, key, path string) (uint64, error) {
	n, err := getUint(s, key, path)
	if err != nil {
		return 0, err
	}
	if n == 0 || n > 1<<32 {
		return 0, corrupt("metadata: %s: %s %d sectors out of range", path, key, n)
	}
	return n * sectorSize, nil
}

// getStrings decodes an array of strings (status and flags lists).
func getStrings(s *Section, key, path string) ([]string, error) {
	v, err := getValue(s, key, path, KindList)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(v.List))
	for i, e := range v.List {
		if e.Kind != KindString {
			return nil, corrupt("metadata: %s/%s[%d]: not a string", path, key, i)
		}
		out = append(out, e.Str)
	}
	return out, nil
}
