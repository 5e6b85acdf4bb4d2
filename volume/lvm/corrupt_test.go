package lvm

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// Offsets in the standard synthetic image.
const (
	synthLabel  = 512               // label sector
	synthMDAOff = 4096              // metadata area
	synthText   = synthMDAOff + 512 // committed text
	synthLocn   = synthMDAOff + 40  // raw_locn[0]
)

// mutated returns the standard image after f; fix re-computes the label
// and mda header checksums afterwards.
func mutated(fix bool, f func(img []byte)) func() []byte {
	return func() []byte {
		img := synthImage()
		f(img)
		if fix {
			fixLabelCRC(img, 1)
			fixMDACRC(img, synthMDAOff)
		}
		return img
	}
}

// withText returns the standard image whose only copy is text.
func withText(text string) func() []byte {
	return func() []byte { return synthDesc(text).image() }
}

// withLVs returns the standard image with the LV text changed by the
// replacer's old/new pairs.
func withLVs(pairs ...string) func() []byte {
	return withText(synthVGDesc(1, strings.NewReplacer(pairs...).Replace(synthLVs())).text())
}

// withVG returns the standard image with the whole text changed.
func withVG(pairs ...string) func() []byte {
	return withText(strings.NewReplacer(pairs...).Replace(synthVGDesc(1, synthLVs()).text()))
}

func put64(off int, v uint64) func([]byte) {
	return func(img []byte) { binary.LittleEndian.PutUint64(img[off:], v) }
}

