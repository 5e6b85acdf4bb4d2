package fusefs

import (
	"errors"
	"io"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/volume"
)

// Alternate data streams (NTFS) are shown as extended attributes named
// "user.<stream>", as ntfs-3g's streams_interface=xattr does. Linux limits
// an attribute to 64 KiB: larger streams are left out of the list (copy
// them with `ckptfs cp`, which reads streams of any size).
const xattrPrefix = "user."

// maxXattr is Linux's XATTR_SIZE_MAX.
const maxXattr = 64 << 10

// ListXAttr implements fuse.RawFileSystem.
func (r *rawFS) ListXAttr(h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n := r.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	if n.vol == nil {
		return 0, fuse.OK
	}
	names, err := n.vol.fs.Streams(n.ino)
	if err != nil {
		return 0, r.errno(n, "listing streams", err)
	}
	var list []byte
	for _, s := range names {
		f, err := n.vol.fs.OpenStream(n.ino, s)
		if err != nil || f.Size() > maxXattr {
			continue
		}
		list = append(append(list, xattrPrefix+s...), 0)
	}
	if len(dest) == 0 {
		return uint32(len(list)), fuse.OK
	}
	if len(dest) < len(list) {
		return uint32(len(list)), fuse.ERANGE
	}
	return uint32(copy(dest, list)), fuse.OK
}

// GetXAttr implements fuse.RawFileSystem.
func (r *rawFS) GetXAttr(h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n := r.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	name, ok := strings.CutPrefix(attr, xattrPrefix)
	if !ok || name == "" || n.vol == nil {
		return 0, fuse.ENODATA
	}
	f, err := n.vol.fs.OpenStream(n.ino, name)
	if errors.Is(err, volume.ErrNotFound) || errors.Is(err, volume.ErrUnsupported) {
		return 0, fuse.ENODATA
	}
	if err != nil {
		return 0, r.errno(n, "opening stream "+name, err)
	}
	size := f.Size()
	if size > maxXattr {
		return 0, fuse.Status(syscall.E2BIG)
	}
	if len(dest) == 0 {
		return uint32(size), fuse.OK
	}
	if int64(len(dest)) < size {
		return uint32(size), fuse.ERANGE
	}
	m, err := f.ReadAt(dest[:size], 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(m) == size) {
		return 0, r.errno(n, "reading stream "+name, err)
	}
	return uint32(m), fuse.OK
}
