package disk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// Layout of vhdxtest files (see vhdxtest.Bytes): log at 1 MiB, metadata
// region at 2 MiB, BAT at 3 MiB, blocks after.
const (
	metaOff = 2 * disk.MiB
	batOff  = 3 * disk.MiB
)

// template builds a small valid differencing or base file.
func template(t testing.TB, diff bool) []byte {
	t.Helper()
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB})
	base.Write(0, bytes.Repeat([]byte{7}, 3*disk.MiB))
	im := base
	if diff {
		im = vhdxtest.New(vhdxtest.Options{Parent: base, ParentPath: "/x/base.vhdx", BlockSize: disk.MiB})
		im.Write(512, bytes.Repeat([]byte{9}, 4096))
		im.Write(2*disk.MiB, bytes.Repeat([]byte{9}, disk.MiB))
	}
	b, err := im.Bytes("/x/child.avhdx")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(b []byte) (*disk.File, error) {
	return disk.NewFile(bytes.NewReader(b), int64(len(b)), "test.vhdx")
}

func fixRegionCRC(b []byte, off int) {
	binary.LittleEndian.PutUint32(b[off+4:], disk.Checksum(b[off:off+disk.RegionTableSize], 4))
}

func TestCorruptFiles(t *testing.T) {
	put64 := func(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
	put32 := func(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	cases := []struct {
		name   string
		diff   bool
		mutate func(b []byte) []byte
		err    error  // nil: must open
		field  string // must appear in the message
	}{
		{"empty file", false, func(b []byte) []byte { return b[:0] }, disk.ErrNotVHDX, "Signature"},
		{"not vhdx", false, func(b []byte) []byte { copy(b, "MZ\x90\x00"); return b }, disk.ErrNotVHDX, "file type identifier"},
		{"truncated in header 2", false, func(b []byte) []byte { return b[:100*disk.KiB] }, disk.ErrTruncated, "header section"},
		{"truncated in the metadata region", false, func(b []byte) []byte { return b[:metaOff+4096] }, disk.ErrTruncated, "region table entry"},
		{"truncated in the BAT", false, func(b []byte) []byte { return b[:batOff+4096] }, disk.ErrTruncated, "region table entry"},
		{"truncated in the last block", false, func(b []byte) []byte { return b[:len(b)-4096] }, disk.ErrTruncated, "BAT entry"},
		{"bad CRC in header 1 (survived)", false, func(b []byte) []byte { b[disk.Header1Offset+100]++; return b }, nil, ""},
		{"bad CRC in header 2 (survived)", false, func(b []byte) []byte { b[disk.Header2Offset+100]++; return b }, nil, ""},
		{"bad CRC in both headers", false, func(b []byte) []byte { b[disk.Header1Offset+100]++; b[disk.Header2Offset+100]++; return b }, disk.ErrCorrupt, "neither header"},
		{"header version 2", false, func(b []byte) []byte {
			for _, o := range []int{disk.Header1Offset, disk.Header2Offset} {
				binary.LittleEndian.PutUint16(b[o+66:], 2)
				put32(b, o+4, disk.Checksum(b[o:o+disk.HeaderSize], 4))
			}
			return b
		}, disk.ErrUnsupported, "Version"},
		{"bad region table 1 (survived)", false, func(b []byte) []byte { b[disk.RegionTable1Offset+20]++; return b }, nil, ""},
		{"bad region tables", false, func(b []byte) []byte { b[disk.RegionTable1Offset+20]++; b[disk.RegionTable2Offset+20]++; return b }, disk.ErrCorrupt, "region tables"},
		{"unknown required region", false, func(b []byte) []byte {
			for _, o := range []int{disk.RegionTable1Offset, disk.RegionTable2Offset} {
				b[o+16+32] ^= 0xff // GUID of entry 1
				fixRegionCRC(b, o)
			}
			return b
		}, disk.ErrUnsupported, "marked required"},
		{"metadata region missing", false, func(b []byte) []byte {
			for _, o := range []int{disk.RegionTable1Offset, disk.RegionTable2Offset} {
				b[o+16+32] ^= 0xff
				put32(b, o+16+32+28, 0) // not required
				fixRegionCRC(b, o)
			}
			return b
		}, disk.ErrCorrupt, "metadata region is missing"},
		{"region overlapping the log", false, func(b []byte) []byte {
			for _, o := range []int{disk.RegionTable1Offset, disk.RegionTable2Offset} {
				put64(b, o+16+32+16, disk.MiB) // metadata at 1 MiB, where the log is
				fixRegionCRC(b, o)
			}
			return b
		}, disk.ErrCorrupt, "overlaps"},
		{"metadata signature", false, func(b []byte) []byte { b[metaOff] = 'X'; return b }, disk.ErrCorrupt, "metadata table"},
		{"required metadata item missing", false, func(b []byte) []byte {
			b[metaOff+32+32*1] ^= 0xff      // Virtual Disk Size becomes unknown ...
			put32(b, metaOff+32+32*1+24, 0) // ... and not required
			return b
		}, disk.ErrCorrupt, "Virtual Disk Size"},
		{"metadata item outside the region", false, func(b []byte) []byte { put32(b, metaOff+32+16, 2*disk.MiB); return b }, disk.ErrCorrupt, "outside"},
		{"block size not a power of two", false, func(b []byte) []byte { put32(b, metaOff+64*disk.KiB, 3*disk.MiB); return b }, disk.ErrCorrupt, "BlockSize"},
		{"absurd block size", false, func(b []byte) []byte { put32(b, metaOff+64*disk.KiB, 1<<31); return b }, disk.ErrCorrupt, "BlockSize"},
		{"absurd virtual size", false, func(b []byte) []byte { put64(b, metaOff+64*disk.KiB+8, 1<<62); return b }, disk.ErrCorrupt, "Virtual Disk Size"},
		{"sector size 1024", false, func(b []byte) []byte { put32(b, metaOff+64*disk.KiB+32, 1024); return b }, disk.ErrCorrupt, "Logical Sector Size"},
		{"BAT region too small for the disk", false, func(b []byte) []byte {
			put64(b, metaOff+64*disk.KiB+8, 1<<40) // 1 TiB needs 8 MiB of BAT at 1 MiB blocks
			return b
		}, disk.ErrCorrupt, "BAT Length"},
		{"BAT offset past the end", false, func(b []byte) []byte {
			put64(b, batOff, uint64(disk.MakeBATEntry(disk.BlockFullyPresent, 1<<40)))
			return b
		}, disk.ErrTruncated, "BAT entry 0"},
		{"BAT offset in the header section", false, func(b []byte) []byte {
			put64(b, batOff, uint64(disk.MakeBATEntry(disk.BlockFullyPresent, 0)))
			return b
		}, disk.ErrCorrupt, "header section"},
		{"BAT offset overlapping the metadata region", false, func(b []byte) []byte {
			put64(b, batOff, uint64(disk.MakeBATEntry(disk.BlockFullyPresent, metaOff)))
			return b
		}, disk.ErrCorrupt, "overlaps"},
		{"two BAT entries on one block", false, func(b []byte) []byte {
			copy(b[batOff+8:batOff+16], b[batOff:batOff+8])
			return b
		}, disk.ErrCorrupt, "overlaps the block"},
		{"PARTIALLY_PRESENT in a dynamic file", false, func(b []byte) []byte {
			e := binary.LittleEndian.Uint64(b[batOff:])
			put64(b, batOff, e&^7|7)
			return b
		}, disk.ErrCorrupt, "PARTIALLY_PRESENT"},
		{"partial block without its sector bitmap", true, func(b []byte) []byte {
			// chunk ratio at 1 MiB blocks and 512-byte sectors: 4096
			put64(b, batOff+4096*8, 0)
			return b
		}, nil, ""}, // opens; the read of that block fails (below)
		{"parent locator entry outside the item", true, func(b []byte) []byte {
			plOff := metaOff + 64*disk.KiB + 40
			put32(b, plOff+20, 1<<20) // first key offset
			return b
		}, disk.ErrCorrupt, "Parent Locator"},
		{"differencing without parent_linkage", true, func(b []byte) []byte {
			plOff := metaOff + 64*disk.KiB + 40
			i := bytes.Index(b[plOff:plOff+4096], []byte("p\x00a\x00r\x00e\x00n\x00t\x00_\x00l"))
			b[plOff+i] = 'q'
			return b
		}, disk.ErrCorrupt, "parent_linkage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(template(t, c.diff))
			f, err := open(b)
			checkAgrees(t, b, err)
			if c.err == nil {
				if err != nil {
					t.Fatalf("should open: %v", err)
				}
				if c.diff {
					if _, err := f.BlockExtents(0, nil); !errors.Is(err, disk.ErrCorrupt) || !errors.Is(err, disk.ErrSalvageable) {
						t.Fatalf("reading the damaged block: %v, want ErrCorrupt and ErrSalvageable", err)
					}
				} else if len(f.Warnings) == 0 {
					t.Errorf("survived damage without a warning")
				}
				return
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			var fe *disk.FormatError
			if !errors.As(err, &fe) || fe.File != "test.vhdx" {
				t.Errorf("error does not name the file: %v", err)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("error %q does not mention %q", err, c.field)
			}
		})
	}
}

// checkAgrees: Check's first error is the strict open's error err, and a
// salvage open succeeds exactly when err matches ErrSalvageable (and then
// Check finds the file usable). A file a strict open accepts may only have
// a missing sector bitmap, which the strict reader reports at the read.
func checkAgrees(t *testing.T, b []byte, err error) {
	t.Helper()
	_, rep := check(b)
	var first error
	for _, p := range rep.Problems {
		if p.Severity == disk.SeverityError && first == nil {
			first = p.Err
		}
	}
	switch {
	case err == nil && first != nil && !strings.HasPrefix(rep.Problems[0].Structure, "sector bitmap"):
		t.Errorf("strict open succeeded, Check found %v", first)
	case err != nil && (first == nil || first.Error() != err.Error()):
		t.Errorf("strict open: %v; Check's first error: %v", err, first)
	}
	_, serr := disk.NewFileWith(bytes.NewReader(b), int64(len(b)), "test.vhdx", disk.ReadOptions{Salvage: true})
	if err != nil && (serr == nil) != errors.Is(err, disk.ErrSalvageable) {
		t.Errorf("salvage open: %v, but strict error %v salvageable: %v", serr, err, errors.Is(err, disk.ErrSalvageable))
	}
	if (serr == nil) != rep.Usable {
		t.Errorf("salvage open: %v, Check says usable: %v", serr, rep.Usable)
	}
}

func TestOpenIsReadOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dirty.vhdx")
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB, DirtyLog: true})
	im.Write(disk.MiB, bytes.Repeat([]byte{3}, 8192))
	if err := im.Save(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	testutil.Unchanged(t, p)
	f, err := disk.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Log.Replayed {
		t.Fatal("dirty log not replayed")
	}
	ext, err := f.BlockExtents(1, nil)
	if err != nil || len(ext) != 1 || ext[0].Source != disk.Data {
		t.Fatalf("block 1 after replay: %+v %v", ext, err)
	}
}

