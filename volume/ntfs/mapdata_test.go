package ntfs

import (
	"bytes"
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// TestMapData checks MapData on a fragmented file (more than 1 000 runs
// in extension records), a sparse one, a file with an initialized size
// below its size, and a resident one (not mappable).
func TestMapData(t *testing.T) {
	requireTools(t)
	t.Parallel()
	dir := t.TempDir()
	img := makeImage(t, dir, 64, "map")
	m := mountImage(t, img, "big_writes")
	sparse := make([]byte, 3<<20+777)
	copy(sparse[2<<20:], pattern(3, 5000))
	f, err := os.Create(m.Path("sparse.bin"))
	must(t, err)
	_, err = f.WriteAt(sparse[2<<20:2<<20+5000], 2<<20)
	must(t, err)
	must(t, f.Truncate(int64(len(sparse))))
	must(t, f.Close())
	writeFile(t, m.Path("small.txt"), []byte("resident"))
	fragment(t, m, 1200, 4096)
	want := appendInterleaved(t, m, []string{"frag1", "frag2"}, 550*4096, 4096)
	want["sparse.bin"] = sparse
	must(t, m.Unmount())

	raw, err := os.Open(img)
	must(t, err)
	defer raw.Close()
	fsys := openImage(t, img)
	for _, name := range []string{"frag1", "frag2", "sparse.bin"} {
		e, err := fsys.Lookup(5, name)
		must(t, err)
		f, err := fsys.Open(e.Ino)
		must(t, err)
		got, err := readAllFast(f)
		must(t, err)
		if !bytes.Equal(got, want[name]) {
			t.Fatalf("%s: content differs", name)
		}
		fstest.CheckMapData(t, raw, name, f, true)
	}
	e, err := fsys.Lookup(5, "small.txt")
	must(t, err)
	f2, err := fsys.Open(e.Ino)
	must(t, err)
	fstest.CheckMapData(t, raw, "small.txt", f2, false)
}
