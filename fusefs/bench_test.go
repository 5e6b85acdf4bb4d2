package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/fusefs"
)

// BenchmarkMountRead reads a 64 MiB disk sequentially through a real
// mount with 1 MiB reads: data in one file (1 layer) and data spread over
// four files in 64 KiB runs (4 partial), spliced (the default) and copied
// through the daemon (NoSplice), through the page cache (its pages
// dropped before each pass, so every pass is a first read) and with
// direct I/O. scripts/bench compares whole mounts with vhdimount.
func BenchmarkMountRead(b *testing.B) {
	const size = 64 << 20
	dir := b.TempDir()
	// 1 layer: a base full of data.
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: size, BlockSize: 2 * disk.MiB})
	buf := make([]byte, size)
	vhdxtest.Fill(buf, 1)
	base.Write(0, buf)
	one := filepath.Join(dir, "one", "Disk.vhdx")
	os.MkdirAll(filepath.Dir(one), 0o755)
	vhdxtest.Save(b, base, one)
	// 4 partial: the same base and three children each holding every
	// fourth 64 KiB run.
	parent, parentPath := base, filepath.Join(dir, "four", "Disk.vhdx")
	os.MkdirAll(filepath.Dir(parentPath), 0o755)
	vhdxtest.Save(b, base, parentPath)
	for i := 1; i < 4; i++ {
		child := vhdxtest.New(vhdxtest.Options{VirtualSize: size, BlockSize: 2 * disk.MiB, Parent: parent, ParentPath: parentPath})
		for off := int64(i) * 64 << 10; off < size; off += 4 * 64 << 10 {
			run := make([]byte, 64<<10)
			vhdxtest.Fill(run, uint64(off)+uint64(i))
			child.Write(off, run)
		}
		p := filepath.Join(dir, "four", vhdxtest.ChildName("Disk"))
		vhdxtest.Save(b, child, p)
		parent, parentPath = child, p
	}
	for _, c := range []struct{ name, leaf string }{{"1layer", one}, {"4partial", parentPath}} {
		ch, err := chain.Open(c.leaf, chain.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ch.Close() })
		raw := checkpoint.File("Disk.raw", chain.NewPrefetcher(ch, ch.Size()), ch.Size())
		for _, noSplice := range []bool{false, true} {
			for _, direct := range []bool{false, true} {
				name := fmt.Sprintf("%s/splice=%v/direct=%v", c.name, !noSplice, direct)
				b.Run(name, func(b *testing.B) {
					mnt, _ := mountServer(b, checkpoint.Dir("", raw), fusefs.Options{ReadAheadKB: fusefs.ReadAhead >> 10, DirectIO: direct, NoSplice: noSplice})
					f, err := os.Open(filepath.Join(mnt, "Disk.raw"))
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					p := make([]byte, 1<<20)
					b.SetBytes(size)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						// Drop the mount's cached pages: every pass is a
						// first read.
						if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						for off := int64(0); off < size; off += int64(len(p)) {
							if _, err := f.ReadAt(p, off); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
			}
		}
	}
}
