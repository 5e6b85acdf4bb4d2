package checkpoint

import (
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/volume"
)

// Node is one entry of the tree a mount shows, computed as plain data
// before anything is mounted (package fusefs only renders it). Exactly one
// of the content fields is used: Children (a folder, possibly computed
// lazily by List), Data (a file), FS (a whole file system rendered from
// its root) or Target (a symlink); Kind says which.
//
// A Node must not be copied once Entries has been called.
type Node struct {
	Name  string
	Mode  fs.FileMode // permission bits; the type follows from the content
	Mtime time.Time

	// Folder.
	Children []*Node
	// List computes Children on first use (e.g. partitions, which need
	// reads of the disk). Entries calls it at most once and keeps what it
	// returns; read a folder's children through Entries.
	List  func() ([]*Node, error)
	IsDir bool

	// File.
	Data io.ReaderAt
	Size int64
	// Writer, when set, makes the file writable; writes go through it.
	Writer io.WriterAt
	// Sync, when set, makes fsync durable.
	Sync func() error
	// Immutable lets the kernel keep the file's pages cached across opens.
	Immutable bool

	// File system: the root of FS is rendered in place of this folder.
	FS volume.FS
	// FSData is what FS reads: the volume. When it is a FileMapper, the
	// mount answers reads of files whose bytes a volume.DataMapper
	// places on the volume straight from the layer files.
	FSData io.ReaderAt

	// Symlink.
	Target string

	// Disk, set on the nodes of a whole disk, a partition or a file
	// system, is the virtual disk at the node's point, and
	// [DiskOffset, DiskOffset+DiskLength) the bytes of it the node shows.
	// Rendering ignores it; tools comparing points (ckptfs diff) use it
	// to find which bytes can differ.
	Disk       *chain.Chain
	DiskOffset int64
	DiskLength int64

	// The result of List, computed once by Entries.
	listOnce sync.Once
	listed   []*Node
	listErr  error
}

// Kind is what a node shows.
type Kind int

// Node kinds.
const (
	// KindFolder is a folder: its entries are Children or what List returns.
	KindFolder Kind = iota
	// KindFile is a regular file of Size bytes read from Data (a file
	// with no Data is empty).
	KindFile
	// KindSymlink is a symbolic link to Target.
	KindSymlink
	// KindFileSystem is a folder showing the root of FS.
	KindFileSystem
)

// String names the kind: "folder", "file", "symlink" or "file system".
func (k Kind) String() string {
	switch k {
	case KindFolder:
		return "folder"
	case KindFile:
		return "file"
	case KindSymlink:
		return "symlink"
	case KindFileSystem:
		return "file system"
	}
	return "unknown"
}

// Kind classifies the node, by one rule every renderer and walker uses:
// a node with FS is a file system; else one with IsDir, Children or List
// is a folder; else one with Target is a symlink; anything else is a
// file.
func (n *Node) Kind() Kind {
	switch {
	case n.FS != nil:
		return KindFileSystem
	case n.IsDir || n.Children != nil || n.List != nil:
		return KindFolder
	case n.Target != "":
		return KindSymlink
	}
	return KindFile
}

// Entries returns the entries of a folder: Children, or what List
// returns. List runs at most once per node, on the first call, and its
// result (error included) is returned again by every later call. It is
// safe for concurrent use.
func (n *Node) Entries() ([]*Node, error) {
	if n.List == nil {
		return n.Children, nil
	}
	n.listOnce.Do(func() { n.listed, n.listErr = n.List() })
	return n.listed, n.listErr
}

// Dir returns a folder node.
func Dir(name string, children ...*Node) *Node {
	return &Node{Name: name, IsDir: true, Mode: 0o555, Children: children}
}

// Root returns the root folder of a tree, holding children: a folder
// named "" whose modification time is the newest of theirs (a mount's
// root then changes when a point does).
func Root(children ...*Node) *Node {
	r := Dir("", children...)
	for _, c := range children {
		if c.Mtime.After(r.Mtime) {
			r.Mtime = c.Mtime
		}
	}
	return r
}

// File returns a read-only, immutable file node.
func File(name string, r io.ReaderAt, size int64) *Node {
	return &Node{Name: name, Mode: 0o444, Data: r, Size: size, Immutable: true}
}

// Bytes returns a small read-only file holding b.
func Bytes(name string, b []byte) *Node {
	return &Node{Name: name, Mode: 0o444, Data: bytesReader(b), Size: int64(len(b)), Immutable: true}
}

type bytesReader []byte

func (b bytesReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FileMapper is implemented by a Node's Data when it can tell where a
// range of its bytes lies unchanged in open files (chain.Chain and
// chain.Prefetcher do). The FUSE daemon then answers a READ of that range
// by splicing from the files to the kernel instead of copying the bytes
// through its own memory.
type FileMapper interface {
	Pieces(off, n int64, dst []chain.Piece) ([]chain.Piece, bool)
}

// partReader is the bytes [off, off+size) of r (a partition of a disk):
// an io.SectionReader that keeps r's FileMapper.
type partReader struct {
	r         io.ReaderAt
	off, size int64
}

// newPartReader returns a reader of [off, off+size) of r.
func newPartReader(r io.ReaderAt, off, size int64) *partReader {
	return &partReader{r: r, off: off, size: size}
}

func (s *partReader) ReadAt(p []byte, off int64) (int, error) {
	return io.NewSectionReader(s.r, s.off, s.size).ReadAt(p, off)
}

// Pieces implements FileMapper when r does.
func (s *partReader) Pieces(off, n int64, dst []chain.Piece) ([]chain.Piece, bool) {
	fm, ok := s.r.(FileMapper)
	if !ok || off < 0 || n <= 0 || off+n > s.size {
		return dst, false
	}
	return fm.Pieces(s.off+off, n, dst)
}
