package fusefs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/volume"
)

// rawFS answers the kernel's requests (fuse.RawFileSystem). Operations it
// does not implement answer ENOSYS (the embedded default), which the
// kernel remembers for FLUSH, OPEN and OPENDIR on a read-only mount (see
// the package doc).
type rawFS struct {
	log      Logger
	uid, gid uint32
	timeout  time.Duration
	inodes   *table
	splicer  *splicer
	// openFiles: answer OPEN (direct I/O, or a writable mount, where
	// some files refuse writes and others keep no cache); otherwise OPEN
	// and OPENDIR answer ENOSYS.
	openFiles bool
	directIO  bool
	writable  bool
	// plus decides which listings carry their files' attributes (nil:
	// all of them).
	plus *plusLearner
	// lookups counts LOOKUP requests (Server.Lookups).
	lookups atomic.Int64
}

func newRawFS(root *checkpoint.Node, opts Options) *rawFS {
	lg := opts.Log
	if lg == nil {
		lg = nopLogger{}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Hour
	}
	uid, gid := opts.UID, opts.GID
	if uid == 0 {
		uid = uint32(os.Getuid())
	}
	if gid == 0 {
		gid = uint32(os.Getgid())
	}
	r := &rawFS{
		log:       lg,
		uid:       uid,
		gid:       gid,
		timeout:   timeout,
		inodes:    newTable(),
		splicer:   newSplicer(opts.NoSplice),
		openFiles: opts.DirectIO || opts.Writable,
		directIO:  opts.DirectIO,
		writable:  opts.Writable,
	}
	if opts.ReaddirPlus == ReaddirPlusAdaptive {
		r.plus = &plusLearner{}
	}
	if !opts.NoSplice && !opts.NoMap {
		r.splicer.maps = &mappings{}
	}
	id := r.inodes.plainID(root)
	r.inodes.ref(id, func() *inode { return &inode{mode: syscall.S_IFDIR, plain: root, parent: id} })
	return r
}

// node returns the inode of a request, or nil when the kernel names one it
// does not hold (it never should).
func (r *rawFS) node(id uint64) *inode { return r.inodes.get(id) }

