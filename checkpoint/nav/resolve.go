package nav

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Errors of Resolve and Point; test with errors.Is (errors.As gives the
// details of a *PointError or *FileSystemsError).
var (
	// ErrNotPointPath means an argument holds no colon: it is not
	// POINT:PATH.
	ErrNotPointPath = errors.New("not POINT:PATH")
	// ErrNoPoint means a name names no point folder.
	ErrNoPoint = errors.New("no such point")
	// ErrFileSystems means an absolute PATH ("POINT:/x") was given for a
	// point that has no file system, or more than one.
	ErrFileSystems = errors.New("not exactly one file system")
)

// PointError is a name that names no point folder of the tree. It wraps
// ErrNoPoint.
type PointError struct {
	Name string
	// Points are the names of the tree's point folders (the first few).
	Points []string
}

func (e *PointError) Error() string {
	q := make([]string, len(e.Points))
	for i, p := range e.Points {
		q[i] = fmt.Sprintf("%q", p)
	}
	if len(q) > maxPointNames {
		q = append(q[:maxPointNames], "…")
	}
	return fmt.Sprintf("%s: %v (points: %s)", e.Name, ErrNoPoint, strings.Join(q, ", "))
}

// Unwrap returns ErrNoPoint.
func (e *PointError) Unwrap() error { return ErrNoPoint }

// maxPointNames is how many point names a PointError message lists.
const maxPointNames = 12

// FileSystemsError is an absolute PATH below a point that does not have
// exactly one file system. It wraps ErrFileSystems and, when the point's
// folders could not all be listed, that error.
type FileSystemsError struct {
	Point string
	Path  string // the absolute PATH given
	// FileSystems are the paths of the point's file-system folders,
	// relative to the point.
	FileSystems []string
	// Err is why some folders could not be listed, if so.
	Err error
}

func (e *FileSystemsError) Error() string {
	switch n := len(e.FileSystems); {
	case n == 0 && e.Err != nil:
		return fmt.Sprintf("%s: %v", e.Point, e.Err)
	case n == 0:
		return fmt.Sprintf("%s: the point has no file system ckptfs can read", e.Point)
	default:
		return fmt.Sprintf("%s: the point has %d file systems (%s); give the path below the point, e.g. %s:%s%s",
			e.Point, n, strings.Join(e.FileSystems, ", "), e.Point, e.FileSystems[0], e.Path)
	}
}

// Unwrap returns ErrFileSystems and the listing error, if any.
func (e *FileSystemsError) Unwrap() []error { return []error{ErrFileSystems, e.Err} }

// Place is a resolved POINT:PATH: a place in the tree and how to name it.
type Place struct {
	// Point is the point as given.
	Point string
	// Abs reports an absolute PATH: a path inside the point's only file
	// system.
	Abs bool
	// Loc is the place.
	Loc Loc
	// Name is the name a copy of the place into a folder gets: the last
	// element of its path, or the name of the point or file system when
	// the path is empty.
	Name string
}

// String names the place as POINT:PATH, with the path's names as stored.
func (p Place) String() string {
	if p.Abs {
		return p.Point + ":/" + p.Loc.Path
	}
	return p.Point + ":" + p.Loc.Path
}

// Point finds the point folder called name: a path of folders from root,
// e.g. "Disk_3F2A…" or "by-file/Disk". For a name that is not a folder of
// the tree it returns a *PointError.
func Point(root *checkpoint.Node, name string) (*checkpoint.Node, error) {
	if name != "" {
		loc, err := Walk(root, name)
		if err == nil && !loc.In && loc.Node.Kind() == checkpoint.KindFolder {
			return loc.Node, nil
		}
	}
	return nil, &PointError{Name: name, Points: PointNames(root)}
}

// PointNames lists the names of root's point folders (its child folders),
// in tree order.
func PointNames(root *checkpoint.Node) []string {
	kids, _ := root.Entries()
	var names []string
	for _, k := range kids {
		if k.Kind() == checkpoint.KindFolder {
			names = append(names, k.Name)
		}
	}
	return names
}

// Resolve finds "POINT:PATH" in the tree below root. POINT is a point
// folder (see Point); PATH is the path below it as a mount shows it, e.g.
// "Disk.files/2-Basic data partition/inetpub/web.config", or an absolute
// path ("/inetpub/web.config") inside the point's only file system. Names
// inside file systems match as the file system does (ignoring case on
// NTFS and FAT); folder names of the tree match exactly, else ignoring
// case when that is unambiguous.
//
// Point names may themselves hold colons (Hyper-V's default checkpoint
// names do), so every colon is tried as the separator, leftmost first; the
// first split whose point and path both exist wins. Errors wrap
// ErrNotPointPath (no colon), a *PointError (no split names a point),
// a *FileSystemsError, or the Walk error of the first split whose point
// exists.
func Resolve(root *checkpoint.Node, arg string) (Place, error) {
	var firstErr error
	found := false
	for i := 0; i < len(arg); i++ {
		if arg[i] != ':' {
			continue
		}
		pt, err := Point(root, arg[:i])
		if err != nil {
			continue // a colon inside the point name, or no such point
		}
		found = true
		p, err := resolveIn(pt, arg[:i], arg[i+1:])
		if err == nil {
			return p, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	switch {
	case firstErr != nil:
		return Place{}, firstErr
	case found:
		return Place{}, fmt.Errorf("%s: %w", arg, ErrNotFound)
	case !strings.Contains(arg, ":"):
		return Place{}, fmt.Errorf("%q: %w", arg, ErrNotPointPath)
	}
	return Place{}, &PointError{Name: arg[:strings.IndexByte(arg, ':')], Points: PointNames(root)}
}

// resolveIn resolves PATH p below point folder pt, named point.
func resolveIn(pt *checkpoint.Node, point, p string) (Place, error) {
	if strings.HasPrefix(p, "/") {
		fss, err := FileSystems(pt)
		if len(fss) != 1 {
			e := &FileSystemsError{Point: point, Path: p, Err: err}
			for _, f := range fss {
				e.FileSystems = append(e.FileSystems, f.Path)
			}
			return Place{}, e
		}
		loc, err := Walk(fss[0].Node, p)
		if err != nil {
			return Place{}, fmt.Errorf("%s:/%w", point, err)
		}
		pl := Place{Point: point, Abs: true, Loc: loc.Enter(), Name: loc.Name()}
		if pl.Name == "" {
			pl.Name = fss[0].Node.Name
		}
		return pl, nil
	}
	loc, err := Walk(pt, p)
	if err != nil {
		return Place{}, fmt.Errorf("%s:%w", point, err)
	}
	pl := Place{Point: point, Loc: loc, Name: loc.Name()}
	if pl.Name == "" {
		pl.Name = pt.Name
	}
	return pl, nil
}
