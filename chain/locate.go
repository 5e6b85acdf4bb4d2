// Package chain stacks VHDX files (or VHD files: see disk/vhd) into the virtual disk they present at one
// point of a checkpoint chain: it finds each file's parent through its
// parent locator, verifies the linkage, and resolves reads through the
// layers with a per-block resolver (see Resolver).
package chain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd"
)

// Errors a chain can fail with; test with errors.Is. Most come as the
// types of errors.go, which carry the details (errors.As).
var (
	ErrParentNotFound   = errors.New("parent not found")
	ErrLinkageMismatch  = errors.New("parent linkage mismatch")
	ErrCycle            = errors.New("chain has a cycle")
	ErrTooDeep          = errors.New("chain is too deep")
	ErrGeometryMismatch = errors.New("parent geometry differs")
	ErrFormatMismatch   = errors.New("parent has another format")
)

// MaxDepth is the largest number of files in a chain.
const MaxDepth = 256

// Options control how parents are found.
type Options struct {
	// SearchPaths are extra folders in which to look for parents by file
	// name (case-insensitively).
	SearchPaths []string
	// IgnoreLinkage accepts a parent whose identity (VHDX DataWriteGuid,
	// VHD unique ID) does not match the child's linkage (parent_linkage,
	// VHD Parent Unique ID).
	IgnoreLinkage bool
	// Files shares opened files between chains; nil opens privately.
	Files *FileSet
	// MaxDepth overrides the MaxDepth limit when positive (for tests).
	MaxDepth int
}

// FileSet opens each file once and shares it between chains.
type FileSet struct {
	mu    sync.Mutex
	files map[string]disk.Image
	errs  map[string]error
}

// NewFileSet returns an empty set.
func NewFileSet() *FileSet {
	return &FileSet{files: map[string]disk.Image{}, errs: map[string]error{}}
}

// Open returns the opened file at path, opening it on first use (see
// OpenImage).
func (s *FileSet) Open(path string) (disk.Image, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[abs]; ok {
		return f, nil
	}
	if err, ok := s.errs[abs]; ok {
		return nil, err
	}
	f, err := OpenImage(abs)
	if err != nil {
		s.errs[abs] = err
		return nil, err
	}
	s.files[abs] = f
	return f, nil
}

// OpenImage opens the disk file at path read-only in the format its
// content says, whatever its name: VHDX ("vhdxfile" at offset 0) or VHD (a
// "conectix" footer at the end, or its mirror at offset 0). Anything else
// fails with the VHDX reader's error about the missing signature.
func OpenImage(path string) (disk.Image, error) {
	osf, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	var sig [8]byte
	n, _ := osf.ReadAt(sig[:], 0)
	isVHD := false
	if n < 8 || string(sig[:]) != "vhdxfile" {
		if st, err := osf.Stat(); err == nil {
			isVHD = vhd.Detect(osf, st.Size())
		}
	}
	osf.Close()
	if isVHD {
		f, err := vhd.Open(path)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	f, err := disk.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes every file in the set.
func (s *FileSet) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for k, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
		delete(s.files, k)
	}
	return first
}

// Link is one file of a chain and how it was found.
type Link struct {
	File disk.Image
	Path string // absolute path
	// How this file was found from its child (empty for the leaf).
	LocatorKey   string // the locator key used, or "search" for a linkage scan
	LocatorValue string
	// The linkage check against the child's parent_linkage.
	Linkage LinkageCheck
	// Warnings are what is wrong with this file, or with its agreement
	// with its child, that does not stop reading: a header or footer copy
	// ignored, a VHD parent time stamp that differs, sizes that differ
	// by CHS rounding.
	Warnings []string
}

