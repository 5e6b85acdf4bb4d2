package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/partition"
)

// ErrNoDisks is returned by OpenSource for a folder holding no .vhdx,
// .avhdx, .vhd or .avhd file.
var ErrNoDisks = errors.New("no .vhdx, .avhdx, .vhd or .avhd files")

// Source is what `ckptfs mount` shows: the chains found at one path.
type Source struct {
	// Path is the absolute path of the file or folder.
	Path string
	// Chains are the chains found, one per leaf. Their files are shared
	// through one chain.FileSet, closed by Close.
	Chains []*chain.Chain
	files  *chain.FileSet
}

// OpenSource opens the chains at path. A disk file gives the one
// chain ending there. A folder gives every chain in it: each disk file of
// the folder that is not the parent of another disk file of the folder is a
// leaf. Every file is opened read-only and once, however many chains share
// it. Any file that cannot be opened, or chain that cannot be completed,
// fails the whole call: a mount never silently leaves a disk out.
func OpenSource(path string, opts chain.Options) (*Source, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if opts.Files == nil {
		opts.Files = chain.NewFileSet()
	}
	s := &Source{Path: abs, files: opts.Files}
	if !st.IsDir() {
		c, err := chain.Open(abs, opts)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Chains = []*chain.Chain{c}
		return s, nil
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, err
	}
	var all []*chain.Chain
	for _, e := range ents {
		if !IsDiskName(e.Name()) {
			continue
		}
		p := filepath.Join(abs, e.Name())
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		c, err := chain.Open(p, opts)
		if err != nil {
			s.Close()
			return nil, err
		}
		all = append(all, c)
	}
	if len(all) == 0 {
		s.Close()
		return nil, fmt.Errorf("%s: %w", abs, ErrNoDisks)
	}
	parents := map[string]bool{}
	for _, c := range all {
		for _, l := range c.Links[1:] {
			parents[l.Path] = true
		}
	}
	for _, c := range all {
		if !parents[c.Links[0].Path] {
			s.Chains = append(s.Chains, c)
		}
	}
	if len(s.Chains) == 0 {
		// Only possible if every file is someone's parent: a cycle, which
		// chain.Open refuses, so this is a safety net.
		s.Close()
		return nil, fmt.Errorf("%s: every disk file is the parent of another: %w", abs, chain.ErrCycle)
	}
	return s, nil
}

// IsDiskName reports whether a file name ends in .vhdx, .avhdx, .vhd or
// .avhd (in any letter case). Which format a file has is decided by its
// content when it is opened (chain.OpenImage), not by this name.
func IsDiskName(name string) bool {
	n := strings.ToLower(name)
	for _, ext := range []string{".vhdx", ".avhdx", ".vhd", ".avhd"} {
		if strings.HasSuffix(n, ext) {
			return true
		}
	}
	return false
}

// Close closes every file of every chain.
func (s *Source) Close() error { return s.files.Close() }

// FileTree returns the tree of the source's chains (see BuildFileTree).
func (s *Source) FileTree(opts FileTreeOptions) ([]*Node, error) {
	return BuildFileTree(s.Chains, opts)
}

// FileTreeOptions tune BuildFileTree.
type FileTreeOptions struct {
	// FileSystems, when set, is asked for the file system of each
	// partition: each point folder then has <disk>.files/ holding a
	// folder "<N>-<label>" per readable partition, rendered from Node.FS.
	// It returns an error wrapping volume.ErrUnknownFS when it finds none
	// (the partition is left out). volume/probe.Open is the usual value.
	FileSystems func(r io.ReaderAt, size int64) (volume.FS, error)
	// Log is told what is left out of the tree (a file system that cannot
	// be opened, ...); nil discards it.
	Log Logger
}

// Logger receives what a package has to say that is not an error:
// warnings about parts left out, notes. *logrus.Logger satisfies it.
type Logger interface {
	Warnf(format string, args ...any)
	Infof(format string, args ...any)
	Debugf(format string, args ...any)
}

// log returns opts.Log, or a Logger that discards.
func (opts FileTreeOptions) log() Logger {
	if opts.Log == nil {
		return discard{}
	}
	return opts.Log
}

// discard is a Logger that says nothing.
type discard struct{}

func (discard) Warnf(string, ...any)  {}
func (discard) Infof(string, ...any)  {}
func (discard) Debugf(string, ...any) {}