func TestCorruption(t *testing.T) {
	t.Parallel()
	le := binary.LittleEndian
	deep := synthVGDesc(1, synthLVs()).text() + strings.Repeat("a {\n", 40) + strings.Repeat("}\n", 40)
	for _, c := range []struct {
		name     string
		img      func() []byte
		size     int64  // device size; 0 = synthDevSize
		readErr  string // ReadPV fails with this
		areaErr  string // metadata area 0's error
		fallback bool   // an older/unverified copy is used, with a warning
		asmErr   string // an Assemble error
		lvErr    map[string]string
	}{
		{name: "label CRC", img: mutated(false, func(b []byte) { b[synthLabel+40] ^= 1 }), readErr: "PV label at sector 1: bad CRC"},
		{name: "label sector_xl", img: mutated(true, put64(synthLabel+8, 5)), readErr: "sector_xl is 5"},
		{name: "label type", img: mutated(true, func(b []byte) { b[synthLabel+31] = '2' }), readErr: `type "LVM2 002"`},
		{name: "label offset_xl", img: mutated(true, func(b []byte) { le.PutUint32(b[synthLabel+20:], 0xffff) }), readErr: "offset_xl 65535"},
		{name: "pv_uuid character", img: mutated(true, func(b []byte) { b[synthLabel+33] = '-' }), readErr: "pv_uuid: invalid character 0x2d"},
		{name: "area list without end", img: mutated(true, func(b []byte) {
			for i := synthLabel + 72; i < synthLabel+512; i++ {
				b[i] = 1
			}
		}), readErr: "data area list: no end-of-list"},
		{name: "device too small", img: synthImage, size: 1000, readErr: "too small"},
		{name: "mda past the device", img: mutated(true, put64(synthLabel+112, 1<<40)), areaErr: "past the end of the device", asmErr: "no usable metadata"},
		{name: "mda overflows", img: mutated(true, put64(synthLabel+112, ^uint64(0)-100)), areaErr: "past the end of the device", asmErr: "no usable metadata"},
		{name: "mda over the label", img: mutated(true, put64(synthLabel+104, 512)), areaErr: "overlaps the label", asmErr: "no usable metadata"},
		{name: "mda header CRC", img: mutated(false, func(b []byte) { b[synthMDAOff+100] ^= 1 }), areaErr: "header at offset 4096: bad CRC", fallback: true},
		{name: "mda magic", img: mutated(true, func(b []byte) { b[synthMDAOff+5] = 'X' }), areaErr: "bad magic", fallback: true},
		{name: "mda version", img: mutated(true, func(b []byte) { le.PutUint32(b[synthMDAOff+20:], 2) }), areaErr: "version 2", fallback: true},
		{name: "mda start", img: mutated(true, put64(synthMDAOff+24, 8192)), areaErr: "start 8192", fallback: true},
		{name: "raw_locn offset", img: mutated(true, put64(synthLocn, 1<<60)), areaErr: "outside the area", fallback: true},
		{name: "raw_locn size", img: mutated(true, put64(synthLocn+8, 1<<40)), areaErr: "does not fit", fallback: true},
		{name: "text over the size limit", img: mutated(true, func(b []byte) {
			put64(synthLabel+112, 40<<20)(b)
			put64(synthMDAOff+32, 40<<20)(b)
			put64(synthLocn+8, 33<<20)(b)
		}), size: 64 << 20, areaErr: "over the limit", fallback: true},
		{name: "metadata CRC", img: mutated(false, func(b []byte) { b[synthText+30] ^= 1 }), areaErr: "bad checksum", asmErr: "no usable metadata"},
		{name: "text too deep", img: withText(deep), areaErr: "nested deeper than 32", asmErr: "no usable metadata"},
		{name: "text syntax", img: withVG("seqno = 1", "seqno = = 1"), areaErr: "line 3: expected a value", asmErr: "no usable metadata"},
		{name: "text not a VG", img: withVG("Text Format Volume Group", "Something else"), areaErr: "contents", asmErr: "no usable metadata"},
		{name: "no seqno", img: withVG("seqno = 1", "seqnr = 1"), areaErr: "synth/seqno: missing", asmErr: "no usable metadata"},
		{name: "duplicate LV", img: withLVs("str {", "lin {"), areaErr: `duplicate name "lin"`, asmErr: "no usable metadata"},
		{name: "extent_size huge", img: withVG("extent_size = 2048", "extent_size = 429496729600"), asmErr: "extent_size 429496729600 sectors out of range"},
		{name: "negative pe_start", img: withVG("pe_start = 2048", "pe_start = -2048"), asmErr: "pe_start: negative"},
		{name: "segment past pe_count", img: withLVs(`"pv0", 5]`, `"pv0", 14]`), lvErr: map[string]string{"lin": "extents 14-16 past pe_count 15", "str": ""}},
		{name: "segment past the device", img: withVG("pe_count = 15", "pe_count = 100", `"pv0", 11]`, `"pv0", 90]`), lvErr: map[string]string{"str": "end past the device's 16777216 bytes", "lin": ""}},
		{name: "extent_count overflow", img: withLVs("extent_count = 2\n", "extent_count = 9223372036854775807\n"), lvErr: map[string]string{"lin": "out of range", "str": ""}},
		{name: "LV size overflow", img: withText(strings.NewReplacer("extent_size = 2048", "extent_size = 4294967296").Replace(synthVGDesc(1,
			lvSection("big", "x", true, linSeg(0, 1<<39, "pv0", 0))).text())), lvErr: map[string]string{"big": "overflow"}},
		{name: "negative extent", img: withLVs(`"pv0", 0]`, `"pv0", -1]`), lvErr: map[string]string{"lin": "bad start extent -1", "str": ""}},
		{name: "unknown area", img: withLVs(`"pv0", 5]`, `"pv7", 5]`), lvErr: map[string]string{"lin": `area "pv7" names no PV or LV`}},
		{name: "LV stacked on itself", img: withLVs(`"pv0", 5]`, `"str", 0]`, `"pv0", 8, "pv0", 11]`, `"lin", 0, "lin", 2]`),
			lvErr: map[string]string{"lin": "stacked on itself", "str": "stacked on itself"}},
		{name: "segment gap", img: withLVs("start_extent = 3", "start_extent = 4"), lvErr: map[string]string{"lin": "gap", "str": ""}},
		{name: "stripes not divisible", img: withLVs("extent_count = 4\ntype", "extent_count = 3\ntype"), lvErr: map[string]string{"str": "not divisible by stripe_count"}},
		{name: "stripe_count mismatch", img: withLVs("stripe_count = 2", "stripe_count = 3"), lvErr: map[string]string{"str": "stripes lists 2 areas, stripe_count is 3"}},
		{name: "stripe_count huge", img: withLVs("stripe_count = 2", "stripe_count = 9999999"), lvErr: map[string]string{"str": "stripe_count 9999999 out of range"}},
		{name: "stripe_size not dividing", img: withLVs("stripe_size = 128", "stripe_size = 3"), lvErr: map[string]string{"str": "not a multiple of stripe_size"}},
		{name: "string for integer", img: withLVs("extent_count = 2\n", "extent_count = \"2\"\n"), lvErr: map[string]string{"lin": "is a string, want an integer"}},
		{name: "raid1 legs unknown", img: withLVs(`type = "striped"
stripe_count = 2
stripe_size = 128
stripes = ["pv0", 8, "pv0", 11]`, `type = "raid1"
device_count = 2
raids = ["m0", "i0", "m1", "i1"]`), lvErr: map[string]string{"str": `area "i0" names no PV or LV`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			size := c.size
			if size == 0 {
				size = synthDevSize
			}
			r := fstest.PadReader{Data: c.img(), Size: size}
			pv, err := ReadPV(r, size)
			if err != nil {
				t.Log(err)
			}
			if c.readErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.readErr) || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotPV)) {
					t.Fatalf("ReadPV error %v, want %q", err, c.readErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadPV: %v", err)
			}
			if c.areaErr != "" {
				aerr := pv.MetadataAreas[0].Err
				if aerr == nil || !strings.Contains(aerr.Error(), c.areaErr) || !errors.Is(aerr, ErrCorrupt) {
					t.Fatalf("area error %v, want %q", aerr, c.areaErr)
				}
			}
			if c.fallback {
				if pv.Metadata == nil || pv.Metadata.Verified || len(pv.Warnings) < 2 || !strings.Contains(strings.Join(pv.Warnings, "\n"), "older copy") {
					t.Fatalf("want a fall-back: metadata %v, warnings %q", pv.Metadata, pv.Warnings)
				}
			}
			for _, a := range pv.MetadataAreas {
				if a.Err != nil {
					t.Log(a.Err)
				}
			}
			vgs, errs := Assemble([]*PV{pv})
			joined := errors.Join(errs...)
			if joined != nil {
				t.Log(joined)
			}
			for _, vg := range vgs {
				for _, lv := range vg.LVs {
					if lv.Err != nil {
						t.Log(lv.Err)
					}
				}
			}
			if c.asmErr != "" {
				if joined == nil || !strings.Contains(joined.Error(), c.asmErr) || !errors.Is(joined, ErrCorrupt) || len(vgs) != 0 {
					t.Fatalf("Assemble: %d VGs, errors %v; want %q", len(vgs), joined, c.asmErr)
				}
				return
			}
			if joined != nil || len(vgs) != 1 {
				t.Fatalf("Assemble: %d VGs, errors %v", len(vgs), joined)
			}
			for name, reason := range c.lvErr {
				lv := vgs[0].LV(name)
				if lv == nil {
					t.Fatalf("no LV %s", name)
				}
				if reason == "" {
					if lv.Err != nil {
						t.Fatalf("LV %s: %v", name, lv.Err)
					}
					continue
				}
				if !strings.Contains(lv.Reason, reason) || !errors.Is(lv.Err, ErrCorrupt) {
					t.Fatalf("LV %s: reason %q, error %v; want %q", name, lv.Reason, lv.Err, reason)
				}
			}
			readAll(vgs)
		})
	}
}

// readAll reads the start and end of every LV that has a reader (fuzzing
// and corruption tests: it must not panic or hang).
func readAll(vgs []*VG) {
	buf := make([]byte, 64<<10)
	for _, vg := range vgs {
		for _, lv := range append(vg.LVs, vg.HiddenLVs...) {
			r, err := lv.Open()
			if err != nil {
				continue
			}
			r.ReadAt(buf, 0)
			r.ReadAt(buf, r.Size()-int64(len(buf))/2)
			io.ReadFull(io.NewSectionReader(r, r.Size()/2, 1000), buf[:1000])
		}
	}
}