// TestFileRange checks which ranges a file hands out as plain file bytes:
// not those a replayed log changed, not past the end of the file, and
// nothing when the file was not opened by Open.
func TestFileRange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dirty.vhdx")
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB, DirtyLog: true})
	im.Write(disk.MiB, bytes.Repeat([]byte{3}, 8192))
	if err := im.Save(p); err != nil {
		t.Fatal(err)
	}
	f, err := disk.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bat int64
	for _, r := range f.Regions {
		if r.GUID == disk.RegionBAT {
			bat = int64(r.FileOffset)
		}
	}
	ext, err := f.BlockExtents(1, nil)
	if err != nil || len(ext) == 0 || ext[0].Source != disk.Data {
		t.Fatalf("block 1: %+v %v", ext, err)
	}
	data := ext[0].FileOffset
	cases := []struct {
		name   string
		off, n int64
		ok     bool
	}{
		{"data block", data, 8192, true},
		{"BAT rewritten by the log", bat, 4096, false},
		{"range ending in the BAT", bat - 512, 1024, false},
		{"last byte", f.FileSize() - 1, 1, true},
		{"past the end", f.FileSize() - 1, 2, false},
		{"negative", -1, 10, false},
	}
	for _, c := range cases {
		if got := f.FileRange(c.off, c.n); (got != nil) != c.ok {
			t.Errorf("%s: FileRange(%d, %d) = %v, want ok %v", c.name, c.off, c.n, got, c.ok)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	nf, err := open(b)
	if err != nil {
		t.Fatal(err)
	}
	if nf.FileRange(data, 8192) != nil {
		t.Error("a file read through NewFile handed out an *os.File")
	}
}

func TestTruncatedLog(t *testing.T) {
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB, DirtyLog: true})
	im.Write(0, bytes.Repeat([]byte{3}, 8192))
	b, _ := im.Bytes("x")
	// The log says the file was flushed at its full size; cut the tail.
	_, err := open(b[:len(b)-disk.MiB])
	if !errors.Is(err, disk.ErrTruncated) || !strings.Contains(err.Error(), "FlushedFileOffset") || !errors.Is(err, disk.ErrSalvageable) {
		t.Fatalf("got %v", err)
	}
	// The log is whole: Check and a salvage open replay it, and what the
	// file lost past its end (here its sector bitmap-less last MiB) is
	// missing, not zeros.
	f, rep := check(b[:len(b)-disk.MiB])
	if f == nil || rep.Log != "dirty (replayed in memory)" || rep.Problems[0].Structure != "log" {
		t.Fatalf("check: %+v", rep)
	}
	if lb := f.LostBlocks(); len(lb) == 0 {
		t.Error("nothing lost")
	}
	// A log that cannot be replayed stops every mode.
	bad := bytes.Clone(b)
	for _, o := range []int{disk.Header1Offset, disk.Header2Offset} {
		binary.LittleEndian.PutUint16(bad[o+64:], 1) // LogVersion
		binary.LittleEndian.PutUint32(bad[o+4:], disk.Checksum(bad[o:o+disk.HeaderSize], 4))
	}
	if f, rep := check(bad); f != nil || rep.Log != "unreplayable" || rep.Errors() != 1 || rep.Problems[0].Structure != "log" {
		t.Fatalf("unreplayable log: %+v", rep)
	}
}

