package checkpoint

import (
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/volume/partition"
)

// LayerWriter is a writable layer: *disk.Writer.
type LayerWriter interface {
	io.WriterAt
	Sync() error
}

// WritableDisk is the virtual disk at a point seen through a writable
// layer on top of it: reads come from Chain (whose top layer is W), writes
// go to W and drop what Chain cached about the written range.
type WritableDisk struct {
	Chain *chain.Chain
	W     LayerWriter
}

// ReadAt reads the disk.
func (d *WritableDisk) ReadAt(p []byte, off int64) (int, error) { return d.Chain.ReadAt(p, off) }

// WriteAt writes into the layer. A disk does not grow: writes past its end
// fail with ENOSPC, as a block device's do.
func (d *WritableDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if end := off + int64(len(p)); end > d.Chain.Size() {
		if off >= d.Chain.Size() {
			return 0, syscall.ENOSPC
		}
		n, err := d.WriteAt(p[:d.Chain.Size()-off], off)
		if err == nil {
			err = syscall.ENOSPC
		}
		return n, err
	}
	n, err := d.W.WriteAt(p, off)
	d.Chain.Invalidate(off, int64(len(p)))
	return n, err
}

// Sync makes every write durable.
func (d *WritableDisk) Sync() error { return d.W.Sync() }

// section is a writable window of a WritableDisk (a partition).
type section struct {
	d         *WritableDisk
	off, size int64
}

func (s section) ReadAt(p []byte, off int64) (int, error) {
	return io.NewSectionReader(s.d, s.off, s.size).ReadAt(p, off)
}

func (s section) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= s.size {
		return 0, syscall.ENOSPC
	}
	if rem := s.size - off; int64(len(p)) > rem {
		n, err := s.d.WriteAt(p[:rem], s.off+off)
		if err == nil {
			err = syscall.ENOSPC
		}
		return n, err
	}
	return s.d.WriteAt(p, s.off+off)
}

// WritablePointNode is the folder of a writable point: <disk>.raw and
// <disk>.partitions/<N>-<label>.raw, all writable. It shows no file-system
// folders: in-process readers cache what they read and would not see
// writes.
func WritablePointNode(name, diskName string, d *WritableDisk, mtime time.Time) *Node {
	raw := &Node{Name: diskName + ".raw", Mode: 0o644, Data: d, Writer: d, Sync: d.Sync, Size: d.Chain.Size(), Mtime: mtime,
		Disk: d.Chain, DiskLength: d.Chain.Size()}
	parts := &Node{Name: diskName + ".partitions", IsDir: true, Mode: 0o755, Mtime: mtime}
	parts.List = func() ([]*Node, error) {
		ps, err := partition.Read(d, d.Chain.Size(), int(d.Chain.Leaf().SectorSize()))
		if err != nil {
			return nil, fmt.Errorf("reading the partition table: %w", err)
		}
		var out []*Node
		for _, p := range ps {
			s := section{d, p.Start, p.Size}
			out = append(out, &Node{Name: fmt.Sprintf("%d-%s.raw", p.Number, p.Label()), Mode: 0o644, Data: s, Writer: s, Sync: d.Sync,
				Size: p.Size, Mtime: mtime, Disk: d.Chain, DiskOffset: p.Start, DiskLength: p.Size})
		}
		return out, nil
	}
	n := Dir(name, raw, parts)
	n.Mode, n.Mtime = 0o755, mtime
	return n
}
