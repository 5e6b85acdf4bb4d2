// Package nav finds places in the tree a mount shows (checkpoint.Node)
// without mounting it: through its folders and on into the file systems
// (volume.FS) the tree renders, by path.
//
// It walks the tree generically, by Node.Kind, reading folders through
// Node.Entries (which runs a lazy List once per node). Folder names are matched exactly, else ignoring case when that
// is unambiguous; names inside a file system go through volume.FS.Lookup,
// which ignores case where the file system does.
package nav

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/volume"
)

// Child finds the child of folder n called name: exactly, else the only
// child whose name matches ignoring case.
func Child(n *checkpoint.Node, name string) (*checkpoint.Node, error) {
	kids, err := n.Entries()
	if err != nil {
		return nil, err
	}
	var fold []*checkpoint.Node
	for _, k := range kids {
		if k.Name == name {
			return k, nil
		}
		if strings.EqualFold(k.Name, name) {
			fold = append(fold, k)
		}
	}
	if len(fold) == 1 {
		return fold[0], nil
	}
	return nil, fs.ErrNotExist
}

// Loc is a place in the tree: a node, or an inode inside the file system
// of a file-system node.
type Loc struct {
	// Node is the node, or for a place inside a file system the
	// file-system node.
	Node *checkpoint.Node
	// In reports a place inside Node.FS, at inode Ino.
	In  bool
	Ino uint64
	// Path is the slash-separated path from where the walk started, with
	// names as stored (letter case as on disk).
	Path string
}

// FS returns the file system the place is in (or is the root of), or nil.
func (l Loc) FS() volume.FS { return l.Node.FS }

// Name is the last element of the place's path ("" for the start).
func (l Loc) Name() string {
	if l.Path == "" {
		return ""
	}
	return path.Base(l.Path)
}

// Enter returns the root of a file-system node's file system as a place
// inside it; other places are returned unchanged.
func (l Loc) Enter() Loc {
	if !l.In && l.Node.FS != nil {
		l.In, l.Ino = true, l.Node.FS.Root()
	}
	return l
}

// Errors of Walk; test with errors.Is.
var (
	ErrNotFound = fs.ErrNotExist
	ErrNotDir   = volume.ErrNotDir
)

// Walk follows the slash-separated path p from node from. Empty and "."
// elements are skipped; ".." goes back up, never above from. Errors name
// the path walked so far.
func Walk(from *checkpoint.Node, p string) (Loc, error) {
	stack := []Loc{{Node: from}}
	for _, name := range strings.Split(p, "/") {
		cur := stack[len(stack)-1]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		next, err := step(cur, name)
		if err != nil {
			return Loc{}, fmt.Errorf("%s: %w", join(cur.Path, name), err)
		}
		stack = append(stack, next)
	}
	return stack[len(stack)-1], nil
}

// step goes from cur to its child name.
func step(cur Loc, name string) (Loc, error) {
	cur = cur.Enter()
	if cur.In {
		v := cur.Node.FS
		st, err := v.Stat(cur.Ino)
		if err != nil {
			return Loc{}, err
		}
		if !st.Mode.IsDir() {
			return Loc{}, ErrNotDir
		}
		e, err := v.Lookup(cur.Ino, name)
		if err != nil {
			return Loc{}, err
		}
		return Loc{Node: cur.Node, In: true, Ino: e.Ino, Path: join(cur.Path, e.Name)}, nil
	}
	if cur.Node.Kind() != checkpoint.KindFolder {
		return Loc{}, ErrNotDir
	}
	c, err := Child(cur.Node, name)
	if err != nil {
		return Loc{}, err
	}
	return Loc{Node: c, Path: join(cur.Path, c.Name)}, nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// FileSystems returns every file-system node at or below from (not
// inside file systems), depth first in name order, as places whose Path
// is relative to from. Folders that cannot be listed are skipped and
// their errors joined into the returned error.
func FileSystems(from *checkpoint.Node) ([]Loc, error) {
	var out []Loc
	var errs []error
	var walk func(n *checkpoint.Node, p string)
	walk = func(n *checkpoint.Node, p string) {
		switch n.Kind() {
		case checkpoint.KindFileSystem:
			out = append(out, Loc{Node: n, Path: p})
		case checkpoint.KindFolder:
			kids, err := n.Entries()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				return
			}
			kids = append([]*checkpoint.Node(nil), kids...)
			sort.SliceStable(kids, func(i, j int) bool { return kids[i].Name < kids[j].Name })
			for _, k := range kids {
				walk(k, join(p, k.Name))
			}
		}
	}
	walk(from, "")
	return out, errors.Join(errs...)
}
