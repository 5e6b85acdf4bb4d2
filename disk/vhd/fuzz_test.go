package vhd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd"
)

// check reads everything a file that opened claims to hold: every block's
// extents (which must cover the block exactly), their data, the block
// states and the parent reference. It must not panic.
func check(t *testing.T, f *vhd.File) {
	bs := f.BlockSize()
	var ext []disk.Extent
	for b := int64(0); b < min(f.BlockCount(), 4096); b++ {
		var err error
		if ext, err = f.BlockExtents(b, ext[:0]); err != nil {
			continue
		}
		var sum int64
		for _, e := range ext {
			sum += e.Length
			if e.Source == disk.Data {
				buf := make([]byte, min(e.Length, 4096))
				if _, err := f.ReadFileAt(buf, e.FileOffset); err != nil {
					t.Fatalf("block %d: data at %d unreadable: %v", b, e.FileOffset, err)
				}
			}
		}
		if sum != bs {
			t.Fatalf("block %d extents cover %d bytes, want %d", b, sum, bs)
		}
	}
	f.BlockStates()
	f.Parent()
	f.CheckParent(f)
}

// fuzzAllModes opens b strictly, in salvage mode and with Check, and
// reads what opens. The modes must agree and nothing may panic.
func fuzzAllModes(t *testing.T, b []byte) {
	f, err := openBytes(b)
	cf, rep := vhd.CheckReader(bytes.NewReader(b), int64(len(b)), "t.vhd")
	sf, serr := vhd.NewFileWith(bytes.NewReader(b), int64(len(b)), "t.vhd", disk.ReadOptions{Salvage: true})
	if (err == nil || errors.Is(err, disk.ErrSalvageable)) != (serr == nil) || (serr == nil) != rep.Usable || (cf == nil) != !rep.Usable {
		t.Fatalf("strict %v, salvage %v, check usable %v", err, serr, rep.Usable)
	}
	if err != nil && rep.Errors() == 0 {
		t.Fatalf("strict open failed (%v), Check found nothing", err)
	}
	for _, x := range []*vhd.File{f, sf, cf} {
		if x != nil {
			check(t, x)
		}
	}
	if sf == nil {
		return
	}
	// LostBlocks against BlockExtents: every Missing byte lies in a loss,
	// and a Whole loss is Missing throughout.
	losses := sf.LostBlocks()
	in := func(off, n int64) (found, whole bool) {
		for _, l := range losses {
			if l.Offset <= off && off+n <= l.Offset+l.Length {
				return true, l.Whole
			}
		}
		return false, false
	}
	for blk := int64(0); blk < min(sf.BlockCount(), 1<<16); blk++ {
		ext, err := sf.BlockExtents(blk, nil)
		if err != nil {
			t.Fatalf("salvaged block %d: %v", blk, err)
		}
		for _, e := range ext {
			found, whole := in(e.Offset, e.Length)
			if e.Source == disk.Missing && !found || whole && e.Source != disk.Missing {
				t.Fatalf("block %d: extent %+v, losses %+v", blk, e, losses)
			}
		}
	}
}

// FuzzTruncated cuts a valid template short (at cut modulo its size) after
// patching it as FuzzOpen does.
func FuzzTruncated(f *testing.F) {
	var tmpl [kinds][]byte
	for k := range tmpl {
		tmpl[k] = template(f, k)
	}
	for _, c := range []uint32{100, 1000, 1600, 3000, 40000} {
		f.Add(uint8(kindDiff), c, []byte{})
		f.Add(uint8(kindDynamic), c, []byte{})
	}
	f.Fuzz(func(t *testing.T, kind uint8, cut uint32, patches []byte) {
		b := bytes.Clone(tmpl[int(kind)%kinds])
		patch(b, patches)
		fuzzAllModes(t, b[:int(cut)%len(b)])
	})
}

// FuzzOpen patches a valid template (see template) and opens it. patches
// is a list of (4-byte little-endian offset, length byte, bytes); with
// reseal the footer and header checksums are recomputed afterwards, so
// that the fuzzer reaches the fields behind them.
func FuzzOpen(f *testing.F) {
	var tmpl [kinds][]byte
	for k := range tmpl {
		tmpl[k] = template(f, k)
	}
	f.Add(uint8(kindDiff), false, []byte{})
	f.Add(uint8(kindDiff), true, []byte{0x00, 0x06, 0, 0, 4, 0x00, 0x00, 0x00, 0x06})    // BAT entry 0
	f.Add(uint8(kindDiff), true, []byte{0x0c, 0x0c, 0, 0, 4, 0x77, 0x77, 0x77, 0x77})    // a bitmap
	f.Add(uint8(kindDynamic), true, []byte{0x20, 0x02, 0, 0, 4, 0x00, 0x00, 0x02, 0x00}) // block size
	f.Add(uint8(kindFixed), false, []byte{0x30, 0x00, 0, 0, 2, 0xff, 0xff})              // data
	f.Add(uint8(kindDiff), true, []byte{0x48, 0x02, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x0b, 0}) // locator offset
	f.Fuzz(func(t *testing.T, kind uint8, resealSums bool, patches []byte) {
		b := bytes.Clone(tmpl[int(kind)%kinds])
		patch(b, patches)
		if resealSums {
			reseal(b)
		}
		fuzzAllModes(t, b)
	})
}

// FuzzNewFile opens arbitrary bytes.
func FuzzNewFile(f *testing.F) {
	f.Add([]byte("conectix"))
	f.Add(template(f, kindDynamic))
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzAllModes(t, b)
	})
}

// patch applies a fuzz patch list to b: 4-byte little-endian offset
// (modulo len(b)), 1-byte length, bytes.
func patch(b, patches []byte) {
	for len(patches) >= 5 {
		off := int(binary.LittleEndian.Uint32(patches) % uint32(len(b)))
		n := min(int(patches[4]), len(patches)-5, len(b)-off)
		copy(b[off:], patches[5:5+n])
		patches = patches[5+n:]
	}
}