// FuzzOpen patches a valid file with fuzz-chosen bytes at fuzz-chosen
// places (a patch list: 4-byte offset, 1-byte length, bytes), so the
// fuzzer reaches every structure, then opens it in every mode (strict,
// salvage, Check) and reads every block.
func FuzzOpen(f *testing.F) {
	tmpl := [2][]byte{template(f, false), template(f, true)}
	f.Add(false, []byte{})
	f.Add(true, []byte{0x00, 0x00, 0x30, 0x00, 8, 1, 2, 3, 4, 5, 6, 7, 8})       // BAT
	f.Add(true, []byte{0x28, 0x00, 0x21, 0x00, 4, 0xff, 0xff, 0xff, 0xff})       // locator
	f.Add(false, []byte{0x08, 0x00, 0x21, 0x00, 8, 0, 0, 0, 0, 0, 0, 0, 0x40})   // virtual size
	f.Add(true, []byte{0x00, 0x80, 0x30, 0x00, 8, 0x07, 0, 0x40, 0, 0, 0, 0, 0}) // bitmap entry
	f.Fuzz(func(t *testing.T, diff bool, patches []byte) {
		i := 0
		if diff {
			i = 1
		}
		b := bytes.Clone(tmpl[i])
		patch(b, patches)
		fuzzAllModes(t, b)
	})
}

