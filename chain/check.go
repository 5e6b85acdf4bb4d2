package chain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckptfs/ckptfs/disk"
)

// ChainReport is what Check found along a chain.
type ChainReport struct {
	Leaf string // absolute path
	// Links are the files from the leaf towards the base, as far as the
	// chain could be followed. When a parent candidate could not be read,
	// it is the last link, and its Report says why.
	Links []LinkReport
	// Problems concern the chain as a whole: a cycle, a chain too deep.
	Problems []disk.Problem
}

// LinkReport is one file of a checked chain.
type LinkReport struct {
	Path string
	// Report is the file's own check (disk.Check, vhd.Check).
	Report *disk.Report
	// How this file was found from its child (empty for the leaf).
	LocatorKey   string
	LocatorValue string
	// Linkage compares the child's linkage with this file's identity
	// (nil for the leaf).
	Linkage *LinkageCheck
	// Locators says, for a differencing file, where each path of its
	// parent locator leads.
	Locators []LocatorFinding
	// Problems are about this file and its parent: parent not found,
	// linkage, geometry, locators.
	Problems []disk.Problem
}

// LocatorFinding is where one path of a parent locator leads.
type LocatorFinding struct {
	Key   string // relative_path, W2ru, ...
	Value string // as stored
	Path  string // the existing file it names, "" when none
	// Parent: Path is the parent the chain uses.
	Parent bool
}

// Errors counts the problems of severity error in the whole report.
func (r *ChainReport) Errors() int { return r.count(disk.SeverityError) }

// Warnings counts the problems of severity warning in the whole report.
func (r *ChainReport) Warnings() int { return r.count(disk.SeverityWarning) }

// Clean reports a chain without any problem.
func (r *ChainReport) Clean() bool { return r.Errors() == 0 && r.Warnings() == 0 }

func (r *ChainReport) count(s disk.Severity) int {
	n := countSeverity(r.Problems, s)
	for _, l := range r.Links {
		n += countSeverity(l.Problems, s)
		if l.Report != nil {
			if s == disk.SeverityError {
				n += l.Report.Errors()
			} else {
				n += l.Report.Warnings()
			}
		}
	}
	return n
}

func countSeverity(ps []disk.Problem, s disk.Severity) int {
	n := 0
	for _, p := range ps {
		if p.Severity == s {
			n++
		}
	}
	return n
}

func problem(s disk.Severity, structure string, err error) disk.Problem {
	return disk.Problem{Severity: s, Structure: structure, Offset: -1, Err: err}
}

