// Package diff lists the files added, deleted and modified between two
// points of a checkpoint tree, like `git diff --name-status`.
//
// It compares the file systems the two point folders show (nodes with FS
// set, paired by their path in the tree) and reports paths as the mount
// shows them: "<disk>.files/<N>-<label>/dir/file". Raw disk and partition
// images and other plain files of the tree are not compared.
//
// It uses the chains to be fast: only bytes of a volume that the two
// points read from different places (a different layer file or file
// offset; see Changed) can hold changes.
//
//   - A volume without such bytes is unchanged and not read at all.
//   - NTFS: the MFT records lying in changed bytes, plus the files whose
//     clusters lie in changed bytes (one sequential scan of the MFT, done
//     only when changes lie outside the MFT), are the only candidates. Each
//     candidate's paths in both points are compared; folders whose contents
//     are replaced wholesale (renamed, replaced by another) are compared
//     fully.
//   - Other file systems: both trees are walked comparing metadata.
//
// Files whose metadata is the same have their content compared only when
// the file system cannot show that its data lies in unchanged bytes
// (volume.Extenter).
package diff

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/volume"
)

// Status is the kind of a change.
type Status string

// Statuses, as git diff --name-status prints them, plus E for a path that
// could not be compared.
const (
	Added    Status = "A"
	Deleted  Status = "D"
	Modified Status = "M"
	TypeChg  Status = "T"
	Error    Status = "E"
)

// Reasons a file is reported modified.
const (
	ReasonSize    = "size"    // the data size differs
	ReasonMtime   = "mtime"   // the modification time differs
	ReasonContent = "content" // same size and time, different bytes
	ReasonTarget  = "target"  // a symlink's target differs
	ReasonMode    = "mode"    // permission bits differ (ext2/3/4)
	ReasonOwner   = "owner"   // owner or group differs (ext2/3/4)
	ReasonStreams = "streams" // alternate data streams differ (NTFS)
)

// Change is one changed path.
type Change struct {
	Status Status `json:"status"`
	// Path is the path below the point folders, as the mount shows it.
	Path string `json:"path"`
	// Type is the entry's type in the newer point (the older one for D):
	// "file", "dir", "symlink" or "special".
	Type string `json:"type,omitempty"`
	// OldType is the type in the older point, for T.
	OldType string `json:"old_type,omitempty"`
	// Reasons say what differs, for M.
	Reasons []string `json:"reasons,omitempty"`
	// Err says why the path could not be compared, for E.
	Err string `json:"error,omitempty"`
}

// VolumeStats says how one file system was compared.
type VolumeStats struct {
	Path string `json:"path"`
	Type string `json:"type"`
	// Method is "unchanged" (no byte could differ; nothing read), "mft"
	// (NTFS candidates from the MFT) or "walk" (both trees walked).
	Method string `json:"method"`
	// ChangedBytes is how many bytes of the volume could differ, -1 if
	// unknown (no chain behind a point, or --full).
	ChangedBytes int64 `json:"changed_bytes"`
	// Candidates is the number of NTFS inodes examined (method mft).
	Candidates int `json:"candidates,omitempty"`
	// ContentReads is the number of files whose bytes were compared.
	ContentReads int `json:"content_reads"`
	// Note says why a faster method was not used.
	Note string `json:"note,omitempty"`
}

// Result is the outcome of a comparison.
type Result struct {
	// Changes are sorted by path.
	Changes []Change      `json:"changes"`
	Volumes []VolumeStats `json:"volumes"`
}

// Progress is what Options.Progress is told.
type Progress struct {
	Volume string // the file system's path
	Phase  string // "mapping", "records", "scanning", "comparing"
	Done   int64
	Total  int64 // 0 if unknown
}

// Options tune Points.
type Options struct {
	// Progress, when set, is called now and then from the comparing
	// goroutine.
	Progress func(Progress)
	// Full ignores the chains: every byte may differ, every tree is walked
	// and content is compared wherever metadata is equal. For checking.
	Full bool
}

// Points compares point folder a (older) with point folder b (newer).
// Paths that cannot be compared are reported as
// changes with status E; the error is only for failures of the whole
// comparison.
func Points(a, b *checkpoint.Node, opts Options) (*Result, error) {
	d := &differ{opts: opts, res: &Result{Changes: []Change{}, Volumes: []VolumeStats{}}}
	d.nodes(a, b, "")
	sort.SliceStable(d.res.Changes, func(i, j int) bool { return d.res.Changes[i].Path < d.res.Changes[j].Path })
	return d.res, nil
}

type differ struct {
	opts Options
	res  *Result
}

func (d *differ) emit(c Change) { d.res.Changes = append(d.res.Changes, c) }

func (d *differ) progress(p Progress) {
	if d.opts.Progress != nil {
		d.opts.Progress(p)
	}
}

func join(dir, name string) string {
	switch {
	case dir == "":
		return name
	case name == "":
		return dir
	}
	return dir + "/" + name
}