// errno maps an error of a file system to an errno, logging what is not
// a plain "no such file".
func (r *rawFS) errno(in *inode, op string, err error) fuse.Status {
	what := ""
	if in.vol != nil {
		what = in.vol.fs.Type() + " file system " + strconv.Quote(in.vol.node.Name) + ", inode " + strconv.FormatUint(in.ino, 10)
	} else {
		what = strconv.Quote(in.plain.Name)
	}
	switch {
	case errors.Is(err, volume.ErrNotFound):
		return fuse.ENOENT
	case errors.Is(err, volume.ErrNotDir):
		return fuse.ENOTDIR
	case errors.Is(err, volume.ErrUnsupported):
		r.log.Warnf("%s: %s: %v", what, op, err)
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	r.log.Errorf("%s: %s: %v", what, op, err)
	return fuse.EIO
}

// Lookup implements fuse.RawFileSystem.
func (r *rawFS) Lookup(h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	r.lookups.Add(1)
	dir := r.node(h.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	if dir.mode != syscall.S_IFDIR {
		return fuse.ENOTDIR
	}
	if h.NodeId == fuse.FUSE_ROOT_ID && name == pollName {
		*out = fuse.EntryOut{NodeId: pollNode, Generation: 1}
		pollAttr(&out.Attr)
		return fuse.OK
	}
	var st fuse.Status
	if dir.vol != nil {
		st = r.lookupVolume(dir, name, h.Pid, out)
	} else {
		st = r.lookupPlain(dir, name, out)
	}
	if st == fuse.ENOENT {
		// A negative entry, cached as long as positive ones.
		*out = fuse.EntryOut{}
		out.SetEntryTimeout(r.timeout)
		return fuse.OK
	}
	return st
}

// entry fills out for inode in (whose attributes fill has written into
// out.Attr) and counts the kernel's new reference.
func (r *rawFS) entry(out *fuse.EntryOut, in *inode) {
	out.NodeId = in.id
	out.Generation = 1
	out.Attr.Ino = in.id
	out.SetEntryTimeout(r.timeout)
	out.SetAttrTimeout(r.timeout)
}

// Forget implements fuse.RawFileSystem.
func (r *rawFS) Forget(id, nlookup uint64) { r.inodes.forget(id, nlookup) }

// GetAttr implements fuse.RawFileSystem.
func (r *rawFS) GetAttr(in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.NodeId == pollNode {
		pollAttr(&out.Attr)
		return fuse.OK
	}
	n := r.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if st := r.attr(n, &out.Attr); !st.Ok() {
		return st
	}
	out.SetTimeout(r.timeout)
	return fuse.OK
}

// attr fills the attributes of n.
func (r *rawFS) attr(n *inode, a *fuse.Attr) fuse.Status {
	if n.vol != nil {
		va, err := n.vol.fs.Stat(n.ino)
		if err != nil {
			return r.errno(n, "stat", err)
		}
		volumeAttr(va, a)
	} else {
		r.plainAttr(n.plain, a)
	}
	a.Ino = n.id
	return fuse.OK
}

// SetAttr implements fuse.RawFileSystem. Read-only nodes refuse with
// EROFS. A writable node is a disk: its size cannot change (EPERM), and
// mode, owner and time changes are accepted and ignored, so that tools
// which preserve attributes work.
func (r *rawFS) SetAttr(in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := r.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if n.plain == nil || n.plain.Writer == nil {
		return fuse.EROFS
	}
	if sz, ok := in.GetSize(); ok && int64(sz) != n.plain.Size {
		return fuse.EPERM
	}
	r.attr(n, &out.Attr)
	out.SetTimeout(r.timeout)
	return fuse.OK
}

// Open implements fuse.RawFileSystem. On a read-only mount without direct
// I/O it answers ENOSYS: the kernel then stops sending OPEN and RELEASE
// and keeps every file's pages cached across opens (the tree never
// changes). Otherwise writes are refused with EROFS on nodes without a
// Writer, immutable files keep their cache and DirectIO asks for direct
// I/O.
func (r *rawFS) Open(in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !r.openFiles {
		return fuse.ENOSYS
	}
	if in.NodeId == pollNode {
		return fuse.OK
	}
	n := r.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if n.mode != syscall.S_IFREG {
		return fuse.EINVAL
	}
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		if n.plain == nil || n.plain.Writer == nil {
			return fuse.EROFS
		}
		if in.Flags&syscall.O_TRUNC != 0 && n.plain.Size > 0 {
			return fuse.EPERM // a disk cannot be truncated
		}
		return fuse.OK // no kept cache: the content changes
	}
	switch {
	case r.directIO:
		out.OpenFlags = fuse.FOPEN_DIRECT_IO
	case n.plain == nil || n.plain.Immutable:
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	}
	return fuse.OK
}

// readHow says how a READ may be answered.
type readHow struct {
	// zeroCopy allows answers that do not copy the bytes through dest:
	// from mappings (into iov, when not nil), spliced, or preads.
	zeroCopy bool
	iov      [][]byte // empty, with room for the pieces of a READ
}

// Read answers READ into dest (the reply buffer, len(dest) <= the size
// asked): with bytes in dest, or, when splice is set, with a range of
// files to splice. It takes no lock: the data served reads concurrently.
func (r *rawFS) Read(in *fuse.ReadIn, dest []byte, how readHow) (readResult, fuse.Status) {
	n := r.node(in.NodeId)
	if n == nil {
		return readResult{}, fuse.ENOENT
	}
	if n.mode != syscall.S_IFREG {
		return readResult{}, fuse.EISDIR
	}
	if n.vol != nil {
		f, st := r.volFile(n)
		if !st.Ok() {
			return readResult{}, st
		}
		if how.zeroCopy && how.iov != nil && n.vol.data != nil {
			if res, ok := r.splicer.planVolume(f, n.vol.data, int64(in.Offset), dest, how.iov); ok {
				return res, fuse.OK
			}
		}
		return r.readAt(n, f, f.Size(), dest, int64(in.Offset), how)
	}
	if n.plain.Data == nil {
		if n.plain.Size > 0 {
			return readResult{}, fuse.EIO
		}
		return readResult{}, fuse.OK
	}
	return r.readAt(n, n.plain.Data, n.plain.Size, dest, int64(in.Offset), how)
}

// readAt serves one READ from data, whose size is size.
func (r *rawFS) readAt(n *inode, data io.ReaderAt, size int64, dest []byte, off int64, how readHow) (readResult, fuse.Status) {
	if off >= size || len(dest) == 0 {
		return readResult{}, fuse.OK
	}
	if rem := size - off; int64(len(dest)) > rem {
		dest = dest[:rem]
	}
	fm, isMapper := data.(checkpoint.FileMapper)
	if isMapper && how.zeroCopy {
		if res, ok := r.splicer.plan(fm, off, dest, how.iov); ok {
			return res, fuse.OK
		}
	}
	if isMapper {
		r.splicer.copied.Add(1)
	}
	m, err := data.ReadAt(dest, off)
	if err != nil && !(errors.Is(err, io.EOF) && m > 0) {
		if errors.Is(err, io.EOF) {
			return readResult{}, fuse.OK
		}
		return readResult{}, r.errno(n, "reading "+strconv.Itoa(len(dest))+" bytes at "+strconv.FormatInt(off, 10), err)
	}
	return readResult{data: dest[:m], n: m}, fuse.OK
}

// Write implements fuse.RawFileSystem for nodes with a Writer.
func (r *rawFS) Write(in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n := r.node(in.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	if n.plain == nil || n.plain.Writer == nil {
		return 0, fuse.EROFS
	}
	m, err := n.plain.Writer.WriteAt(data, int64(in.Offset))
	if err != nil {
		r.log.Errorf("writing %s: %d bytes at %d: %v", n.plain.Name, len(data), in.Offset, err)
		return uint32(m), toStatus(err)
	}
	return uint32(m), fuse.OK
}

// Fsync implements fuse.RawFileSystem: the data written and the metadata
// describing it become durable.
func (r *rawFS) Fsync(in *fuse.FsyncIn) fuse.Status {
	n := r.node(in.NodeId)
	if n == nil || n.plain == nil || n.plain.Sync == nil {
		return fuse.OK
	}
	if err := n.plain.Sync(); err != nil {
		r.log.Errorf("syncing %s: %v", n.plain.Name, err)
		return toStatus(err)
	}
	return fuse.OK
}

// toStatus maps an error to the errno a writer of a disk expects.
func toStatus(err error) fuse.Status {
	var e syscall.Errno
	if errors.As(err, &e) {
		return fuse.Status(e)
	}
	return fuse.EIO
}

// Readlink implements fuse.RawFileSystem.
func (r *rawFS) Readlink(h *fuse.InHeader) ([]byte, fuse.Status) {
	n := r.node(h.NodeId)
	if n == nil {
		return nil, fuse.ENOENT
	}
	if n.mode != syscall.S_IFLNK {
		return nil, fuse.EINVAL
	}
	if n.vol == nil {
		return []byte(n.plain.Target), fuse.OK
	}
	s, err := n.vol.fs.Readlink(n.ino)
	if err != nil {
		return nil, r.errno(n, "readlink", err)
	}
	return []byte(s), fuse.OK
}

// StatFs implements fuse.RawFileSystem: nothing can be written, so no
// space is free.
func (r *rawFS) StatFs(h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return fuse.OK
}

// modeType is the S_IFMT bits of a volume mode.
func modeType(m fs.FileMode) uint32 {
	switch {
	case m.IsDir():
		return syscall.S_IFDIR
	case m&fs.ModeSymlink != 0:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// validName reports whether a name can be shown in a folder.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.Contains(name, "/")
}

// Flush implements fuse.RawFileSystem. It answers ENOSYS, so the kernel
// stops sending FLUSH on every close: nothing is buffered here (writes go
// to the layer as they come; fsync makes them durable).
func (r *rawFS) Flush(in *fuse.FlushIn) fuse.Status { return fuse.ENOSYS }
