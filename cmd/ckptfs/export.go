package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/chain"
)

func init() {
	register("export", command{
		summary: "write the virtual disk at a chain point as a sparse raw image (OUT of - is stdout)",
		usage:   "FILE OUT [--search-path DIR]... [--ignore-linkage]",
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
	if err := parse(fs, args, 2, 2); err != nil {
		return err
	}
	c, err := chain.Open(fs.Arg(0), chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage})
	if err != nil {
		return err
	}
	defer c.Close()
	out := fs.Arg(1)
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

// exportStream writes every byte, zeros included, to a stream.
func exportStream(c *chain.Chain, w io.Writer, p *progress) error {
	defer p.Finish()
	buf := make([]byte, exportChunk)
	for off := int64(0); off < c.Size(); off += exportChunk {
		b := buf[:min(exportChunk, c.Size()-off)]
		if _, err := c.ReadAt(b, off); err != nil && err != io.EOF {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		p.Add(int64(len(b)))
	}
	return nil
}