// FuzzTruncated cuts a valid file short (at cut modulo its size, in 512-byte
// units) after patching it as FuzzOpen does: the damage salvage is for.
func FuzzTruncated(f *testing.F) {
	tmpl := [2][]byte{template(f, false), template(f, true)}
	for _, c := range []uint32{100, 2*disk.MiB/512 + 8, 3*disk.MiB/512 + 8, 5*disk.MiB/512 + 3, uint32(len(tmpl[1])/512 - 1)} {
		f.Add(true, c, []byte{})
		f.Add(false, c, []byte{})
	}
	f.Fuzz(func(t *testing.T, diff bool, cut uint32, patches []byte) {
		i := 0
		if diff {
			i = 1
		}
		b := bytes.Clone(tmpl[i])
		patch(b, patches)
		fuzzAllModes(t, b[:int(cut)*512%len(b)])
	})
}

// fuzzAllModes opens b strictly, in salvage mode and with Check, and reads
// every block of what opens. The modes must agree (see checkAgrees) and
// nothing may panic.
func fuzzAllModes(t *testing.T, b []byte) {
	f, err := open(b)
	cf, rep := check(b)
	sf, serr := disk.NewFileWith(bytes.NewReader(b), int64(len(b)), "test.vhdx", disk.ReadOptions{Salvage: true})
	if (err == nil || errors.Is(err, disk.ErrSalvageable)) != (serr == nil) || (serr == nil) != rep.Usable || (cf == nil) != !rep.Usable {
		t.Fatalf("strict %v, salvage %v, check usable %v", err, serr, rep.Usable)
	}
	if err != nil && (len(rep.Problems) == 0 || rep.Errors() == 0) {
		t.Fatalf("strict open failed (%v), Check found nothing", err)
	}
	for _, x := range []*disk.File{f, sf, cf} {
		if x != nil {
			readBlocks(t, x)
		}
	}
	if sf != nil {
		lossesAgree(t, sf, sf.LostBlocks(), sf.BlockCount())
	}
}

