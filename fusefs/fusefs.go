// Package fusefs renders a checkpoint.Node tree as a read-only FUSE file
// system with go-fuse's fs package. It knows nothing about disk formats:
// everything it shows was computed as plain data before mounting (package
// checkpoint), except folders listed lazily through Node.List and file
// systems rendered from a volume.FS (Node.FS).
//
// The tree is immutable, so the mount is tuned for it: long entry and
// attribute timeouts, FOPEN_KEEP_CACHE on immutable files (re-reads come
// from the page cache), 512 KiB READ requests, file data spliced from the
// layer files to the kernel where it lies unchanged in them (splice.go),
// and no lock on the read path (Node.Data must be safe for concurrent
// ReadAt, as chain.Chain is).
//
// Mounts are read-only ("ro") unless Options.Writable; then nodes with a
// Writer accept writes and every other node refuses them with EROFS.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/volume"
)

// Options control a mount.
type Options struct {
	// AllowOther lets other users see the mount (needs user_allow_other
	// in /etc/fuse.conf when not root).
	AllowOther bool
	// Debug logs every FUSE operation at debug level to Log.
	Debug bool
	// Log receives diagnostics (a folder that cannot be listed, a read
	// error) and, with Debug, the operation log. Nil means the logrus
	// standard logger.
	Log logrus.FieldLogger
	// FsName is shown as the mount's source in /proc/mounts and df.
	FsName string
	// Timeout is the kernel's entry and attribute cache timeout; 0 means
	// one hour (the tree never changes while mounted).
	Timeout time.Duration
	// ReadAheadKB, when positive, is written to the mount's bdi
	// read_ahead_kb after mounting, so that sequential reads arrive as
	// 1 MiB requests instead of 128 KiB ones. It needs root; failure is
	// only logged.
	ReadAheadKB int
	// UID and GID own every node not from a volume.FS; 0 means the
	// mounting process's IDs.
	UID, GID uint32
	// DirectIO reads files with direct I/O: each read goes to the daemon
	// straight into the reader's buffer, nothing is cached. A single pass
	// over a disk is faster this way; repeated and small reads are much
	// slower. By default immutable files are read through the page cache,
	// kept across opens.
	DirectIO bool
	// NoSplice copies every read through the daemon's memory instead of
	// splicing file data to the kernel (see splice.go); for comparisons
	// and troubleshooting.
	NoSplice bool
	// Writable mounts read-write, so that nodes with a Writer accept
	// writes; every other node still refuses them with EROFS.
	Writable bool
}

// MaxRead is the largest READ (and WRITE) request asked of the kernel:
// 512 KiB, the largest that can be spliced through a default-sized pipe.
const MaxRead = 512 << 10

// ReadAhead is the read-ahead a mount asks for (Options.ReadAheadKB, as
// root): four READs of MaxRead in flight keep the daemon busy while the
// reader copies (measured: 512 KiB of read-ahead is ~10% slower).
const ReadAhead = 4 * MaxRead

// Server is a mounted tree.
type Server struct {
	srv     *fuse.Server
	splicer *splicer
	// Dir is the absolute mount point.
	Dir string
}

// Unmount unmounts the tree. It fails with EBUSY while files are open.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err != nil {
		return fmt.Errorf("unmounting %s: %w", s.Dir, err)
	}
	return nil
}

// ReadStats tells how READs of disk data were answered so far.
func (s *Server) ReadStats() ReadStats { return s.splicer.stats() }

// Wait returns when the file system is unmounted (by Unmount or by
// `fusermount3 -u`).
func (s *Server) Wait() { s.srv.Wait() }

