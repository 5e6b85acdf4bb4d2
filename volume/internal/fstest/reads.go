package fstest

import (
	"bytes"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// Pattern returns n deterministic pseudo-random bytes for seed.
func Pattern(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// CountingReader counts the ReadAt calls made through it: tests check
// that a reader merges contiguous reads.
type CountingReader struct {
	R io.ReaderAt
	N atomic.Int64
}

// ReadAt counts the call and reads from R.
func (c *CountingReader) ReadAt(p []byte, off int64) (int, error) {
	c.N.Add(1)
	return c.R.ReadAt(p, off)
}

// ConcurrentReads reads random ranges of fl (up to maxRead bytes, some
// past its end) from 8 goroutines and checks them against want: counts,
// io.EOF at the end, bytes. 200 reads each; 40 under the race detector,
// for which the goroutines are there (it makes each byte read dear).
func ConcurrentReads(t testing.TB, fl volume.File, want []byte, maxRead int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			buf := make([]byte, maxRead)
			for i := 0; i < testutil.Scale(200, 40); i++ {
				off := rng.Int63n(int64(len(want)) + 100)
				n := rng.Intn(len(buf))
				got, err := fl.ReadAt(buf[:n], off)
				wantN := max(0, int(min(off+int64(n), int64(len(want)))-off))
				if got != wantN || (got < n && err != io.EOF) || (got == n && err != nil) {
					t.Errorf("ReadAt(%d, %d) = %d, %v; want %d", n, off, got, err, wantN)
					return
				}
				if got > 0 && !bytes.Equal(buf[:got], want[off:off+int64(got)]) {
					t.Errorf("ReadAt(%d, %d): wrong data at %d", n, off, FirstDiff(buf[:got], want[off:]))
					return
				}
			}
		}(int64(g))
	}
	wg.Wait()
}
