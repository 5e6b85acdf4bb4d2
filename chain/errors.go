package chain

import (
	"fmt"
	"strings"

	"github.com/ckptfs/ckptfs/disk"
)

// The errors of Open carry their details as these types; each wraps its
// sentinel (ErrParentNotFound, ...), so errors.Is and errors.As both work.
// They name files and fields only: what a user can do about them (flags,
// for the CLI) is for the caller to say.

// ParentNotFoundError means no file was found for a differencing file's
// parent. It wraps ErrParentNotFound.
type ParentNotFoundError struct {
	Child string // the differencing file
	// Locator is the child's parent locator, without its linkage entries.
	Locator []disk.LocatorEntry
	// Tried are the paths looked at, in order.
	Tried []string
}

func (e *ParentNotFoundError) Error() string {
	locs := make([]string, len(e.Locator))
	for i, l := range e.Locator {
		locs[i] = fmt.Sprintf("%s=%q", l.Key, l.Value)
	}
	return fmt.Sprintf("%s: %v (locator: %s; looked for %s)", e.Child, ErrParentNotFound, strings.Join(locs, ", "), strings.Join(e.Tried, ", "))
}

// Unwrap returns ErrParentNotFound.
func (e *ParentNotFoundError) Unwrap() error { return ErrParentNotFound }

// LinkageError means the file found for a child's parent is not the file
// the child was made from: the child's parent_linkage is not the parent's
// DataWriteGuid (VHD: the child's parent unique ID is not the parent's
// unique ID). It wraps ErrLinkageMismatch.
type LinkageError struct {
	Child  string // the differencing file
	Parent string // the parent found
	// FoundBy is the locator key through which Parent was found.
	FoundBy string
	// Key is the linkage entry compared: parent_linkage (or
	// parent_linkage2).
	Key string
	// Expected is the child's linkage, Actual the parent's identity,
	// named ActualKey ("DataWriteGuid", VHD "unique ID").
	Expected, Actual disk.GUID
	ActualKey        string
}

func (e *LinkageError) Error() string {
	key := e.ActualKey
	if key == "" {
		key = "DataWriteGuid"
	}
	return fmt.Sprintf("%s: %v: its %s is %s but parent %s (found through %s) has %s %s",
		e.Child, ErrLinkageMismatch, e.Key, e.Expected.Braced(), e.Parent, e.FoundBy, key, e.Actual.Braced())
}

// Unwrap returns ErrLinkageMismatch.
func (e *LinkageError) Unwrap() error { return ErrLinkageMismatch }

// CycleError means a file's parent is already part of the chain. It wraps
// ErrCycle.
type CycleError struct {
	Child, Parent string
	// Link is the index in the chain (0 = leaf) where Parent already is.
	Link int
}

func (e *CycleError) Error() string {
	return fmt.Sprintf("%s: %v: its parent %s is already link %d of the chain", e.Child, ErrCycle, e.Parent, e.Link)
}

// Unwrap returns ErrCycle.
func (e *CycleError) Unwrap() error { return ErrCycle }

// GeometryError means a parent's virtual size or logical sector size
// differs from its child's. It wraps ErrGeometryMismatch.
type GeometryError struct {
	Child, Parent string
	// Field is "virtual size" or "logical sector size".
	Field                   string
	ChildValue, ParentValue int64
	// Detail, when set, says why the values do not fit where a plain
	// comparison is not the rule (VHD sizes rounded to a CHS geometry).
	Detail string
}

func (e *GeometryError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s: %v: %s", e.Child, ErrGeometryMismatch, e.Detail)
	}
	return fmt.Sprintf("%s: %v: %s %d, parent %s has %d", e.Child, ErrGeometryMismatch, e.Field, e.ChildValue, e.Parent, e.ParentValue)
}

// Unwrap returns ErrGeometryMismatch.
func (e *GeometryError) Unwrap() error { return ErrGeometryMismatch }
