// Package chain stacks VHDX files into the virtual disk they present at one
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
)

// Errors a chain can fail with; test with errors.Is. Most come as the
// types of errors.go, which carry the details (errors.As).
var (
	ErrParentNotFound   = errors.New("parent not found")
	ErrLinkageMismatch  = errors.New("parent linkage mismatch")
	ErrCycle            = errors.New("chain has a cycle")
	ErrTooDeep          = errors.New("chain is too deep")
	ErrGeometryMismatch = errors.New("parent geometry differs")
)

// MaxDepth is the largest number of files in a chain.
const MaxDepth = 256

// Options control how parents are found.
type Options struct {
	// SearchPaths are extra folders in which to look for parents by file
	// name (case-insensitively).
	SearchPaths []string
	// IgnoreLinkage accepts a parent whose DataWriteGuid does not match
	// the child's parent_linkage.
	IgnoreLinkage bool
	// Files shares opened files between chains; nil opens privately.
	Files *FileSet
	// MaxDepth overrides the MaxDepth limit when positive (for tests).
	MaxDepth int
}

// FileSet opens each file once and shares it between chains.
type FileSet struct {
	mu    sync.Mutex
	files map[string]*disk.File
	errs  map[string]error
}

// NewFileSet returns an empty set.
func NewFileSet() *FileSet {
	return &FileSet{files: map[string]*disk.File{}, errs: map[string]error{}}
}

// Open returns the opened file at path, opening it on first use.
func (s *FileSet) Open(path string) (*disk.File, error) {
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
	f, err := disk.Open(abs)
	if err != nil {
		s.errs[abs] = err
		return nil, err
	}
	s.files[abs] = f
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
	File *disk.File
	Path string // absolute path
	// How this file was found from its child (empty for the leaf).
	LocatorKey   string // the locator key used, or "search" for a linkage scan
	LocatorValue string
	// The linkage check against the child's parent_linkage.
	Linkage LinkageCheck
}

// LinkageCheck records the comparison of a child's parent_linkage with the
// parent's DataWriteGuid.
type LinkageCheck struct {
	Key      string    // parent_linkage or parent_linkage2
	Expected disk.GUID // from the child's locator
	Actual   disk.GUID // the parent's DataWriteGuid
	OK       bool
	Ignored  bool // a mismatch accepted because of IgnoreLinkage
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
	links := []Link{{File: f, Path: abs}}
	seen := []os.FileInfo{}
	if st, err := os.Stat(abs); err == nil {
		seen = append(seen, st)
	}
	for links[len(links)-1].File.Metadata.HasParent {
		child := links[len(links)-1]
		limit := MaxDepth
		if opts.MaxDepth > 0 {
			limit = opts.MaxDepth
		}
		if len(links) >= limit {
			return nil, fmt.Errorf("%s: %w: more than %d files", leaf, ErrTooDeep, limit)
		}
		parent, err := findParent(child, opts, files)
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
		cm, pm := child.File.Metadata, parent.File.Metadata
		if cm.VirtualSize != pm.VirtualSize {
			return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "virtual size", ChildValue: int64(cm.VirtualSize), ParentValue: int64(pm.VirtualSize)}
		}
		if cm.LogicalSectorSize != pm.LogicalSectorSize {
			return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "logical sector size", ChildValue: int64(cm.LogicalSectorSize), ParentValue: int64(pm.LogicalSectorSize)}
		}
		links = append(links, parent)
	}
	return links, nil
}

// linkageOf returns the child's expected parent GUIDs (parent_linkage
// first, then parent_linkage2).
func linkageOf(child *disk.File) (keys []string, guids []disk.GUID, err error) {
	pl := child.Metadata.ParentLocator
	for _, k := range []string{disk.KeyParentLinkage, disk.KeyParentLinkage2} {
		v, ok := pl.Get(k)
		if !ok {
			continue
		}
		g, perr := disk.ParseGUID(v)
		if perr != nil {
			return nil, nil, &disk.FormatError{File: child.Name(), Field: "parent locator: " + k, Offset: -1, Err: perr}
		}
		keys, guids = append(keys, k), append(guids, g)
	}
	return keys, guids, nil
}

func checkLinkage(child, parent *disk.File) (LinkageCheck, error) {
	keys, guids, err := linkageOf(child)
	if err != nil {
		return LinkageCheck{}, err
	}
	actual := parent.Header.DataWriteGUID
	for i, g := range guids {
		if g == actual {
			return LinkageCheck{Key: keys[i], Expected: g, Actual: actual, OK: true}, nil
		}
	}
	c := LinkageCheck{Key: disk.KeyParentLinkage, Actual: actual}
	if len(guids) > 0 {
		c.Expected = guids[0]
	}
	return c, nil
}

// candidate is a possible parent path and the locator entry it came from.
type candidate struct{ key, value, path string }

func findParent(child Link, opts Options, files *FileSet) (Link, error) {
	pl := child.File.Metadata.ParentLocator
	dir := filepath.Dir(child.Path)
	var cands []candidate
	var tried []string
	if v, ok := pl.Get(disk.KeyRelativePath); ok && v != "" {
		p := filepath.Join(dir, filepath.FromSlash(strings.ReplaceAll(v, `\`, "/")))
		cands = append(cands, candidate{disk.KeyRelativePath, v, resolveCaseInsensitive(p)})
	}
	folders := append([]string{dir}, opts.SearchPaths...)
	for _, k := range []string{disk.KeyAbsoluteWin32Path, disk.KeyVolumePath} {
		v, ok := pl.Get(k)
		if !ok || v == "" {
			continue
		}
		name := winBase(v)
		for _, d := range folders {
			if p := findInFolder(d, name); p != "" {
				cands = append(cands, candidate{k, v, p})
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
		chk, err := checkLinkage(child.File, f)
		if err != nil {
			return Link{}, err
		}
		l := Link{File: f, Path: c.path, LocatorKey: c.key, LocatorValue: c.value, Linkage: chk}
		if chk.OK {
			return l, nil
		}
		if mismatch == nil {
			mismatch = &l
		}
	}
	// Last resort: any VHDX beside the child or in a search path whose
	// DataWriteGuid is the expected linkage (files renamed after copying).
	_, guids, err := linkageOf(child.File)
	if err != nil {
		return Link{}, err
	}
	for _, d := range folders {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			n := strings.ToLower(e.Name())
			if e.IsDir() || !(strings.HasSuffix(n, ".vhdx") || strings.HasSuffix(n, ".avhdx")) {
				continue
			}
			p := filepath.Join(d, e.Name())
			if p == child.Path {
				continue
			}
			f, err := files.Open(p)
			if err != nil {
				continue
			}
			for _, g := range guids {
				if f.Header.DataWriteGUID == g {
					chk, _ := checkLinkage(child.File, f)
					return Link{File: f, Path: p, LocatorKey: "search", LocatorValue: d, Linkage: chk}, nil
				}
			}
		}
	}
	if mismatch != nil {
		if opts.IgnoreLinkage {
			mismatch.Linkage.Ignored = true
			return *mismatch, nil
		}
		return Link{}, &LinkageError{Child: child.Path, Parent: mismatch.Path, FoundBy: mismatch.LocatorKey,
			Key: mismatch.Linkage.Key, Expected: mismatch.Linkage.Expected, Actual: mismatch.Linkage.Actual}
	}
	nf := &ParentNotFoundError{Child: child.Path, Tried: dedupe(tried)}
	for _, e := range pl.Entries {
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
