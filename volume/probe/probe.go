// Package probe recognises the file system in a volume and opens it with
// the matching reader (NTFS, FAT, ext2/3/4, XFS).
//
// It lives apart from package volume so that the readers can import
// volume while this dispatcher imports the readers.
package probe

import (
	"fmt"
	"io"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/ext4"
	"github.com/ckptfs/ckptfs/volume/fat"
	"github.com/ckptfs/ckptfs/volume/ntfs"
	"github.com/ckptfs/ckptfs/volume/xfs"
)

type reader struct {
	name  string
	probe func(io.ReaderAt) bool
	open  func(io.ReaderAt, int64) (volume.FS, error)
}

// readers are tried in this order.
var readers = []reader{
	{"ntfs", ntfs.Probe, func(r io.ReaderAt, n int64) (volume.FS, error) { return nilOr(ntfs.Open(r, n)) }},
	{"fat", fat.Probe, func(r io.ReaderAt, n int64) (volume.FS, error) { return nilOr(fat.Open(r, n)) }},
	{"ext4", ext4.Probe, func(r io.ReaderAt, n int64) (volume.FS, error) { return nilOr(ext4.Open(r, n)) }},
	{"xfs", xfs.Probe, func(r io.ReaderAt, n int64) (volume.FS, error) { return nilOr(xfs.Open(r, n)) }},
}

// nilOr turns a typed nil pointer into a nil interface on error.
func nilOr[T volume.FS](fs T, err error) (volume.FS, error) {
	if err != nil {
		return nil, err
	}
	return fs, nil
}

// Open opens the file system in r, a volume of size bytes. Every reader
// whose signature check passes is tried in turn (NTFS, FAT, ext4, XFS); the
// first that opens the volume wins. If a signature matched but no reader
// could open the volume, the first reader's error is returned; if none
// matched, the error is volume.ErrUnknownFS.
func Open(r io.ReaderAt, size int64) (volume.FS, error) {
	var firstErr error
	for _, rd := range readers {
		if !rd.probe(r) {
			continue
		}
		fsys, err := rd.open(r, size)
		if err == nil {
			return fsys, nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("probe: looks like %s: %w", rd.name, err)
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, volume.ErrUnknownFS
}
