package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Folders.
//
// Folders never change while mounted, so the kernel may keep their
// listings (FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE on OPENDIR): every later
// listing of the folder is then served from the kernel's cache. A listing
// made for a process that does not stat files (plus.go) lacks the files'
// attributes, and is not kept: a process that does stat them must get
// them when it lists the folder later. A listing is addressed by offset:
// 0 is ".", 1 is "..", 2+i is the i-th entry; the entries of a volume
// folder are listed once and kept with the folder's inode until the kernel
// has read to the end.

// dirEnt is one entry of a listing.
type dirEnt struct {
	name  string
	mode  uint32           // S_IFMT bits
	plain *checkpoint.Node // the child, in a plain folder
	ino   uint64           // the child's inode, in a volume folder
}

// dirListing is a folder's entries in order.
type dirListing struct{ ents []dirEnt }

// OpenDir answers OPENDIR (see above).
func (r *rawFS) OpenDir(in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := r.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if n.mode != syscall.S_IFDIR {
		return fuse.ENOTDIR
	}
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR
	if n.vol != nil && r.plus != nil && !r.plus.fullFiles(in.Pid) {
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	}
	return fuse.OK
}

// listing returns the entries of folder dir; a volume folder's are kept
// with its inode while the kernel reads them (see readDir).
func (r *rawFS) listing(dir *inode) (*dirListing, fuse.Status) {
	if l := dir.dir.Load(); l != nil {
		return l, fuse.OK
	}
	l := &dirListing{}
	if dir.vol != nil {
		es, err := dir.vol.fs.ReadDir(dir.ino)
		if err != nil {
			return nil, r.errno(dir, "readdir", err)
		}
		l.ents = make([]dirEnt, 0, len(es))
		for _, e := range es {
			if validName(e.Name) {
				l.ents = append(l.ents, dirEnt{name: e.Name, mode: modeType(e.Mode), ino: e.Ino})
			}
		}
	} else {
		kids, err := r.plainChildren(dir.plain)
		if err != nil {
			return nil, fuse.EIO
		}
		l.ents = make([]dirEnt, 0, len(kids))
		for _, c := range kids {
			l.ents = append(l.ents, dirEnt{name: c.Name, mode: kindOf(c), plain: c})
		}
		return l, fuse.OK // few entries, listed once by the node itself
	}
	if !dir.dir.CompareAndSwap(nil, l) {
		if cur := dir.dir.Load(); cur != nil {
			return cur, fuse.OK
		}
	}
	return l, fuse.OK
}

// entryID is the node ID (and inode number) of entry e of folder dir,
// known without reading the entry's inode.
func (r *rawFS) entryID(dir *inode, e *dirEnt) uint64 {
	switch {
	case dir.vol != nil:
		return r.inodes.volumeID(dir.vol, e.ino)
	case e.plain.FS != nil:
		return r.inodes.volumeID(r.inodes.volumeOf(e.plain), e.plain.FS.Root())
	}
	return r.inodes.plainID(e.plain)
}

// ReadDir implements fuse.RawFileSystem.
func (r *rawFS) ReadDir(in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readDir(in, out, false)
}

// ReadDirPlus implements fuse.RawFileSystem: each entry comes with its
// attributes and counts as a lookup, so walking a tree costs no LOOKUP.
func (r *rawFS) ReadDirPlus(in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readDir(in, out, true)
}

func (r *rawFS) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	dir := r.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	if dir.mode != syscall.S_IFDIR {
		return fuse.ENOTDIR
	}
	l, st := r.listing(dir)
	if !st.Ok() {
		return st
	}
	end := uint64(len(l.ents)) + 2
	k := in.Offset
	// Whether files get their attributes (plus.go); folders always do.
	fullFiles := true
	if plus && r.plus != nil && dir.vol != nil {
		if fullFiles = r.plus.fullFiles(in.Pid); !fullFiles {
			r.plus.listedBare(in.Pid, dir.id)
		}
	}
	for ; k < end; k++ {
		e := fuse.DirEntry{Mode: syscall.S_IFDIR, Off: k + 1}
		var de *dirEnt
		switch k {
		case 0:
			e.Name, e.Ino = ".", dir.id
		case 1:
			e.Name, e.Ino = "..", dir.parent
		default:
			de = &l.ents[k-2]
			e.Name, e.Mode, e.Ino = de.name, de.mode, r.entryID(dir, de)
		}
		if !plus {
			if !out.AddDirEntry(e) {
				break
			}
			continue
		}
		eo := out.AddDirLookupEntry(e)
		if eo == nil {
			break
		}
		if de == nil || (!fullFiles && de.mode != syscall.S_IFDIR) {
			continue // "." and "..", or a file for a process that does not stat: no entry (node ID 0)
		}
		var c *inode
		if dir.vol != nil {
			var err error
			if c, err = r.volumeChild(dir, de.ino, &eo.Attr); err != nil {
				// Left for LOOKUP to report.
				*eo = fuse.EntryOut{}
				continue
			}
		} else {
			c = r.child(dir.id, de.plain, &eo.Attr)
		}
		if c.mode != de.mode {
			out.FixMode(c.mode)
		}
		r.entry(eo, c)
	}
	if k >= end && dir.vol != nil {
		// Read to the end: the kernel keeps the listing from here on.
		dir.dir.Store(nil)
	}
	return fuse.OK
}
