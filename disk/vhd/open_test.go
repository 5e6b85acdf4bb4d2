package vhd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// Template kinds for corruption tests and fuzzing: small files (4 KiB
// blocks) with a known layout (see vhdtest).
const (
	kindDiff = iota
	kindDynamic
	kindFixed
	kinds
)

// template returns the bytes of a small valid file of the given kind: a
// 64 KiB disk of 4 KiB blocks, differencing ones with W2ku and W2ru
// locators and partial bitmaps.
func template(t testing.TB, kind int) []byte {
	t.Helper()
	dir := t.TempDir()
	const size = 64 << 10
	base := vhdtest.New(vhdtest.Options{VirtualSize: size, BlockSize: 4096, Fixed: kind == kindFixed})
	base.Write(4096, fill(1, 8192))
	base.Write(40<<10, fill(2, 512))
	bp := save(t, base, filepath.Join(dir, "base.vhd"))
	p := bp
	if kind == kindDiff {
		child := vhdtest.New(vhdtest.Options{Parent: base, ParentPath: bp, BlockSize: 4096})
		child.Write(512, fill(3, 1024))
		child.Write(8192+3*512, fill(4, 512))
		child.Write(60<<10, fill(5, 4096))
		p = save(t, child, filepath.Join(dir, "child.avhd"))
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Layout of the templates (vhdtest's order).
const (
	hdr      = vhdtest.HeaderOffset
	bat      = vhdtest.TableOffset
	loc1     = hdr + 576 // first parent locator entry
	footerCk = 64
	headerCk = 36
)

func reseal(b []byte) {
	vhdtest.Reseal(b, 0, 512, footerCk)
	vhdtest.Reseal(b, len(b)-512, 512, footerCk)
	if binary.BigEndian.Uint64(b[len(b)-512+16:]) != ^uint64(0) {
		vhdtest.Reseal(b, hdr, 1024, headerCk)
	}
}

// setFooter writes v (4 or 8 bytes) at field off of both footer copies.
func setFooter(b []byte, off int, v uint64, n int) {
	for _, base := range []int{0, len(b) - 512} {
		if base == 0 && binary.BigEndian.Uint64(b[len(b)-512+16:]) == ^uint64(0) {
			continue // a fixed disk has no copy at 0
		}
		put(b[base+off:], v, n)
	}
}

func put(b []byte, v uint64, n int) {
	if n == 8 {
		binary.BigEndian.PutUint64(b, v)
	} else {
		binary.BigEndian.PutUint32(b, uint32(v))
	}
}

func openBytes(b []byte) (*vhd.File, error) {
	return vhd.NewFile(bytes.NewReader(b), int64(len(b)), "t.vhd")
}

// TestCorruption: each kind of damage gives one error naming the file and
// the field, wrapping the right sentinel; none panics.
func TestCorruption(t *testing.T) {
	firstAllocated := func(b []byte) int {
		for i := 0; i < 16; i++ {
			if binary.BigEndian.Uint32(b[bat+4*i:]) != vhd.Unallocated {
				return i
			}
		}
		return -1
	}
	cases := []struct {
		name     string
		kind     int
		damage   func(b []byte) []byte
		sentinel error
		field    string
	}{
		{"shorter than a footer", kindDiff, func(b []byte) []byte { return b[:100] }, disk.ErrTruncated, "footer"},
		{"both footer checksums", kindDiff, func(b []byte) []byte { b[footerCk] ^= 1; b[len(b)-512+footerCk] ^= 1; return b }, disk.ErrChecksum, "footer"},
		{"both cookies", kindDiff, func(b []byte) []byte { b[0] = 'X'; b[len(b)-512] = 'X'; return b }, vhd.ErrNotVHD, "footer: Cookie"},
		{"fixed footer checksum", kindFixed, func(b []byte) []byte { b[len(b)-512+footerCk] ^= 1; return b }, disk.ErrChecksum, "footer"},
		{"fixed disk truncated", kindFixed, func(b []byte) []byte {
			c := append(bytes.Clone(b[:len(b)-4096-512]), b[len(b)-512:]...)
			return c
		}, disk.ErrTruncated, "footer: Current Size"},
		{"truncated in the middle", kindDiff, func(b []byte) []byte { return b[:len(b)-5000] }, disk.ErrTruncated, "BAT entry"},
		{"file format version", kindDiff, func(b []byte) []byte { setFooter(b, 12, 0x00020000, 4); reseal(b); return b }, disk.ErrUnsupported, "File Format Version"},
		{"disk type", kindDiff, func(b []byte) []byte { setFooter(b, 60, 5, 4); reseal(b); return b }, disk.ErrUnsupported, "Disk Type"},
		{"current size zero", kindDiff, func(b []byte) []byte { setFooter(b, 48, 0, 8); reseal(b); return b }, disk.ErrCorrupt, "Current Size"},
		{"current size odd", kindDynamic, func(b []byte) []byte { setFooter(b, 48, 64<<10-1, 8); reseal(b); return b }, disk.ErrCorrupt, "Current Size"},
		{"current size absurd", kindDynamic, func(b []byte) []byte { setFooter(b, 48, 1<<50, 8); reseal(b); return b }, disk.ErrCorrupt, "Current Size"},
		{"current size past the BAT", kindDynamic, func(b []byte) []byte { setFooter(b, 48, 1<<30, 8); reseal(b); return b }, disk.ErrCorrupt, "Max Table Entries"},
		{"data offset", kindDiff, func(b []byte) []byte { setFooter(b, 16, 1<<40, 8); reseal(b); return b }, disk.ErrCorrupt, "Data Offset"},
		{"dynamic header checksum", kindDiff, func(b []byte) []byte { b[hdr+40] ^= 1; return b }, disk.ErrChecksum, "dynamic header"},
		{"dynamic header cookie", kindDiff, func(b []byte) []byte { b[hdr] = 'X'; reseal(b); return b }, disk.ErrCorrupt, "dynamic header"},
		{"header version", kindDynamic, func(b []byte) []byte { put(b[hdr+24:], 0x00020000, 4); reseal(b); return b }, disk.ErrUnsupported, "Header Version"},
		{"block size not a power of two", kindDiff, func(b []byte) []byte { put(b[hdr+32:], 3*4096, 4); reseal(b); return b }, disk.ErrCorrupt, "Block Size"},
		{"block size too small", kindDiff, func(b []byte) []byte { put(b[hdr+32:], 512, 4); reseal(b); return b }, disk.ErrCorrupt, "Block Size"},
		{"max table entries too few", kindDiff, func(b []byte) []byte { put(b[hdr+28:], 3, 4); reseal(b); return b }, disk.ErrCorrupt, "Max Table Entries"},
		{"max table entries absurd", kindDiff, func(b []byte) []byte { put(b[hdr+28:], 0xffffffff, 4); reseal(b); return b }, disk.ErrTruncated, "Table Offset"},
		{"BAT past the end", kindDiff, func(b []byte) []byte { put(b[hdr+16:], 1<<40, 8); reseal(b); return b }, disk.ErrTruncated, "Table Offset"},
		{"BAT entry past the end", kindDiff, func(b []byte) []byte { put(b[bat+4*7:], 0x7fffffff, 4); return b }, disk.ErrTruncated, "BAT entry 7"},
		{"BAT entry into the footer", kindDiff, func(b []byte) []byte { put(b[bat+4*7:], uint64(len(b)-1024)/512, 4); return b }, disk.ErrTruncated, "BAT entry 7"},
		{"blocks overlap", kindDiff, func(b []byte) []byte {
			i := firstAllocated(b)
			copy(b[bat+4*9:], b[bat+4*i:bat+4*i+4])
			return b
		}, disk.ErrCorrupt, "BAT entry"},
		{"block overlaps the BAT", kindDynamic, func(b []byte) []byte { put(b[bat+4*9:], bat/512, 4); return b }, disk.ErrCorrupt, "BAT entry 9"},
		{"block overlaps a locator", kindDiff, func(b []byte) []byte { put(b[bat+4*9:], bat/512+1, 4); return b }, disk.ErrCorrupt, "BAT entry 9"},
		{"locator past the end", kindDiff, func(b []byte) []byte { put(b[loc1+16:], 1<<40, 8); reseal(b); return b }, disk.ErrTruncated, "Parent Locator Entry 1 (W2ku): Platform Data Offset"},
		{"locator length absurd", kindDiff, func(b []byte) []byte { put(b[loc1+8:], 1<<30, 4); reseal(b); return b }, disk.ErrCorrupt, "Platform Data Length"},
		{"locators overlap", kindDiff, func(b []byte) []byte { copy(b[loc1+24+16:], b[loc1+16:loc1+24]); reseal(b); return b }, disk.ErrCorrupt, "dynamic header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.damage(template(t, c.kind))
			f, err := openBytes(b)
			checkAgrees(t, b, err)
			if err == nil {
				f.Close()
				t.Fatal("opened")
			}
			var fe *disk.FormatError
			if !errors.As(err, &fe) || fe.File != "t.vhd" || !strings.Contains(fe.Field, c.field) {
				t.Errorf("error %q does not name the file and field %q", err, c.field)
			}
			if !errors.Is(err, c.sentinel) {
				t.Errorf("error %q does not wrap %v", err, c.sentinel)
			}
		})
	}
}

// checkAgrees: Check's first error is the strict open's error err, and a
// salvage open succeeds exactly when err matches disk.ErrSalvageable
// (and then Check finds the file usable).
func checkAgrees(t *testing.T, b []byte, err error) {
	t.Helper()
	_, rep := vhd.CheckReader(bytes.NewReader(b), int64(len(b)), "t.vhd")
	var first error
	for _, p := range rep.Problems {
		if p.Severity == disk.SeverityError && first == nil {
			first = p.Err
		}
	}
	if (err == nil) != (first == nil) || err != nil && first.Error() != err.Error() {
		t.Errorf("strict open: %v; Check's first error: %v", err, first)
	}
	_, serr := vhd.NewFileWith(bytes.NewReader(b), int64(len(b)), "t.vhd", disk.ReadOptions{Salvage: true})
	if err != nil && (serr == nil) != errors.Is(err, disk.ErrSalvageable) {
		t.Errorf("salvage open: %v, but strict error %v salvageable: %v", serr, err, errors.Is(err, disk.ErrSalvageable))
	}
	if (serr == nil) != rep.Usable {
		t.Errorf("salvage open: %v, Check says usable: %v", serr, rep.Usable)
	}
}

// TestTemplatesOpen: the undamaged templates open and read as their
// models (the corruption cases start from valid files).
func TestTemplatesOpen(t *testing.T) {
	for k := 0; k < kinds; k++ {
		b := template(t, k)
		f, err := openBytes(b)
		if err != nil {
			t.Fatalf("kind %d: %v", k, err)
		}
		if len(f.Warnings) != 0 || f.FooterFromHead {
			t.Errorf("kind %d: warnings %q", k, f.Warnings)
		}
		if _, rep := vhd.CheckReader(bytes.NewReader(b), int64(len(b)), "t.vhd"); !rep.Clean() || !rep.Usable {
			t.Errorf("kind %d: check: %+v", k, rep)
		}
		readAll(t, f, nil)
	}
}

// TestUnreadableBAT: a BAT the operating system fails to read refuses a
// strict open with an error a salvage open gets past; the salvaged file
// reports every block whose entry was unreadable as missing, and Check
// names the BAT.
func TestUnreadableBAT(t *testing.T) {
	b := template(t, kindDiff)
	r := testutil.FailingReader{R: bytes.NewReader(b), Lo: bat, Hi: bat + 4}
	if _, err := vhd.NewFile(r, int64(len(b)), "t.vhd"); !errors.Is(err, testutil.ErrInjected) || !errors.Is(err, disk.ErrSalvageable) {
		t.Fatalf("strict open: %v", err)
	}
	_, rep := vhd.CheckReader(r, int64(len(b)), "t.vhd")
	if rep.Errors() != 1 || rep.Problems[0].Structure != "BAT" || !rep.Usable {
		t.Fatalf("check: %+v", rep.Problems)
	}
	f, err := vhd.NewFileWith(r, int64(len(b)), "t.vhd", disk.ReadOptions{Salvage: true})
	if err != nil {
		t.Fatal(err)
	}
	// A 4 KiB piece holds the whole (16-entry) BAT: every block is lost.
	lost := f.LostBlocks()
	if len(lost) != 1 || lost[0].Offset != 0 || lost[0].Length != f.VirtualSize() {
		t.Errorf("lost %+v", lost)
	}
	for blk := int64(0); blk < f.BlockCount(); blk++ {
		if ext, err := f.BlockExtents(blk, nil); err != nil || ext[0].Source != disk.Missing {
			t.Fatalf("block %d: %+v %v", blk, ext, err)
		}
	}
}
