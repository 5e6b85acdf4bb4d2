package flatten_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/chain/flatten"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// size leaves the last block short; Generate writes 12 extents into the
// base, which leave most of the disk a hole.
const size = 9<<20 + 4096

func open(t *testing.T) (*chain.Chain, vhdxtest.Chain, []byte) {
	t.Helper()
	dir := t.TempDir()
	gen := vhdxtest.Generate(t, dir, "Disk", size, 3, 11)
	testutil.Unchanged(t, gen.Paths...)
	c, err := chain.Open(gen.Leaf(), chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	all := gen.Contents()
	return c, gen, all[len(all)-1]
}

func TestRawAndStream(t *testing.T) {
	c, _, want := open(t)
	out := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	var done int64
	if err := flatten.Raw(c, f, flatten.Options{Progress: func(n int64) { done += n }}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Errorf("Raw: %d bytes (%v) differ from the model", len(got), err)
	}
	if done != size {
		t.Errorf("Raw: progress told %d bytes, want %d", done, size)
	}
	if st, err := os.Stat(out); err == nil {
		if alloc := allocated(t, out); alloc >= st.Size() {
			t.Errorf("Raw: %d of %d bytes allocated: not sparse", alloc, st.Size())
		}
	}
	var buf bytes.Buffer
	if err := flatten.Stream(c, &buf, flatten.Options{}); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Stream: %d bytes (%v) differ from the model", buf.Len(), err)
	}
}

func TestVHDX(t *testing.T) {
	c, gen, want := open(t)
	out := filepath.Join(t.TempDir(), "flat.vhdx")
	if err := flatten.VHDX(c, out, disk.MiB, flatten.Options{}); err != nil {
		t.Fatal(err)
	}
	f, err := disk.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata.HasParent || f.VirtualSize() != size || f.BlockSize() != disk.MiB || f.Metadata.VirtualDiskID != c.Leaf().(*disk.File).Metadata.VirtualDiskID {
		t.Errorf("flattened file: parent %v, size %d, block %d", f.Metadata.HasParent, f.VirtualSize(), f.BlockSize())
	}
	fc, err := chain.Open(out, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	got := make([]byte, size)
	if _, err := fc.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("flattened disk differs from the model (%v)", err)
	}
	// Only blocks holding data are allocated.
	held := int64(0)
	for b := int64(0); b*disk.MiB < size; b++ {
		if !bytes.Equal(want[b*disk.MiB:min((b+1)*disk.MiB, size)], make([]byte, min(disk.MiB, size-b*disk.MiB))) {
			held++
		}
	}
	if n := f.StateCounts()[disk.BlockFullyPresent]; n != held {
		t.Errorf("%d blocks allocated, want %d", n, held)
	}
	// An existing file is not replaced, a file of the chain never.
	if err := flatten.VHDX(c, out, disk.MiB, flatten.Options{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("VHDX over an existing file: %v", err)
	}
	if err := flatten.VHDX(c, gen.Paths[0], disk.MiB, flatten.Options{}); !errors.Is(err, flatten.ErrSourceFile) {
		t.Errorf("VHDX over the base: %v", err)
	}
	link := filepath.Join(t.TempDir(), "leaf-link.avhdx")
	if err := os.Link(gen.Leaf(), link); err != nil {
		t.Fatal(err)
	}
	if err := flatten.CheckOutput(c, link); !errors.Is(err, flatten.ErrSourceFile) {
		t.Errorf("CheckOutput of a hard link to the leaf: %v", err)
	}
}

// allocated is the number of bytes the file at p has on disk.
func allocated(t *testing.T, p string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
