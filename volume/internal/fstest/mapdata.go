package fstest

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/ckptfs/ckptfs/volume"
)

// CheckMapData rebuilds ranges of file f from the pieces its MapData
// (volume.DataMapper) gives, reading them from vol (the raw volume), and
// compares them with f's own ReadAt: the whole file, its last byte, and
// random ranges. mappable is whether MapData must answer ok. A range past
// the end must not be answered ok.
func CheckMapData(t testing.TB, vol io.ReaderAt, name string, f volume.File, mappable bool) {
	t.Helper()
	dm, ok := f.(volume.DataMapper)
	if !ok {
		t.Fatalf("%s: not a volume.DataMapper", name)
	}
	size := f.Size()
	if size == 0 {
		return
	}
	want := make([]byte, size)
	if n, err := f.ReadAt(want, 0); int64(n) != size && err != nil {
		t.Fatalf("%s: ReadAt: %v", name, err)
	}
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	ranges := [][2]int64{{0, size}, {size - 1, 1}}
	for range 40 {
		off := rng.Int64N(size)
		ranges = append(ranges, [2]int64{off, 1 + rng.Int64N(min(size-off, 300<<10))})
	}
	for _, r := range ranges {
		ext, got := dm.MapData(r[0], r[1], nil)
		if got != mappable {
			t.Fatalf("%s: MapData(%d, %d): ok %v, want %v", name, r[0], r[1], got, mappable)
		}
		if !got {
			continue
		}
		b := make([]byte, 0, r[1])
		next := r[0]
		for _, e := range ext {
			if e.Logical != next || e.Length <= 0 {
				t.Fatalf("%s: MapData(%d, %d): piece %+v does not follow %d", name, r[0], r[1], e, next)
			}
			p := make([]byte, e.Length)
			if e.Physical >= 0 {
				if _, err := vol.ReadAt(p, e.Physical); err != nil {
					t.Fatalf("%s: reading the volume at %d: %v", name, e.Physical, err)
				}
			}
			b = append(b, p...)
			next += e.Length
		}
		if next != r[0]+r[1] || !bytes.Equal(b, want[r[0]:r[0]+r[1]]) {
			t.Fatalf("%s: MapData(%d, %d): the pieces' bytes differ from the file's", name, r[0], r[1])
		}
	}
	if _, got := dm.MapData(size-1, 2, nil); got {
		t.Errorf("%s: MapData past the end of the file answered ok", name)
	}
}
