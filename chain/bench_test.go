package chain

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
)

// benchChain builds a chain of `layers` files over a 256 MiB disk. With
// partial set (32 MiB disk), every child writes 4 KiB stripes spread over
// every block (all blocks PARTIALLY_PRESENT); otherwise the children are
// empty and all data lives in the base.
func benchChain(b *testing.B, layers int, partial bool) *Chain {
	b.Helper()
	size := int64(256 * disk.MiB)
	if partial {
		// Every child allocates every block: keep the files small.
		size = 32 * disk.MiB
	}
	dir := b.TempDir()
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: size, BlockSize: 32 * disk.MiB})
	data := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(data)
	base.Write(0, data)
	prev, prevPath := base, filepath.Join(dir, "base.vhdx")
	if err := base.Save(prevPath); err != nil {
		b.Fatal(err)
	}
	for i := 1; i < layers; i++ {
		im := vhdxtest.New(vhdxtest.Options{Parent: prev, ParentPath: prevPath, BlockSize: disk.MiB})
		if partial {
			sector := make([]byte, 4096)
			for off := int64(i) * 4096; off < size; off += 4096 * int64(layers) {
				im.Write(off, sector)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("l%d.avhdx", i))
		if err := im.Save(p); err != nil {
			b.Fatal(err)
		}
		prev, prevPath = im, p
	}
	c, err := Open(prevPath, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkReadAt(b *testing.B) {
	for _, partial := range []bool{false, true} {
		for _, layers := range []int{1, 8, 64} {
			if partial && layers == 1 {
				continue
			}
			kind := "data-in-base"
			if partial {
				kind = "all-partial"
			}
			c := benchChain(b, layers, partial)
			b.Run(fmt.Sprintf("seq1M/%s/layers=%d", kind, layers), func(b *testing.B) {
				buf := make([]byte, disk.MiB)
				b.SetBytes(disk.MiB)
				off := int64(0)
				for i := 0; i < b.N; i++ {
					if _, err := c.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
					off = (off + disk.MiB) % c.Size()
				}
			})
			b.Run(fmt.Sprintf("rand4K/%s/layers=%d", kind, layers), func(b *testing.B) {
				buf := make([]byte, 4096)
				b.SetBytes(4096)
				rng := rand.New(rand.NewSource(2))
				for i := 0; i < b.N; i++ {
					if _, err := c.ReadAt(buf, rng.Int63n(c.Size()/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("seq128K-prefetch/%s/layers=%d", kind, layers), func(b *testing.B) {
				p := NewPrefetcher(c, c.Size())
				buf := make([]byte, 128<<10)
				b.SetBytes(128 << 10)
				off := int64(0)
				for i := 0; i < b.N; i++ {
					if _, err := p.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
					off = (off + 128<<10) % c.Size()
				}
			})
			b.Run(fmt.Sprintf("seq128K-direct/%s/layers=%d", kind, layers), func(b *testing.B) {
				buf := make([]byte, 128<<10)
				b.SetBytes(128 << 10)
				off := int64(0)
				for i := 0; i < b.N; i++ {
					if _, err := c.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
					off = (off + 128<<10) % c.Size()
				}
			})
		}
	}
}
