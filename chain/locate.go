// Package chain stacks VHDX files (or VHD files: see disk/vhd) into the virtual disk they present at one
// point of a checkpoint chain: it finds each file's parent through its
// parent locator, verifies the linkage, and resolves reads through the
// layers with a per-block resolver (see Resolver).
//
// Damaged files. With Options.Salvage, files cut short, with damaged BAT
// entries or unreadable regions open anyway (see disk.ReadOptions), and
// their blocks report the bytes they have lost as disk.Missing. A lost
// run is final: it hides the layers below it, exactly as the data it
// stood for did. Those layers hold the disk as it was before the child
// wrote that block; serving them would return stale data that looks
// valid. So the chain never falls through to a parent for lost bytes:
// ReadAt fails on them with an error wrapping disk.ErrMissingData (a file
// system above turns it into EIO, so files that do not touch them read
// whole), ReadAtZeroFilled reads them as zeros and lists them, and
// MissingRanges lists them from the block tables without reading data.
// Check reports what is wrong with every file and link of a chain.
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
	// Salvage opens damaged files as far as they can be read (see
	// disk.ReadOptions): bytes a file has lost read as an error wrapping
	// disk.ErrMissingData (ReadAt) or as zeros (ReadAtZeroFilled), never
	// as its parent's data, and MissingRanges lists them.
	Salvage bool

	check bool // Check: open files in check mode
}

// openMode is how a FileSet opens a file.
type openMode uint8

const (
	openStrict openMode = iota
	openSalvage
	openCheck // salvage, keeping the check's report
)

func (o Options) mode() openMode {
	switch {
	case o.check:
		return openCheck
	case o.Salvage:
		return openSalvage
	}
	return openStrict
}

// FileSet opens each file once and shares it between chains. A file
// opened in salvage mode (Options.Salvage) is a different open from the
// strict one.
type FileSet struct {
	mu      sync.Mutex
	files   map[fileKey]disk.Image
	errs    map[fileKey]error
	reports map[string]*disk.Report // of the files opened by Check
}

type fileKey struct {
	path string
	mode openMode
}

// NewFileSet returns an empty set.
func NewFileSet() *FileSet {
	return &FileSet{files: map[fileKey]disk.Image{}, errs: map[fileKey]error{}, reports: map[string]*disk.Report{}}
}

// Open returns the opened file at path, opening it on first use (see
// OpenImage).
func (s *FileSet) Open(path string) (disk.Image, error) { return s.open(path, openStrict) }

func (s *FileSet) open(path string, mode openMode) (disk.Image, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	k := fileKey{abs, mode}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[k]; ok {
		return f, nil
	}
	if err, ok := s.errs[k]; ok {
		return nil, err
	}
	var f disk.Image
	switch mode {
	case openCheck:
		var r *disk.Report
		f, r, err = CheckImage(abs)
		if r != nil {
			s.reports[abs] = r
		}
		if err == nil && f == nil {
			err = unusable(r)
		}
	default:
		f, err = OpenImageWith(abs, disk.ReadOptions{Salvage: mode == openSalvage})
	}
	if err != nil {
		s.errs[k] = err
		return nil, err
	}
	s.files[k] = f
	return f, nil
}

// report is the check report of the file at abs, if Check opened it.
func (s *FileSet) report(abs string) *disk.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reports[abs]
}

// unusable is the error for a file whose check found it unreadable: its
// first error.
func unusable(r *disk.Report) error {
	for _, p := range r.Problems {
		if p.Severity == disk.SeverityError {
			return p.Err
		}
	}
	return fmt.Errorf("%s: %w: unreadable", r.Path, disk.ErrCorrupt)
}

// OpenImage opens the disk file at path read-only in the format its
// content says, whatever its name: VHDX ("vhdxfile" at offset 0) or VHD (a
// "conectix" footer at the end, or its mirror at offset 0). Anything else
// fails with the VHDX reader's error about the missing signature.
func OpenImage(path string) (disk.Image, error) { return OpenImageWith(path, disk.ReadOptions{}) }

