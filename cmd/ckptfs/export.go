package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/internal/units"
)

func init() {
	register("export", command{
		summary: "write the virtual disk at a chain point as a sparse raw image (OUT of - is stdout) or a standalone VHDX",
		usage:   "FILE OUT [--format raw|vhdx] [--search-path DIR]... [--ignore-linkage] [--force]",
		run:     runExport,
	})
}

// exportChunk is how much is copied per step.
const exportChunk = 8 << 20

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", stderr)
	var cf chainFlags
	cf.add(fs)
	force := fs.Bool("force", false, "overwrite OUT if it exists")
	format := fs.String("format", "raw", "raw (sparse raw image) or vhdx (standalone dynamic VHDX: only blocks holding data allocated)")
	blockSize := fs.String("block-size", "32M", "block size of a --format vhdx image (1M to 256M)")
	if err := parse(fs, args, 2, 2); err != nil {
		return err
	}
	if *format != "raw" && *format != "vhdx" {
		return fmt.Errorf("%w: --format must be raw or vhdx, not %q", errUsage, *format)
	}
	bs, err := units.ParseSize(*blockSize)
	if err != nil || bs < disk.MinBlockSize || bs > disk.MaxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: --block-size must be a power of two from 1M to 256M", errUsage)
	}
	c, err := chain.Open(fs.Arg(0), chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage})
	if err != nil {
		return err
	}
	defer c.Close()
	out := fs.Arg(1)
	if *format == "vhdx" {
		if out == "-" {
			return fmt.Errorf("%w: --format vhdx needs a file, not stdout", errUsage)
		}
		if *force {
			for _, l := range c.Links {
				if same(l.Path, out) {
					return fmt.Errorf("%s: refusing to write over a file of the chain", out)
				}
			}
			os.Remove(out)
		}
		return exportVHDX(c, out, uint32(bs), newProgress(stderr, "export", c.Size()))
	}
	if out == "-" {
		return exportStream(c, stdout, newProgress(stderr, "export", c.Size()))
	}
	for _, l := range c.Links {
		if same(l.Path, out) {
			return fmt.Errorf("%s: refusing to write over a file of the chain", out)
		}
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(out, flags, 0o644)
	if err != nil {
		if os.IsExist(err) {
			return fmt.Errorf("%s exists; use --force to overwrite it", out)
		}
		return err
	}
	if err := exportSparse(c, f, newProgress(stderr, "export", c.Size())); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	return f.Close()
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// exportSparse writes only the runs some layer holds; everything else
// stays a hole (zeros) in out.
func exportSparse(c *chain.Chain, out *os.File, p *progress) error {
	defer p.Finish()
	if err := out.Truncate(c.Size()); err != nil {
		return err
	}
	buf := make([]byte, exportChunk)
	var runs []chain.Run
	for off := int64(0); off < c.Size(); off += exportChunk {
		n := min(exportChunk, c.Size()-off)
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
				return fmt.Errorf("%s: %w", out.Name(), err)
			}
		}
		p.Add(n)
	}
	return out.Sync()
}

// exportVHDX flattens the chain point into a new dynamic VHDX. Blocks no
// layer holds, and blocks whose data is all zeros, stay unallocated.
func exportVHDX(c *chain.Chain, out string, blockSize uint32, p *progress) (err error) {
	defer p.Finish()
	opts := disk.CreateOptions{BlockSize: blockSize, LogicalSectorSize: uint32(c.Leaf().SectorSize()), PhysicalSectorSize: 512}
	if leaf, ok := c.Leaf().(*disk.File); ok {
		opts.PhysicalSectorSize, opts.VirtualDiskID = leaf.Metadata.PhysicalSectorSize, leaf.Metadata.VirtualDiskID
	}
	w, err := disk.CreateDynamic(out, c.Size(), opts)
	if err != nil {
		if os.IsExist(errors.Unwrap(err)) || errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; use --force to overwrite it", out)
		}
		return err
	}
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
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
		p.Add(n)
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

// exportStream writes every byte, zeros included, to a stream.
func exportStream(c *chain.Chain, w io.Writer, p *progress) error {
	defer p.Finish()
	// Read the next chunks while this one is being written.
	r := chain.NewPrefetcher(c, c.Size())
	r.Window = exportChunk
	buf := make([]byte, exportChunk)
	for off := int64(0); off < c.Size(); off += exportChunk {
		b := buf[:min(exportChunk, c.Size()-off)]
		if _, err := r.ReadAt(b, off); err != nil && err != io.EOF {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		p.Add(int64(len(b)))
	}
	return nil
}
