package lvm

import (
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sort"
	"strings"
)

// LV is a logical volume of an assembled VG.
type LV struct {
	Name string
	// UUID is the LV's identifier, with dashes.
	UUID string
	// Status and Flags are the LV's status and flags lists as written in
	// the metadata ("READ", "WRITE", "VISIBLE", ...).
	Status, Flags []string
	// Visible reports whether the tools show the LV to users: VISIBLE in
	// its status, or the copy-on-write store of a snapshot of a visible
	// origin (which the tools show under the snapshot's name).
	Visible bool
	// Segments are the LV's segments in extent order.
	Segments []Segment
	// Extents is the LV's length in extents; Size the same in bytes (for a
	// thin volume, its virtual size).
	Extents uint64
	Size    int64
	// Reason says in words why the LV has no reader ("thin volume: not
	// supported", "PV pv1 (UUID ...) is missing", ...); "" when it has one.
	Reason string
	// Err is the same as an error, wrapping ErrUnsupported, ErrMissingPV
	// or ErrCorrupt; nil when the LV can be read.
	Err error

	vg    *VG
	r     *Reader
	state int // 0 not built, 1 building, 2 built
}

// HasStatus reports whether s is in the LV's status list.
func (lv *LV) HasStatus(s string) bool { return slices.Contains(lv.Status, s) }

// Open returns a reader of the LV's contents, of exactly Size bytes. It is
// the same reader on every call and safe for concurrent use. It fails with
// Err when the LV cannot be read.
func (lv *LV) Open() (*Reader, error) {
	if lv.r == nil {
		if lv.Err != nil {
			return nil, lv.Err
		}
		return nil, fmt.Errorf("volume/lvm: LV %s: not assembled: %w", lv.Name, ErrUnsupported)
	}
	return lv.r, nil
}

// reasonText turns an error into words for LV.Reason.
func reasonText(err error) string {
	s := strings.ReplaceAll(err.Error(), "volume/lvm: ", "")
	for _, sentinel := range []error{ErrCorrupt, ErrMissingPV, ErrUnsupported} {
		s = strings.TrimSuffix(s, ": "+sentinel.Error())
	}
	return s
}

// fail records why the LV cannot be read; the first reason stays.
func (lv *LV) fail(err error) {
	if lv.Err != nil {
		return
	}
	lv.Reason = reasonText(err)
	name := lv.Name
	if lv.vg != nil {
		name = lv.vg.Name + "/" + name
	}
	lv.Err = &ctxError{msg: "volume/lvm: LV " + name + ": " + lv.Reason, err: err}
	lv.r = nil
}

// unsupported fails the LV with a reason and ErrUnsupported.
func (lv *LV) unsupported(reason string) {
	lv.fail(fmt.Errorf("%s: %w", reason, ErrUnsupported))
}

// typeReason is the Reason of an LV with a segment type not read here.
func typeReason(t string) string {
	switch {
	case t == "thin":
		return "thin volume: not supported"
	case t == "thin-pool":
		return "thin pool: not supported"
	case t == "snapshot":
		return "snapshot: not supported"
	case t == "cache":
		return "cache volume: not supported"
	case t == "cache-pool":
		return "cache pool: not supported"
	case t == "writecache":
		return "writecache volume: not supported"
	case t == "vdo":
		return "VDO volume: not supported"
	case t == "vdo-pool":
		return "VDO pool: not supported"
	case t == "integrity":
		return "integrity volume: not supported"
	case strings.HasPrefix(t, "raid"):
		return t + " volume: not supported"
	case t == "error", t == "zero":
		return t + " segment: not supported"
	}
	return fmt.Sprintf("segment type %q: not supported", t)
}

// maxStack bounds how deep LVs may be stacked on other LVs.
const maxStack = 8