// OpenImageWith is OpenImage with options o (o.Salvage: see
// disk.ReadOptions).
func OpenImageWith(path string, o disk.ReadOptions) (disk.Image, error) {
	isVHD, err := detectVHD(path)
	if err != nil {
		return nil, err
	}
	if isVHD {
		f, err := vhd.OpenWith(path, o)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	f, err := disk.OpenWith(path, o)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// CheckImage checks the disk file at path (disk.Check, vhd.Check, by its
// content as OpenImage decides) and returns its report and, when its
// structures allow reading it, the file opened in salvage mode (nil
// otherwise). The error is for a file that cannot be opened at all.
func CheckImage(path string) (disk.Image, *disk.Report, error) {
	isVHD, err := detectVHD(path)
	if err != nil {
		return nil, nil, err
	}
	if isVHD {
		f, r, err := vhd.OpenCheck(path)
		if f == nil {
			return nil, r, err
		}
		return f, r, err
	}
	f, r, err := disk.OpenCheck(path)
	if f == nil {
		return nil, r, err
	}
	return f, r, err
}

// detectVHD says whether the file at path is to be read as a VHD file.
func detectVHD(path string) (bool, error) {
	osf, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return false, err
	}
	defer osf.Close()
	var sig [8]byte
	n, _ := osf.ReadAt(sig[:], 0)
	if n == 8 && string(sig[:]) == "vhdxfile" {
		return false, nil
	}
	st, err := osf.Stat()
	if err != nil {
		return false, err
	}
	return vhd.Detect(osf, st.Size()), nil
}

// candidateError is a parent candidate that could not be opened.
type candidateError struct {
	child, key, path string
	err              error
}

func (e *candidateError) Error() string {
	return fmt.Sprintf("%s: parent candidate from %s: %v", e.child, e.key, e.err)
}

func (e *candidateError) Unwrap() error { return e.err }

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
	f, err := files.open(abs, opts.mode())
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
		warns, err := checkGeometry(child, parent)
		if err != nil {
			return nil, err
		}
		parent.Warnings = append(parent.Warnings, warns...)
		links = append(links, parent)
	}
	return links, nil
}

// checkGeometry compares the logical sector size and virtual size of a
// child and its parent (or what the child's format checks instead, see
// disk.ParentChecker).
func checkGeometry(child, parent Link) ([]string, error) {
	cf, pf := child.File, parent.File
	if cf.SectorSize() != pf.SectorSize() {
		return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "logical sector size", ChildValue: cf.SectorSize(), ParentValue: pf.SectorSize()}
	}
	if pc, ok := cf.(disk.ParentChecker); ok {
		warns, err := pc.CheckParent(pf)
		if err != nil {
			return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "virtual size", ChildValue: cf.VirtualSize(), ParentValue: pf.VirtualSize(), Detail: err.Error()}
		}
		return warns, nil
	}
	if cf.VirtualSize() != pf.VirtualSize() {
		return nil, &GeometryError{Child: child.Path, Parent: parent.Path, Field: "virtual size", ChildValue: cf.VirtualSize(), ParentValue: pf.VirtualSize()}
	}
	return nil, nil
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

// candidates lists the files the locator's paths name, in the order to
// try them, and the paths tried that do not exist (absolute locators are
// looked for by name in the child's folder and every search path).
func candidates(child Link, ref *disk.ParentRef, opts Options) (cands []candidate, tried []string) {
	dir := filepath.Dir(child.Path)
	for _, p := range ref.Paths {
		if p.Relative {
			rel := filepath.Join(dir, filepath.FromSlash(strings.ReplaceAll(p.Value, `\`, "/")))
			cands = append(cands, candidate{p.Key, p.Value, resolveCaseInsensitive(rel)})
			continue
		}
		name := winBase(p.Value)
		for _, d := range parentFolders(child, opts) {
			if found := findInFolder(d, name); found != "" {
				cands = append(cands, candidate{p.Key, p.Value, found})
			} else {
				tried = append(tried, filepath.Join(d, name))
			}
		}
	}
	return cands, tried
}

// parentFolders are the folders parents are looked for in by name.
func parentFolders(child Link, opts Options) []string {
	return append([]string{filepath.Dir(child.Path)}, opts.SearchPaths...)
}

func findParent(child Link, ref *disk.ParentRef, opts Options, files *FileSet) (Link, error) {
	cands, tried := candidates(child, ref, opts)
	folders := parentFolders(child, opts)
	var mismatch *Link
	for _, c := range cands {
		if _, err := os.Stat(c.path); err != nil {
			tried = append(tried, c.path)
			continue
		}
		f, err := files.open(c.path, opts.mode())
		if err != nil {
			return Link{}, &candidateError{child.Path, c.key, c.path, err}
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
			f, err := files.open(p, opts.mode())
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
