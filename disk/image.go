package disk

import "os"

// Image is one disk file of a chain, whatever its format: what package
// chain and the packages above it need of it. *File (VHDX, AVHDX)
// implements it, and so does *vhd.File (VHD, AVHD). Implementations are
// safe for concurrent use.
type Image interface {
	// Name is the path the file was opened with.
	Name() string
	// Format is "VHDX" or "VHD".
	Format() string
	// Type is fixed, dynamic or differencing.
	Type() Type
	// VirtualSize is the size of the virtual disk in bytes.
	VirtualSize() int64
	// BlockSize is the granularity of BlockExtents: a power of two.
	BlockSize() int64
	// SectorSize is the logical sector size in bytes.
	SectorSize() int64
	// BlockExtents appends the extents covering block b, in order.
	BlockExtents(b int64, dst []Extent) ([]Extent, error)
	// ReadFileAt reads the file itself at file offset off (where an
	// Extent's FileOffset points).
	ReadFileAt(p []byte, off int64) (int, error)
	// FileRange returns the open file from which [off, off+n) can be
	// read unchanged (for splice), or nil.
	FileRange(off, n int64) *os.File
	// OwnBytes is the payload this file holds itself (allocated blocks).
	OwnBytes() int64
	// Identity is what a child's linkage names: the DataWriteGuid of a
	// VHDX file, the footer's Unique Id of a VHD file. name says which.
	Identity() (name string, id GUID)
	// Parent says how to find the parent of a differencing file; it
	// returns nil for a file without one.
	Parent() (*ParentRef, error)
	// Close closes the file.
	Close() error
}

// ParentRef is how a differencing file names its parent.
type ParentRef struct {
	// Format is the format the parent must have: a chain never mixes
	// VHDX and VHD files.
	Format string
	// Paths are the locator's paths, in the order to try them.
	Paths []ParentPath
	// Linkage are the identities the parent may have, preferred first.
	Linkage []Linkage
	// Entries are every locator entry, for messages.
	Entries []LocatorEntry
}

// ParentPath is one path a parent locator stores.
type ParentPath struct {
	Key   string // the locator entry: relative_path, W2ru, ...
	Value string // as stored (a Windows path)
	// Relative paths are resolved against the child's folder; of the
	// others only the last component is used.
	Relative bool
}

// Linkage is one identity a child expects of its parent.
type Linkage struct {
	Key string // parent_linkage, parent_linkage2, "parent unique ID"
	ID  GUID
}

// ParentChecker is implemented by images that check more of a parent than
// its identity. CheckParent replaces the chain's default check that
// virtual and sector sizes are equal; it returns warnings for mismatches
// that do not stop reading, and an error for those that do.
type ParentChecker interface {
	CheckParent(parent Image) (warnings []string, err error)
}

// Format is "VHDX".
func (f *File) Format() string { return "VHDX" }

// OwnBytes is the size of the payload blocks this file holds (fully or
// partially present).
func (f *File) OwnBytes() int64 {
	counts := f.StateCounts()
	return (counts[BlockFullyPresent] + counts[BlockPartiallyPresent]) * f.BlockSize()
}

// Identity is the file's DataWriteGuid, which a child's parent_linkage
// names.
func (f *File) Identity() (string, GUID) { return "DataWriteGuid", f.Header.DataWriteGUID }

// Parent returns the parent locator's paths (relative_path, then
// absolute_win32_path and volume_path) and linkage GUIDs (parent_linkage,
// then parent_linkage2), or nil for a file without a parent.
func (f *File) Parent() (*ParentRef, error) {
	pl := f.Metadata.ParentLocator
	if !f.Metadata.HasParent || pl == nil {
		return nil, nil
	}
	ref := &ParentRef{Format: "VHDX"}
	for _, k := range []string{KeyParentLinkage, KeyParentLinkage2} {
		v, ok := pl.Get(k)
		if !ok {
			continue
		}
		g, err := ParseGUID(v)
		if err != nil {
			return nil, &FormatError{File: f.name, Field: "parent locator: " + k, Offset: -1, Err: err}
		}
		ref.Linkage = append(ref.Linkage, Linkage{k, g})
	}
	for _, k := range []string{KeyRelativePath, KeyAbsoluteWin32Path, KeyVolumePath} {
		if v, ok := pl.Get(k); ok && v != "" {
			ref.Paths = append(ref.Paths, ParentPath{Key: k, Value: v, Relative: k == KeyRelativePath})
		}
	}
	for _, e := range pl.Entries {
		if e.Key != KeyParentLinkage && e.Key != KeyParentLinkage2 {
			ref.Entries = append(ref.Entries, e)
		}
	}
	return ref, nil
}

var _ Image = (*File)(nil)
