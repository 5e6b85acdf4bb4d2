package fusefs

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/volume"
)

// Zero-copy reads.
//
// A READ of bytes that lie unchanged in open files (checkpoint.FileMapper)
// is answered without the daemon touching the bytes: the reply header is
// written into a pipe of the reader's own, the bytes are spliced from the
// layer files' page cache into the pipe behind it (zeros are written), and
// the whole reply is spliced from the pipe into /dev/fuse, so the kernel
// copies the bytes once (into the reader's pages) instead of twice (into
// the daemon's buffer, then out of it).
//
// Every pipe buffer is one slot of the pipe, and the reply must fit in the
// pipe whole: a READ is spliced only when its slots (one for the header,
// one per page of file touched or of zeros written) fit in the pipe
// (pipeBytes: 1 MiB, the default /proc/sys/fs/pipe-max-size, holds a
// MaxRead reply). Whatever cannot be spliced is read through ReadAt and
// copied.
//
// Splicing costs a fixed price per READ (two more system calls) that only
// large READs earn back: a READ of at most smallRead bytes that lie in one
// file is read from it with one pread instead (measured with random 4 KiB
// reads from 4 threads on a fresh mount: the daemon's CPU time per MB read
// dropped by a fifth or more).

// splicer decides, per READ, whether and how to answer it without copying
// the bytes through the daemon: from mappings of the layer files
// (mapped.go), by splicing, or for small READs with one pread.
type splicer struct {
	// off disables all of it for the mount (Options.NoSplice, or the
	// kernel refused a splice).
	off atomic.Bool
	// maps are the layer files' mappings; nil or off: splice instead.
	maps *mappings
	// What READs of FileMapper data became (ReadStats).
	mapped, fromFile, assembled, pread, copied atomic.Int64
}

// ReadStats counts how the mount answered READs of disk data (files whose
// Data is a checkpoint.FileMapper).
type ReadStats struct {
	// Mapped READs were written from mappings of the layer files.
	Mapped int64
	// FromFile READs were spliced from one layer file, Assembled ones
	// from several files and zeros; Pread ones, too small to gain from
	// splicing, were read from one layer file with one pread; Copied ones
	// were read through ReadAt.
	FromFile, Assembled, Pread, Copied int64
	// SpliceOff is true when splicing is off: asked for, or turned off
	// after the kernel refused it.
	SpliceOff bool
}

func (s *splicer) stats() ReadStats {
	return ReadStats{Mapped: s.mapped.Load(), FromFile: s.fromFile.Load(), Assembled: s.assembled.Load(), Pread: s.pread.Load(), Copied: s.copied.Load(), SpliceOff: s.off.Load()}
}

const pageSize = 4096

// pipeBytes is the size asked for the pipes replies are spliced through.
const pipeBytes = 1 << 20

// smallRead is the largest READ from one file that is read with pread
// rather than spliced.
const smallRead = 32 << 10

// maxPieces bounds the pieces of an assembled READ: each costs a splice
// call, and many small ones are better copied.
const maxPieces = 64

// pieceSlices recycles the piece lists of assembled READs.
var pieceSlices = sync.Pool{New: func() any { s := make([]chain.Piece, 0, 32); return &s }}

// zeros is the source of the zero bytes of assembled READs; it is never
// written.
var zeros = make([]byte, MaxRead)

func newSplicer(disabled bool) *splicer {
	s := &splicer{}
	s.off.Store(disabled)
	return s
}

// readResult is how a READ is answered: with bytes (in the reader's reply
// buffer), or written from mappings (iov), or spliced from one file
// range, or assembled from pieces.
type readResult struct {
	data   []byte
	iov    [][]byte
	file   *os.File
	off    int64
	pieces *[]chain.Piece // from pieceSlices; returned by done
	n      int
}

// done returns what the result borrowed.
func (r *readResult) done() {
	if r.pieces != nil {
		pieceSlices.Put(r.pieces)
		r.pieces = nil
	}
}

// plan decides how to answer a READ of len(dest) bytes at off of fm:
// spliced from one file or from pieces, or (small READs from one file)
// read into dest with pread. ok is false when the range must be copied
// through ReadAt instead.
func (s *splicer) plan(fm checkpoint.FileMapper, off int64, dest []byte, iov [][]byte) (res readResult, ok bool) {
	n := len(dest)
	if s.off.Load() || n <= 0 || n > MaxRead {
		return res, false
	}
	pp := pieceSlices.Get().(*[]chain.Piece)
	ps, found := fm.Pieces(off, int64(n), (*pp)[:0])
	*pp = ps
	if !found || len(ps) == 0 {
		pieceSlices.Put(pp)
		return res, false
	}
	if iov != nil && s.maps != nil && !s.maps.off.Load() && len(ps) < cap(iov) {
		if res, ok := s.fromMaps(ps, n, iov); ok {
			pieceSlices.Put(pp)
			return res, true
		}
	}
	if len(ps) == 1 && ps[0].File != nil {
		f, foff := ps[0].File, ps[0].Offset
		pieceSlices.Put(pp)
		if n <= smallRead {
			// Short only if the layer file shrank under us: the
			// copying path then reports the error.
			if m, _ := f.ReadAt(dest, foff); m != n {
				return res, false
			}
			s.pread.Add(1)
			return readResult{data: dest, n: n}, true
		}
		return readResult{file: f, off: foff, n: n}, true
	}
	if len(ps) > maxPieces || 1+slotsFor(ps) > pipeBytes/pageSize {
		pieceSlices.Put(pp)
		return res, false
	}
	return readResult{pieces: pp, n: n}, true
}

