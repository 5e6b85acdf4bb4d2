// Package flatten writes the virtual disk at one point of a chain as a
// single file: a sparse raw image, a stream of every byte, or a standalone
// dynamic VHDX. Nothing is ever written to a file of the chain.
package flatten

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
)

// chunk is how much Raw and Stream copy per step.
const chunk = 8 << 20

// ErrSourceFile means the output would be a file of the chain itself.
var ErrSourceFile = errors.New("refusing to write over a file of the chain")

// Options tune the writers.
type Options struct {
	// Progress, when set, is told the number of bytes of the virtual disk
	// done each time a piece of it is.
	Progress func(n int64)
}

func (o Options) progress(n int64) {
	if o.Progress != nil {
		o.Progress(n)
	}
}

// CheckOutput returns an error wrapping ErrSourceFile when path is one of
// c's files (the same file, under any name). Call it before opening an
// output path for writing; VHDX calls it itself.
func CheckOutput(c *chain.Chain, path string) error {
	out, err := os.Stat(path)
	if err != nil {
		return nil // nothing there yet: not a file of the chain
	}
	for _, l := range c.Links {
		if st, err := os.Stat(l.Path); err == nil && os.SameFile(st, out) {
			return fmt.Errorf("%s: %w", path, ErrSourceFile)
		}
	}
	return nil
}

// Output is what Raw writes to: an *os.File, new or truncated, or
// anything else that reads as zeros where nothing was written (a
// temporary file renamed into place afterwards, for instance).
type Output interface {
	io.WriterAt
	// Truncate sets the output's size.
	Truncate(size int64) error
	// Sync makes what was written durable.
	Sync() error
}

// Raw writes the virtual disk c to out as a raw image of c.Size() bytes.
// Only the runs some layer holds are written; everything else is left
// as a hole (zeros). Write errors are named by the output when it has a
// Name() (an *os.File does).
func Raw(c *chain.Chain, out Output, opts Options) error {
	if err := out.Truncate(c.Size()); err != nil {
		return err
	}
	buf := make([]byte, chunk)
	var runs []chain.Run
	for off := int64(0); off < c.Size(); off += chunk {
		n := min(chunk, c.Size()-off)
		var err error
		runs, err = c.Map(off, n, runs[:0])
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.Layer < 0 {
				continue // a hole
			}
			b := buf[:r.Length]
			if _, err := c.ReadAt(b, r.Offset); err != nil {
				return err
			}
			if _, err := out.WriteAt(b, r.Offset); err != nil {
				if nm, ok := out.(interface{ Name() string }); ok {
					return fmt.Errorf("%s: %w", nm.Name(), err)
				}
				return err
			}
		}
		opts.progress(n)
	}
	return out.Sync()
}

// Stream writes every byte of the virtual disk c to w in order, zeros
// included, reading ahead of the writes.
func Stream(c *chain.Chain, w io.Writer, opts Options) error {
	r := chain.NewPrefetcher(c, c.Size())
	r.Window = chunk
	buf := make([]byte, chunk)
	for off := int64(0); off < c.Size(); off += chunk {
		b := buf[:min(chunk, c.Size()-off)]
		if _, err := r.ReadAt(b, off); err != nil && err != io.EOF {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		opts.progress(int64(len(b)))
	}
	return nil
}

// VHDX flattens the virtual disk c into a new dynamic VHDX at path, with
// blocks of blockSize bytes (a power of two from disk.MinBlockSize to
// disk.MaxBlockSize) and c's sector sizes and virtual disk ID. Blocks no
// layer holds, and blocks whose data is all zeros, stay unallocated.
//
// path must not exist (the error then wraps fs.ErrExist) and must not be
// a file of c (ErrSourceFile). On error the new file is removed. To
// replace a file atomically, give a temporary path and rename it after a
// nil return.
func VHDX(c *chain.Chain, path string, blockSize uint32, opts Options) (err error) {
	if err := CheckOutput(c, path); err != nil {
		return err
	}
	// The new disk keeps the source's identity and geometry: a VHDX
	// leaf's physical sector size and virtual disk ID (a VHD has none:
	// 512-byte physical sectors, a new ID).
	copts := disk.CreateOptions{BlockSize: blockSize, LogicalSectorSize: uint32(c.Leaf().SectorSize()), PhysicalSectorSize: 512}
	if leaf, ok := c.Leaf().(*disk.File); ok {
		copts.PhysicalSectorSize, copts.VirtualDiskID = leaf.Metadata.PhysicalSectorSize, leaf.Metadata.VirtualDiskID
	}
	w, err := disk.CreateDynamic(path, c.Size(), copts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	bs := int64(blockSize)
	buf := make([]byte, bs)
	var runs []chain.Run
	for off := int64(0); off < c.Size(); off += bs {
		n := min(bs, c.Size()-off)
		if runs, err = c.Map(off, n, runs[:0]); err != nil {
			return err
		}
		held := false
		for _, r := range runs {
			held = held || r.Layer >= 0
		}
		if held {
			b := buf[:n]
			if _, err := c.ReadAt(b, off); err != nil && err != io.EOF {
				return err
			}
			if !allZero(b) {
				if _, err := w.WriteAt(b, off); err != nil {
					return err
				}
			}
		}
		opts.progress(n)
	}
	return w.Sync()
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
