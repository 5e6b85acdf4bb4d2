package ext4

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// TestMapData checks MapData against the raw image on files with holes,
// unwritten extents and many blocks, and that inline data is not mapped.
func TestMapData(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ext4-4k", []string{"-b", "4096"}},
		{"ext4-1k", []string{"-b", "1024"}},
		{"ext4-inline", []string{"-b", "4096", "-O", "inline_data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			bs := int64(4096)
			if tc.name == "ext4-1k" {
				bs = 1024
			}
			fixups := buildTree(t, src, bs, false)
			img := makeFS(t, "mkfs.ext4", tc.args, src, 12, fixups)
			fsys := openImage(t, img)
			raw, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, name := range []string{"big", "sparse", "leadinghole", "unwritten", "odd", "oneblock"} {
				e, err := fsys.Lookup(fsys.Root(), name)
				if err != nil {
					t.Fatal(err)
				}
				fl, err := fsys.Open(e.Ino)
				if err != nil {
					t.Fatal(err)
				}
				fstest.CheckMapData(t, raw, name, fl, true)
			}
			if tc.name == "ext4-inline" {
				e, _ := fsys.Lookup(fsys.Root(), "Grüße, 世界 ✓.txt")
				fl, err := fsys.Open(e.Ino)
				if err != nil {
					t.Fatal(err)
				}
				fstest.CheckMapData(t, raw, "inline", fl, false)
			}
		})
	}
}

// TestOverlayTouches: MapData refuses ranges whose blocks the replayed
// journal holds newer copies of.
func TestOverlayTouches(t *testing.T) {
	o := &overlay{blocks: map[uint64]jblock{10: {}, 20: {}}, sorted: []uint64{10, 20}}
	for _, c := range []struct {
		blk, n uint64
		want   bool
	}{{0, 10, false}, {0, 11, true}, {10, 1, true}, {11, 9, false}, {11, 10, true}, {21, 100, false}} {
		if got := o.touches(c.blk, c.n); got != c.want {
			t.Errorf("touches(%d, %d) = %v, want %v", c.blk, c.n, got, c.want)
		}
	}
	if (*overlay)(nil).touches(0, 1<<40) {
		t.Error("no overlay touches something")
	}
}
