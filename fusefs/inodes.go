package fusefs

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/volume"
)

// Node IDs and inode numbers.
//
// Every inode the kernel knows has a FUSE node ID, and the same number is
// the inode number stat shows, so both are stable for as long as the
// mount lives and the table needs one map only:
//
//   - Plain nodes (folders and files of the checkpoint tree) are numbered
//     1, 2, 3… in the order they are first seen (1 is the root); the
//     number of a node is kept for the life of the mount (there are few).
//   - An inode of a file system is numbered volumeID<<volumeShift | ino,
//     where volumeID numbers the file systems of the mount from 1 and ino
//     is the file system's own inode number. The number of an inode is
//     therefore the same each time the kernel looks it up again after
//     forgetting it, and hard links share it.
//   - The rare inode whose own number does not fit in volumeShift bits,
//     or a mount with more than maxVolumes file systems, gets a number
//     from a counter above overflowBase, remembered for the mount.
const (
	volumeShift  = 44
	maxVolumes   = 1<<(63-volumeShift) - 1
	overflowBase = uint64(1) << 63
)

// inode is an inode the kernel holds a reference to: a plain node, or an
// inode of a file system.
type inode struct {
	id   uint64
	mode uint32 // S_IFDIR, S_IFREG or S_IFLNK
	// nlookup is the kernel's reference count (guarded by table.mu).
	nlookup uint64

	plain *checkpoint.Node // a plain node, or nil
	vol   *mountedFS       // the file system of a volume inode
	ino   uint64           // the inode number within vol
	// parent is the node ID of the folder the inode was first found in
	// (for ".." in listings; 1 when unknown).
	parent uint64

	// file is the opened data of a volume file (see volFile).
	file atomic.Pointer[openFile]
	// dir is the listing of a folder while the kernel reads it (see
	// listing).
	dir atomic.Pointer[dirListing]
}

// openFile is the result of opening a volume file once.
type openFile struct {
	f   volume.File
	err error
}

// mountedFS is one file system (volume.FS) of the mount.
type mountedFS struct {
	id uint64
	fs volume.FS
	// data places the volume's bytes in files (nil: not known).
	data checkpoint.FileMapper
	node *checkpoint.Node // the plain node it is rendered in place of
	// overflow numbers the inodes whose number is too large (see above).
	overflow sync.Map // ino -> node ID
}

// table holds the inodes the kernel knows, and what numbers plain nodes
// and file systems have.
type table struct {
	mu     sync.RWMutex
	inodes map[uint64]*inode

	plainMu  sync.Mutex
	plainIDs map[*checkpoint.Node]uint64
	volumes  map[*checkpoint.Node]*mountedFS
	nextID   uint64 // next plain node ID
	nextVol  uint64
	nextOver atomic.Uint64
}

func newTable() *table {
	return &table{inodes: map[uint64]*inode{}, plainIDs: map[*checkpoint.Node]uint64{},
		volumes: map[*checkpoint.Node]*mountedFS{}, nextID: fuse.FUSE_ROOT_ID, nextVol: 1}
}

// len is the number of inodes the kernel holds.
func (t *table) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.inodes)
}

// get returns the inode with node ID id, or nil.
func (t *table) get(id uint64) *inode {
	t.mu.RLock()
	in := t.inodes[id]
	t.mu.RUnlock()
	return in
}

// ref counts one more kernel reference to the inode with node ID id,
// making it with mk when the kernel holds none yet.
func (t *table) ref(id uint64, mk func() *inode) *inode {
	t.mu.Lock()
	defer t.mu.Unlock()
	in := t.inodes[id]
	if in == nil {
		in = mk()
		in.id = id
		t.inodes[id] = in
	}
	in.nlookup++
	return in
}

// forget drops n kernel references to node id; the inode leaves the table
// when none is left. The root is never dropped.
func (t *table) forget(id, n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	in := t.inodes[id]
	if in == nil {
		return
	}
	if n >= in.nlookup {
		in.nlookup = 0
	} else {
		in.nlookup -= n
	}
	if in.nlookup == 0 && id != fuse.FUSE_ROOT_ID {
		delete(t.inodes, id)
	}
}

// plainID is the node ID of plain node n (a file system node's root is a
// volume inode: see volumeOf).
func (t *table) plainID(n *checkpoint.Node) uint64 {
	t.plainMu.Lock()
	defer t.plainMu.Unlock()
	id, ok := t.plainIDs[n]
	if !ok {
		id = t.nextID
		t.nextID++
		t.plainIDs[n] = id
	}
	return id
}

// volumeOf is the mounted file system of node n (n.FS != nil).
func (t *table) volumeOf(n *checkpoint.Node) *mountedFS {
	t.plainMu.Lock()
	defer t.plainMu.Unlock()
	v := t.volumes[n]
	if v == nil {
		v = &mountedFS{id: t.nextVol, fs: n.FS, node: n}
		v.data, _ = n.FSData.(checkpoint.FileMapper)
		t.nextVol++
		t.volumes[n] = v
	}
	return v
}

// volumeID is the node ID of inode ino of v.
func (t *table) volumeID(v *mountedFS, ino uint64) uint64 {
	if ino < 1<<volumeShift && v.id <= maxVolumes {
		return v.id<<volumeShift | ino
	}
	if id, ok := v.overflow.Load(ino); ok {
		return id.(uint64)
	}
	id, _ := v.overflow.LoadOrStore(ino, overflowBase+t.nextOver.Add(1))
	return id.(uint64)
}
