package ntfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// fragment prepares a nearly full volume whose only free space is holes of
// holeClusters clusters between still-allocated filler files, so that data
// written afterwards lands in thousands of small extents. ntfs-3g's
// allocator gives every file its own zone, so merely interleaving appends
// to several files does not fragment them on a roomy volume.
func fragment(t testing.TB, m *testutil.NTFS3G, holes int, holeBytes int) {
	t.Helper()
	must(t, os.Mkdir(m.Path("fill"), 0o755))
	chunk := make([]byte, holeBytes)
	for i := 0; i < 2*holes; i++ {
		writeFile(t, m.Path(fmt.Sprintf("fill/%05d", i)), chunk)
	}
	// Use up all remaining space.
	f, err := os.Create(m.Path("pad"))
	must(t, err)
	big := make([]byte, 1<<20)
	for _, n := range []int{1 << 20, 64 << 10, 4096, 512} {
		for {
			if _, err := f.Write(big[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling volume: %v", err)
				}
				break
			}
		}
	}
	must(t, f.Close())
	for i := 0; i < 2*holes; i += 2 {
		must(t, os.Remove(m.Path(fmt.Sprintf("fill/%05d", i))))
	}
}

// appendInterleaved appends to several files in turn, pieces of step bytes
// at a time, syncing now and then; it returns each file's content.
func appendInterleaved(t testing.TB, m *testutil.NTFS3G, names []string, size, step int) map[string][]byte {
	t.Helper()
	files := make([]*os.File, len(names))
	want := make(map[string][]byte)
	for i, n := range names {
		f, err := os.Create(m.Path(n))
		must(t, err)
		defer f.Close() // on failure; closed explicitly below
		files[i] = f
		want[n] = pattern(uint64(1000+i), size)
	}
	for off, k := 0, 0; off < size; off, k = off+step, k+1 {
		for i, f := range files {
			end := min(off+step, size)
			if _, err := f.Write(want[names[i]][off:end]); err != nil {
				t.Fatalf("append to %s at %d: %v", names[i], off, err)
			}
			if k%64 == 63 {
				must(t, f.Sync())
			}
		}
	}
	for _, f := range files {
		must(t, f.Close())
	}
	return want
}

// TestFragmented checks files with thousands of extents, whose runlists
// spill into extension records through an $ATTRIBUTE_LIST.
func TestFragmented(t *testing.T) {
	requireTools(t)
	t.Parallel()
	dir := t.TempDir()
	img := makeImage(t, dir, 64, "frag")
	m := mountImage(t, img, "big_writes")
	fragment(t, m, 2600, 4096)
	names := []string{"frag1", "frag2"}
	want := appendInterleaved(t, m, names, 1250*4096, 4096)
	must(t, m.Unmount())

	fsys := openImage(t, img)
	for _, name := range names {
		e, err := fsys.Lookup(5, name)
		must(t, err)
		n, err := fsys.inode(e.Ino)
		must(t, err)
		f, err := fsys.Open(e.Ino)
		must(t, err)
		s := f.(*stream)
		extents := 0
		for i, r := range s.runs {
			if i == 0 || r.lcn != s.runs[i-1].lcn+s.runs[i-1].n {
				extents++
			}
		}
		records := map[uint64]bool{}
		for _, a := range n.find(atData, "") {
			records[a.recNum] = true
		}
		t.Logf("%s: %d runs, %d extents, $DATA in %d records", name, len(s.runs), extents, len(records))
		if extents < 1000 {
			t.Errorf("%s: only %d extents; the test did not fragment the file", name, extents)
		}
		if n.first(atAttributeList) == nil || len(records) < 2 {
			t.Errorf("%s: no attribute list / extension records", name)
		}
		got, err := readAllOdd(f, 9)
		must(t, err)
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s: content differs", name)
		}
		got, err = readAllFast(f)
		must(t, err)
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s: content differs (1 MiB reads)", name)
		}
		st, err := fsys.Stat(e.Ino)
		must(t, err)
		if st.Size != int64(len(want[name])) || st.Alloc < st.Size {
			t.Errorf("%s: Stat size %d alloc %d", name, st.Size, st.Alloc)
		}
	}
	// The filler directory still lists the survivors.
	e, err := fsys.Lookup(5, "fill")
	must(t, err)
	ents, err := fsys.ReadDir(e.Ino)
	must(t, err)
	if len(ents) != 2600 {
		t.Errorf("fill has %d entries, want 2600", len(ents))
	}
}

