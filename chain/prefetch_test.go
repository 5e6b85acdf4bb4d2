package chain

import (
	"bytes"
	"math/rand"
	"sync"
	"testing"
)

// memDisk is a mutable in-memory disk that counts reads.
type memDisk struct {
	mu    sync.RWMutex
	b     []byte
	reads int
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	m.reads++
	m.mu.Unlock()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return copy(p, m.b[off:]), nil
}

func (m *memDisk) write(p []byte, off int64) {
	m.mu.Lock()
	copy(m.b[off:], p)
	m.mu.Unlock()
}

func (m *memDisk) snapshot() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return bytes.Clone(m.b)
}

func TestPrefetcherStreams(t *testing.T) {
	const size = 48 << 20
	m := &memDisk{b: make([]byte, size)}
	rand.New(rand.NewSource(1)).Read(m.b)
	p := NewPrefetcher(m, size)
	p.Window = 1 << 20
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			start := int64(g) * (size / 4)
			for off := start; off < start+size/4; off += int64(len(buf)) {
				n, err := p.ReadAt(buf, off)
				if err != nil || n != len(buf) {
					t.Errorf("read %d: n=%d err=%v", off, n, err)
					return
				}
				if !bytes.Equal(buf, m.b[off:off+int64(n)]) {
					t.Errorf("stream %d: wrong bytes at %d", g, off)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	// Reads at the end of the disk are clipped.
	buf := make([]byte, 1<<20)
	if n, err := p.ReadAt(buf, size-100); n != 100 || err == nil {
		t.Fatalf("tail read: n=%d err=%v", n, err)
	}
	// With read-ahead most stream reads were served from windows: far
	// fewer reads reached the disk than were issued (4 × 96 of 128 KiB).
	m.mu.Lock()
	reads := m.reads
	m.mu.Unlock()
	if reads > 4*96/2 {
		t.Errorf("%d reads reached the disk: read-ahead did not engage", reads)
	}
}

// TestPrefetcherInvalidate writes while streams read: after Invalidate
// returns, no read may return the old bytes of the written range.
func TestPrefetcherInvalidate(t *testing.T) {
	const size = 16 << 20
	m := &memDisk{b: make([]byte, size)}
	p := NewPrefetcher(m, size)
	p.Window = 256 << 10
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex                  // orders "write+invalidate done" against checks
	version := make([]byte, size/4096) // the generation written to each 4 KiB
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for off := int64(0); ; off = (off + int64(len(buf))) % size {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				want := bytes.Clone(version[off/4096 : (off+int64(len(buf)))/4096])
				mu.Unlock()
				if _, err := p.ReadAt(buf, off); err != nil {
					t.Error(err)
					return
				}
				for i, v := range want {
					// Every byte of a 4 KiB piece holds its generation; a
					// read may see a newer one, never an older one.
					if got := buf[i*4096]; got < v {
						t.Errorf("stale read at %d: generation %d, want >= %d", off+int64(i)*4096, got, v)
						return
					}
				}
			}
		}()
	}
	rng := rand.New(rand.NewSource(3))
	for gen := byte(1); gen < 200; gen++ {
		off := rng.Int63n(size/4096) * 4096
		m.write(bytes.Repeat([]byte{gen}, 4096), off)
		p.Invalidate(off, 4096)
		mu.Lock()
		version[off/4096] = gen
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	_ = m.snapshot()
}

// TestPrefetcherInvalidateWindow writes into a window that was read ahead
// but not yet consumed; the stream must then read the new bytes.
func TestPrefetcherInvalidateWindow(t *testing.T) {
	const size = 8 << 20
	m := &memDisk{b: make([]byte, size)}
	p := NewPrefetcher(m, size)
	p.Window = 1 << 20
	buf := make([]byte, 64<<10)
	off := int64(0)
	for ; off < 512<<10; off += int64(len(buf)) {
		if _, err := p.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// Windows up to 3 MiB are being read ahead now; wait for them.
	p.mu.Lock()
	ws := append([]*window(nil), p.windows...)
	p.mu.Unlock()
	if len(ws) == 0 {
		t.Fatal("no read-ahead after a sequential stream")
	}
	for _, w := range ws {
		<-w.done
	}
	target := int64(2<<20 + 4096)
	m.write(bytes.Repeat([]byte{0xAB}, 4096), target)
	p.Invalidate(target, 4096)
	for ; off < 3<<20; off += int64(len(buf)) {
		if _, err := p.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if off <= target && target < off+int64(len(buf)) && buf[target-off] != 0xAB {
			t.Fatalf("read at %d returned data from before the write", target)
		}
	}
}
