package disk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

func check(b []byte) (*disk.File, *disk.Report) {
	return disk.CheckReader(bytes.NewReader(b), int64(len(b)), "test.vhdx")
}

// TestCheckClean: valid files of every kind check clean and usable, and
// the report says what it saw.
func TestCheckClean(t *testing.T) {
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB})
	base.Write(0, bytes.Repeat([]byte{7}, 3*disk.MiB))
	cases := []struct {
		name string
		im   *vhdxtest.Image
		note string // a note the report must have
		log  string
	}{
		{"dynamic", base, "log: empty", "clean"},
		{"differencing", func() *vhdxtest.Image {
			im := vhdxtest.New(vhdxtest.Options{Parent: base, ParentPath: "/x/base.vhdx", BlockSize: disk.MiB})
			im.Write(512, bytes.Repeat([]byte{9}, 4096))
			return im
		}(), "differencing file", "clean"},
		{"fixed 4 KiB sectors", vhdxtest.New(vhdxtest.Options{VirtualSize: 4 * disk.MiB, BlockSize: disk.MiB, SectorSize: 4096, Fixed: true}), "logical sector size 4096", "clean"},
		{"dirty log", func() *vhdxtest.Image {
			im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB, DirtyLog: true, LogEntries: 3})
			im.Write(disk.MiB, bytes.Repeat([]byte{3}, 8192))
			return im
		}(), "replayed in memory", "dirty (replayed in memory)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.im.Bytes("/x/child.avhdx")
			if err != nil {
				t.Fatal(err)
			}
			f, rep := check(b)
			if !rep.Clean() || !rep.Usable || f == nil || !rep.Known || rep.VirtualSize != c.im.Options().VirtualSize || rep.Log != c.log {
				t.Fatalf("report %+v", rep)
			}
			if !strings.Contains(strings.Join(rep.Notes, "\n"), c.note) || !strings.Contains(strings.Join(rep.Notes, "\n"), "(current)") {
				t.Errorf("notes %q lack %q", rep.Notes, c.note)
			}
			// The file Check returns reads as a strict open's does.
			sf, err := open(b)
			if err != nil {
				t.Fatal(err)
			}
			for blk := int64(0); blk < sf.BlockCount(); blk++ {
				x, err1 := sf.BlockExtents(blk, nil)
				y, err2 := f.BlockExtents(blk, nil)
				if err1 != nil || err2 != nil || len(x) != len(y) || x[0] != y[0] {
					t.Fatalf("block %d: %v %v / %v %v", blk, x, err1, y, err2)
				}
			}
			if lb := f.LostBlocks(); len(lb) != 0 {
				t.Errorf("lost blocks %v in a clean file", lb)
			}
		})
	}
}

// TestCheckCap: a file with hundreds of bad BAT entries lists the first
// MaxProblemsPerKind of them and counts the rest.
func TestCheckCap(t *testing.T) {
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 512 * disk.MiB, BlockSize: disk.MiB})
	b, err := im.Bytes("x")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		binary.LittleEndian.PutUint64(b[batOff+8*i:], uint64(disk.MakeBATEntry(disk.BlockFullyPresent, int64(1+i)<<40)))
	}
	f, rep := check(b)
	if f == nil || len(rep.Problems) != disk.MaxProblemsPerKind || rep.Omitted["BAT entry"] != 300-disk.MaxProblemsPerKind || rep.Errors() != 300 || rep.Warnings() != 0 {
		t.Fatalf("%d problems listed, omitted %v, %d errors", len(rep.Problems), rep.Omitted, rep.Errors())
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "200 more BAT entry problems not listed") {
		t.Errorf("notes %q", rep.Notes)
	}
	if lb := f.LostBlocks(); len(lb) != 1 || lb[0].Length != 300*disk.MiB || !lb[0].Whole {
		t.Errorf("lost blocks %v", lb)
	}
	sf, err := disk.NewFileWith(bytes.NewReader(b), int64(len(b)), "x", disk.ReadOptions{Salvage: true})
	if err != nil || !strings.Contains(sf.Warnings[len(sf.Warnings)-1], "200 more") {
		t.Fatalf("salvage: %v", err)
	}
}

// TestSalvageExtents: what BlockExtents of a salvaged file says about a
// block cut in its middle (sector granularity) and one past the end.
func TestSalvageExtents(t *testing.T) {
	b := template(t, false) // blocks 0..2 with data at 4, 5, 6 MiB
	b = b[:5*disk.MiB+1000]
	f, err := disk.NewFileWith(bytes.NewReader(b), int64(len(b)), "x", disk.ReadOptions{Salvage: true})
	if err != nil {
		t.Fatal(err)
	}
	ext, err := f.BlockExtents(1, nil)
	want := []disk.Extent{{Offset: disk.MiB, Length: 512, Source: disk.Data, FileOffset: 5 * disk.MiB},
		{Offset: disk.MiB + 512, Length: disk.MiB - 512, Source: disk.Missing, FileOffset: 5*disk.MiB + 512}}
	if err != nil || len(ext) != 2 || ext[0] != want[0] || ext[1] != want[1] {
		t.Errorf("block 1: %+v %v, want %+v", ext, err, want)
	}
	if ext, err := f.BlockExtents(2, nil); err != nil || len(ext) != 1 || ext[0].Source != disk.Missing {
		t.Errorf("block 2: %+v %v", ext, err)
	}
	if ext, err := f.BlockExtents(3, nil); err != nil || len(ext) != 1 || ext[0].Source != disk.Zeros {
		t.Errorf("block 3 (not present): %+v %v", ext, err)
	}
	if _, err := open(b); !errors.Is(err, disk.ErrTruncated) || !errors.Is(err, disk.ErrSalvageable) {
		t.Errorf("strict: %v", err)
	}
}

// TestCheckIsReadOnly: checking a file on disk leaves it as it was.
func TestCheckIsReadOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dirty.vhdx")
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB, DirtyLog: true})
	im.Write(disk.MiB, bytes.Repeat([]byte{3}, 8192))
	if err := im.Save(p); err != nil {
		t.Fatal(err)
	}
	testutil.Unchanged(t, p)
	rep, err := disk.Check(p)
	if err != nil || !rep.Clean() {
		t.Fatalf("%+v %v", rep, err)
	}
	if _, err := disk.Check(p + ".none"); err == nil {
		t.Error("Check of a missing file succeeded")
	}
}