// caseSwap inverts the case of every letter.
func caseSwap(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsUpper(r) {
			return unicode.ToLower(r)
		}
		return unicode.ToUpper(r)
	}, s)
}

// TestLargeDirectory lists a directory of 50 000 entries (5 000 with
// -short) and looks every one up with its case inverted.
func TestLargeDirectory(t *testing.T) {
	requireTools(t)
	t.Parallel()
	// 12 000 entries fill some 550 index blocks, a B-tree of three levels; the
	// 50 000 of a long run (CKPTFS_LONG=1) take ntfs-3g minutes.
	count := 12000
	switch {
	case testutil.Long():
		count = 50000
	case testing.Short():
		count = 5000
	}
	dir := t.TempDir()
	img := makeImage(t, dir, 256, "bigdir")
	m := mountImage(t, img)
	must(t, os.Mkdir(m.Path("big"), 0o755))
	suffixes := []string{"", " Grüße", "日本語", " жук", " Λάμδα", " with  spaces", "-ÆØÅ"}
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("Entry_%05d%s.txt", i, suffixes[i%len(suffixes)])
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < count; i += 4 {
				f, err := os.Create(m.Path("big/" + names[i]))
				if err != nil {
					errs <- err
					return
				}
				f.Close()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Oracle inode numbers for a sample.
	sample := map[string]uint64{}
	for i := 0; i < count; i += count / 200 {
		var st syscall.Stat_t
		must(t, syscall.Lstat(m.Path("big/"+names[i]), &st))
		sample[names[i]] = st.Ino
	}
	must(t, m.Unmount())
	t.Logf("created %d files in %v", count, time.Since(start))
	start = time.Now()

	fsys := openImage(t, img)
	d, err := fsys.Lookup(5, "BIG")
	must(t, err)
	ents, err := fsys.ReadDir(d.Ino)
	must(t, err)
	if len(ents) != count {
		t.Errorf("ReadDir returned %d entries, want %d", len(ents), count)
	}
	byName := make(map[string]uint64, len(ents))
	for _, e := range ents {
		byName[e.Name] = e.Ino
		if e.Mode != 0 {
			t.Errorf("%s: mode %v", e.Name, e.Mode)
		}
	}
	missing := 0
	for _, n := range names {
		if _, ok := byName[n]; !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d names missing from ReadDir", missing)
	}
	for n, ino := range sample {
		if byName[n] != ino {
			t.Errorf("%s: ino %d, ntfs-3g says %d", n, byName[n], ino)
		}
	}
	n, err := fsys.inode(d.Ino)
	must(t, err)
	idx, err := fsys.openIndex(n)
	must(t, err)
	t.Logf("index: %d bytes of index blocks; ReadDir took %v", idx.alloc.size, time.Since(start))
	start = time.Now()
	defer func() { t.Logf("%d lookups took %v", count+count/10, time.Since(start)) }()
	for i, name := range names {
		variants := []string{caseSwap(name)}
		if i%10 == 0 {
			variants = append(variants, name)
		}
		for _, v := range variants {
			e, err := fsys.Lookup(d.Ino, v)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", v, err)
			}
			if e.Ino != byName[name] || e.Name != name {
				t.Fatalf("Lookup(%q) = %+v, want %q ino %d", v, e, name, byName[name])
			}
		}
	}
	for _, v := range []string{"Entry_99999.txt", "Entry_0000", "", "zzz", "Entry_00001.txt.", "!"} {
		if _, err := fsys.Lookup(d.Ino, v); !errors.Is(err, volume.ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want ErrNotFound", v, err)
		}
	}
}