// Mount mounts root on dir (which must be an existing folder) read-only
// and serves it until unmounted. root must be a folder.
func Mount(dir string, root *checkpoint.Node, opts Options) (*Server, error) {
	if root == nil || typeBits(root) != syscall.S_IFDIR {
		return nil, errors.New("fusefs: the root must be a folder")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	lg := opts.Log
	if lg == nil {
		lg = logrus.StandardLogger()
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
	t := newTree(lg, uid, gid)
	t.directIO = opts.DirectIO
	t.splicer = newSplicer(opts.NoSplice)
	fo := &gofs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		UID:             uid,
		GID:             gid,
		Logger:          log.New(logWriter{l: lg, lvl: logrus.WarnLevel}, "go-fuse: ", 0),
		MountOptions: fuse.MountOptions{
			AllowOther:    opts.AllowOther,
			FsName:        opts.FsName,
			Name:          "ckptfs",
			Options:       mountOptions(opts.Writable),
			MaxWrite:      MaxRead,
			MaxReadAhead:  MaxRead,
			MaxBackground: 64,
			DisableSplice: opts.NoSplice,
			// Nothing ever changes: let the kernel keep pages even when
			// it sees a new mtime (it never will).
			ExplicitDataCacheControl: true,
			Debug:                    opts.Debug,
			Logger:                   log.New(logWriter{l: lg, lvl: logrus.DebugLevel, splicer: t.splicer}, "", 0),
		},
	}
	if fo.FsName == "" {
		fo.FsName = "ckptfs"
	}
	rootNode := t.embedder(root)
	srv, err := gofs.Mount(abs, rootNode, fo)
	if err != nil {
		return nil, fmt.Errorf("mounting on %s: %w", abs, err)
	}
	s := &Server{srv: srv, splicer: t.splicer, Dir: abs}
	if opts.ReadAheadKB > 0 {
		if err := setReadAhead(abs, opts.ReadAheadKB); err != nil {
			lg.Debugf("read_ahead_kb not raised: %v", err)
		}
	}
	return s, nil
}

// setReadAhead writes kb to the bdi read_ahead_kb of the file system
// mounted at dir.
func setReadAhead(dir string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// logWriter turns go-fuse's log lines into logrus entries. It also
// watches for failed splices: go-fuse then copies the READ instead (the
// reply is still right), and the mount stops trying.
type logWriter struct {
	l       logrus.FieldLogger
	lvl     logrus.Level
	splicer *splicer
}

func (w logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	if w.splicer != nil && strings.HasPrefix(msg, "trySplice:") && !w.splicer.off.Swap(true) {
		w.l.Warnf("splicing file data to the kernel failed (%s); copying reads from now on", strings.TrimSpace(strings.TrimPrefix(msg, "trySplice:")))
	}
	switch w.lvl {
	case logrus.DebugLevel:
		w.l.Debug(msg)
	default:
		w.l.Warn(msg)
	}
	return len(p), nil
}

// tree holds what is shared by all nodes of one mount: inode numbers and
// the listings of folders.
type tree struct {
	log      logrus.FieldLogger
	uid, gid uint32

	mu       sync.Mutex
	inos     map[any]uint64 // *checkpoint.Node or volKey -> inode number
	nextIno  uint64
	listings map[*checkpoint.Node]*listing
	fsIDs    map[*checkpoint.Node]uint64
	directIO bool
	splicer  *splicer
}

// volKey identifies an inode of a volume.FS within the mount.
type volKey struct{ fs, ino uint64 }

func newTree(lg logrus.FieldLogger, uid, gid uint32) *tree {
	return &tree{log: lg, uid: uid, gid: gid, inos: map[any]uint64{}, nextIno: 2,
		listings: map[*checkpoint.Node]*listing{}, fsIDs: map[*checkpoint.Node]uint64{}}
}

// ino returns the stable inode number of key, assigning one on first use.
func (t *tree) ino(key any) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.inos[key]; ok {
		return n
	}
	n := t.nextIno
	t.nextIno++
	t.inos[key] = n
	return n
}

// fsID numbers the volume.FS of node n.
func (t *tree) fsID(n *checkpoint.Node) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.fsIDs[n]; ok {
		return id
	}
	id := uint64(len(t.fsIDs) + 1)
	t.fsIDs[n] = id
	return id
}

// listing is a folder's children, computed once.
type listing struct {
	once     sync.Once
	children []*checkpoint.Node
	byName   map[string]*checkpoint.Node
	err      error
}

// list returns n's children, calling n.List at most once per mount.
func (t *tree) list(n *checkpoint.Node) (*listing, error) {
	t.mu.Lock()
	l := t.listings[n]
	if l == nil {
		l = &listing{}
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
		l.children = kids
		l.byName = make(map[string]*checkpoint.Node, len(kids))
		for _, c := range kids {
			if c == nil {
				continue
			}
			if c.Name == "" || c.Name == "." || c.Name == ".." || strings.Contains(c.Name, "/") {
				t.log.Warnf("folder %s: skipping an entry with an impossible name %q", n.Name, c.Name)
				continue
			}
			if _, dup := l.byName[c.Name]; dup {
				t.log.Warnf("folder %s: skipping a second entry named %q", n.Name, c.Name)
				continue
			}
			l.byName[c.Name] = c
		}
	})
	return l, l.err
}

