package lvm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"testing"
)

// assembleOne assembles PVs that must form exactly one VG.
func assembleOne(t *testing.T, pvs ...*PV) (*VG, []error) {
	t.Helper()
	vgs, errs := Assemble(pvs)
	if len(vgs) != 1 {
		t.Fatalf("Assemble: %d VGs, want 1 (errors %v)", len(vgs), errs)
	}
	return vgs[0], errs
}

// checkLV proves an LV's reader returns want: the whole contents by
// SHA-256, unaligned reads across segment and stripe boundaries, a read
// running past the end, and the same from 8 goroutines at once.
func checkLV(t *testing.T, lv *LV, want []byte) {
	t.Helper()
	r, err := lv.Open()
	if err != nil {
		t.Fatalf("LV %s: Open: %v", lv.Name, err)
	}
	if r.Size() != int64(len(want)) || lv.Size != int64(len(want)) {
		t.Fatalf("LV %s: size %d (reader %d), want %d", lv.Name, lv.Size, r.Size(), len(want))
	}
	got := make([]byte, len(want))
	if n, err := r.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
		t.Fatalf("LV %s: ReadAt whole: %d, %v", lv.Name, n, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("LV %s: contents differ from the bytes placed in its extents (first difference at %d)", lv.Name, firstDiff(got, want))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			buf := make([]byte, 200<<10)
			for i := 0; i < 16; i++ {
				off := rng.Int63n(int64(len(want)))
				n := rng.Intn(len(buf)) + 1
				m, err := r.ReadAt(buf[:n], off)
				end := min(off+int64(n), int64(len(want)))
				if m != int(end-off) || (end < off+int64(n)) != (err == io.EOF) || (err != nil && err != io.EOF) {
					errs <- fmt.Errorf("ReadAt(%d bytes at %d) = %d, %v", n, off, m, err)
					return
				}
				if !bytes.Equal(buf[:m], want[off:end]) {
					errs <- fmt.Errorf("ReadAt(%d bytes at %d): wrong bytes at %d", n, off, off+int64(firstDiff(buf[:m], want[off:end])))
					return
				}
			}
		}(int64(g))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("LV %s: %v", lv.Name, err)
	}
	if n, err := r.ReadAt(make([]byte, 10), int64(len(want))); n != 0 || err != io.EOF {
		t.Fatalf("LV %s: read at the end: %d, %v", lv.Name, n, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
