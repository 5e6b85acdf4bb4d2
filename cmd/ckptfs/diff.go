package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/diff"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
)

func init() {
	register("diff", command{
		summary: "list the files added (A), deleted (D), modified (M) or changed in type (T) between two points",
		usage:   "SOURCE POINT_A POINT_B [--json] [--full] [--search-path DIR]... [--ignore-linkage]",
		run:     runDiff,
	})
}

// diffOutput is the JSON form of `ckptfs diff`.
type diffOutput struct {
	Source  string             `json:"source"`
	A       string             `json:"a"`
	B       string             `json:"b"`
	Changes []diff.Change      `json:"changes"`
	Volumes []diff.VolumeStats `json:"volumes"`
}

// runDiff prints one line per changed path, sorted by path:
//
//	A	Disk.files/2-Basic data partition/new folder/
//	M	Disk.files/2-Basic data partition/inetpub/web.config	(size,mtime)
//	T	Disk.files/2-Basic data partition/x	(file -> dir)
//	E	Disk.files/2-Basic data partition/broken	older point: …
//
// Folders end in "/". Every path below an added or deleted folder is
// listed too. M gives what differs: size, mtime, content (same size and
// time, other bytes), target (symlinks), mode and owner (ext2/3/4),
// streams (NTFS alternate data streams). E marks a path that could not be
// compared (a damaged structure); the exit status is then 1.
func runDiff(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("diff", stderr)
	var cf chainFlags
	cf.add(fl)
	asJSON := fl.Bool("json", false, "print JSON")
	full := fl.Bool("full", false, "ignore the layer maps: walk both trees and compare every file with equal metadata byte by byte (slow; for checking)")
	if err := parse(fl, args, 3, 3); err != nil {
		return err
	}
	view, err := openFilesView(fl.Arg(0), cf)
	if err != nil {
		return err
	}
	defer view.Close()
	var pts [2]*checkpoint.Node
	for i, name := range []string{fl.Arg(1), fl.Arg(2)} {
		n, err := nav.Point(view.Root, name)
		if err != nil {
			return err
		}
		pts[i] = n
	}
	sl := newStatusLine(stderr)
	res, err := diff.Points(pts[0], pts[1], diff.Options{Progress: sl.update, Full: *full})
	sl.done()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(diffOutput{Source: fl.Arg(0), A: fl.Arg(1), B: fl.Arg(2), Changes: res.Changes, Volumes: res.Volumes}); err != nil {
			return err
		}
	} else {
		for _, c := range res.Changes {
			fmt.Fprintln(stdout, diff.Line(c))
		}
	}
	errs := 0
	for _, c := range res.Changes {
		if c.Status == diff.Error {
			errs++
		}
	}
	if errs > 0 {
		return fmt.Errorf("%d path(s) could not be compared (E lines)", errs)
	}
	return nil
}

// statusLine shows the comparison's progress on a terminal.
type statusLine struct {
	w      io.Writer
	active bool
	last   time.Time
	shown  bool
}

func newStatusLine(w io.Writer) *statusLine {
	return &statusLine{w: w, active: newProgress(w, "", 0).active}
}

func (s *statusLine) update(p diff.Progress) {
	if !s.active || time.Since(s.last) < 200*time.Millisecond {
		return
	}
	s.last, s.shown = time.Now(), true
	switch {
	case p.Phase == "mapping":
		fmt.Fprintf(s.w, "\r%s: mapping layers %s/%s\x1b[K", p.Volume, human(p.Done), human(p.Total))
	case p.Total > 0:
		fmt.Fprintf(s.w, "\r%s: %s %d/%d\x1b[K", p.Volume, p.Phase, p.Done, p.Total)
	default:
		fmt.Fprintf(s.w, "\r%s: %s %d\x1b[K", p.Volume, p.Phase, p.Done)
	}
}

func (s *statusLine) done() {
	if s.shown {
		fmt.Fprint(s.w, "\r\x1b[K")
	}
}
