package ntfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/volume"
)

// checkMapData rebuilds ranges of f from the pieces MapData gives, read
// from the raw image, and compares them with the file's own bytes (want):
// the whole file, its last byte, and random ranges. ok is what MapData
// must answer.
func checkMapData(t *testing.T, img []byte, name string, f volume.File, want []byte, ok bool) {
	t.Helper()
	dm, isMapper := f.(volume.DataMapper)
	if !isMapper {
		t.Fatalf("%s: not a volume.DataMapper", name)
	}
	rng := rand.New(rand.NewPCG(uint64(len(want)), 1))
	ranges := [][2]int64{{0, int64(len(want))}, {int64(len(want)) - 1, 1}}
	for range 50 {
		off := rng.Int64N(int64(len(want)))
		ranges = append(ranges, [2]int64{off, 1 + rng.Int64N(min(int64(len(want))-off, 300<<10))})
	}
	for _, r := range ranges {
		ext, got := dm.MapData(r[0], r[1], nil)
		if got != ok {
			t.Fatalf("%s: MapData(%d, %d): ok %v, want %v", name, r[0], r[1], got, ok)
		}
		if !ok {
			continue
		}
		var b []byte
		next := r[0]
		for _, e := range ext {
			if e.Logical != next || e.Length <= 0 {
				t.Fatalf("%s: MapData(%d, %d): piece %+v does not follow %d", name, r[0], r[1], e, next)
			}
			if e.Physical < 0 {
				b = append(b, make([]byte, e.Length)...)
			} else {
				b = append(b, img[e.Physical:e.Physical+e.Length]...)
			}
			next += e.Length
		}
		if next != r[0]+r[1] || !bytes.Equal(b, want[r[0]:r[0]+r[1]]) {
			t.Fatalf("%s: MapData(%d, %d): the pieces' bytes differ from the file's", name, r[0], r[1])
		}
	}
	if _, got := dm.MapData(int64(len(want))-1, 2, nil); got {
		t.Errorf("%s: MapData past the end of the file answered ok", name)
	}
}

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
	f, err := os.Create(m.path("sparse.bin"))
	must(t, err)
	_, err = f.WriteAt(sparse[2<<20:2<<20+5000], 2<<20)
	must(t, err)
	must(t, f.Truncate(int64(len(sparse))))
	must(t, f.Close())
	writeFile(t, m.path("small.txt"), []byte("resident"))
	fragment(t, m, 1200, 4096)
	want := appendInterleaved(t, m, []string{"frag1", "frag2"}, 550*4096, 4096)
	want["sparse.bin"] = sparse
	must(t, m.unmount())

	raw, err := os.ReadFile(img)
	must(t, err)
	fsys := openImage(t, img)
	for _, name := range []string{"frag1", "frag2", "sparse.bin"} {
		e, err := fsys.Lookup(5, name)
		must(t, err)
		f, err := fsys.Open(e.Ino)
		must(t, err)
		checkMapData(t, raw, name, f, want[name], true)
	}
	e, err := fsys.Lookup(5, "small.txt")
	must(t, err)
	f2, err := fsys.Open(e.Ino)
	must(t, err)
	checkMapData(t, raw, "small.txt", f2, []byte("resident"), false)
}
