package fusefs

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestMappingsTrim serves ranges of a mapped file past a small budget and
// checks that page tables are dropped (and counting restarts) while every
// range still reads the file's bytes.
func TestMappingsTrim(t *testing.T) {
	defer func(b int64) { mappedBudget = b }(mappedBudget)
	mappedBudget = 3 * mappedChunk
	data := make([]byte, 8*mappedChunk+12345)
	rand.New(rand.NewSource(1)).Read(data)
	p := filepath.Join(t.TempDir(), "layer")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms mappings
	defer ms.close()
	for i, r := range []struct{ off, n int64 }{
		{0, 4096}, {mappedChunk - 10, 20}, {3 * mappedChunk, 65536}, {5*mappedChunk + 7, mappedChunk},
		{int64(len(data)) - 100, 100}, {0, 4096},
	} {
		ms.mu.RLock()
		b, ok := ms.slice(f, r.off, int(r.n))
		if !ok || !bytes.Equal(b, data[r.off:r.off+r.n]) {
			t.Errorf("range %d (%d+%d): ok %v, bytes differ", i, r.off, r.n, ok)
		}
		ms.mu.RUnlock()
		ms.trim()
	}
	if ms.dropped.Load() == 0 {
		t.Errorf("served %d+ chunks against a budget of 3: page tables never dropped", 6)
	}
	ms.mu.RLock()
	if _, ok := ms.slice(f, int64(len(data))-10, 20); ok {
		t.Errorf("a range past the end of the file was served")
	}
	ms.mu.RUnlock()
}
