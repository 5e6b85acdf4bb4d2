package xfs

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

const benchEntries = 100000

func benchName(i int) string { return fmt.Sprintf("file_number_%06d_of_the_big_directory", i) }

// bigDirImage is a v5 image whose directory "big" holds 100 000 empty
// files (a node directory), made through a kernel mount.
func bigDirImage(b *testing.B) *image {
	return getImage(b, "bench100k", func(dir string) (*image, error) {
		img := filepath.Join(dir, "fs.img")
		if err := mkfs(img, 512); err != nil {
			return nil, err
		}
		err := withMount(img, "", func(mnt string) error {
			d := filepath.Join(mnt, "big")
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			for i := 0; i < benchEntries; i++ {
				f, err := os.Create(filepath.Join(d, benchName(i)))
				if err != nil {
					return err
				}
				f.Close()
			}
			return nil
		})
		return &image{path: img}, err
	})
}

func benchFS(b *testing.B) (*FS, uint64) {
	fsys := openImage(b, bigDirImage(b).path)
	e, err := fsys.Lookup(fsys.Root(), "big")
	if err != nil {
		b.Fatal(err)
	}
	return fsys, e.Ino
}

// BenchmarkReadDir100k lists the 100 000-entry directory: cold parses it
// (fresh FS each time), warm copies the cached listing.
func BenchmarkReadDir100k(b *testing.B) {
	img := bigDirImage(b)
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fsys := openImage(b, img.path)
			e, _ := fsys.Lookup(fsys.Root(), "big")
			ents, err := fsys.ReadDir(e.Ino)
			if err != nil || len(ents) != benchEntries {
				b.Fatalf("%d entries, %v", len(ents), err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		fsys, dir := benchFS(b)
		fsys.ReadDir(dir)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if ents, _ := fsys.ReadDir(dir); len(ents) != benchEntries {
				b.Fatal(len(ents))
			}
		}
	})
}

// BenchmarkLookup100k looks up random names: through the hash index (the
// listing never loaded; index and data blocks come from the block cache
// when they are there) and through a loaded listing.
func BenchmarkLookup100k(b *testing.B) {
	names := make([]string, 4096)
	r := rand.New(rand.NewSource(1))
	for i := range names {
		names[i] = benchName(r.Intn(benchEntries))
	}
	b.Run("index", func(b *testing.B) {
		fsys, dir := benchFS(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := fsys.Lookup(dir, names[i%len(names)]); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if _, ok := fsys.dirCache.Get(dir); ok {
			b.Fatal("the listing was loaded")
		}
	})
	b.Run("listing", func(b *testing.B) {
		fsys, dir := benchFS(b)
		fsys.ReadDir(dir)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := fsys.Lookup(dir, names[i%len(names)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStat100k stats random inodes of the directory (more than the
// inode cache holds).
func BenchmarkStat100k(b *testing.B) {
	fsys, dir := benchFS(b)
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewSource(2))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fsys.Stat(ents[r.Intn(len(ents))].Ino); err != nil {
			b.Fatal(err)
		}
	}
}
