package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC", "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

var mtime = time.Date(2021, 3, 4, 5, 6, 8, 0, time.UTC)

// makeTree writes the test tree under dir and returns the path of the big
// file.
func makeTree(t *testing.T, dir string, cluster int) {
	t.Helper()
	files := map[string][]byte{
		"lower.txt":                        []byte("hi\n"),
		"UPPER.TXT":                        []byte("upper"),
		"Mixed Case Long Name.TXT":         fstest.Pattern(1, 3*cluster+17),
		"Ünïcödé 日本語.txt":                  []byte("non-ascii"),
		"empty":                            nil,
		"exact":                            fstest.Pattern(2, cluster),
		"sub/deeper/a.b":                   fstest.Pattern(3, 100),
		"sub/deeper/A name that is long.x": fstest.Pattern(4, 5000),
	}
	for i := 0; i < 300; i++ { // a directory spanning several clusters
		files[fmt.Sprintf("many/file number %03d.dat", i)] = fstest.Pattern(int64(100+i), i)
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

type image struct {
	path    string
	src     string
	big     []byte
	cluster int
}

// buildImage makes a FAT image of the given FAT size, sector size and
// cluster size holding makeTree's files and a fragmented big file.
func buildImage(t *testing.T, fatBits, sector, spc int, sizeMiB int64) image {
	t.Helper()
	testutil.Need(t, "mkfs.vfat", "mcopy", "mdel")
	dir := t.TempDir()
	img := filepath.Join(dir, "fat.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(sizeMiB << 20)
	f.Close()
	run(t, "mkfs.vfat", "-F", fmt.Sprint(fatBits), "-S", fmt.Sprint(sector), "-s", fmt.Sprint(spc), "-n", "My Label", img)
	cluster := sector * spc
	src := filepath.Join(dir, "src")
	makeTree(t, src, cluster)
	entries, _ := os.ReadDir(src)
	var args []string
	for _, e := range entries {
		args = append(args, filepath.Join(src, e.Name()))
	}
	run(t, "mcopy", append([]string{"-s", "-m", "-i", img}, append(args, "::/")...)...)
	// Fragment the free space: 40 one-cluster files, every other one removed.
	frag := filepath.Join(dir, "frag")
	os.MkdirAll(frag, 0o755)
	var fillers []string
	for i := 0; i < 40; i++ {
		p := filepath.Join(frag, fmt.Sprintf("f%02d", i))
		os.WriteFile(p, fstest.Pattern(int64(i), cluster), 0o644)
		os.Chtimes(p, mtime, mtime)
		fillers = append(fillers, p)
	}
	run(t, "mcopy", append([]string{"-m", "-i", img}, append(fillers, "::/")...)...)
	var del []string
	for i := 0; i < 40; i += 2 {
		del = append(del, fmt.Sprintf("::/f%02d", i))
	}
	run(t, "mdel", append([]string{"-i", img}, del...)...)
	if fatBits == 32 {
		// Make mtools allocate from the start: reset the FSInfo
		// next-free hint.
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 512)
		f.ReadAt(b, 0)
		fsinfo := int64(binary.LittleEndian.Uint16(b[48:])) * int64(sector)
		if _, err := f.WriteAt([]byte{2, 0, 0, 0}, fsinfo+492); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	big := fstest.Pattern(99, 60*cluster+123)
	bigPath := filepath.Join(src, "big.bin")
	os.WriteFile(bigPath, big, 0o644)
	os.Chtimes(bigPath, mtime, mtime)
	run(t, "mcopy", "-m", "-i", img, bigPath, "::/")
	for i := 1; i < 40; i += 2 {
		p := filepath.Join(src, fmt.Sprintf("f%02d", i))
		os.WriteFile(p, fstest.Pattern(int64(i), cluster), 0o644)
		os.Chtimes(p, mtime, mtime)
	}
	return image{path: img, src: src, big: big, cluster: cluster}
}

func openImage(t *testing.T, path string) (*FS, *os.File) {
	t.Helper()
	return fstest.OpenImage(t, path, Probe, Open)
}

func TestImages(t *testing.T) {
	tests := []struct {
		name              string
		bits, sector, spc int
		sizeMiB           int64
		wantType          string
	}{
		{"fat12", 12, 512, 4, 8, "fat12"},
		{"fat16", 16, 512, 4, 32, "fat16"},
		{"fat16-4k", 16, 4096, 1, 64, "fat16"},
		{"fat32", 32, 512, 1, 40, "fat32"},
		{"fat32-4k", 32, 4096, 1, 300, "fat32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			im := buildImage(t, tc.bits, tc.sector, tc.spc, tc.sizeMiB)
			fsys, _ := openImage(t, im.path)
			if fsys.Type() != tc.wantType {
				t.Errorf("Type = %q, want %q", fsys.Type(), tc.wantType)
			}
			if fsys.Label() != "My Label" {
				t.Errorf("Label = %q", fsys.Label())
			}
			fstest.ConcurrentWalk(t, fsys)
			n := fstest.CompareTree(t, fsys, fsys.Root(), im.src, fstest.TreeOptions{Mtime: time.Nanosecond})
			if n < 300 {
				t.Errorf("only %d files compared", n)
			}
			// The big file must be fragmented, and each run read at once.
			e, err := fsys.Lookup(fsys.Root(), "BIG.BIN")
			if err != nil {
				t.Fatal(err)
			}
			fl, err := fsys.Open(e.Ino)
			if err != nil {
				t.Fatal(err)
			}
			if runs := len(fl.(*File).runs); runs < 10 {
				t.Errorf("big file has %d runs; the test wants it fragmented", runs)
			}
			fstest.ConcurrentReads(t, fl, im.big, 200000)
			// One ReadAt per run of contiguous clusters.
			f, _ := os.Open(im.path)
			defer f.Close()
			fstest.CheckMapData(t, f, "BIG.BIN", fl, true)
			st, _ := f.Stat()
			cr := &fstest.CountingReader{R: f}
			fsys2, err := Open(cr, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			fl2, err := fsys2.Open(e.Ino)
			if err != nil {
				t.Fatal(err)
			}
			before := cr.N.Load()
			buf := make([]byte, len(im.big))
			if n, err := fl2.ReadAt(buf, 0); n != len(buf) || err != nil || !bytes.Equal(buf, im.big) {
				t.Fatalf("whole read: %d, %v", n, err)
			}
			if calls, runs := cr.N.Load()-before, len(fl2.(*File).runs); calls != int64(runs) {
				t.Errorf("whole read took %d ReadAt calls for %d runs", calls, runs)
			}
			// The 8.3 alias resolves too.
			if e2, err := fsys.Lookup(fsys.Root(), "mixedc~1.txt"); err != nil || e2.Name != "Mixed Case Long Name.TXT" {
				t.Errorf("Lookup of 8.3 alias: %+v, %v", e2, err)
			}
			a, _ := fsys.Stat(e.Ino)
			if !a.Mtime.Equal(mtime) || a.Alloc%int64(im.cluster) != 0 || a.Mode != 0o644 {
				t.Errorf("Stat(big) = %+v", a)
			}
		})
	}
}

func TestCorruption(t *testing.T) {
	im := buildImage(t, 16, 512, 4, 32)
	orig, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	fsys, _ := openImage(t, im.path)
	big, _ := fsys.Lookup(fsys.Root(), "big.bin")
	first := uint32(binary.LittleEndian.Uint16(orig[big.Ino+26:]))
	fatOff := fsys.fatOff

	bootTests := []struct {
		name   string
		mutate func(b []byte)
		field  string
	}{
		{"bytes per sector", func(b []byte) { binary.LittleEndian.PutUint16(b[11:], 3) }, "bytes per sector"},
		{"sectors per cluster", func(b []byte) { b[13] = 3 }, "sectors per cluster"},
		{"reserved", func(b []byte) { binary.LittleEndian.PutUint16(b[14:], 0) }, "reserved sector count"},
		{"fats", func(b []byte) { b[16] = 0 }, "number of FATs"},
		{"total", func(b []byte) { binary.LittleEndian.PutUint16(b[19:], 0); binary.LittleEndian.PutUint32(b[32:], 0) }, "total sector count"},
		{"fat size", func(b []byte) { binary.LittleEndian.PutUint16(b[22:], 1) }, "FAT size"},
		{"jump", func(b []byte) { b[0] = 0 }, "jump instruction"},
	}
	for _, tc := range bootTests {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			tc.mutate(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)))
			if err == nil || !errors.Is(err, volume.ErrCorrupt) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Open: %v; want ErrCorrupt naming %q", err, tc.field)
			}
		})
	}

	chainTests := []struct {
		name string
		next uint16
	}{
		{"loop", uint16(first)},
		{"early end", 0xFFFF},
		{"free", 0},
		{"out of range", 0xFFF0},
	}
	for _, tc := range chainTests {
		t.Run("chain "+tc.name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			binary.LittleEndian.PutUint16(b[fatOff+int64(first)*2:], tc.next)
			fsys, err := Open(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.Open(big.Ino); !errors.Is(err, volume.ErrCorrupt) {
				t.Fatalf("Open(big): %v; want ErrCorrupt", err)
			}
			// Other files are unaffected.
			e, err := fsys.Lookup(fsys.Root(), "lower.txt")
			if err != nil {
				t.Fatal(err)
			}
			fl, err := fsys.Open(e.Ino)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 10)
			if n, _ := fl.ReadAt(buf, 0); string(buf[:n]) != "hi\n" {
				t.Fatalf("lower.txt = %q", buf[:n])
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	im := buildImage(t, 12, 512, 4, 4)
	fsys, _ := openImage(t, im.path)
	root := fsys.Root()
	if _, err := fsys.Lookup(root, "nope"); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("Lookup missing: %v", err)
	}
	e, _ := fsys.Lookup(root, "lower.txt")
	if _, err := fsys.ReadDir(e.Ino); !errors.Is(err, volume.ErrNotDir) {
		t.Errorf("ReadDir(file): %v", err)
	}
	if _, err := fsys.Open(root); err == nil {
		t.Error("Open(root) succeeded")
	}
	if _, err := fsys.Stat(12345); err == nil {
		t.Error("Stat(bogus) succeeded")
	}
	if _, err := fsys.Readlink(e.Ino); err == nil {
		t.Error("Readlink succeeded")
	}
	if s, err := fsys.Streams(e.Ino); s != nil || err != nil {
		t.Error("Streams")
	}
	if !fsys.CaseInsensitive() {
		t.Error("CaseInsensitive = false")
	}
	a, err := fsys.Stat(root)
	if err != nil || !a.Mode.IsDir() {
		t.Errorf("Stat(root) = %+v, %v", a, err)
	}
	fl, _ := fsys.Open(e.Ino)
	if _, err := fl.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("negative offset accepted")
	}
	if n, err := fl.ReadAt(make([]byte, 1), 3); n != 0 || err != io.EOF {
		t.Errorf("read at EOF: %d, %v", n, err)
	}
	if Probe(bytes.NewReader(make([]byte, 100))) {
		t.Error("Probe of short data")
	}
	var _ fs.FileMode
}

