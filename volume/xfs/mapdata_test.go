package xfs

import (
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// TestMapData checks MapData against the raw image on fragmented, sparse,
// preallocated and unwritten files and a big one.
func TestMapData(t *testing.T) {
	img := v5Image(t)
	fsys := openImage(t, img.path)
	raw, err := os.Open(img.path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, name := range []string{"frag", "sparse", "leadinghole", "unwritten", "unwritten-only", "prealloc-past-eof", "big"} {
		fl, err := fsys.Open(lookupPath(t, fsys, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fstest.CheckMapData(t, raw, name, fl, true)
	}
}
