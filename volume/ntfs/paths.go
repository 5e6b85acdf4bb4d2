package ntfs

// maxPathDepth bounds the parent chain followed for one path.
const maxPathDepth = 512

// IsMetafile reports whether record ino is reserved for the metafiles
// ($MFT, $Bitmap, ..., $Extend: the records below 24 other than the root
// folder). They and what lies below them have no path from the root.
func IsMetafile(ino uint64) bool { return ino < recFirstUser && ino != recRoot }

// PathFinder finds the paths of inodes from their $FILE_NAME attributes,
// walking up through parent references, and keeps the paths of the
// folders it finds. It is not safe for concurrent use; the FS is.
type PathFinder struct {
	fs   *FS
	dirs map[uint64]dirPath
}

// dirPath is a folder's path; ok is false for one with no path from the
// root (below a metafile, or detached).
type dirPath struct {
	path string
	ok   bool
}

// NewPathFinder returns a PathFinder of fs.
func NewPathFinder(fs *FS) *PathFinder {
	return &PathFinder{fs: fs, dirs: map[uint64]dirPath{}}
}

// Paths returns the paths of inode ino relative to the root, one per name
// (a hard link has several; DOS 8.3 aliases are left out): "" for the
// root, nil for metafiles and what lies below them. Errors name the
// record at fault; a parent chain deeper than 512 folders (a loop in a
// damaged volume) is an error wrapping volume.ErrCorrupt.
func (p *PathFinder) Paths(ino uint64) ([]string, error) {
	if ino == recRoot {
		return []string{""}, nil
	}
	if IsMetafile(ino) {
		return nil, nil
	}
	names, err := p.fs.Names(ino)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		dir, ok, err := p.dirPath(n.Parent, 0)
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, join(dir, n.Name))
		}
	}
	return out, nil
}

// dirPath returns the path of folder ino, false for one with no path
// from the root.
func (p *PathFinder) dirPath(ino uint64, depth int) (string, bool, error) {
	if ino == recRoot {
		return "", true, nil
	}
	if IsMetafile(ino) {
		return "", false, nil
	}
	if d, ok := p.dirs[ino]; ok {
		return d.path, d.ok, nil
	}
	if depth > maxPathDepth {
		return "", false, corruptf("inode %d: parent chain deeper than %d", ino, maxPathDepth)
	}
	names, err := p.fs.Names(ino)
	if err != nil {
		return "", false, err
	}
	for _, n := range names {
		if n.Parent == ino {
			continue
		}
		dir, ok, err := p.dirPath(n.Parent, depth+1)
		if err != nil {
			return "", false, err
		}
		if ok {
			d := dirPath{join(dir, n.Name), true}
			p.dirs[ino] = d
			return d.path, true, nil
		}
	}
	p.dirs[ino] = dirPath{}
	return "", false, nil
}

// join joins a folder path relative to the root and a name.
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