// resolve marks snapshots, builds the readers of every LV and fills
// vg.LVs and vg.HiddenLVs.
func (vg *VG) resolve() {
	for _, lv := range vg.all {
		for _, seg := range lv.Segments {
			if seg.Type != "snapshot" {
				continue
			}
			origin := vg.lvByName[stringKey(seg.sec, "origin")]
			if cow := vg.lvByName[stringKey(seg.sec, "merging_store")]; cow != nil {
				cow.unsupported("snapshot: not supported")
				if origin != nil {
					origin.unsupported("merge of snapshot " + cow.Name + " pending: not supported")
				}
			}
			if cow := vg.lvByName[stringKey(seg.sec, "cow_store")]; cow != nil {
				cow.unsupported("snapshot: not supported")
				if origin != nil && origin.Visible {
					cow.Visible = true
				}
			}
		}
	}
	for _, lv := range vg.all {
		vg.build(lv, 0)
	}
	for _, lv := range vg.all {
		if lv.Visible {
			vg.LVs = append(vg.LVs, lv)
		} else {
			vg.HiddenLVs = append(vg.HiddenLVs, lv)
		}
	}
	byName := func(l []*LV) func(i, j int) bool { return func(i, j int) bool { return l[i].Name < l[j].Name } }
	sort.SliceStable(vg.LVs, byName(vg.LVs))
	sort.SliceStable(vg.HiddenLVs, byName(vg.HiddenLVs))
}

func stringKey(s *Section, key string) string {
	if v, ok := s.Value(key); ok && v.Kind == KindString {
		return v.Str
	}
	return ""
}

// build makes lv's reader (or records why there is none) and returns it.
func (vg *VG) build(lv *LV, depth int) (*Reader, error) {
	switch lv.state {
	case 2:
		return lv.r, lv.Err
	case 1:
		return nil, corrupt("metadata: LV %s is stacked on itself", lv.Name)
	}
	if depth > maxStack {
		return nil, corrupt("metadata: LV %s: LVs stacked deeper than %d", lv.Name, maxStack)
	}
	lv.state = 1
	defer func() { lv.state = 2 }()
	if lv.Err != nil {
		return nil, lv.Err
	}
	r := &Reader{size: lv.Size, name: vg.Name + "/" + lv.Name}
	for i, seg := range lv.Segments {
		p, err := vg.segmentPiece(lv, i, seg, depth)
		if err != nil {
			lv.fail(err)
			return nil, lv.Err
		}
		r.pieces = append(r.pieces, p)
	}
	lv.r = r
	return r, nil
}

// segmentPiece maps one segment.
func (vg *VG) segmentPiece(lv *LV, i int, seg Segment, depth int) (piece, error) {
	p := piece{start: int64(seg.StartExtent * vg.ExtentSize), length: int64(seg.ExtentCount * vg.ExtentSize)}
	where := fmt.Sprintf("segment %d", i+1)
	switch seg.Type {
	case "striped", "linear":
		n := uint64(seg.StripeCount)
		if seg.ExtentCount%n != 0 {
			return p, corrupt("%s: extent_count %d not divisible by stripe_count %d", where, seg.ExtentCount, n)
		}
		per := seg.ExtentCount / n
		if n > 1 {
			if (per*vg.ExtentSize)%seg.StripeSize != 0 {
				return p, corrupt("%s: stripe of %d bytes not a multiple of stripe_size %d", where, per*vg.ExtentSize, seg.StripeSize)
			}
			p.stripe = int64(seg.StripeSize)
		}
		for _, a := range seg.Areas {
			t, err := vg.area(a, per, depth, where)
			if err != nil {
				return p, err
			}
			p.targets = append(p.targets, t)
		}
		return p, nil
	case "mirror", "raid1":
		if seg.Type == "raid1" {
			if v, ok := seg.sec.Value("data_offset"); ok && (v.Kind != KindInt || v.Int != 0) {
				lv.unsupported("raid1 with data_offset (reshape space): not supported")
				return p, lv.Err
			}
		}
		var first error
		for li, a := range seg.Areas {
			if sub := vg.lvByName[a.PV]; sub != nil && sub.HasStatus("REBUILD") {
				if first == nil {
					first = corrupt("%s: leg %s is being rebuilt", where, a.PV)
				}
				continue
			}
			t, err := vg.area(a, seg.ExtentCount, depth, where)
			if err != nil {
				if first == nil {
					first = err
				}
				continue
			}
			if li > 0 {
				vg.Warnings = append(vg.Warnings, fmt.Sprintf("LV %s: %s leg %s unusable (%s); reading leg %s", lv.Name, seg.Type, seg.Areas[0].PV, reasonText(first), a.PV))
			}
			p.targets = []target{t}
			return p, nil
		}
		return p, first
	}
	lv.unsupported(typeReason(seg.Type))
	return p, lv.Err
}

