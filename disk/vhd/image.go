package vhd

import (
	"fmt"

	"github.com/ckptfs/ckptfs/disk"
)

// Locator keys, as chain and info name them.
const (
	// KeyParentUniqueID names the dynamic header's Parent Unique ID.
	KeyParentUniqueID = "parent unique ID"
	// KeyParentName names the dynamic header's Parent Unicode Name.
	KeyParentName = "parent name"
)

// Identity is the footer's Unique Id, which a child's Parent Unique ID
// names.
func (f *File) Identity() (string, disk.GUID) { return "unique ID", f.Footer.UniqueID }

// Parent returns, for a differencing file, where to look for its parent:
// the relative locators (W2ru, then Wi2r), the absolute ones (W2ku, Wi2k,
// MacX) and the Parent Unicode Name (a file name), and the identity the
// parent must have (its footer's Unique Id). It returns nil for fixed and
// dynamic files.
func (f *File) Parent() (*disk.ParentRef, error) {
	if f.Footer.DiskType != TypeDifferencing {
		return nil, nil
	}
	h := f.Header
	ref := &disk.ParentRef{Format: "VHD", Linkage: []disk.Linkage{{Key: KeyParentUniqueID, ID: h.ParentUniqueID}}}
	for _, code := range []PlatformCode{PlatformW2ru, PlatformWi2r, PlatformW2ku, PlatformWi2k, PlatformMacX} {
		for _, l := range h.Locators {
			if l.Code == code && l.Path != "" {
				ref.Paths = append(ref.Paths, disk.ParentPath{Key: l.Code.String(), Value: l.Path, Relative: l.Code.Relative()})
			}
		}
	}
	if h.ParentName != "" {
		ref.Paths = append(ref.Paths, disk.ParentPath{Key: KeyParentName, Value: h.ParentName})
	}
	for _, p := range ref.Paths {
		ref.Entries = append(ref.Entries, disk.LocatorEntry{Key: p.Key, Value: p.Value})
	}
	return ref, nil
}

// CheckParent compares f, a differencing file, with the file found as its
// parent:
//
//   - Parent Time Stamp against the parent footer's Time Stamp: a
//     mismatch is a warning (the parent may have been modified after the
//     child was made, or a writer stamped another time; the unique ID
//     already identified it).
//   - Current Size: equal sizes pass. Sizes that differ only by CHS
//     rounding pass with a warning: both footers carry the same Disk
//     Geometry, both sizes are at least its capacity and they differ by
//     less than one cylinder (one writer recorded the size asked for,
//     the other the geometry's capacity). The chain then has the
//     child's size and parent sectors past the parent's own size read as
//     zeros. Any other difference is an error.
func (f *File) CheckParent(parent disk.Image) ([]string, error) {
	p, ok := parent.(*File)
	if !ok {
		return nil, fmt.Errorf("parent %s is a %s file, not a VHD", parent.Name(), parent.Format())
	}
	var warns []string
	if f.Header != nil && f.Header.ParentTimeStamp != p.Footer.TimeStamp {
		warns = append(warns, fmt.Sprintf("%s: Parent Time Stamp %s differs from the Time Stamp %s of its parent %s (the parent may have changed since the child was made)",
			f.name, stampString(f.Header.ParentTimeStamp), stampString(p.Footer.TimeStamp), p.name))
	}
	cs, ps := int64(f.Footer.CurrentSize), int64(p.Footer.CurrentSize)
	if cs == ps {
		return warns, nil
	}
	g := f.Footer.Geometry
	cyl := int64(g.Heads) * int64(g.SectorsPerTrack) * SectorSize
	if g == p.Footer.Geometry && cyl > 0 && min(cs, ps) >= g.Capacity() && max(cs, ps)-min(cs, ps) < cyl {
		return append(warns, fmt.Sprintf("%s: Current Size %d differs from its parent %s's %d by CHS rounding (same geometry %s); the child's size is used",
			f.name, cs, p.name, ps, g)), nil
	}
	return warns, fmt.Errorf("Current Size %d, parent %s has %d (geometry %s and %s)", cs, p.name, ps, g, p.Footer.Geometry)
}

func stampString(s uint32) string {
	return fmt.Sprintf("%s (%d)", Time(s).Format("2006-01-02 15:04:05 UTC"), s)
}

var (
	_ disk.Image         = (*File)(nil)
	_ disk.ParentChecker = (*File)(nil)
)
