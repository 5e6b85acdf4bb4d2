package diff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/ntfs"
)

// volPair compares one file system of the older point (a) with the same
// file system of the newer point (b).
type volPair struct {
	d            *differ
	fa, fb       volume.FS
	a, b         *side
	prefA, prefB string // the volumes' paths in the tree
	known        bool   // changed is known (else every byte may differ)
	changed      Ranges // volume bytes that can differ
	stats        *VolumeStats
	compared     int64
}

// side is one point's file system with memoized path lookups.
type side struct {
	fs    volume.FS
	dirs  map[string]volume.Entry // resolved directory paths
	paths *ntfs.PathFinder        // NTFS: paths of inodes
}

func (v *volPair) side(st Status, f volume.FS) *side {
	s := &side{fs: f}
	if st == Deleted {
		v.fa, v.a = f, s
	} else {
		v.fb, v.b = f, s
	}
	return s
}

// path is the tree path of rel for a change of status st.
func (v *volPair) path(st Status, rel string) string {
	pref := v.prefB
	if st == Deleted {
		pref = v.prefA
	}
	if rel == "" {
		return pref
	}
	return pref + "/" + rel
}

func (v *volPair) emit(st Status, rel string, typ string) {
	v.d.emit(Change{Status: st, Path: v.path(st, rel), Type: typ})
}

func (v *volPair) fail(rel, typ string, err error) {
	v.d.emit(Change{Status: Error, Path: v.path(Added, rel), Type: typ, Err: err.Error()})
}

func (v *volPair) tick() {
	v.compared++
	if v.compared%256 == 0 {
		v.d.progress(Progress{Volume: v.prefB, Phase: "comparing", Done: v.compared})
	}
}

// subtree reports entry e at rel of side s, and everything below it, with
// status st (Added or Deleted). The root (rel "") is reported too.
func (v *volPair) subtree(st Status, s *side, e volume.Entry, rel string) {
	v.tick()
	typ := TypeName(e.Mode)
	v.emit(st, rel, typ)
	if e.Mode.IsDir() {
		v.children(st, s, e.Ino, rel)
	}
}

// children reports everything below directory ino with status st.
func (v *volPair) children(st Status, s *side, ino uint64, rel string) {
	ents, err := s.fs.ReadDir(ino)
	if err != nil {
		v.d.emit(Change{Status: Error, Path: v.path(st, rel), Type: "dir", Err: err.Error()})
		return
	}
	for _, c := range ents {
		v.subtree(st, s, c, join(rel, c.Name))
	}
}

// compareDirs compares the contents of directory inoA (older) and inoB
// (newer), both at rel, down the whole tree.
func (v *volPair) compareDirs(inoA, inoB uint64, rel string) {
	la, errA := v.fa.ReadDir(inoA)
	lb, errB := v.fb.ReadDir(inoB)
	if errA != nil || errB != nil {
		v.fail(rel, "dir", sideErr(errA, errB))
		return
	}
	la, lb = sortedEntries(la), sortedEntries(lb)
	i, j := 0, 0
	for i < len(la) || j < len(lb) {
		switch {
		case j >= len(lb) || i < len(la) && la[i].Name < lb[j].Name:
			v.subtree(Deleted, v.a, la[i], join(rel, la[i].Name))
			i++
		case i >= len(la) || lb[j].Name < la[i].Name:
			v.subtree(Added, v.b, lb[j], join(rel, lb[j].Name))
			j++
		default:
			v.compareEntries(&la[i], &lb[j], join(rel, la[i].Name), true)
			i++
			j++
		}
	}
}

func sortedEntries(l []volume.Entry) []volume.Entry {
	if !slices.IsSortedFunc(l, func(x, y volume.Entry) int { return strings.Compare(x.Name, y.Name) }) {
		l = slices.Clone(l)
		slices.SortFunc(l, func(x, y volume.Entry) int { return strings.Compare(x.Name, y.Name) })
	}
	return l
}

// sideErr words the errors of the two sides.
func sideErr(errA, errB error) error {
	switch {
	case errA != nil && errB != nil:
		if errA.Error() == errB.Error() {
			return errB
		}
		return fmt.Errorf("older point: %v; newer point: %w", errA, errB)
	case errA != nil:
		return fmt.Errorf("older point: %w", errA)
	}
	return fmt.Errorf("newer point: %w", errB)
}

