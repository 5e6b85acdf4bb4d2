package diff

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ckptfs/ckptfs/volume"
)

// memFS is an in-memory volume.FS for tests. Paths are added with add;
// folders are made as needed. Inode 1 is the root.
type memFS struct {
	typ   string
	nodes map[uint64]*memNode
	next  uint64
	opens atomic.Int64
	ext   bool // implements Extents
}

type memNode struct {
	mode    fs.FileMode
	data    []byte
	mtime   time.Time
	target  string
	kids    map[string]uint64
	ext     []volume.Extent
	statErr error
	streams map[string][]byte
}

func newMemFS(typ string) *memFS {
	m := &memFS{typ: typ, nodes: map[uint64]*memNode{1: {mode: fs.ModeDir | 0o755, kids: map[string]uint64{}}}, next: 2}
	return m
}

// add puts n at p, making folders on the way.
func (m *memFS) add(p string, n *memNode) *memNode {
	dir := uint64(1)
	parts := strings.Split(p, "/")
	for _, name := range parts[:len(parts)-1] {
		d := m.nodes[dir]
		ino, ok := d.kids[name]
		if !ok {
			ino = m.next
			m.next++
			m.nodes[ino] = &memNode{mode: fs.ModeDir | 0o755, kids: map[string]uint64{}}
			d.kids[name] = ino
		}
		dir = ino
	}
	if n.mode.IsDir() && n.kids == nil {
		n.kids = map[string]uint64{}
	}
	ino := m.next
	m.next++
	m.nodes[ino] = n
	m.nodes[dir].kids[parts[len(parts)-1]] = ino
	return n
}

func (m *memFS) file(p string, data string, mtime int) *memNode {
	return m.add(p, &memNode{mode: 0o644, data: []byte(data), mtime: time.Unix(int64(mtime), 0)})
}

func (m *memFS) Type() string          { return m.typ }
func (m *memFS) Label() string         { return "" }
func (m *memFS) Root() uint64          { return 1 }
func (m *memFS) CaseInsensitive() bool { return false }

// HasUnixPermissions makes an "ext…" memFS keep modes and owners.
func (m *memFS) HasUnixPermissions() bool { return strings.HasPrefix(m.typ, "ext") }

func (m *memFS) node(ino uint64) (*memNode, error) {
	n := m.nodes[ino]
	if n == nil {
		return nil, fmt.Errorf("inode %d: %w", ino, volume.ErrNotFound)
	}
	return n, nil
}

func (m *memFS) Stat(ino uint64) (volume.Attr, error) {
	n, err := m.node(ino)
	if err != nil {
		return volume.Attr{}, err
	}
	if n.statErr != nil {
		return volume.Attr{}, n.statErr
	}
	size := int64(len(n.data))
	if n.target != "" {
		size = int64(len(n.target))
	}
	return volume.Attr{Ino: ino, Mode: n.mode, Size: size, Mtime: n.mtime, Nlink: 1}, nil
}

func (m *memFS) ReadDir(ino uint64) ([]volume.Entry, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	if !n.mode.IsDir() {
		return nil, volume.ErrNotDir
	}
	var out []volume.Entry
	for name, k := range n.kids {
		out = append(out, volume.Entry{Name: name, Ino: k, Mode: m.nodes[k].mode.Type()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memFS) Lookup(dir uint64, name string) (volume.Entry, error) {
	n, err := m.node(dir)
	if err != nil {
		return volume.Entry{}, err
	}
	k, ok := n.kids[name]
	if !ok {
		return volume.Entry{}, volume.ErrNotFound
	}
	return volume.Entry{Name: name, Ino: k, Mode: m.nodes[k].mode.Type()}, nil
}

type memFile struct{ b []byte }

func (f memFile) Size() int64 { return int64(len(f.b)) }
func (f memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFS) Open(ino uint64) (volume.File, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	m.opens.Add(1)
	return memFile{n.data}, nil
}

func (m *memFS) Readlink(ino uint64) (string, error) {
	n, err := m.node(ino)
	if err != nil {
		return "", err
	}
	return n.target, nil
}

func (m *memFS) Streams(ino uint64) ([]string, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range n.streams {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func (m *memFS) OpenStream(ino uint64, name string) (volume.File, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	b, ok := n.streams[name]
	if !ok {
		return nil, volume.ErrNotFound
	}
	return memFile{b}, nil
}

// extFS adds Extents to memFS.
type extFS struct{ *memFS }

func (m extFS) Extents(ino uint64) ([]volume.Extent, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	return n.ext, nil
}

var _ volume.Extenter = extFS{}

// clone copies a memFS deeply (nodes are copied, data shared until
// replaced).
func (m *memFS) clone() *memFS {
	c := newMemFS(m.typ)
	c.next = m.next
	for ino, n := range m.nodes {
		x := *n
		if n.kids != nil {
			x.kids = map[string]uint64{}
			for k, v := range n.kids {
				x.kids[k] = v
			}
		}
		c.nodes[ino] = &x
	}
	return c
}

// at returns the node at p.
func (m *memFS) at(p string) *memNode {
	ino := uint64(1)
	for _, name := range strings.Split(p, "/") {
		ino = m.nodes[ino].kids[name]
	}
	return m.nodes[ino]
}

// remove unlinks p.
func (m *memFS) remove(p string) {
	dir := path.Dir(p)
	d := m.nodes[1]
	if dir != "." {
		d = m.at(dir)
	}
	delete(d.kids, path.Base(p))
}