// Check examines the chain ending at leaf, read-only: every file as
// disk.Check (or vhd.Check) does, and for every link the parent found as
// Open finds it (opts.SearchPaths), the linkage (a mismatch is an error
// naming both identities, a warning with opts.IgnoreLinkage), the
// geometry (virtual and sector sizes) and where the locator's paths lead.
// Damaged files are followed as far as their structures allow. A missing
// parent, a cycle or a chain too deep is a problem in the report; the
// error is only for a leaf that cannot be opened at all. opts.Files and
// opts.Salvage are ignored: Check opens its own files.
func Check(leaf string, opts Options) (*ChainReport, error) {
	abs, err := filepath.Abs(leaf)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	opts.check, opts.Files = true, nil
	files := NewFileSet()
	defer files.Close()
	f, err := files.open(abs, openCheck)
	rep := &ChainReport{Leaf: abs}
	lr := files.report(abs)
	if lr == nil {
		return nil, err
	}
	rep.Links = append(rep.Links, LinkReport{Path: abs, Report: lr})
	if f == nil {
		return rep, nil
	}
	limit := MaxDepth
	if opts.MaxDepth > 0 {
		limit = opts.MaxDepth
	}
	seen := []os.FileInfo{st}
	child := Link{File: f, Path: abs}
	for {
		cur := &rep.Links[len(rep.Links)-1]
		ref, err := child.File.Parent()
		if err != nil {
			cur.Problems = append(cur.Problems, problem(disk.SeverityError, "parent locator", err))
			break
		}
		if ref == nil {
			break
		}
		if len(rep.Links) >= limit {
			rep.Problems = append(rep.Problems, problem(disk.SeverityError, "chain", fmt.Errorf("%s: %w: more than %d files", abs, ErrTooDeep, limit)))
			break
		}
		o := opts
		o.IgnoreLinkage = true // a mismatch is reported, and followed
		parent, err := findParent(child, ref, o, files)
		cur.Locators = locatorFindings(child, ref, opts, parent.Path)
		cur.Problems = append(cur.Problems, locatorProblems(child, ref, cur.Locators, parent.Path)...)
		if err != nil {
			cur.Problems = append(cur.Problems, problem(disk.SeverityError, "parent", err))
			var ce *candidateError
			if errors.As(err, &ce) {
				if r := files.report(ce.path); r != nil {
					rep.Links = append(rep.Links, LinkReport{Path: ce.path, Report: r, LocatorKey: ce.key})
				}
			}
			break
		}
		chk := parent.Linkage
		chk.Ignored = !chk.OK && opts.IgnoreLinkage
		if !chk.OK {
			s := disk.SeverityError
			if opts.IgnoreLinkage {
				s = disk.SeverityWarning
			}
			cur.Problems = append(cur.Problems, problem(s, "parent linkage", fmt.Errorf("%s: %w: its %s is %s but parent %s (found through %s) has %s %s",
				child.Path, ErrLinkageMismatch, chk.Key, chk.Expected.Braced(), parent.Path, parent.LocatorKey, chk.ActualKey, chk.Actual.Braced())))
		}
		pst, err := os.Stat(parent.Path)
		if err != nil {
			cur.Problems = append(cur.Problems, problem(disk.SeverityError, "parent", err))
			break
		}
		cycle := false
		for i, s := range seen {
			if os.SameFile(s, pst) {
				rep.Problems = append(rep.Problems, problem(disk.SeverityError, "chain",
					fmt.Errorf("%s: %w: its parent %s is already link %d of the chain", child.Path, ErrCycle, parent.Path, i)))
				cycle = true
			}
		}
		if cycle {
			break
		}
		seen = append(seen, pst)
		warns, err := checkGeometry(child, parent)
		if err != nil {
			cur.Problems = append(cur.Problems, problem(disk.SeverityError, "geometry", err))
		}
		for _, w := range warns {
			cur.Problems = append(cur.Problems, problem(disk.SeverityWarning, "geometry", errors.New(w)))
		}
		rep.Links = append(rep.Links, LinkReport{Path: parent.Path, Report: files.report(parent.Path),
			LocatorKey: parent.LocatorKey, LocatorValue: parent.LocatorValue, Linkage: &chk})
		child = parent
	}
	return rep, nil
}

// locatorFindings says where each path of ref leads; parent is the
// parent found ("" if none).
func locatorFindings(child Link, ref *disk.ParentRef, opts Options, parent string) []LocatorFinding {
	cands, _ := candidates(child, ref, opts)
	var out []LocatorFinding
	for _, p := range ref.Paths {
		lf := LocatorFinding{Key: p.Key, Value: p.Value}
		for _, c := range cands {
			if c.key != p.Key || c.value != p.Value {
				continue
			}
			if _, err := os.Stat(c.path); err == nil {
				lf.Path = c.path
				lf.Parent = parent != "" && sameFile(c.path, parent)
				if lf.Parent {
					break
				}
			}
		}
		out = append(out, lf)
	}
	return out
}

// locatorProblems are warnings for relative locator paths that do not
// lead to the parent. (Absolute paths name the folder the file was made
// in; that they are stale after a copy is normal.)
func locatorProblems(child Link, ref *disk.ParentRef, fs []LocatorFinding, parent string) []disk.Problem {
	rel := map[string]bool{}
	for _, p := range ref.Paths {
		rel[p.Key] = p.Relative
	}
	var out []disk.Problem
	for _, f := range fs {
		if !rel[f.Key] || f.Parent {
			continue
		}
		var err error
		switch {
		case f.Path == "":
			err = fmt.Errorf("%s: parent locator %s %q names no existing file", child.Path, f.Key, f.Value)
		case parent != "":
			err = fmt.Errorf("%s: parent locator %s %q names %s, not the parent found (%s)", child.Path, f.Key, f.Value, f.Path, parent)
		default:
			continue
		}
		out = append(out, problem(disk.SeverityWarning, "parent locator "+f.Key, err))
	}
	return out
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
