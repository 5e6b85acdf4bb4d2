package fusefs

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Layer files mapped into memory.
//
// A READ of bytes that lie unchanged in layer files is answered with one
// writev of the reply header and the bytes themselves, taken from a
// read-only mapping of each file: the kernel copies them from the page
// cache into the request's pages as it takes the reply, so the daemon
// makes no pread, no splice, and touches no byte. (Mapping faults happen
// inside that copy, a page-cache lookup each, 16 pages at a time.)
//
// Mappings are made on first use, read-only and shared, of the whole file,
// and kept until unmount. What the mappings hold in page tables is bounded:
// each mapping counts the 2 MiB chunks it has served, and when all of them
// together pass mappedBudget, every mapping's page-table entries are
// dropped (MADV_DONTNEED, which leaves the page cache alone) and counting
// starts again.

// mappedChunk is the granularity of the accounting.
const mappedChunk = 2 << 20

// mappedBudget is how many bytes of mappings may have been served before
// their page-table entries are dropped (1 GiB: 2 MiB of page tables).
var mappedBudget int64 = 1 << 30

// mappings are the layer files mapped so far.
type mappings struct {
	// mu is held shared while a reply built from mappings is written,
	// exclusively while their page-table entries are dropped.
	mu      sync.RWMutex
	files   sync.Map // *os.File -> *mapping
	chunks  atomic.Int64
	dropped atomic.Int64 // times the budget was reached (for tests)
	off     atomic.Bool
}

// mapping is one mapped file, or the reason it could not be.
type mapping struct {
	b      []byte
	served []atomic.Uint64 // a bit per chunk
	failed bool
}

// get returns f's mapping (nil when f cannot be mapped).
func (ms *mappings) get(f *os.File) *mapping {
	if v, ok := ms.files.Load(f); ok {
		m := v.(*mapping)
		if m.failed {
			return nil
		}
		return m
	}
	m := &mapping{failed: true}
	if st, err := f.Stat(); err == nil && st.Size() > 0 && st.Mode().IsRegular() {
		if b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			m = &mapping{b: b, served: make([]atomic.Uint64, (len(b)/mappedChunk+64)/64)}
		}
	}
	if v, loaded := ms.files.LoadOrStore(f, m); loaded {
		if !m.failed {
			unix.Munmap(m.b)
		}
		m = v.(*mapping)
	}
	if m.failed {
		return nil
	}
	return m
}

// slice returns the n bytes at off of f's mapping, counting the chunks it
// serves; ok is false when f is not mapped or the range is not inside it.
// Call with mu held shared.
func (ms *mappings) slice(f *os.File, off int64, n int) ([]byte, bool) {
	m := ms.get(f)
	if m == nil || off < 0 || off+int64(n) > int64(len(m.b)) {
		return nil, false
	}
	for c := off / mappedChunk; c <= (off+int64(n)-1)/mappedChunk; c++ {
		w, bit := &m.served[c/64], uint64(1)<<(c%64)
		if w.Load()&bit == 0 && w.Or(bit)&bit == 0 {
			ms.chunks.Add(1)
			// Map the whole chunk at once: one call instead of a
			// fault every 16 pages inside the kernel's copy.
			lo := c * mappedChunk
			unix.Madvise(m.b[lo:min(lo+mappedChunk, int64(len(m.b)))], unix.MADV_POPULATE_READ)
		}
	}
	return m.b[off : off+int64(n)], true
}

// trim drops every mapping's page-table entries once the chunks served
// pass the budget. Call with mu not held.
func (ms *mappings) trim() {
	if ms.chunks.Load()*mappedChunk < mappedBudget {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.chunks.Load()*mappedChunk < mappedBudget {
		return
	}
	ms.files.Range(func(_, v any) bool {
		m := v.(*mapping)
		if !m.failed {
			unix.Madvise(m.b, unix.MADV_DONTNEED)
			for i := range m.served {
				m.served[i].Store(0)
			}
		}
		return true
	})
	ms.chunks.Store(0)
	ms.dropped.Add(1)
}

// close unmaps everything.
func (ms *mappings) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.files.Range(func(k, v any) bool {
		if m := v.(*mapping); !m.failed {
			unix.Munmap(m.b)
		}
		ms.files.Delete(k)
		return true
	})
}
