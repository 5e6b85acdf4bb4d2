package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/chain/flatten"
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

func runExport(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("export", stderr)
	var cf chainFlags
	cf.add(fl)
	force := fl.Bool("force", false, "overwrite OUT if it exists")
	format := fl.String("format", "raw", "raw (sparse raw image) or vhdx (standalone dynamic VHDX: only blocks holding data allocated)")
	blockSize := fl.String("block-size", "32M", "block size of a --format vhdx image (1M to 256M)")
	if err := parse(fl, args, 2, 2); err != nil {
		return err
	}
	if *format != "raw" && *format != "vhdx" {
		return fmt.Errorf("%w: --format must be raw or vhdx, not %q", errUsage, *format)
	}
	bs, err := units.ParseSize(*blockSize)
	if err != nil || bs < disk.MinBlockSize || bs > disk.MaxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: --block-size must be a power of two from 1M to 256M", errUsage)
	}
	out := fl.Arg(1)
	if *format == "vhdx" && out == "-" {
		return fmt.Errorf("%w: --format vhdx needs a file, not stdout", errUsage)
	}
	c, err := chain.Open(fl.Arg(0), chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage})
	if err != nil {
		return err
	}
	defer c.Close()
	if out != "-" {
		if err := flatten.CheckOutput(c, out); err != nil {
			return err
		}
	}
	p := newProgress(stderr, "export", c.Size())
	defer p.Finish()
	opts := flatten.Options{Progress: p.Add}
	switch {
	case out == "-":
		return flatten.Stream(c, stdout, opts)
	case *format == "vhdx":
		if *force {
			os.Remove(out)
		}
		return existsAdvice(out, flatten.VHDX(c, out, uint32(bs), opts))
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(out, flags, 0o644)
	if err != nil {
		return existsAdvice(out, err)
	}
	if err := flatten.Raw(c, f, opts); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	return f.Close()
}

// existsAdvice says what to do about an output file that exists.
func existsAdvice(out string, err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; use --force to overwrite it", out)
	}
	return err
}
