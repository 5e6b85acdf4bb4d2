// Package volume describes what is inside a virtual disk: partitions and the
// file systems on them, read in-process through an io.ReaderAt.
//
// Each file-system reader lives in its own sub-package (volume/ntfs,
// volume/fat, volume/ext4) and implements FS. Readers are read-only, safe
// for concurrent use, and never panic on corrupt input: damaged structures
// surface as errors wrapping ErrCorrupt for the affected inode only.
package volume

import (
	"errors"
	"io"
	"io/fs"
	"time"
)

// Errors returned by file-system readers. Wrap them with %w so callers can
// test with errors.Is.
var (
	// ErrCorrupt marks a damaged on-disk structure.
	ErrCorrupt = errors.New("corrupt file system structure")
	// ErrNotFound is returned by Lookup for a missing name.
	ErrNotFound = fs.ErrNotExist
	// ErrNotDir is returned when a directory operation targets a non-directory.
	ErrNotDir = errors.New("not a directory")
	// ErrUnsupported marks a feature the reader does not implement.
	ErrUnsupported = errors.New("unsupported file system feature")
	// ErrUnknownFS is returned by Detect when no reader recognises the data.
	ErrUnknownFS = errors.New("no supported file system found")
)

// Entry is one name in a directory.
type Entry struct {
	Name string      // the name as stored, converted to UTF-8
	Ino  uint64      // the inode (NTFS: MFT record number; FAT: a synthetic id)
	Mode fs.FileMode // type bits only (fs.ModeDir, fs.ModeSymlink, 0 for regular)
}

// Attr describes one inode.
type Attr struct {
	Ino   uint64
	Mode  fs.FileMode // type bits and permission bits
	Size  int64       // logical size in bytes (symlink: target length)
	Nlink uint32
	Uid   uint32
	Gid   uint32
	Mtime time.Time // last data modification
	Atime time.Time // last access
	Ctime time.Time // last metadata change (NTFS: MFT record change time)
	Btime time.Time // creation (zero if the file system has none)
	// Alloc is the number of bytes allocated on disk (for du; may be 0).
	Alloc int64
}

// File is an open regular file (or alternate data stream).
type File interface {
	io.ReaderAt
	Size() int64
}

// FS is a read-only file system.
type FS interface {
	// Type names the file system: "ntfs", "fat12", "fat16", "fat32", "ext4".
	Type() string
	// Label is the volume label, or "" if none.
	Label() string
	// Root is the inode of the root directory.
	Root() uint64
	// CaseInsensitive reports whether Lookup ignores letter case (NTFS, FAT).
	CaseInsensitive() bool
	// Stat returns the attributes of an inode.
	Stat(ino uint64) (Attr, error)
	// ReadDir lists a directory without "." and "..", sorted by name.
	ReadDir(ino uint64) ([]Entry, error)
	// Lookup finds one name in a directory.
	Lookup(dir uint64, name string) (Entry, error)
	// Open opens the unnamed data of a regular file.
	Open(ino uint64) (File, error)
	// Readlink returns a symlink's target (NTFS: the reparse point's
	// substitute name made relative where possible).
	Readlink(ino uint64) (string, error)
	// Streams lists the names of an inode's alternate data streams (NTFS
	// only; others return nil).
	Streams(ino uint64) ([]string, error)
	// OpenStream opens a named alternate data stream.
	OpenStream(ino uint64, name string) (File, error)
}

// Extent places part of a file's data on the volume.
type Extent struct {
	// Logical is the offset of the extent's first byte in the file (or,
	// for a structure such as an NTFS record, in that structure).
	Logical int64
	// Physical is the byte offset on the volume where the extent is
	// stored, or -1 for a hole: nothing is stored and it reads as zeros.
	Physical int64
	// Length is the extent's length in bytes.
	Length int64
}

// Extenter is implemented by file systems that can tell where a file's
// data is stored. It is optional; `ckptfs diff` uses it to skip reading
// files whose bytes cannot differ between two checkpoints.
type Extenter interface {
	// Extents returns where the unnamed data of inode ino is read from,
	// in file order. Two reads of ino return the same bytes whenever its
	// size and extents are the same and the volume holds the same bytes
	// under every extent. Data kept inside metadata (NTFS resident data)
	// is reported as the extent of the structure that holds it.
	Extents(ino uint64) ([]Extent, error)
}

// DataMapper is implemented by files (volume.File) that can tell where
// runs of their bytes lie verbatim on the volume. It is optional; the
// mount uses it to answer reads of such files without copying them.
type DataMapper interface {
	// MapData appends to dst the pieces of bytes [off, off+n) of the file
	// in order, Logical being the offset in the file: each piece lies
	// verbatim at Physical on the volume, or reads as zeros (Physical
	// -1). ok is false when some of the range is not stored verbatim
	// (compressed, kept inside metadata, …) or lies past the end of the
	// file: read it with ReadAt.
	MapData(off, n int64, dst []Extent) (out []Extent, ok bool)
}

// UnixPermissions is implemented by file systems that store Unix
// permission bits and owners (ext2/3/4, XFS): their Attr.Mode permission bits,
// Uid and Gid are the file system's own. Elsewhere (NTFS, FAT) the reader
// makes them up, and they say nothing about the files.
type UnixPermissions interface {
	// HasUnixPermissions reports whether the file system stores them.
	HasUnixPermissions() bool
}

// HasUnixPermissions reports whether f stores Unix permission bits and
// owners (see UnixPermissions).
func HasUnixPermissions(f FS) bool {
	u, ok := f.(UnixPermissions)
	return ok && u.HasUnixPermissions()
}

// ReadFull reads len(p) bytes at off; a short read is an error
// (io.ErrUnexpectedEOF when r gave no other).
func ReadFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