// extentSlices recycles the extent lists of volume files' READs.
var extentSlices = sync.Pool{New: func() any { s := make([]volume.Extent, 0, 16); return &s }}

// planVolume answers a READ of len(dest) bytes at off of a volume file f
// from the layer files' mappings, when f places those bytes verbatim on
// the volume (volume.DataMapper) and vol places the volume in the layer
// files; ok is false otherwise (then copy).
func (s *splicer) planVolume(f volume.File, vol checkpoint.FileMapper, off int64, dest []byte, iov [][]byte) (readResult, bool) {
	dm, isMapper := f.(volume.DataMapper)
	if !isMapper || s.maps == nil || s.maps.off.Load() || s.off.Load() {
		return readResult{}, false
	}
	n := min(int64(len(dest)), f.Size()-off)
	if n <= 0 {
		return readResult{}, false
	}
	ep := extentSlices.Get().(*[]volume.Extent)
	defer extentSlices.Put(ep)
	ext, ok := dm.MapData(off, n, (*ep)[:0])
	*ep = ext
	if !ok {
		return readResult{}, false
	}
	pp := pieceSlices.Get().(*[]chain.Piece)
	defer pieceSlices.Put(pp)
	ps := (*pp)[:0]
	for _, e := range ext {
		if e.Physical < 0 {
			ps = append(ps, chain.Piece{Length: e.Length})
			continue
		}
		var found bool
		if ps, found = vol.Pieces(e.Physical, e.Length, ps); !found {
			*pp = ps
			return readResult{}, false
		}
	}
	*pp = ps
	if len(ps) >= cap(iov) {
		return readResult{}, false
	}
	return s.fromMaps(ps, int(n), iov)
}

// fromMaps returns the pieces as slices of the layer files' mappings (and
// zeros), appended to iov; ok is false when a file is not mapped.
func (s *splicer) fromMaps(ps []chain.Piece, n int, iov [][]byte) (readResult, bool) {
	for _, p := range ps {
		if p.File == nil {
			iov = append(iov, zeros[:p.Length])
			continue
		}
		b, ok := s.maps.slice(p.File, p.Offset, int(p.Length))
		if !ok {
			return readResult{}, false
		}
		iov = append(iov, b)
	}
	return readResult{iov: iov, n: n}, true
}

// slotsFor is an upper bound on the pipe buffers the pieces make: one per
// page of file touched, one per page of zeros written, plus one.
func slotsFor(ps []chain.Piece) int {
	slots := 0
	for _, p := range ps {
		if p.File != nil {
			slots += int((p.Offset%pageSize+p.Length+pageSize-1)/pageSize) + 1
		} else {
			slots += int((p.Length+pageSize-1)/pageSize) + 1
		}
	}
	return slots
}

// pipe is a pipe replies are built in.
type pipe struct{ r, w int }

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	p := &pipe{r: fds[0], w: fds[1]}
	if size, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeBytes); err != nil || size < pipeBytes {
		p.close()
		if err == nil {
			err = errors.New("pipe too small")
		}
		return nil, err
	}
	return p, nil
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// spliceReply answers READ h with the n bytes res describes, spliced
// through the reader's pipe. It returns false, having sent nothing, when
// a step falls short (the caller then copies).
func (rd *replier) spliceReply(h *fuse.InHeader, res *readResult) bool {
	if rd.pipe == nil {
		p, err := newPipe()
		if err != nil {
			if !rd.s.fs.splicer.off.Swap(true) {
				rd.s.log.Warnf("cannot make a pipe to splice file data (%v); copying reads from now on", err)
			}
			return false
		}
		rd.pipe = p
	}
	p := rd.pipe
	var hdr [outHeaderSize]byte
	oh := (*fuse.OutHeader)(unsafe.Pointer(&hdr[0]))
	oh.Length = uint32(outHeaderSize + res.n)
	oh.Unique = h.Unique
	ok := writeAll(p.w, hdr[:])
	if ok && res.file != nil {
		ok = spliceIn(p.w, res.file, res.off, res.n)
	} else if ok {
		for _, pc := range *res.pieces {
			if pc.File != nil {
				ok = spliceIn(p.w, pc.File, pc.Offset, int(pc.Length))
			} else {
				ok = writeAll(p.w, zeros[:pc.Length])
			}
			if !ok {
				break
			}
		}
	}
	if !ok {
		// Whatever went into the pipe goes with it.
		p.close()
		rd.pipe = nil
		return false
	}
	m, err := unix.Splice(p.r, nil, rd.s.fd, nil, outHeaderSize+res.n, unix.SPLICE_F_MOVE)
	if err != nil || m != int64(outHeaderSize+res.n) {
		p.close()
		rd.pipe = nil
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENODEV) {
			// The kernel refused: the reply was not sent; never again.
			if !rd.s.fs.splicer.off.Swap(true) {
				rd.s.log.Warnf("splicing file data to the kernel failed (%v); copying reads from now on", err)
			}
			return false
		}
		// The request is gone (interrupted or unmounted): nothing to send.
		return true
	}
	return true
}

// spliceIn moves n bytes at off of f into the pipe's write end.
func spliceIn(w int, f *os.File, off int64, n int) bool {
	fd := int(f.Fd())
	for n > 0 {
		m, err := unix.Splice(fd, &off, w, nil, n, unix.SPLICE_F_MOVE)
		if err != nil || m <= 0 {
			return false
		}
		n -= int(m)
	}
	return true
}

// writeAll writes b to fd.
func writeAll(fd int, b []byte) bool {
	for len(b) > 0 {
		m, err := unix.Write(fd, b)
		if err != nil || m <= 0 {
			return false
		}
		b = b[m:]
	}
	return true
}