var benchImage struct {
	once sync.Once
	dir  string
	path string
	err  error
	want []byte
}

// TestMain removes the benchmark image, which outlives single runs.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchImage.dir != "" {
		os.RemoveAll(benchImage.dir)
	}
	os.Exit(code)
}

// BenchmarkFragmentedRead reads a 256 MiB file made of 4096 extents of
// 64 KiB through the reader, 1 MiB per ReadAt.
func BenchmarkFragmentedRead(b *testing.B) {
	requireTools(b)
	benchImage.once.Do(func() {
		dir, err := os.MkdirTemp("", "ntfsbench")
		if err != nil {
			benchImage.err = err
			return
		}
		benchImage.dir = dir
		img := makeImage(b, dir, 640, "bench")
		m := mountImage(b, img, "big_writes")
		fragment(b, m, 4110, 64<<10)
		want := appendInterleaved(b, m, []string{"big"}, 256<<20, 64<<10)
		benchImage.want = want["big"]
		if err := m.Unmount(); err != nil {
			benchImage.err = err
		}
		benchImage.path = img
	})
	if benchImage.err != nil {
		b.Fatal(benchImage.err)
	}
	fsys := openImage(b, benchImage.path)
	e, err := fsys.Lookup(5, "big")
	if err != nil {
		b.Fatal(err)
	}
	f, err := fsys.Open(e.Ino)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d runs", len(f.(*stream).runs))
	buf := make([]byte, 1<<20)
	b.SetBytes(f.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := int64(0); off < f.Size(); off += int64(len(buf)) {
			n, err := f.ReadAt(buf, off)
			if n != len(buf) && err != nil {
				b.Fatal(err)
			}
			if i == 0 && !bytes.Equal(buf[:n], benchImage.want[off:off+int64(n)]) {
				b.Fatalf("content differs at %d", off)
			}
		}
	}
}

// TestFragmentedMFT grows the MFT into one-cluster holes until $MFT itself
// needs an attribute list, then reads every file through it.
func TestFragmentedMFT(t *testing.T) {
	requireTools(t)
	t.Parallel()
	dir := t.TempDir()
	img := makeImage(t, dir, 64, "fragmft")
	m := mountImage(t, img, "big_writes")
	fragment(t, m, 3000, 4096)
	must(t, os.Mkdir(m.Path("many"), 0o755))
	const files = 9000
	for i := 0; i < files; i++ {
		writeFile(t, m.Path(fmt.Sprintf("many/%05d", i)), []byte(fmt.Sprint("file ", i)))
	}
	must(t, m.Unmount())

	fsys := openImage(t, img)
	n, err := fsys.inode(0)
	must(t, err)
	extents := 0
	for i, r := range fsys.mft.runs {
		if i == 0 || r.lcn != fsys.mft.runs[i-1].lcn+fsys.mft.runs[i-1].n {
			extents++
		}
	}
	t.Logf("$MFT: %d records, %d extents, attribute list: %v", fsys.nrecords, extents, n.first(atAttributeList) != nil)
	if extents < 100 {
		t.Errorf("$MFT has only %d extents", extents)
	}
	d, err := fsys.Lookup(5, "many")
	must(t, err)
	ents, err := fsys.ReadDir(d.Ino)
	must(t, err)
	if len(ents) != files {
		t.Fatalf("ReadDir: %d entries, want %d", len(ents), files)
	}
	for i, e := range ents {
		f, err := fsys.Open(e.Ino)
		must(t, err)
		got, err := readAllFast(f)
		must(t, err)
		if want := fmt.Sprint("file ", i); string(got) != want {
			t.Fatalf("%s: %q, want %q", e.Name, got, want)
		}
	}
}