// typeBits is the S_IFMT part of a node's mode.
func typeBits(n *checkpoint.Node) uint32 {
	switch {
	case n.IsDir || n.FS != nil || n.Children != nil || n.List != nil:
		return syscall.S_IFDIR
	case n.Target != "":
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// embedder returns a new go-fuse node rendering n.
func (t *tree) embedder(n *checkpoint.Node) gofs.InodeEmbedder {
	if n.FS != nil {
		v := &volNode{t: t, v: n.FS, fsid: t.fsID(n), ino: n.FS.Root()}
		return v
	}
	switch typeBits(n) {
	case syscall.S_IFDIR:
		return &dirNode{node{t: t, n: n}}
	case syscall.S_IFLNK:
		return &linkNode{node{t: t, n: n}}
	}
	return &fileNode{node{t: t, n: n}}
}

// child makes the inode of n below parent.
func (t *tree) child(ctx context.Context, parent *gofs.Inode, n *checkpoint.Node, out *fuse.EntryOut) *gofs.Inode {
	if n.FS != nil {
		id := t.fsID(n)
		root := n.FS.Root()
		vn := &volNode{t: t, v: n.FS, fsid: id, ino: root}
		a, err := n.FS.Stat(root)
		if err == nil {
			vn.fillAttr(a, &out.Attr)
		} else {
			t.log.Errorf("%s: root of %s file system: %v", n.Name, n.FS.Type(), err)
			t.nodeAttr(n, &out.Attr)
		}
		return parent.NewInode(ctx, vn, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: t.ino(volKey{id, root})})
	}
	t.nodeAttr(n, &out.Attr)
	return parent.NewInode(ctx, t.embedder(n), gofs.StableAttr{Mode: typeBits(n), Ino: t.ino(n)})
}

func mountOptions(writable bool) []string {
	if writable {
		return []string{"rw", "default_permissions"}
	}
	return []string{"ro", "default_permissions"}
}

// nodeAttr fills the attributes of a plain node.
func (t *tree) nodeAttr(n *checkpoint.Node, a *fuse.Attr) {
	tb := typeBits(n)
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
	a.Owner = fuse.Owner{Uid: t.uid, Gid: t.gid}
	if !n.Mtime.IsZero() {
		a.SetTimes(&n.Mtime, &n.Mtime, &n.Mtime)
	}
}

// node is what every plain node shares.
type node struct {
	gofs.Inode
	t *tree
	n *checkpoint.Node
}

var _ = (gofs.NodeGetattrer)((*node)(nil))
var _ = (gofs.NodeSetattrer)((*node)(nil))

// Getattr implements gofs.NodeGetattrer.
func (x *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	x.t.nodeAttr(x.n, &out.Attr)
	return 0
}

// Setattr implements gofs.NodeSetattrer. Read-only nodes refuse with
// EROFS. A writable node is a disk: its size cannot change (EPERM), and
// mode, owner and time changes are accepted and ignored, so that tools
// which preserve attributes work.
func (x *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if x.n.Writer == nil {
		return syscall.EROFS
	}
	if sz, ok := in.GetSize(); ok && int64(sz) != x.n.Size {
		return syscall.EPERM
	}
	x.t.nodeAttr(x.n, &out.Attr)
	return 0
}

// dirNode is a folder of the plain tree.
type dirNode struct{ node }

var _ = (gofs.NodeLookuper)((*dirNode)(nil))
var _ = (gofs.NodeReaddirer)((*dirNode)(nil))

// Lookup implements gofs.NodeLookuper.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, err := d.t.list(d.n)
	if err != nil {
		return nil, syscall.EIO
	}
	c := l.byName[name]
	if c == nil {
		return nil, syscall.ENOENT
	}
	return d.t.child(ctx, d.EmbeddedInode(), c, out), 0
}

// Readdir implements gofs.NodeReaddirer.
func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, err := d.t.list(d.n)
	if err != nil {
		return nil, syscall.EIO
	}
	ents := make([]fuse.DirEntry, 0, len(l.children))
	for _, c := range l.children {
		if c == nil || l.byName[c.Name] != c {
			continue
		}
		e := fuse.DirEntry{Name: c.Name, Mode: typeBits(c), Ino: d.t.ino(c)}
		if c.FS != nil {
			e.Ino = d.t.ino(volKey{d.t.fsID(c), c.FS.Root()})
		}
		ents = append(ents, e)
	}
	return gofs.NewListDirStream(ents), 0
}

// fileNode is a file of the plain tree.
type fileNode struct{ node }

var _ = (gofs.NodeOpener)((*fileNode)(nil))
var _ = (gofs.NodeReader)((*fileNode)(nil))

