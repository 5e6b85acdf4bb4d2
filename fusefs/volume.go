package fusefs

import (
	"io/fs"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/volume"
)

// Volume inodes: the folders, files and symlinks of a volume.FS.

// volumeBlksize is the preferred I/O size reported for files of volumes.
const volumeBlksize = 4096

// volumeAttr fills fuse attributes from a volume's.
func volumeAttr(a volume.Attr, out *fuse.Attr) {
	out.Mode = modeType(a.Mode) | uint32(a.Mode.Perm())
	if a.Mode&fs.ModeSetuid != 0 {
		out.Mode |= syscall.S_ISUID
	}
	if a.Mode&fs.ModeSetgid != 0 {
		out.Mode |= syscall.S_ISGID
	}
	if a.Mode&fs.ModeSticky != 0 {
		out.Mode |= syscall.S_ISVTX
	}
	out.Size = uint64(max(a.Size, 0))
	out.Nlink = max(a.Nlink, 1)
	out.Owner = fuse.Owner{Uid: a.Uid, Gid: a.Gid}
	// The page size, as most file systems report: programs size their
	// buffers by it, and diff -r, for one, allocates (and faults in) two
	// buffers of this size per pair of files it compares.
	out.Blksize = volumeBlksize
	if a.Alloc > 0 {
		out.Blocks = uint64(a.Alloc+511) / 512
	} else {
		out.Blocks = (out.Size + 511) / 512
	}
	at, mt, ct := a.Atime, a.Mtime, a.Ctime
	if ct.IsZero() {
		ct = mt
	}
	if at.IsZero() {
		at = mt
	}
	out.SetTimes(&at, &mt, &ct)
}

// volumeChild returns the inode of inode ino of dir's file system, found
// in dir, counting the kernel's new reference, with its attributes in a.
func (r *rawFS) volumeChild(dir *inode, ino uint64, a *fuse.Attr) (*inode, error) {
	va, err := dir.vol.fs.Stat(ino)
	if err != nil {
		return nil, err
	}
	volumeAttr(va, a)
	id := r.inodes.volumeID(dir.vol, ino)
	a.Ino = id
	mode := a.Mode & syscall.S_IFMT
	return r.inodes.ref(id, func() *inode {
		return &inode{mode: mode, vol: dir.vol, ino: ino, parent: dir.id}
	}), nil
}

// lookupVolume looks name up in folder dir of a file system.
func (r *rawFS) lookupVolume(dir *inode, name string, pid uint32, out *fuse.EntryOut) fuse.Status {
	e, err := dir.vol.fs.Lookup(dir.ino, name)
	if err != nil {
		return r.errno(dir, "lookup "+strconv.Quote(name), err)
	}
	c, err := r.volumeChild(dir, e.Ino, &out.Attr)
	if err != nil {
		return r.errno(dir, "stat "+strconv.Quote(name), err)
	}
	r.entry(out, c)
	if r.plus != nil && c.mode != syscall.S_IFDIR {
		r.plus.lookedUpFile(pid, dir.id)
	}
	return fuse.OK
}

// volFile returns the opened data of volume file n, opening it on first
// use; the reader stays with the inode until the kernel forgets it.
func (r *rawFS) volFile(n *inode) (volume.File, fuse.Status) {
	o := n.file.Load()
	if o == nil {
		f, err := n.vol.fs.Open(n.ino)
		o = &openFile{f: f, err: err}
		if !n.file.CompareAndSwap(nil, o) {
			o = n.file.Load()
		}
	}
	if o.err != nil {
		return nil, r.errno(n, "open", o.err)
	}
	return o.f, fuse.OK
}
