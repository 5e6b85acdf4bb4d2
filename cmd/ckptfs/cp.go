package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/extract"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/volume/probe"
)

func init() {
	register("cp", command{
		summary: "copy a file or folder out of a checkpoint, without mounting and without root",
		usage:   "SOURCE POINT:PATH DEST|- [--streams xattr|skip] [--search-path DIR]... [--ignore-linkage]",
		run:     runCp,
	})
}

// runCp copies POINT:PATH (see nav.Resolve) to DEST as package extract
// describes; DEST "-" writes a file's data to standard output. Entries
// that cannot be copied are reported and the copy goes on; the exit
// status is then 1.
func runCp(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("cp", stderr)
	var cf chainFlags
	cf.add(fl)
	streams := fl.String("streams", "xattr", "alternate data streams: `xattr` (copy as user.* extended attributes) or skip")
	if err := parse(fl, args, 3, 3); err != nil {
		return err
	}
	opts := extract.Options{Streams: extract.StreamsXattr}
	switch *streams {
	case "xattr":
	case "skip":
		opts.Streams = extract.StreamsSkip
	default:
		return fmt.Errorf("%w: --streams must be xattr or skip", errUsage)
	}
	view, err := openFilesView(fl.Arg(0), cf)
	if err != nil {
		return err
	}
	defer view.Close()
	src, err := nav.Resolve(view.Root, fl.Arg(1))
	if errors.Is(err, nav.ErrNotPointPath) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err != nil {
		return err
	}
	dst := fl.Arg(2)
	if dst == "-" {
		err := extract.Cat(stdout, src, nil)
		if errors.Is(err, extract.ErrNotRegular) {
			return fmt.Errorf("%w; give a folder as DEST to copy it", err)
		}
		return err
	}
	// The bar: only on a terminal, only for copies of 64 MiB or more.
	prog := newProgress(stderr, "copying", 0)
	if prog.active {
		prog.total = extract.Size(src.Loc)
		prog.active = prog.total >= 64<<20
	}
	opts.Progress = prog.Add
	opts.OnEntry = func(e extract.Entry) {
		for _, w := range e.Warnings {
			fmt.Fprintf(stderr, "ckptfs cp: warning: %s\n", w)
		}
		if e.Err != nil && e.Depth > 0 {
			fmt.Fprintf(stderr, "ckptfs cp: %v\n", e.Err)
		}
	}
	sum, err := extract.Copy(src, dst, opts)
	prog.Finish()
	switch {
	case errors.Is(err, extract.ErrBadName) && sum.Entries == 0:
		return fmt.Errorf("%w; give DEST a name", err)
	case err != nil:
		return err
	case sum.Failed > 0:
		return fmt.Errorf("%d of %d entries could not be copied (see above)", sum.Failed, sum.Entries)
	}
	return nil
}

// openFilesView opens a source with file systems shown.
func openFilesView(path string, cf chainFlags) (*checkpoint.View, error) {
	return checkpoint.OpenView(path, chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage},
		checkpoint.FileTreeOptions{FileSystems: probe.Open, Log: logrus.StandardLogger()})
}
