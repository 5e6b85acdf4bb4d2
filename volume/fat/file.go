package fat

import (
	"fmt"
	"io"
	"io/fs"
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

// Open opens regular file ino for reading.
func (f *FS) Open(ino uint64) (volume.File, error) {
	if ino == RootIno {
		return nil, fmt.Errorf("fat: inode %d is a directory: %w", ino, fs.ErrInvalid)
	}
	d, err := f.entryAt(ino)
	if err != nil {
		return nil, err
	}
	if d.attr&attrDir != 0 {
		return nil, fmt.Errorf("fat: inode %d is a directory: %w", ino, fs.ErrInvalid)
	}
	file := &File{fs: f, size: int64(d.size)}
	if d.size == 0 {
		return file, nil
	}
	n := (int64(d.size) + f.cluster - 1) / f.cluster
	if n > int64(f.maxCluster) {
		return nil, fmt.Errorf("fat: inode %d: size %d larger than the volume: %w", ino, d.size, volume.ErrCorrupt)
	}
	runs, err := f.chain(d.cluster, uint32(n), true)
	if err != nil {
		return nil, fmt.Errorf("fat: inode %d: %w", ino, err)
	}
	file.runs = make([]fileRun, len(runs))
	var pos int64
	for i, r := range runs {
		file.runs[i] = fileRun{off: pos, disk: f.clusterOff(r.first), n: int64(r.n) * f.cluster}
		pos += file.runs[i].n
	}
	return file, nil
}

// Readlink fails: FAT has no symbolic links.
func (f *FS) Readlink(ino uint64) (string, error) {
	return "", fmt.Errorf("fat: inode %d is not a symlink: %w", ino, fs.ErrInvalid)
}

// Streams returns nil: FAT has no alternate data streams.
func (f *FS) Streams(ino uint64) ([]string, error) { return nil, nil }

// OpenStream fails: FAT has no alternate data streams.
func (f *FS) OpenStream(ino uint64, name string) (volume.File, error) {
	return nil, fmt.Errorf("fat: stream %q of inode %d: %w", name, ino, volume.ErrNotFound)
}

// fileRun maps file bytes [off, off+n) to volume bytes [disk, disk+n).
type fileRun struct {
	off, disk, n int64
}

// File is an open FAT file. It is safe for concurrent use.
type File struct {
	fs   *FS
	size int64
	runs []fileRun
}

// Size returns the file size in bytes.
func (fl *File) Size() int64 { return fl.size }

// ReadAt reads len(p) bytes at off, one ReadAt per run of contiguous
// clusters.
func (fl *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fat: negative offset %d: %w", off, fs.ErrInvalid)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	i := sort.Search(len(fl.runs), func(i int) bool { return fl.runs[i].off+fl.runs[i].n > off })
	n := 0
	for n < len(p) && i < len(fl.runs) {
		r := fl.runs[i]
		d := off + int64(n) - r.off
		m := min(int64(len(p)-n), r.n-d)
		if err := volume.ReadFull(fl.fs.r, p[n:n+int(m)], r.disk+d); err != nil {
			return n, fmt.Errorf("fat: reading at %d: %w", r.disk+d, err)
		}
		n += int(m)
		i++
	}
	if n < len(p) {
		return n, fmt.Errorf("fat: file data ends at %d: %w", off+int64(n), volume.ErrCorrupt)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}