// Open implements gofs.NodeOpener. Writes are refused with EROFS;
// immutable files keep their page cache across opens (or use direct I/O
// with Options.DirectIO).
func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		if f.n.Writer == nil {
			return nil, 0, syscall.EROFS
		}
		if flags&syscall.O_TRUNC != 0 && f.n.Size > 0 {
			return nil, 0, syscall.EPERM // a disk cannot be truncated
		}
		return nil, 0, 0 // no kept cache: the content changes
	}
	if f.n.Data == nil && f.n.Size > 0 {
		return nil, 0, syscall.EIO
	}
	switch {
	case f.t.directIO:
		return nil, fuse.FOPEN_DIRECT_IO, 0
	case f.n.Immutable:
		return nil, fuse.FOPEN_KEEP_CACHE, 0
	}
	return nil, 0, 0
}

// Read implements gofs.NodeReader. It takes no lock: Data serves
// concurrent reads.
func (f *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readAt(f.t, f.n.Name, f.n.Data, f.n.Size, dest, off)
}

var _ = (gofs.NodeWriter)((*fileNode)(nil))
var _ = (gofs.NodeFsyncer)((*fileNode)(nil))

// Write implements gofs.NodeWriter for nodes with a Writer.
func (f *fileNode) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if f.n.Writer == nil {
		return 0, syscall.EROFS
	}
	n, err := f.n.Writer.WriteAt(data, off)
	if err != nil {
		f.t.log.Errorf("writing %s: %d bytes at %d: %v", f.n.Name, len(data), off, err)
		return uint32(n), toErrno(err)
	}
	return uint32(n), 0
}

// Fsync implements gofs.NodeFsyncer: the data written and the metadata
// describing it become durable.
func (f *fileNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	if f.n.Sync == nil {
		return 0
	}
	if err := f.n.Sync(); err != nil {
		f.t.log.Errorf("syncing %s: %v", f.n.Name, err)
		return toErrno(err)
	}
	return 0
}

// toErrno maps an error to the errno a writer of a disk expects.
func toErrno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

// readAt serves one READ from r, whose size is size.
func readAt(t *tree, name string, r io.ReaderAt, size int64, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	if rem := size - off; int64(len(dest)) > rem {
		dest = dest[:rem]
	}
	if fm, ok := r.(checkpoint.FileMapper); ok {
		if res := t.splicer.read(fm, off, dest); res != nil {
			return res, 0
		}
	}
	n, err := r.ReadAt(dest, off)
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		if errors.Is(err, io.EOF) {
			return fuse.ReadResultData(nil), 0
		}
		t.log.Errorf("reading %s: %d bytes at %d: %v", name, len(dest), off, err)
		return nil, syscall.EIO
	}
	// A vector result is written with writev, never offered to splice.
	return fuse.ReadResultVector([][]byte{dest[:n]}), 0
}

// linkNode is a symlink of the plain tree.
type linkNode struct{ node }

var _ = (gofs.NodeReadlinker)((*linkNode)(nil))

// Readlink implements gofs.NodeReadlinker.
func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.n.Target), 0
}

// volNode is an inode of a volume.FS. Folders, files and symlinks share the
// type; the operations that do not apply to an inode's kind fail.
type volNode struct {
	gofs.Inode
	t    *tree
	v    volume.FS
	fsid uint64
	ino  uint64
}

var _ = (gofs.NodeGetattrer)((*volNode)(nil))
var _ = (gofs.NodeSetattrer)((*volNode)(nil))
var _ = (gofs.NodeLookuper)((*volNode)(nil))
var _ = (gofs.NodeReaddirer)((*volNode)(nil))
var _ = (gofs.NodeOpener)((*volNode)(nil))
var _ = (gofs.NodeReadlinker)((*volNode)(nil))

// errno maps a volume error to an errno.
func (x *volNode) errno(op string, err error) syscall.Errno {
	switch {
	case errors.Is(err, volume.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, volume.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, volume.ErrUnsupported):
		x.t.log.Warnf("%s file system, inode %d: %s: %v", x.v.Type(), x.ino, op, err)
		return syscall.EOPNOTSUPP
	}
	x.t.log.Errorf("%s file system, inode %d: %s: %v", x.v.Type(), x.ino, op, err)
	return syscall.EIO
}

