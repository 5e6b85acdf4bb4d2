package extract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
)

// Copy geometry: chunks of copyChunk bytes are read by copyWorkers
// goroutines at once and written where they belong, all-zero blocks of
// holeBlock bytes left as holes.
const (
	copyChunk   = 4 << 20
	copyWorkers = 4
	holeBlock   = 4096
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// Cat writes the data of the regular file at src to w, in order.
// progress, when set, is told the bytes written. Something other than a
// regular file gives an error wrapping ErrNotRegular.
func Cat(w io.Writer, src nav.Place, progress func(n int64)) error {
	loc, disp := src.Loc, src.String()
	switch {
	case !loc.In && loc.Node.Kind() == checkpoint.KindFile:
		return copySeq(w, dataOf(loc.Node), loc.Node.Size, disp, progress)
	case loc.In:
		v := loc.Node.FS
		st, err := v.Stat(loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		if !st.Mode.IsRegular() {
			return fmt.Errorf("%s: %w", disp, ErrNotRegular)
		}
		f, err := v.Open(loc.Ino)
		if err != nil {
			return readErr(disp, err)
		}
		return copySeq(w, f, st.Size, disp, progress)
	}
	return fmt.Errorf("%s: %w", disp, ErrNotRegular)
}

// dataOf is a file node's data; a file without Data is empty.
func dataOf(n *checkpoint.Node) io.ReaderAt {
	if n.Data == nil {
		return bytes.NewReader(nil)
	}
	return n.Data
}

// copySeq copies size bytes of r to w in order.
func copySeq(w io.Writer, r io.ReaderAt, size int64, disp string, progress func(int64)) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	for off := int64(0); off < size; {
		b := (*bp)[:min(copyChunk, size-off)]
		if err := readFull(r, b, off, disp); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		if progress != nil {
			progress(int64(len(b)))
		}
		off += int64(len(b))
	}
	return nil
}

// readFull reads len(b) bytes at off; a short read is an error naming
// disp.
func readFull(r io.ReaderAt, b []byte, off int64, disp string) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return readErr(disp, fmt.Errorf("reading %d bytes at offset %d: %w", len(b), off, err))
}

// copyFile copies size bytes of r to dst. A file dst that did not exist
// is removed again on error. An existing device or pipe is written in
// order. Errors name disp (reading) or dst (writing).
func (c *copier) copyFile(r io.ReaderAt, size int64, dst string, perm fs.FileMode, disp string) (err error) {
	if st, err := os.Stat(dst); err == nil && !st.Mode().IsRegular() {
		if st.IsDir() {
			return fmt.Errorf("%s: is a folder", dst)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = copySeq(f, r, size, disp, c.opts.Progress)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	_, statErr := os.Lstat(dst)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if errors.Is(err, fs.ErrPermission) && replaceable(dst) {
		// A read-only file of an earlier copy: replace it, as cp -f would.
		if os.Remove(dst) == nil {
			created = true
			f, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil && created {
			os.Remove(dst)
		}
	}()
	chunks := (size + copyChunk - 1) / copyChunk
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, copyWorkers)
	var wg sync.WaitGroup
	workers := int(min(int64(copyWorkers), chunks))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			bp := chunkPool.Get().(*[]byte)
			defer chunkPool.Put(bp)
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= chunks {
					return
				}
				off := i * copyChunk
				b := (*bp)[:min(copyChunk, size-off)]
				if errs[w] = readFull(r, b, off, disp); errs[w] == nil {
					errs[w] = writeSparse(f, b, off)
				}
				if errs[w] != nil {
					failed.Store(true)
					return
				}
				c.progress(int64(len(b)))
			}
		}(w)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return f.Truncate(size)
}

// writeSparse writes b at off, skipping all-zero blocks (they stay holes:
// the file is new and is truncated to its size at the end).
func writeSparse(f *os.File, b []byte, off int64) error {
	start := -1
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		_, err := f.WriteAt(b[start:end], off+int64(start))
		start = -1
		return err
	}
	for i := 0; i < len(b); i += holeBlock {
		end := min(i+holeBlock, len(b))
		if isZero(b[i:end]) {
			if err := flush(i); err != nil {
				return err
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return flush(len(b))
}

var zeroBlock [holeBlock]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
