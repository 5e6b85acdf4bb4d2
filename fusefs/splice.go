package fusefs

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
)

// Zero-copy reads.
//
// A READ of bytes that lie unchanged in open files (checkpoint.FileMapper)
// is answered without the daemon touching the bytes: they are spliced from
// the layer files' page cache into a pipe and from the pipe into
// /dev/fuse, so the kernel copies them once (into the reader's pages)
// instead of twice (into the daemon's buffer, then out of it). A READ
// whose bytes all sit in one file is handed to go-fuse as a file range
// (fuse.ReadResultFd); one assembled from several files and zeros is
// built in a pipe of our own (fuse.ReadResultPipe).
//
// go-fuse moves the reply through a second pipe of header + payload + one
// page, so a READ can only be spliced when that fits in
// /proc/sys/fs/pipe-max-size (1 MiB by default): MaxRead is 512 KiB for
// that reason. Every pipe buffer is one slot of the pipe; an assembled
// reply is only built when its buffers surely fit in go-fuse's pipe (a
// reply that did not fit would be sent short). Whatever cannot be spliced
// is read through ReadAt and copied, as before.
//
// Splicing costs a fixed price per READ (two more system calls and a
// pipe's bookkeeping) that only large READs earn back: a READ of at most
// smallRead bytes that lie in one file is read from it with one pread
// instead (measured with random 4 KiB reads from 4 threads on a fresh
// mount: the daemon's CPU time per MB read dropped by a fifth or more).

// splicer decides, per READ, whether and how to splice it.
type splicer struct {
	// off disables splicing for the mount (Options.NoSplice, or the
	// kernel refused a pipe: see logWriter).
	off atomic.Bool
	// max is the largest READ spliced: what fits in a pipe beside the
	// reply header and a spare page.
	max int
	// What READs of FileMapper data became (ReadStats).
	fromFile, assembled, pread, copied atomic.Int64
}

// ReadStats counts how the mount answered READs of disk data (files whose
// Data is a checkpoint.FileMapper).
type ReadStats struct {
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
	return ReadStats{FromFile: s.fromFile.Load(), Assembled: s.assembled.Load(), Pread: s.pread.Load(), Copied: s.copied.Load(), SpliceOff: s.off.Load()}
}

const pageSize = 4096

// smallRead is the largest READ from one file that is read with pread
// rather than spliced.
const smallRead = 32 << 10

// pieceSlices recycles the piece lists of assembled READs.
var pieceSlices = sync.Pool{New: func() any { s := make([]chain.Piece, 0, 32); return &s }}

// zeros is the source of the zero bytes of assembled READs; it is never
// written.
var zeros = make([]byte, MaxRead)

// maxPieces bounds the pieces of an assembled READ: each costs a splice
// call, and many small ones are better copied.
const maxPieces = 64

func newSplicer(disabled bool) *splicer {
	s := &splicer{max: min(MaxRead, splice.MaxPipeSize()-2*pageSize)}
	s.off.Store(disabled || !splice.Resizable() || s.max <= 0)
	return s
}

// read returns a READ result of the len(dest) bytes at off of fm spliced
// from files (or, for a small READ from one file, read into dest with
// pread), or nil when the range must be copied through ReadAt instead.
func (s *splicer) read(fm checkpoint.FileMapper, off int64, dest []byte) fuse.ReadResult {
	r := s.try(fm, off, dest)
	if r == nil {
		s.copied.Add(1)
	}
	return r
}

func (s *splicer) try(fm checkpoint.FileMapper, off int64, dest []byte) fuse.ReadResult {
	n := len(dest)
	if s.off.Load() || n <= 0 || n > s.max {
		return nil
	}
	pp := pieceSlices.Get().(*[]chain.Piece)
	defer pieceSlices.Put(pp)
	ps, ok := fm.Pieces(off, int64(n), (*pp)[:0])
	*pp = ps
	if !ok || len(ps) == 0 || len(ps) > maxPieces {
		return nil
	}
	if len(ps) == 1 && ps[0].File != nil {
		if n <= smallRead {
			// Short only if the layer file shrank under us: the
			// copying path then reports the error.
			if m, _ := ps[0].File.ReadAt(dest, ps[0].Offset); m != n {
				return nil
			}
			s.pread.Add(1)
			// A vector result is written with writev, never spliced.
			return fuse.ReadResultVector([][]byte{dest})
		}
		s.fromFile.Add(1)
		return fuse.ReadResultFd(ps[0].File.Fd(), ps[0].Offset, n)
	}
	// go-fuse's pipe holds at least roundup_pow2(header + n + page)
	// bytes; the header takes one slot, each of our buffers one more.
	if slotsFor(ps) > pipeSlots(16+n+pageSize)-2 {
		return nil
	}
	r := assemble(ps, n)
	if r != nil {
		s.assembled.Add(1)
	}
	return r
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

// pipeSlots is how many page slots a pipe asked for size bytes has: the
// kernel rounds the size up to a power of two pages.
func pipeSlots(size int) int {
	pages := (size + pageSize - 1) / pageSize
	slots := 1
	for slots < pages {
		slots *= 2
	}
	return slots
}

// assemble builds the n bytes of ps in a pipe. It returns nil, leaving
// nothing behind, when any step falls short.
func assemble(ps []chain.Piece, n int) fuse.ReadResult {
	pair, err := splice.Get()
	if err != nil {
		return nil
	}
	if err := pair.Grow(n + pageSize); err != nil {
		splice.Done(pair)
		return nil
	}
	for _, p := range ps {
		if !fill(pair, p) {
			splice.Done(pair) // empties the pipe
			return nil
		}
	}
	return fuse.ReadResultPipe(pair, n)
}

// fill puts the bytes of p into the pipe. The pipe is non-blocking: a full
// pipe stops it instead of blocking.
func fill(pair *splice.Pair, p chain.Piece) bool {
	for done := int64(0); done < p.Length; {
		var m int
		var err error
		if p.File != nil {
			m, err = pair.LoadFromAt(p.File.Fd(), int(p.Length-done), p.Offset+done)
		} else {
			m, err = pair.Write(zeros[:p.Length-done])
		}
		if err != nil || m <= 0 {
			return false
		}
		done += int64(m)
	}
	return true
}