// BuildFileTree computes what a mount of chains shows: one folder per
// point of every chain (each point once, also when chains share it), named
// after the point's file without extension:
//
//	<point>/
//	  <disk>.raw          the whole virtual disk at that point
//	  <disk>.partitions/  <N>-<label or type>.raw for each partition
//
// where <disk> is the chain's base file name without extension. Points are
// listed base first, chain by chain. Partitions are read lazily, on first
// listing of the .partitions folder. Names that would collide (two files of
// the same name in different folders) get " (2)", " (3)"... appended.
func BuildFileTree(chains []*chain.Chain, opts FileTreeOptions) ([]*Node, error) {
	if len(chains) == 0 {
		return nil, errors.New("checkpoint: no chains to show")
	}
	seen := map[string]bool{}
	used := map[string]bool{}
	var out []*Node
	for _, c := range chains {
		disk := stem(c.Links[len(c.Links)-1].Path)
		for i := len(c.Links) - 1; i >= 0; i-- {
			l := c.Links[i]
			if seen[l.Path] {
				continue
			}
			seen[l.Path] = true
			name := unique(used, stem(l.Path))
			out = append(out, pointNode(name, disk, l.Path, c.Point(i), opts))
		}
	}
	return out, nil
}

// pointNode is the folder of one chain point: <disk>.raw, the lazily read
// <disk>.partitions/ and, when opts.FileSystems is set, <disk>.files/ with
// one folder per partition whose file system can be read in-process.
func pointNode(name, disk, path string, pt *chain.Chain, opts FileTreeOptions) *Node {
	mtime := fileMtime(path)
	// Raw and partition files are read in streams (dd, qemu-img, the
	// kernel's read-ahead): read ahead of them in large windows.
	pf := chain.NewPrefetcher(pt, pt.Size())
	raw := File(disk+".raw", pf, pt.Size())
	raw.Mtime = mtime
	raw.Disk, raw.DiskLength = pt, pt.Size()
	parts := &Node{Name: disk + ".partitions", IsDir: true, Mode: 0o555, Mtime: mtime}
	parts.List = func() ([]*Node, error) { return listPartitions(pt, pf, mtime) }
	d := Dir(name, raw, parts)
	d.Mtime = mtime
	if opts.FileSystems != nil {
		files := &Node{Name: disk + ".files", IsDir: true, Mode: 0o555, Mtime: mtime}
		files.List = func() ([]*Node, error) { return listFileSystems(pt, mtime, opts) }
		d.Children = append(d.Children, files)
	}
	return d
}

// readPartitions reads a point's partition table. A disk without one is
// taken as a single volume (a "superfloppy"), numbered 1.
func readPartitions(pt *chain.Chain) ([]partition.Partition, error) {
	ps, err := partition.Read(pt, pt.Size(), int(pt.Leaf().SectorSize()))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the partition table: %w", pt.Leaf().Name(), err)
	}
	return ps, nil
}

// listPartitions lists <N>-<label>.raw for each partition, read through r
// (pt, or a read-ahead wrapper of it).
func listPartitions(pt *chain.Chain, r io.ReaderAt, mtime time.Time) ([]*Node, error) {
	ps, err := readPartitions(pt)
	if err != nil {
		return nil, err
	}
	var out []*Node
	for _, p := range ps {
		f := File(fmt.Sprintf("%d-%s.raw", p.Number, p.Label()), newPartReader(r, p.Start, p.Size), p.Size)
		f.Mtime = mtime
		f.Disk, f.DiskOffset, f.DiskLength = pt, p.Start, p.Size
		out = append(out, f)
	}
	return out, nil
}

// listFileSystems lists <N>-<label>/ for each partition whose file system
// probe recognises. A partition whose file system is damaged beyond
// opening is left out (its raw file is still in .partitions/).
func listFileSystems(pt *chain.Chain, mtime time.Time, opts FileTreeOptions) ([]*Node, error) {
	ps, err := readPartitions(pt)
	if err != nil {
		return nil, err
	}
	var out []*Node
	for _, p := range ps {
		n, err := fsNode(fmt.Sprintf("%d-%s", p.Number, p.Label()), newPartReader(pt, p.Start, p.Size), p.Size, opts.FileSystems)
		if err != nil {
			opts.log().Warnf("%s: partition %d: %v", pt.Leaf().Name(), p.Number, err)
			continue
		}
		if n != nil {
			n.Mtime = mtime
			n.Disk, n.DiskOffset, n.DiskLength = pt, p.Start, p.Size
			out = append(out, n)
		}
	}
	return out, nil
}

func fsNode(name string, r io.ReaderAt, size int64, probe func(io.ReaderAt, int64) (volume.FS, error)) (*Node, error) {
	v, err := probe(r, size)
	if errors.Is(err, volume.ErrUnknownFS) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	return &Node{Name: name, IsDir: true, Mode: 0o555, FS: v, FSData: r}, nil
}

// stem is a path's file name without its extension.
func stem(p string) string {
	b := filepath.Base(p)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// unique returns name, or name with " (N)" appended, not yet in used, and
// records it.
func unique(used map[string]bool, name string) string {
	n := name
	for i := 2; used[n]; i++ {
		n = fmt.Sprintf("%s (%d)", name, i)
	}
	used[n] = true
	return n
}

func fileMtime(path string) time.Time {
	if st, err := os.Stat(path); err == nil {
		return st.ModTime()
	}
	return time.Time{}
}