// LinkageCheck records the comparison of a child's linkage
// (parent_linkage, VHD Parent Unique ID) with the parent's identity.
type LinkageCheck struct {
	Key       string    // parent_linkage, parent_linkage2 or "parent unique ID"
	Expected  disk.GUID // from the child
	Actual    disk.GUID // the parent's identity
	ActualKey string    // what Actual is: "DataWriteGuid" or "unique ID"
	OK        bool
	Ignored   bool // a mismatch accepted because of IgnoreLinkage
}

// fileWarnings are the warnings the file's reader recorded, each naming
// the file.
func fileWarnings(f disk.Image) []string {
	var ws []string
	switch x := f.(type) {
	case *disk.File:
		ws = x.Warnings
	case *vhd.File:
		ws = x.Warnings
	}
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		if !strings.HasPrefix(w, f.Name()) {
			w = f.Name() + ": " + w
		}
		out = append(out, w)
	}
	return out
}

// locate finds the chain from leaf to its base.
func locate(leaf string, opts Options) ([]Link, error) {
	files := opts.Files
	if files == nil {
		files = NewFileSet()
	}
	abs, err := filepath.Abs(leaf)
	if err != nil {
		return nil, err
	}
	f, err := files.Open(abs)
	if err != nil {
		return nil, err
	}
	links := []Link{{File: f, Path: abs, Warnings: fileWarnings(f)}}
	seen := []os.FileInfo{}
	if st, err := os.Stat(abs); err == nil {
		seen = append(seen, st)
	}
	for {
		child := links[len(links)-1]
		ref, err := child.File.Parent()
		if err != nil {
			return nil, err
		}
		if ref == nil {
			break
		}
		limit := MaxDepth
		if opts.MaxDepth > 0 {
			limit = opts.MaxDepth
		}
		if len(links) >= limit {
			return nil, fmt.Errorf("%s: %w: more than %d files", leaf, ErrTooDeep, limit)
		}
		parent, err := findParent(child, ref, opts, files)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(parent.Path)
		if err != nil {
			return nil, err
		}
		for i, s := range seen {
			if os.SameFile(s, st) {
				return nil, &CycleError{Child: child.Path, Parent: parent.Path, Link: i}
			}
		}
		seen = append(seen, st)
		cf, pf := child.File, parent.File
		if cf.SectorSize() != pf.SectorSize() {
			return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "logical sector size", ChildValue: cf.SectorSize(), ParentValue: pf.SectorSize()}
		}
		if pc, ok := cf.(disk.ParentChecker); ok {
			warns, err := pc.CheckParent(pf)
			if err != nil {
				return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "virtual size", ChildValue: cf.VirtualSize(), ParentValue: pf.VirtualSize(), Detail: err.Error()}
			}
			parent.Warnings = append(parent.Warnings, warns...)
		} else if cf.VirtualSize() != pf.VirtualSize() {
			return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "virtual size", ChildValue: cf.VirtualSize(), ParentValue: pf.VirtualSize()}
		}
		links = append(links, parent)
	}
	return links, nil
}

// checkLinkage compares the identity of parent with the child's linkage.
func checkLinkage(ref *disk.ParentRef, parent disk.Image) LinkageCheck {
	name, actual := parent.Identity()
	for _, l := range ref.Linkage {
		if l.ID == actual {
			return LinkageCheck{Key: l.Key, Expected: l.ID, Actual: actual, ActualKey: name, OK: true}
		}
	}
	c := LinkageCheck{Actual: actual, ActualKey: name}
	if len(ref.Linkage) > 0 {
		c.Key, c.Expected = ref.Linkage[0].Key, ref.Linkage[0].ID
	}
	return c
}

// diskExtensions are the file name extensions of each format, for the
// identity scan.
var diskExtensions = map[string][]string{"VHDX": {".vhdx", ".avhdx"}, "VHD": {".vhd", ".avhd"}}

func hasExtension(name string, exts []string) bool {
	n := strings.ToLower(name)
	for _, e := range exts {
		if strings.HasSuffix(n, e) {
			return true
		}
	}
	return false
}

// candidate is a possible parent path and the locator entry it came from.
type candidate struct{ key, value, path string }