// area resolves count extents from a's first extent to a reader and an
// offset.
func (vg *VG) area(a Area, count uint64, depth int, where string) (target, error) {
	if p := vg.pvByName[a.PV]; p != nil {
		if p.PV == nil {
			how := "missing"
			if slices.Contains(p.Flags, "MISSING") {
				how = "flagged MISSING in the metadata"
			}
			return target{}, fmt.Errorf("PV %s (UUID %s) is %s: %w", p.Name, p.UUID, how, ErrMissingPV)
		}
		end := a.Start + count // both < 2^40
		if end > p.PECount {
			return target{}, corrupt("%s: extents %d-%d past pe_count %d of PV %s", where, a.Start, end-1, p.PECount, p.Name)
		}
		hi, endB := bits.Mul64(end, vg.ExtentSize)
		endB, carry := bits.Add64(endB, p.PEStart, 0)
		if hi != 0 || carry != 0 || endB > uint64(p.PV.Size) {
			return target{}, corrupt("%s: extents %d-%d of PV %s end past the device's %d bytes", where, a.Start, end-1, p.Name, p.PV.Size)
		}
		return target{r: p.PV.r, off: int64(p.PEStart + a.Start*vg.ExtentSize)}, nil
	}
	sub := vg.lvByName[a.PV]
	if sub == nil {
		return target{}, corrupt("%s: area %q names no PV or LV of the VG", where, a.PV)
	}
	r, err := vg.build(sub, depth+1)
	if err != nil {
		if e, ok := err.(*ctxError); ok {
			err = e.err
		}
		return target{}, fmt.Errorf("on LV %s: %w", sub.Name, err)
	}
	if a.Start+count > sub.Extents {
		return target{}, corrupt("%s: extents %d-%d past the end of LV %s (%d extents)", where, a.Start, a.Start+count-1, sub.Name, sub.Extents)
	}
	return target{r: r, off: int64(a.Start * vg.ExtentSize)}, nil
}

// target is where a stripe, leg or linear area starts.
type target struct {
	r   io.ReaderAt
	off int64
}

// piece maps [start, start+length) of the LV: linearly onto targets[0]
// when stripe is 0, otherwise in stripe-byte chunks round-robin over
// targets (as device-mapper's striped target does).
type piece struct {
	start, length int64
	stripe        int64
	targets       []target
}

// Reader reads an LV. It is immutable and safe for concurrent use.
type Reader struct {
	size   int64
	name   string
	pieces []piece
}

// Size returns the LV's size in bytes.
func (r *Reader) Size() int64 { return r.size }

// ReadAt implements io.ReaderAt. Reads are split at segment and stripe
// boundaries into reads of the PVs.
func (r *Reader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("volume/lvm: LV %s: negative offset %d", r.name, off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(b)
	if int64(want) > r.size-off {
		b = b[:r.size-off]
	}
	n := 0
	i := sort.Search(len(r.pieces), func(i int) bool { return r.pieces[i].start+r.pieces[i].length > off })
	for n < len(b) && i < len(r.pieces) {
		p := &r.pieces[i]
		rel := off + int64(n) - p.start
		if rel >= p.length {
			i++
			continue
		}
		t, phys, run := p.locate(rel)
		run = min(run, int64(len(b)-n))
		if err := readFull(t.r, b[n:n+int(run)], phys); err != nil {
			return n, fmt.Errorf("volume/lvm: LV %s: reading %d bytes at LV offset %d: %w", r.name, run, off+int64(n), err)
		}
		n += int(run)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// locate maps rel (bytes into the piece) to a target, the physical offset
// and how many bytes can be read there contiguously.
func (p *piece) locate(rel int64) (target, int64, int64) {
	if p.stripe == 0 {
		t := p.targets[0]
		return t, t.off + rel, p.length - rel
	}
	chunk, within := rel/p.stripe, rel%p.stripe
	n := int64(len(p.targets))
	t := p.targets[chunk%n]
	return t, t.off + (chunk/n)*p.stripe + within, p.stripe - within
}
