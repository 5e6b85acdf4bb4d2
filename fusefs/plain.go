package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Plain nodes: the folders, files and symlinks of the checkpoint tree.

// kindOf is the S_IFMT part of a plain node's mode (checkpoint.Node.Kind:
// a file system is shown as a folder).
func kindOf(n *checkpoint.Node) uint32 {
	switch n.Kind() {
	case checkpoint.KindFolder, checkpoint.KindFileSystem:
		return syscall.S_IFDIR
	case checkpoint.KindSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// plainChildren returns the entries of plain folder n that can be shown:
// those with a possible name, the first of each name (Node.Entries lists
// the folder once; nothing here keeps a second copy).
func (r *rawFS) plainChildren(n *checkpoint.Node) ([]*checkpoint.Node, error) {
	kids, err := n.Entries()
	if err != nil {
		r.log.Errorf("listing %s: %v", n.Name, err)
		return nil, err
	}
	seen := make(map[string]bool, len(kids))
	out := make([]*checkpoint.Node, 0, len(kids))
	for _, c := range kids {
		if c == nil || !validName(c.Name) || seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	return out, nil
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
	kids, err := dir.plain.Entries()
	if err != nil {
		return fuse.EIO
	}
	var c *checkpoint.Node
	for _, k := range kids {
		if k != nil && k.Name == name && validName(name) {
			c = k
			break
		}
	}
	if c == nil {
		return fuse.ENOENT
	}
	r.entry(out, r.child(dir.id, c, &out.Attr))
	return fuse.OK
}
