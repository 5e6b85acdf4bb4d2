package ntfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// toolPath finds an executable in PATH or the sbin directories (mkntfs
// lives in /usr/sbin, which is not always in a non-root PATH).
func toolPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// requireTools skips the test (fails it with CKPTFS_REQUIRE_TOOLS=1)
// unless mkntfs, ntfs-3g and a usable FUSE are available.
func requireTools(t testing.TB) {
	t.Helper()
	testutil.Need(t, "mkntfs", "ntfs-3g")
	testutil.NeedFUSE(t)
}

// makeImage creates a sparse file of sizeMiB MiB in dir and formats it.
func makeImage(t testing.TB, dir string, sizeMiB int64, label string, args ...string) string {
	t.Helper()
	img := filepath.Join(dir, "ntfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a := append([]string{"-F", "-f", "-q"}, args...)
	if label != "" {
		a = append(a, "-L", label)
	}
	a = append(a, img)
	if out, err := exec.Command(toolPath("mkntfs"), a...).CombinedOutput(); err != nil {
		t.Fatalf("mkntfs %v: %v\n%s", a, err, out)
	}
	return img
}

// mountImage mounts img with ntfs-3g beside it; it is unmounted at
// cleanup at the latest.
func mountImage(t testing.TB, img string, opts ...string) *testutil.NTFS3G {
	t.Helper()
	return testutil.MountNTFS3G(t, img, "", opts...)
}

// openImage opens the image file with the reader.
func openImage(t testing.TB, img string) *FS {
	t.Helper()
	fsys, _ := fstest.OpenImage(t, img, Probe, Open)
	return fsys
}

// pattern returns n deterministic pseudo-random bytes for seed.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textPattern returns n bytes of compressible text.
func textPattern(seed uint64, n int) []byte {
	words := []string{"checkpoint", "Hyper-V", "volume", "cluster", "record", "index", "NTFS", "compression", "unit", "Grüße", "日本"}
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(9) == 0 {
			fmt.Fprintf(&b, " %d\n", r.IntN(100000))
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ntfsTimes reads the four NTFS times of a file through ntfs-3g's
// system.ntfs_times attribute, in its order: creation, data change,
// access, MFT change.
func ntfsTimes(path string) ([4]uint64, error) {
	var b [32]byte
	n, err := lgetxattr(path, "system.ntfs_times", b[:])
	if err != nil {
		return [4]uint64{}, err
	}
	if n != 32 {
		return [4]uint64{}, fmt.Errorf("system.ntfs_times is %d bytes", n)
	}
	var t [4]uint64
	for i := range t {
		t[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return t, nil
}

// lgetxattr is getxattr without following a final symbolic link.
func lgetxattr(path, name string, buf []byte) (int, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return 0, err
	}
	a, err := syscall.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var ptr unsafe.Pointer
	if len(buf) > 0 {
		ptr = unsafe.Pointer(&buf[0])
	}
	r, _, e := syscall.Syscall6(syscall.SYS_LGETXATTR, uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(a)), uintptr(ptr), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func toFiletime(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.Unix()+11644473600)*10_000_000 + uint64(t.Nanosecond()/100)
}

// listXattrs lists the user.* extended attributes (ntfs-3g's view of
// alternate data streams).
func listXattrs(path string) ([]string, error) {
	sz, err := syscall.Listxattr(path, nil)
	if err != nil || sz == 0 {
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = syscall.Listxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range strings.Split(string(buf[:sz]), "\x00") {
		if name, ok := strings.CutPrefix(s, "user."); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	sz, err := syscall.Getxattr(path, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, sz)
	if sz == 0 {
		return buf, nil
	}
	sz, err = syscall.Getxattr(path, name, buf)
	return buf[:sz], err
}

// snapNode is ntfs-3g's view of one file, the oracle for the reader.
type snapNode struct {
	mode    iofs.FileMode // type bits
	ino     uint64
	size    int64
	nlink   uint64
	sum     [32]byte // sha256 of regular file data
	target  string   // symlink target as ntfs-3g reports it
	times   [4]uint64
	streams map[string][32]byte
	names   []string // directory entries
}

// snapshot walks the mounted tree and records what ntfs-3g reports.
// Paths for which skip returns true are left out (ntfs-3g cannot stat
// some reparse points).
func snapshot(t testing.TB, m *testutil.NTFS3G, skip func(rel string) bool) map[string]*snapNode {
	t.Helper()
	out := make(map[string]*snapNode)
	err := filepath.WalkDir(m.Dir, func(p string, d iofs.DirEntry, err error) error {
		rel, _ := filepath.Rel(m.Dir, p)
		rel = filepath.ToSlash(rel)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n := &snapNode{mode: fi.Mode().Type(), ino: st.Ino, size: st.Size, nlink: uint64(st.Nlink)}
		if n.times, err = ntfsTimes(p); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		switch {
		case fi.Mode().IsRegular():
			data, unmap := testutil.MapFile(t, p) // not copied into Go memory: slow under the race detector
			n.sum = sha256.Sum256(data)
			unmap()
		case fi.Mode()&iofs.ModeSymlink != 0:
			n.target, _ = os.Readlink(p) // ntfs-3g refuses some reparse points
		case fi.IsDir():
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, e := range ents {
				n.names = append(n.names, e.Name())
			}
			slices.Sort(n.names)
		}
		if fi.Mode()&iofs.ModeSymlink == 0 {
			names, err := listXattrs(p)
			if err != nil {
				return fmt.Errorf("%s: listxattr: %w", rel, err)
			}
			for _, s := range names {
				v, err := getXattr(p, "user."+s)
				if err != nil {
					return fmt.Errorf("%s: getxattr %s: %w", rel, s, err)
				}
				if n.streams == nil {
					n.streams = map[string][32]byte{}
				}
				n.streams[s] = sha256.Sum256(v)
			}
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return out
}

// walkReader resolves rel (slash-separated) through Lookup from the root.
func walkReader(fsys volume.FS, rel string) (volume.Entry, error) {
	e := volume.Entry{Name: "", Ino: fsys.Root(), Mode: iofs.ModeDir}
	if rel == "." {
		return e, nil
	}
	for _, part := range strings.Split(rel, "/") {
		var err error
		e, err = fsys.Lookup(e.Ino, part)
		if err != nil {
			return e, err
		}
	}
	return e, nil
}

// readAllOdd reads a whole volume.File with an irregular pattern of read
// sizes and returns the bytes.
func readAllOdd(f volume.File, seed uint64) ([]byte, error) {
	size := f.Size()
	out := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 7))
	sizes := []int{1, 3, 511, 4095, 4097, 65535, 65537, 1 << 20}
	for off := int64(0); off < size; {
		n := sizes[r.IntN(len(sizes))]
		if int64(n) > size-off {
			n = int(size - off)
		}
		got, err := f.ReadAt(out[off:off+int64(n)], off)
		if got != n {
			return nil, fmt.Errorf("ReadAt(%d, %d) = %d, %v", n, off, got, err)
		}
		if err != nil && !(err == io.EOF && off+int64(n) == size) {
			return nil, fmt.Errorf("ReadAt(%d, %d): %v", n, off, err)
		}
		off += int64(n)
	}
	// Reading at the end reports io.EOF.
	var one [1]byte
	if n, err := f.ReadAt(one[:], size); n != 0 || err != io.EOF {
		return nil, fmt.Errorf("ReadAt at EOF = %d, %v", n, err)
	}
	return out, nil
}

// readAllFast reads a whole file in 1 MiB pieces.
func readAllFast(f volume.File) ([]byte, error) {
	out := make([]byte, f.Size())
	for off := int64(0); off < int64(len(out)); off += 1 << 20 {
		end := min(off+1<<20, int64(len(out)))
		if n, err := f.ReadAt(out[off:end], off); n != int(end-off) {
			return nil, fmt.Errorf("ReadAt at %d: %d, %v", off, n, err)
		}
	}
	return out, nil
}

// compareSnapshot checks the reader against ntfs-3g's view of every file.
func compareSnapshot(t *testing.T, fsys *FS, snap map[string]*snapNode, skipTarget func(rel string) bool) {
	t.Helper()
	paths := make([]string, 0, len(snap))
	for p := range snap {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, rel := range paths {
		want := snap[rel]
		e, err := walkReader(fsys, rel)
		if err != nil {
			t.Errorf("%s: lookup: %v", rel, err)
			continue
		}
		if rel != "." && e.Mode.Type() != want.mode {
			t.Errorf("%s: entry mode %v, want %v", rel, e.Mode.Type(), want.mode)
		}
		if e.Ino != want.ino {
			t.Errorf("%s: ino %d, want %d", rel, e.Ino, want.ino)
		}
		a, err := fsys.Stat(e.Ino)
		if err != nil {
			t.Errorf("%s: Stat: %v", rel, err)
			continue
		}
		if a.Mode.Type() != want.mode {
			t.Errorf("%s: Stat mode %v, want %v", rel, a.Mode, want.mode)
		}
		if a.Ino != e.Ino {
			t.Errorf("%s: Stat ino %d, want %d", rel, a.Ino, e.Ino)
		}
		got := [4]uint64{toFiletime(a.Btime), toFiletime(a.Mtime), toFiletime(a.Atime), toFiletime(a.Ctime)}
		if got != want.times {
			t.Errorf("%s: times (B,M,A,C) %v, want %v", rel, got, want.times)
		}
		switch {
		case want.mode.IsRegular():
			wantLinks := want.nlink
			if rel == "LongFileName.text" {
				wantLinks = 1 // ntfs-3g counts the DOS alias as a link
			}
			if a.Mode.Perm() != 0o444 || a.Size != want.size || uint64(a.Nlink) != wantLinks {
				t.Errorf("%s: mode %v size %d nlink %d, want 0444 %d %d", rel, a.Mode, a.Size, a.Nlink, want.size, wantLinks)
			}
			f, err := fsys.Open(e.Ino)
			if err != nil {
				t.Errorf("%s: Open: %v", rel, err)
				break
			}
			data, err := readAllOdd(f, uint64(len(rel)))
			if err != nil {
				t.Errorf("%s: read: %v", rel, err)
			} else if sha256.Sum256(data) != want.sum {
				t.Errorf("%s: content differs from ntfs-3g's (%d bytes)", rel, len(data))
			}
		case want.mode&iofs.ModeSymlink != 0:
			target, err := fsys.Readlink(e.Ino)
			if err != nil {
				t.Errorf("%s: Readlink: %v", rel, err)
			} else if (skipTarget == nil || !skipTarget(rel)) && target != want.target {
				t.Errorf("%s: Readlink %q, want %q", rel, target, want.target)
			}
			if a.Size != int64(len(target)) {
				t.Errorf("%s: symlink size %d, want %d", rel, a.Size, len(target))
			}
		case want.mode.IsDir():
			if a.Mode.Perm() != 0o555 {
				t.Errorf("%s: dir mode %v", rel, a.Mode)
			}
			ents, err := fsys.ReadDir(e.Ino)
			if err != nil {
				t.Errorf("%s: ReadDir: %v", rel, err)
				break
			}
			var names []string
			for _, x := range ents {
				names = append(names, x.Name)
				sub := x.Name
				if rel != "." {
					sub = rel + "/" + x.Name
				}
				if w, ok := snap[sub]; ok && (w.ino != x.Ino || w.mode != x.Mode) {
					t.Errorf("%s: ReadDir entry ino %d mode %v, want %d %v", sub, x.Ino, x.Mode, w.ino, w.mode)
				}
			}
			if !slices.IsSorted(names) {
				t.Errorf("%s: ReadDir not sorted", rel)
			}
			if !slices.Equal(names, want.names) {
				t.Errorf("%s: ReadDir = %q, want %q", rel, names, want.names)
			}
		}
		if want.mode&iofs.ModeSymlink == 0 {
			streams, err := fsys.Streams(e.Ino)
			if err != nil {
				t.Errorf("%s: Streams: %v", rel, err)
				continue
			}
			var wantStreams []string
			for s := range want.streams {
				wantStreams = append(wantStreams, s)
			}
			slices.Sort(wantStreams)
			if !slices.Equal(streams, wantStreams) {
				t.Errorf("%s: Streams = %q, want %q", rel, streams, wantStreams)
			}
			for _, s := range streams {
				f, err := fsys.OpenStream(e.Ino, s)
				if err != nil {
					t.Errorf("%s:%s: OpenStream: %v", rel, s, err)
					continue
				}
				data, err := readAllOdd(f, 3)
				if err != nil {
					t.Errorf("%s:%s: read: %v", rel, s, err)
				} else if sha256.Sum256(data) != want.streams[s] {
					t.Errorf("%s:%s: stream content differs", rel, s)
				}
			}
		}
	}
}