// compareEntries compares the entries at rel in both points; nil means
// absent. With deep set, directories present in both are compared down
// the whole tree; otherwise only when they are different inodes (the NTFS
// method, where children that changed are candidates of their own). It
// reports whether rel's subtree has been dealt with entirely.
func (v *volPair) compareEntries(ea, eb *volume.Entry, rel string, deep bool) bool {
	v.tick()
	switch {
	case ea == nil && eb == nil:
		return false
	case ea == nil:
		v.subtree(Added, v.b, *eb, rel)
		return true
	case eb == nil:
		v.subtree(Deleted, v.a, *ea, rel)
		return true
	}
	sa, errA := v.fa.Stat(ea.Ino)
	sb, errB := v.fb.Stat(eb.Ino)
	if errA != nil || errB != nil {
		typ := TypeName(eb.Mode)
		v.fail(rel, typ, sideErr(errA, errB))
		return false
	}
	ta, tb := TypeName(sa.Mode), TypeName(sb.Mode)
	if ta != tb {
		v.d.emit(Change{Status: TypeChg, Path: v.path(TypeChg, rel), Type: tb, OldType: ta})
		if ta == "dir" {
			v.children(Deleted, v.a, ea.Ino, rel)
		}
		if tb == "dir" {
			v.children(Added, v.b, eb.Ino, rel)
		}
		return true
	}
	var reasons []string
	posix := volume.HasUnixPermissions(v.fa) && volume.HasUnixPermissions(v.fb)
	if posix && sa.Mode.Perm() != sb.Mode.Perm() {
		reasons = append(reasons, ReasonMode)
	}
	if posix && (sa.Uid != sb.Uid || sa.Gid != sb.Gid) {
		reasons = append(reasons, ReasonOwner)
	}
	var err error
	switch tb {
	case "dir":
		if deep || ea.Ino != eb.Ino {
			v.compareDirs(ea.Ino, eb.Ino, rel)
		}
	case "symlink":
		la, errA := v.fa.Readlink(ea.Ino)
		lb, errB := v.fb.Readlink(eb.Ino)
		if errA != nil || errB != nil {
			err = sideErr(errA, errB)
		} else if la != lb {
			reasons = append(reasons, ReasonTarget)
		}
	case "file":
		var rs []string
		rs, err = v.compareFiles(ea.Ino, eb.Ino, sa, sb, rel)
		reasons = append(reasons, rs...)
	}
	if err != nil {
		v.fail(rel, tb, err)
	} else if len(reasons) > 0 {
		v.d.emit(Change{Status: Modified, Path: v.path(Modified, rel), Type: tb, Reasons: reasons})
	}
	return tb == "dir" && (deep || ea.Ino != eb.Ino)
}

// compareFiles compares two regular files: size and time decide; content
// is compared only when they are equal and the data may have changed.
func (v *volPair) compareFiles(inoA, inoB uint64, sa, sb volume.Attr, rel string) ([]string, error) {
	var reasons []string
	if sa.Size != sb.Size {
		reasons = append(reasons, ReasonSize)
	}
	if !sa.Mtime.Equal(sb.Mtime) {
		reasons = append(reasons, ReasonMtime)
	}
	if len(reasons) == 0 {
		same, err := v.sameData(inoA, inoB, "", sa.Size)
		if err != nil {
			return nil, err
		}
		if !same {
			reasons = append(reasons, ReasonContent)
		}
	}
	sd, err := v.sameStreams(inoA, inoB)
	if err != nil {
		return nil, err
	}
	if !sd {
		reasons = append(reasons, ReasonStreams)
	}
	return reasons, nil
}

// streamExtenter is implemented by file systems with named streams that
// know where they lie (NTFS).
type streamExtenter interface {
	StreamExtents(ino uint64, name string) ([]volume.Extent, error)
}