func TestShortNames(t *testing.T) {
	tests := []struct {
		raw  string
		nt   byte
		want string
	}{
		{"README  TXT", 0, "README.TXT"},
		{"README  TXT", 0x08, "readme.TXT"},
		{"README  TXT", 0x18, "readme.txt"},
		{"NOEXT      ", 0x10, "NOEXT"},
		{"\x05BC     TXT", 0, "σBC.TXT"},
		{"\x8eBC     TXT", 0x08, "äbc.TXT"},
	}
	for _, tc := range tests {
		e := make([]byte, 32)
		copy(e, tc.raw)
		e[12] = tc.nt
		if got := shortName(e); got != tc.want {
			t.Errorf("shortName(%q, %#x) = %q, want %q", tc.raw, tc.nt, got, tc.want)
		}
	}
}

func TestFatTime(t *testing.T) {
	tests := []struct {
		date, tm uint16
		tenths   byte
		want     time.Time
	}{
		{0, 0, 0, time.Time{}},
		{(41 << 9) | (3 << 5) | 4, (5 << 11) | (6 << 5) | 4, 0, time.Date(2021, 3, 4, 5, 6, 8, 0, time.UTC)},
		{(41 << 9) | (3 << 5) | 4, (5 << 11) | (6 << 5) | 4, 155, time.Date(2021, 3, 4, 5, 6, 9, 550_000_000, time.UTC)},
		{(41 << 9) | (13 << 5) | 4, 0, 0, time.Time{}},
	}
	for _, tc := range tests {
		if got := fatTime(tc.date, tc.tm, tc.tenths); !got.Equal(tc.want) {
			t.Errorf("fatTime(%#x, %#x, %d) = %v, want %v", tc.date, tc.tm, tc.tenths, got, tc.want)
		}
	}
}

func FuzzOpen(f *testing.F) { fstest.FuzzOpen(f, Open) }