// nodes compares two nodes of the tree at path p.
func (d *differ) nodes(a, b *checkpoint.Node, p string) {
	ka, kb := a.Kind(), b.Kind()
	switch {
	case ka == checkpoint.KindFileSystem && kb == checkpoint.KindFileSystem:
		d.volumes(a, b, p, p)
		return
	case ka != kb:
		d.only(Deleted, a, p)
		d.only(Added, b, p)
		return
	case ka != checkpoint.KindFolder:
		return // raw images and other plain files are not compared
	}
	la, errA := a.Entries()
	lb, errB := b.Entries()
	if errA != nil || errB != nil {
		d.emit(Change{Status: Error, Path: p, Type: "dir", Err: errors.Join(errA, errB).Error()})
		return
	}
	byName := func(l []*checkpoint.Node) map[string]*checkpoint.Node {
		m := make(map[string]*checkpoint.Node, len(l))
		for _, n := range l {
			m[n.Name] = n
		}
		return m
	}
	ma, mb := byName(la), byName(lb)
	var onlyA, onlyB []*checkpoint.Node
	for _, n := range la {
		if o := mb[n.Name]; o != nil {
			d.nodes(n, o, join(p, n.Name))
		} else {
			onlyA = append(onlyA, n)
		}
	}
	for _, n := range lb {
		if ma[n.Name] == nil {
			onlyB = append(onlyB, n)
		}
	}
	// A file system whose folder was renamed (a new label) is still the
	// same partition: pair unmatched file systems by disk and offset.
	for i, x := range onlyA {
		if x == nil || x.FS == nil || x.Disk == nil {
			continue
		}
		for j, y := range onlyB {
			if y != nil && y.FS != nil && y.Disk != nil && y.DiskOffset == x.DiskOffset &&
				y.Disk.Base().Name() == x.Disk.Base().Name() {
				d.volumes(x, y, join(p, x.Name), join(p, y.Name))
				onlyA[i], onlyB[j] = nil, nil
				break
			}
		}
	}
	for _, n := range onlyA {
		if n != nil {
			d.only(Deleted, n, join(p, n.Name))
		}
	}
	for _, n := range onlyB {
		if n != nil {
			d.only(Added, n, join(p, n.Name))
		}
	}
}

// only reports every file of the file systems at or below n as added or
// deleted.
func (d *differ) only(st Status, n *checkpoint.Node, p string) {
	fss, err := nav.FileSystems(n)
	if err != nil {
		d.emit(Change{Status: Error, Path: p, Type: "dir", Err: err.Error()})
	}
	for _, f := range fss {
		v := &volPair{d: d, prefA: join(p, f.Path), prefB: join(p, f.Path)}
		side := v.side(st, f.Node.FS)
		v.subtree(st, side, volume.Entry{Ino: f.Node.FS.Root(), Mode: fs.ModeDir}, "")
		d.res.Volumes = append(d.res.Volumes, VolumeStats{Path: join(p, f.Path), Type: f.Node.FS.Type(), Method: "walk", ChangedBytes: -1})
	}
}

// volumes compares the file systems of FS nodes a and b.
func (d *differ) volumes(a, b *checkpoint.Node, pa, pb string) {
	v := &volPair{d: d, fa: a.FS, fb: b.FS, prefA: pa, prefB: pb}
	v.a, v.b = &side{fs: a.FS}, &side{fs: b.FS}
	st := VolumeStats{Path: pb, Type: b.FS.Type(), ChangedBytes: -1}
	if a.FS.Type() != b.FS.Type() {
		st.Note = fmt.Sprintf("file system changed from %s to %s", a.FS.Type(), b.FS.Type())
	}
	known := false
	switch {
	case d.opts.Full:
		st.Note = "full comparison requested"
	case a.Disk == nil || b.Disk == nil:
		st.Note = "no layer map behind the file system"
	case a.DiskLength != b.DiskLength:
		st.Note = "the partition changed size"
	default:
		ch, err := Changed(a.Disk, a.DiskOffset, b.Disk, b.DiskOffset, b.DiskLength, func(done int64) {
			d.progress(Progress{Volume: pb, Phase: "mapping", Done: done, Total: b.DiskLength})
		})
		if err != nil {
			st.Note = fmt.Sprintf("layer map unreadable: %v", err)
			break
		}
		known, v.changed = true, ch
		st.ChangedBytes = ch.Bytes()
	}
	v.known = known
	v.stats = &st
	switch {
	case known && len(v.changed) == 0:
		st.Method = "unchanged"
	case known && st.Note == "":
		if err := v.ntfs(); err == nil {
			st.Method = "mft"
			break
		} else if !errors.Is(err, errNotNTFS) {
			st.Note = fmt.Sprintf("MFT comparison impossible (%v)", err)
		}
		fallthrough
	default:
		st.Method = "walk"
		v.compareEntries(&volume.Entry{Ino: a.FS.Root(), Mode: fs.ModeDir}, &volume.Entry{Ino: b.FS.Root(), Mode: fs.ModeDir}, "", true)
	}
	d.res.Volumes = append(d.res.Volumes, st)
}

// TypeName names the type of a mode as Change.Type does.
func TypeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return "special"
}

// display is a path with a trailing slash for directories.
func display(c Change) string {
	if c.Type == "dir" && c.Status != TypeChg && !strings.HasSuffix(c.Path, "/") {
		return c.Path + "/"
	}
	return c.Path
}

// Line formats a change as ckptfs diff prints it: the status, a tab and
// the path (folders with a trailing slash); M adds the reasons, E the
// error, after another tab. Paths holding control characters or starting
// with a double quote are quoted Go-style.
func Line(c Change) string {
	p := display(c)
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) || strings.HasPrefix(p, `"`) {
		p = fmt.Sprintf("%q", p)
	}
	switch c.Status {
	case Modified:
		return fmt.Sprintf("%s\t%s\t(%s)", c.Status, p, strings.Join(c.Reasons, ","))
	case Error:
		return fmt.Sprintf("%s\t%s\t%s", c.Status, p, c.Err)
	case TypeChg:
		return fmt.Sprintf("%s\t%s\t(%s -> %s)", c.Status, p, c.OldType, c.Type)
	}
	return fmt.Sprintf("%s\t%s", c.Status, p)
}