// unchangedData reports whether stream name of inoA and inoB is known to
// read the same bytes: the same extents, none of them in changed bytes.
func (v *volPair) unchangedData(inoA, inoB uint64, name string) bool {
	if !v.known {
		return false
	}
	ext := func(f volume.FS, ino uint64) ([]volume.Extent, bool) {
		if name != "" {
			if se, ok := f.(streamExtenter); ok {
				e, err := se.StreamExtents(ino, name)
				return e, err == nil
			}
			return nil, false
		}
		if x, ok := f.(volume.Extenter); ok {
			e, err := x.Extents(ino)
			return e, err == nil
		}
		return nil, false
	}
	xa, ok := ext(v.fa, inoA)
	if !ok {
		return false
	}
	xb, ok := ext(v.fb, inoB)
	if !ok || !slices.Equal(xa, xb) {
		return false
	}
	for _, e := range xb {
		if e.Physical >= 0 && v.changed.Intersects(e.Physical, e.Length) {
			return false
		}
	}
	return true
}

// sameData compares stream name ("" for the data) of two files of equal
// size, reading them only when unchangedData cannot tell.
func (v *volPair) sameData(inoA, inoB uint64, name string, size int64) (bool, error) {
	if v.unchangedData(inoA, inoB, name) {
		return true, nil
	}
	open := func(f volume.FS, ino uint64) (volume.File, error) {
		if name == "" {
			return f.Open(ino)
		}
		return f.OpenStream(ino, name)
	}
	fa, errA := open(v.fa, inoA)
	fb, errB := open(v.fb, inoB)
	if errA != nil || errB != nil {
		return false, sideErr(errA, errB)
	}
	v.stats.ContentReads++
	return sameBytes(fa, fb, size)
}

// sameBytes compares the first size bytes of two readers.
func sameBytes(a, b io.ReaderAt, size int64) (bool, error) {
	const chunk = 1 << 20
	ba := make([]byte, min(chunk, size))
	bb := make([]byte, len(ba))
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		if err := readFull(a, ba[:n], off); err != nil {
			return false, fmt.Errorf("older point: %w", err)
		}
		if err := readFull(b, bb[:n], off); err != nil {
			return false, fmt.Errorf("newer point: %w", err)
		}
		if !bytes.Equal(ba[:n], bb[:n]) {
			return false, nil
		}
	}
	return true, nil
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at offset %d: %w", len(p), off, err)
}

// sameStreams compares the alternate data streams of two files.
func (v *volPair) sameStreams(inoA, inoB uint64) (bool, error) {
	na, errA := v.fa.Streams(inoA)
	nb, errB := v.fb.Streams(inoB)
	if errA != nil || errB != nil {
		return false, sideErr(errA, errB)
	}
	if !slices.Equal(na, nb) {
		return false, nil
	}
	for _, name := range nb {
		fa, errA := v.fa.OpenStream(inoA, name)
		fb, errB := v.fb.OpenStream(inoB, name)
		if errA != nil || errB != nil {
			return false, sideErr(errA, errB)
		}
		if fa.Size() != fb.Size() {
			return false, nil
		}
		same, err := v.sameData(inoA, inoB, name, fb.Size())
		if err != nil || !same {
			return same, err
		}
	}
	return true, nil
}

// lookup resolves rel in side s: each name must match exactly (a name
// found only by ignoring case does not exist under rel). It returns nil
// for a missing path.
func (s *side) lookup(rel string) (*volume.Entry, error) {
	if s.dirs == nil {
		s.dirs = map[string]volume.Entry{}
	}
	cur := volume.Entry{Ino: s.fs.Root(), Mode: fs.ModeDir}
	if rel == "" {
		return &cur, nil
	}
	names := strings.Split(rel, "/")
	dir := ""
	for i, name := range names {
		p := join(dir, name)
		if e, ok := s.dirs[p]; ok && i < len(names)-1 {
			cur, dir = e, p
			continue
		}
		if !cur.Mode.IsDir() {
			return nil, nil
		}
		e, err := s.fs.Lookup(cur.Ino, name)
		if errors.Is(err, volume.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if e.Name != name {
			return nil, nil
		}
		if e.Mode.IsDir() {
			s.dirs[p] = e
		}
		cur, dir = e, p
	}
	return &cur, nil
}
