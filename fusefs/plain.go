package fusefs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Plain nodes: the folders, files and symlinks of the checkpoint tree.

// kindOf is the S_IFMT part of a plain node's mode.
func kindOf(n *checkpoint.Node) uint32 {
	switch {
	case n.IsDir || n.FS != nil || n.Children != nil || n.List != nil:
		return syscall.S_IFDIR
	case n.Target != "":
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// plainTree lists plain folders, each once per mount.
type plainTree struct {
	log      Logger
	mu       sync.Mutex
	listings map[*checkpoint.Node]*plainListing
}

// plainListing is a plain folder's children, computed once.
type plainListing struct {
	once     sync.Once
	children []*checkpoint.Node // valid names, first of each name
	byName   map[string]*checkpoint.Node
	err      error
}

func newPlainTree(lg Logger) *plainTree {
	return &plainTree{log: lg, listings: map[*checkpoint.Node]*plainListing{}}
}

// list returns n's children, calling n.List at most once per mount.
// Entries with impossible names and second entries of one name are left
// out (and logged).
func (t *plainTree) list(n *checkpoint.Node) (*plainListing, error) {
	t.mu.Lock()
	l := t.listings[n]
	if l == nil {
		l = &plainListing{}
		t.listings[n] = l
	}
	t.mu.Unlock()
	l.once.Do(func() {
		kids := n.Children
		if n.List != nil {
			kids, l.err = n.List()
			if l.err != nil {
				t.log.Errorf("listing %s: %v", n.Name, l.err)
				return
			}
		}
		l.byName = make(map[string]*checkpoint.Node, len(kids))
		for _, c := range kids {
			if c == nil {
				continue
			}
			if !validName(c.Name) {
				t.log.Warnf("folder %s: skipping an entry with an impossible name %q", n.Name, c.Name)
				continue
			}
			if _, dup := l.byName[c.Name]; dup {
				t.log.Warnf("folder %s: skipping a second entry named %q", n.Name, c.Name)
				continue
			}
			l.byName[c.Name] = c
			l.children = append(l.children, c)
		}
	})
	return l, l.err
}

// plainAttr fills the attributes of a plain node.
func (r *rawFS) plainAttr(n *checkpoint.Node, a *fuse.Attr) {
	tb := kindOf(n)
	perm := uint32(n.Mode.Perm())
	if perm == 0 {
		perm = 0o444
		if tb == syscall.S_IFDIR {
			perm = 0o555
		}
	}
	a.Mode = tb | perm
	a.Nlink = 1
	switch tb {
	case syscall.S_IFDIR:
		a.Nlink = 2
	case syscall.S_IFLNK:
		a.Size = uint64(len(n.Target))
	default:
		a.Size = uint64(max(n.Size, 0))
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = MaxRead
	a.Owner = fuse.Owner{Uid: r.uid, Gid: r.gid}
	if !n.Mtime.IsZero() {
		a.SetTimes(&n.Mtime, &n.Mtime, &n.Mtime)
	}
}

// child returns the inode of plain node c (found in folder parent),
// counting the kernel's new reference, with its attributes in a. A node
// with a file system is the root inode of that file system.
func (r *rawFS) child(parent uint64, c *checkpoint.Node, a *fuse.Attr) *inode {
	if c.FS != nil {
		v := r.inodes.volumeOf(c)
		root := c.FS.Root()
		if va, err := c.FS.Stat(root); err == nil {
			volumeAttr(va, a)
			a.Mode = syscall.S_IFDIR | a.Mode&^syscall.S_IFMT
		} else {
			r.log.Errorf("%s: root of the %s file system: %v", c.Name, c.FS.Type(), err)
			r.plainAttr(c, a)
		}
		id := r.inodes.volumeID(v, root)
		a.Ino = id
		return r.inodes.ref(id, func() *inode {
			return &inode{mode: syscall.S_IFDIR, vol: v, ino: root, parent: parent}
		})
	}
	r.plainAttr(c, a)
	id := r.inodes.plainID(c)
	a.Ino = id
	return r.inodes.ref(id, func() *inode { return &inode{mode: kindOf(c), plain: c, parent: parent} })
}

// lookupPlain looks name up in plain folder dir.
func (r *rawFS) lookupPlain(dir *inode, name string, out *fuse.EntryOut) fuse.Status {
	l, err := r.plain.list(dir.plain)
	if err != nil {
		return fuse.EIO
	}
	c := l.byName[name]
	if c == nil {
		return fuse.ENOENT
	}
	r.entry(out, r.child(dir.id, c, &out.Attr))
	return fuse.OK
}