// lossesAgree checks LostBlocks against BlockExtents: every Missing byte
// lies in a loss, and a Whole loss is Missing throughout.
func lossesAgree(t *testing.T, img disk.Image, losses []disk.Loss, blocks int64) {
	in := func(off, n int64) (found, whole bool) {
		for _, l := range losses {
			if l.Offset <= off && off+n <= l.Offset+l.Length {
				return true, l.Whole
			}
		}
		return false, false
	}
	for blk := int64(0); blk < min(blocks, 1<<16); blk++ {
		ext, err := img.BlockExtents(blk, nil)
		if err != nil {
			t.Fatalf("salvaged block %d: %v", blk, err)
		}
		for _, e := range ext {
			found, whole := in(e.Offset, e.Length)
			if e.Source == disk.Missing && !found {
				t.Fatalf("block %d: missing extent %+v in no loss of %+v", blk, e, losses)
			}
			if whole && e.Source != disk.Missing {
				t.Fatalf("block %d: extent %+v in a whole loss", blk, e)
			}
		}
	}
}

// readBlocks reads every block's extents, and some of their data.
func readBlocks(t *testing.T, f *disk.File) {
	for blk := int64(0); blk < f.BlockCount(); blk++ {
		ext, err := f.BlockExtents(blk, nil)
		if err != nil {
			continue
		}
		var sum int64
		for _, e := range ext {
			sum += e.Length
			if e.Source == disk.Data {
				buf := make([]byte, min(e.Length, 4096))
				f.ReadFileAt(buf, e.FileOffset)
			}
		}
		if want := min(f.BlockSize(), f.VirtualSize()-blk*f.BlockSize()); sum != want {
			t.Fatalf("block %d extents cover %d bytes, want %d", blk, sum, want)
		}
	}
}

// FuzzBAT replaces the BAT region's first bytes of a differencing file.
func FuzzBAT(f *testing.F) {
	tmpl := template(f, true)
	f.Add(tmpl[batOff : batOff+64])
	f.Fuzz(func(t *testing.T, bat []byte) {
		b := bytes.Clone(tmpl)
		copy(b[batOff:batOff+disk.MiB], bat)
		fuzzAllModes(t, b)
	})
}

// patch applies a fuzz patch list to b: 4-byte little-endian offset
// (modulo len(b)), 1-byte length, bytes.
func patch(b, patches []byte) {
	for len(patches) >= 5 {
		off := int(binary.LittleEndian.Uint32(patches)) % len(b)
		n := min(int(patches[4]), len(patches)-5, len(b)-off)
		copy(b[off:], patches[5:5+n])
		patches = patches[5+n:]
	}
}
