// Package fstest holds test helpers shared by the file-system readers.
package fstest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/ckptfs/ckptfs/volume"
)

// PadReader serves Data followed by zeros up to Size: fuzz seeds can be
// image prefixes stored without their trailing zeros.
type PadReader struct {
	Data []byte
	Size int64
}

// ReadAt implements io.ReaderAt.
func (p PadReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= p.Size {
		return 0, io.EOF
	}
	n := len(b)
	if int64(n) > p.Size-off {
		n = int(p.Size - off)
	}
	clear(b[:n])
	if off < int64(len(p.Data)) {
		copy(b[:n], p.Data[off:])
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// ConcurrentWalk walks the whole tree from 8 goroutines on a fresh FS and
// checks they all see the same thing.
func ConcurrentWalk(t testing.TB, fsys volume.FS) {
	t.Helper()
	results := make([]string, 8)
	var wg sync.WaitGroup
	for g := range results {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var sb strings.Builder
			var walkDir func(ino uint64, path string)
			walkDir = func(ino uint64, path string) {
				ents, err := fsys.ReadDir(ino)
				if err != nil {
					fmt.Fprintf(&sb, "%s: %v\n", path, err)
					return
				}
				for _, e := range ents {
					a, err := fsys.Stat(e.Ino)
					le, lerr := fsys.Lookup(ino, e.Name)
					fmt.Fprintf(&sb, "%s/%s %v %d %v %v %v\n", path, e.Name, a.Mode, a.Size, err, le == e, lerr)
					if e.Mode.IsDir() {
						walkDir(e.Ino, path+"/"+e.Name)
					}
				}
			}
			walkDir(fsys.Root(), "")
			results[g] = sb.String()
		}(g)
	}
	wg.Wait()
	for g := 1; g < len(results); g++ {
		if results[g] != results[0] {
			t.Fatalf("goroutine %d saw a different tree", g)
		}
	}
	if strings.Contains(results[0], "false") || strings.Count(results[0], "<nil>") == 0 {
		t.Fatalf("walk saw errors:\n%.2000s", results[0])
	}
}

// Walk visits everything in fsys with bounded effort (depth 8, budget
// entries): stat, lookup, readlink and a few reads of every file. Fuzz
// targets use it; it only has to not panic or hang.
func Walk(fsys volume.FS, ino uint64, depth int, budget *int) {
	if depth > 8 || *budget <= 0 {
		return
	}
	ents, err := fsys.ReadDir(ino)
	if err != nil {
		return
	}
	buf := make([]byte, 8192)
	for _, e := range ents {
		*budget--
		if *budget <= 0 {
			return
		}
		fsys.Stat(e.Ino)
		fsys.Lookup(ino, e.Name)
		fsys.Readlink(e.Ino)
		if e.Mode.IsDir() {
			Walk(fsys, e.Ino, depth+1, budget)
			continue
		}
		if fl, err := fsys.Open(e.Ino); err == nil {
			fl.ReadAt(buf, 0)
			fl.ReadAt(buf, fl.Size()/2)
			fl.ReadAt(buf, fl.Size()-100)
		}
	}
}

// FuzzOpen fuzzes a reader's open function with image prefixes: the rest
// of a 64 KiB volume is zeros, so seeds (testdata/fuzz/FuzzOpen) are
// stored without their trailing zeros. What opens is walked (Walk) with a
// budget; it only has to not panic or hang.
func FuzzOpen[F volume.FS](f *testing.F, open func(io.ReaderAt, int64) (F, error)) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := PadReader{Data: data, Size: max(int64(len(data)), 64<<10)}
		fsys, err := open(r, r.Size)
		if err != nil {
			return
		}
		budget := 2000
		Walk(fsys, fsys.Root(), 0, &budget)
	})
}
