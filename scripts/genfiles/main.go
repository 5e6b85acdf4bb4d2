// Command genfiles writes a many-file tree for scripts/bench-files:
// DIRS folders "dir NN" of FILES files "file NNN" each, of pseudo-random
// sizes between -min and -max bytes and pseudo-random content, all
// determined by -seed. With -change K it rewrites K of the files of an
// existing tree instead (half with new content of the same size, half
// with a new size), spread over the folders, and prints their paths.
//
//	genfiles -dirs 100 -files 1000 -min 200 -max 6000 DIR
//	genfiles -dirs 100 -files 1000 -change 200 DIR
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

func main() {
	dirs := flag.Int("dirs", 100, "number of folders")
	files := flag.Int("files", 1000, "files per folder")
	minSize := flag.Int("min", 200, "smallest file size in bytes")
	maxSize := flag.Int("max", 6000, "largest file size in bytes")
	seed := flag.Uint64("seed", 1, "seed of sizes and contents")
	change := flag.Int("change", 0, "rewrite this many files of an existing tree instead")
	flag.Parse()
	if flag.NArg() != 1 || *dirs <= 0 || *files <= 0 || *minSize < 0 || *maxSize < *minSize {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *dirs, *files, *minSize, *maxSize, *seed, *change); err != nil {
		fmt.Fprintln(os.Stderr, "genfiles:", err)
		os.Exit(1)
	}
}

func path(root string, d, f int) string {
	return filepath.Join(root, fmt.Sprintf("dir %02d", d), fmt.Sprintf("file %03d", f))
}

func run(root string, dirs, files, minSize, maxSize int, seed uint64, change int) error {
	rng := rand.New(rand.NewPCG(seed, uint64(change)))
	buf := make([]byte, maxSize+1)
	write := func(p string, size int) error {
		for i := range size {
			buf[i] = byte(rng.Uint32())
		}
		return os.WriteFile(p, buf[:size], 0o644)
	}
	if change > 0 {
		total := dirs * files
		if change > total {
			return fmt.Errorf("-change %d: the tree has only %d files", change, total)
		}
		// Every (total/change)-th file, so that changes spread over folders.
		step := total / change
		for i := range change {
			n := i * step
			p := path(root, n/files, n%files)
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			size := int(st.Size())
			if i%2 == 1 {
				size = minSize + (size-minSize+1)%(maxSize-minSize+1)
			}
			if err := write(p, size); err != nil {
				return err
			}
			fmt.Println(p)
		}
		return nil
	}
	for d := range dirs {
		if err := os.MkdirAll(filepath.Dir(path(root, d, 0)), 0o755); err != nil {
			return err
		}
		for f := range files {
			if err := write(path(root, d, f), minSize+rng.IntN(maxSize-minSize+1)); err != nil {
				return err
			}
		}
	}
	return nil
}