func findParent(child Link, ref *disk.ParentRef, opts Options, files *FileSet) (Link, error) {
	dir := filepath.Dir(child.Path)
	var cands []candidate
	var tried []string
	folders := append([]string{dir}, opts.SearchPaths...)
	for _, p := range ref.Paths {
		if p.Relative {
			rel := filepath.Join(dir, filepath.FromSlash(strings.ReplaceAll(p.Value, `\`, "/")))
			cands = append(cands, candidate{p.Key, p.Value, resolveCaseInsensitive(rel)})
			continue
		}
		name := winBase(p.Value)
		for _, d := range folders {
			if found := findInFolder(d, name); found != "" {
				cands = append(cands, candidate{p.Key, p.Value, found})
			} else {
				tried = append(tried, filepath.Join(d, name))
			}
		}
	}
	var mismatch *Link
	for _, c := range cands {
		if _, err := os.Stat(c.path); err != nil {
			tried = append(tried, c.path)
			continue
		}
		f, err := files.Open(c.path)
		if err != nil {
			return Link{}, fmt.Errorf("%s: parent candidate from %s: %w", child.Path, c.key, err)
		}
		if f.Format() != ref.Format {
			return Link{}, fmt.Errorf("%s: %w: this %s file's %s names %s, a %s file; a chain cannot mix VHDX and VHD files (Hyper-V cannot either)",
				child.Path, ErrFormatMismatch, child.File.Format(), c.key, c.path, f.Format())
		}
		chk := checkLinkage(ref, f)
		l := Link{File: f, Path: c.path, LocatorKey: c.key, LocatorValue: c.value, Linkage: chk, Warnings: fileWarnings(f)}
		if chk.OK {
			return l, nil
		}
		if mismatch == nil {
			mismatch = &l
		}
	}
	// Last resort: any file of the child's format beside the child or in
	// a search path whose identity is the expected linkage (files renamed
	// after copying).
	for _, d := range folders {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() || !hasExtension(e.Name(), diskExtensions[ref.Format]) {
				continue
			}
			p := filepath.Join(d, e.Name())
			if p == child.Path {
				continue
			}
			f, err := files.Open(p)
			if err != nil || f.Format() != ref.Format {
				continue
			}
			if chk := checkLinkage(ref, f); chk.OK {
				return Link{File: f, Path: p, LocatorKey: "search", LocatorValue: d, Linkage: chk, Warnings: fileWarnings(f)}, nil
			}
		}
	}
	if mismatch != nil {
		if opts.IgnoreLinkage {
			mismatch.Linkage.Ignored = true
			return *mismatch, nil
		}
		return Link{}, &LinkageError{Child: child.Path, Parent: mismatch.Path, FoundBy: mismatch.LocatorKey,
			Key: mismatch.Linkage.Key, Expected: mismatch.Linkage.Expected, ActualKey: mismatch.Linkage.ActualKey, Actual: mismatch.Linkage.Actual}
	}
	nf := &ParentNotFoundError{Child: child.Path, Tried: dedupe(tried)}
	for _, e := range ref.Entries {
		if e.Key != disk.KeyParentLinkage && e.Key != disk.KeyParentLinkage2 {
			nf.Locator = append(nf.Locator, e)
		}
	}
	return Link{}, nf
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// winBase returns the last component of a Windows path.
func winBase(p string) string {
	if i := strings.LastIndexAny(p, `\/`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// findInFolder finds name in dir, case-insensitively as Windows would.
func findInFolder(dir, name string) string {
	if name == "" {
		return ""
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// resolveCaseInsensitive returns p if it exists, else p with each missing
// component matched case-insensitively, else p unchanged.
func resolveCaseInsensitive(p string) string {
	p = filepath.Clean(p)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p
	}
	parent = resolveCaseInsensitive(parent)
	if found := findInFolder(parent, filepath.Base(p)); found != "" {
		return found
	}
	return p
}
