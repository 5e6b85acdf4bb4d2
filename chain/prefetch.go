package chain

import (
	"io"
	"sync"
)

// Prefetcher wraps a reader of a virtual disk with read-ahead for
// sequential streams: once a stream of reads continues where the previous
// one ended, it reads the next windows in the background with large reads,
// and serves the stream from them. Random reads go straight through. The
// memory it holds is bounded (MaxWindows × Window bytes). It is safe for
// concurrent use and tracks several streams at once.
type Prefetcher struct {
	r    io.ReaderAt
	size int64

	// Window is the size of one read-ahead read; Ahead is how many windows
	// are kept ahead of a stream; MaxWindows bounds the memory.
	Window     int64
	Ahead      int
	MaxWindows int

	mu      sync.Mutex
	windows []*window // oldest first
	pool    [][]byte
	streams [8]stream
	clock   uint64
}

type window struct {
	off   int64
	buf   []byte
	err   error
	done  chan struct{}
	stale bool // invalidated by a write: never serve it
	// Buffers are recycled (fresh memory costs a page fault per 4 KiB):
	// a window's buffer goes back to the pool once it is evicted, filled,
	// and no reader is copying from it. All three are guarded by mu.
	refs    int
	evicted bool
	filled  bool
}

type stream struct {
	next int64 // where the stream's next read is expected
	hits int
	used uint64
}

// NewPrefetcher returns a read-ahead wrapper around r, a disk of size bytes.
func NewPrefetcher(r io.ReaderAt, size int64) *Prefetcher {
	return &Prefetcher{r: r, size: size, Window: 4 << 20, Ahead: 2, MaxWindows: 16}
}

// ReadAt reads from the windows where they cover the range, else directly.
func (p *Prefetcher) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	n := len(b)
	var eof error
	if rem := p.size - off; int64(n) > rem {
		n, eof = int(rem), io.EOF
	}
	end := off + int64(n)
	p.mu.Lock()
	ws := p.cover(off, end)
	for _, w := range ws {
		w.refs++
	}
	p.track(off, end)
	p.mu.Unlock()
	defer p.release(ws)
	if ws == nil {
		m, err := p.r.ReadAt(b[:n], off)
		if err == nil {
			err = eof
		}
		return m, err
	}
	for _, w := range ws {
		<-w.done
		if w.err != nil && w.err != io.EOF {
			// A failed prefetch: read directly so the error (if any)
			// belongs to this read.
			m, err := p.r.ReadAt(b[:n], off)
			if err == nil {
				err = eof
			}
			return m, err
		}
		lo, hi := max(off, w.off), min(end, w.off+int64(len(w.buf)))
		copy(b[lo-off:hi-off], w.buf[lo-w.off:hi-w.off])
	}
	return n, eof
}

// cover returns windows that together cover [off, end), or nil.
func (p *Prefetcher) cover(off, end int64) []*window {
	var ws []*window
	pos := off
	for pos < end {
		var found *window
		for _, w := range p.windows {
			if !w.stale && w.off <= pos && pos < w.off+int64(len(w.buf)) {
				found = w
				break
			}
		}
		if found == nil {
			return nil
		}
		ws = append(ws, found)
		pos = found.off + int64(len(found.buf))
	}
	return ws
}

// track updates stream detection and starts read-ahead for a stream that
// has continued itself at least twice.
func (p *Prefetcher) track(off, end int64) {
	p.clock++
	var s *stream
	for i := range p.streams {
		st := &p.streams[i]
		// Tolerate reordering: the kernel issues parallel reads of one
		// stream, which can arrive slightly out of order.
		if st.used > 0 && off >= st.next-(1<<20) && off <= st.next+(1<<20) {
			s = st
			break
		}
	}
	if s == nil {
		s = &p.streams[0]
		for i := range p.streams {
			if p.streams[i].used < s.used {
				s = &p.streams[i]
			}
		}
		*s = stream{next: end, used: p.clock}
		return
	}
	s.hits++
	s.used = p.clock
	s.next = max(s.next, end)
	if s.hits < 2 {
		return
	}
	start := end / p.Window * p.Window
	for i := 0; i <= p.Ahead; i++ {
		wo := start + int64(i)*p.Window
		if wo >= p.size {
			break
		}
		if p.has(wo) {
			continue
		}
		p.startWindow(wo)
	}
}

func (p *Prefetcher) has(off int64) bool {
	for _, w := range p.windows {
		if w.off == off && !w.stale {
			return true
		}
	}
	return false
}

func (p *Prefetcher) startWindow(off int64) {
	n := min(p.Window, p.size-off)
	var buf []byte
	if k := len(p.pool); k > 0 {
		buf, p.pool = p.pool[k-1][:n], p.pool[:k-1]
	} else {
		buf = make([]byte, p.Window)[:n]
	}
	w := &window{off: off, buf: buf, done: make(chan struct{})}
	p.windows = append(p.windows, w)
	if extra := len(p.windows) - p.MaxWindows; extra > 0 {
		for _, old := range p.windows[:extra] {
			p.evict(old)
		}
		clear(p.windows[:extra])
		p.windows = p.windows[extra:]
	}
	go func() {
		_, err := p.r.ReadAt(w.buf, w.off)
		p.mu.Lock()
		w.err, w.filled = err, true
		p.recycle(w)
		p.mu.Unlock()
		close(w.done)
	}()
}

// evict removes w from service; its buffer is recycled when unused.
func (p *Prefetcher) evict(w *window) {
	w.evicted = true
	p.recycle(w)
}

// recycle returns w's buffer to the pool if nothing can use it any more.
// Called with mu held.
func (p *Prefetcher) recycle(w *window) {
	if w.evicted && w.filled && w.refs == 0 && w.buf != nil {
		if len(p.pool) < p.MaxWindows {
			p.pool = append(p.pool, w.buf[:cap(w.buf)])
		}
		w.buf = nil
	}
}

func (p *Prefetcher) release(ws []*window) {
	if len(ws) == 0 {
		return
	}
	p.mu.Lock()
	for _, w := range ws {
		w.refs--
		p.recycle(w)
	}
	p.mu.Unlock()
}

// Invalidate drops windows overlapping [off, off+n), after a write.
func (p *Prefetcher) Invalidate(off, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.windows[:0]
	for _, w := range p.windows {
		if w.off < off+n && off < w.off+int64(len(w.buf)) {
			w.stale = true
			p.evict(w)
			continue
		}
		keep = append(keep, w)
	}
	clear(p.windows[len(keep):])
	p.windows = keep
}

// Pieces passes the question to the wrapped reader when it can answer it
// (see Chain.Pieces). A stream served from the file pieces never reaches
// the read-ahead.
func (p *Prefetcher) Pieces(off, n int64, dst []Piece) ([]Piece, bool) {
	if pm, ok := p.r.(interface {
		Pieces(off, n int64, dst []Piece) ([]Piece, bool)
	}); ok {
		return pm.Pieces(off, n, dst)
	}
	return dst, false
}
