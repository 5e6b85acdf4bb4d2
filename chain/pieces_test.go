package chain

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
)

// TestPiecesRefuses checks that Pieces only describes bytes that lie as
// they are in a plain file: not those of a writable layer, nor those a
// replayed log changed, nor ranges outside the disk.
func TestPiecesRefuses(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "Disk.vhdx")
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * disk.MiB, BlockSize: disk.MiB})
	im.Write(0, bytes.Repeat([]byte{1}, 4*disk.MiB))
	if err := im.Save(base); err != nil {
		t.Fatal(err)
	}
	c, err := Open(base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := disk.CreateDifferencing(filepath.Join(dir, "top.avhdx"), disk.ParentInfoOf(c.Leaf().(*disk.File)), disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt(bytes.Repeat([]byte{2}, 4096), disk.MiB); err != nil {
		t.Fatal(err)
	}
	top := c.WithTop(w)

	cases := []struct {
		name      string
		c         *Chain
		off, n    int64
		ok        bool
		fromFiles int // pieces with a File
	}{
		{"base data", c, 4096, 64 << 10, true, 1},
		{"base data then zeros", c, 4*disk.MiB - 4096, 8192, true, 1},
		{"zeros only", c, 5 * disk.MiB, 4096, true, 0},
		{"under the writable layer, untouched", top, 2 * disk.MiB, 4096, true, 1},
		{"written in the writable layer", top, disk.MiB, 4096, false, 0},
		{"straddling the written range", top, disk.MiB - 512, 1024, false, 0},
		{"past the end", c, 8*disk.MiB - 512, 1024, false, 0},
		{"negative", c, -1, 512, false, 0},
		{"empty", c, 0, 0, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps, ok := tc.c.Pieces(tc.off, tc.n, nil)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v (%+v)", ok, tc.ok, ps)
			}
			if !ok {
				if len(ps) != 0 {
					t.Fatalf("refused but returned %+v", ps)
				}
				return
			}
			files, total := 0, int64(0)
			for _, p := range ps {
				if p.File != nil {
					files++
				}
				total += p.Length
			}
			if files != tc.fromFiles || total != tc.n {
				t.Fatalf("%d pieces from files, %d bytes; want %d, %d: %+v", files, total, tc.fromFiles, tc.n, ps)
			}
			want := make([]byte, tc.n)
			if _, err := tc.c.ReadAt(want, tc.off); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, tc.name, readPieces(t, ps, nil), want)
		})
	}
}