func volType(m fs.FileMode) uint32 {
	switch {
	case m.IsDir():
		return syscall.S_IFDIR
	case m&fs.ModeSymlink != 0:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

func (x *volNode) fillAttr(a volume.Attr, out *fuse.Attr) {
	out.Mode = volType(a.Mode) | uint32(a.Mode.Perm())
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
	out.Blksize = MaxRead
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

// Getattr implements gofs.NodeGetattrer.
func (x *volNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := x.v.Stat(x.ino)
	if err != nil {
		return x.errno("stat", err)
	}
	x.fillAttr(a, &out.Attr)
	return 0
}

// Setattr implements gofs.NodeSetattrer: file systems are read-only.
func (x *volNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Lookup implements gofs.NodeLookuper.
func (x *volNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, err := x.v.Lookup(x.ino, name)
	if err != nil {
		return nil, x.errno("lookup "+strconv.Quote(name), err)
	}
	a, err := x.v.Stat(e.Ino)
	if err != nil {
		return nil, x.errno("stat "+strconv.Quote(name), err)
	}
	c := &volNode{t: x.t, v: x.v, fsid: x.fsid, ino: e.Ino}
	c.fillAttr(a, &out.Attr)
	return x.NewInode(ctx, c, gofs.StableAttr{Mode: volType(a.Mode), Ino: x.t.ino(volKey{x.fsid, e.Ino})}), 0
}

// Readdir implements gofs.NodeReaddirer.
func (x *volNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	es, err := x.v.ReadDir(x.ino)
	if err != nil {
		return nil, x.errno("readdir", err)
	}
	out := make([]fuse.DirEntry, 0, len(es))
	for _, e := range es {
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.Contains(e.Name, "/") {
			continue
		}
		out = append(out, fuse.DirEntry{Name: e.Name, Mode: volType(e.Mode), Ino: x.t.ino(volKey{x.fsid, e.Ino})})
	}
	return gofs.NewListDirStream(out), 0
}

// Open implements gofs.NodeOpener. Files of a volume never change while
// mounted, so their pages stay cached across opens.
func (x *volNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	f, err := x.v.Open(x.ino)
	if err != nil {
		return nil, 0, x.errno("open", err)
	}
	return &volFile{x: x, f: f}, fuse.FOPEN_KEEP_CACHE, 0
}

// Readlink implements gofs.NodeReadlinker.
func (x *volNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	s, err := x.v.Readlink(x.ino)
	if err != nil {
		return nil, x.errno("readlink", err)
	}
	return []byte(s), 0
}

// volFile is an open file of a volume.FS.
type volFile struct {
	x *volNode
	f volume.File
}

var _ = (gofs.FileReader)((*volFile)(nil))

// Read implements gofs.FileReader.
func (h *volFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readAt(h.x.t, fmt.Sprintf("%s inode %d", h.x.v.Type(), h.x.ino), h.f, h.f.Size(), dest, off)
}

// Alternate data streams (NTFS) are shown as extended attributes named
// "user.<stream>", as ntfs-3g's streams_interface=xattr does. Linux limits
// an attribute to 64 KiB: larger streams are left out of the list (copy
// them with `ckptfs cp`, which reads streams of any size).
const xattrPrefix = "user."

// maxXattr is Linux's XATTR_SIZE_MAX.
const maxXattr = 64 << 10

var _ = (gofs.NodeListxattrer)((*volNode)(nil))
var _ = (gofs.NodeGetxattrer)((*volNode)(nil))

// Listxattr implements gofs.NodeListxattrer.
func (x *volNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	names, err := x.v.Streams(x.ino)
	if err != nil {
		return 0, x.errno("listing streams", err)
	}
	var list []byte
	for _, n := range names {
		f, err := x.v.OpenStream(x.ino, n)
		if err != nil || f.Size() > maxXattr {
			continue
		}
		list = append(append(list, xattrPrefix+n...), 0)
	}
	if len(dest) < len(list) {
		return uint32(len(list)), syscall.ERANGE
	}
	return uint32(copy(dest, list)), 0
}

// Getxattr implements gofs.NodeGetxattrer.
func (x *volNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	name, ok := strings.CutPrefix(attr, xattrPrefix)
	if !ok || name == "" {
		return 0, syscall.ENODATA
	}
	f, err := x.v.OpenStream(x.ino, name)
	if errors.Is(err, volume.ErrNotFound) || errors.Is(err, volume.ErrUnsupported) {
		return 0, syscall.ENODATA
	}
	if err != nil {
		return 0, x.errno("opening stream "+name, err)
	}
	size := f.Size()
	if size > maxXattr {
		return 0, syscall.E2BIG
	}
	if int64(len(dest)) < size {
		return uint32(size), syscall.ERANGE
	}
	n, err := f.ReadAt(dest[:size], 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return 0, x.errno("reading stream "+name, err)
	}
	return uint32(n), 0
}
