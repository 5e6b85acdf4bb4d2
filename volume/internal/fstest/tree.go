package fstest

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/volume"
)

// OpenImage opens the image file at path with a reader's open function,
// after checking that probe (when not nil) recognises it. The file is
// closed at cleanup.
func OpenImage[F any](t testing.TB, path string, probe func(io.ReaderAt) bool, open func(io.ReaderAt, int64) (F, error)) (F, *os.File) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if probe != nil && !probe(f) {
		t.Fatalf("%s: Probe = false", path)
	}
	fsys, err := open(f, st.Size())
	if err != nil {
		t.Fatalf("%s: Open: %v", path, err)
	}
	return fsys, f
}

// TreeOptions say what CompareTree checks beyond names, types, sizes,
// symlink targets and every byte of every file.
type TreeOptions struct {
	// Extra names entries of the folder compared (not below it) that only
	// the image holds (ext4's lost+found).
	Extra map[string]bool
	// Unix compares permission bits, owners and link counts.
	Unix bool
	// Mtime is the grain at which modification times are compared
	// (time.Second: whole seconds); 0 does not compare them.
	Mtime time.Duration
	// FolderMtimes compares folders' modification times too (mkfs.ext4 -d
	// copies them; mtools does not).
	FolderMtimes bool
}

// CompareTree checks that folder ino of fsys holds exactly what the host
// folder host holds, recursively, and returns the number of regular files
// compared. ReadDir must list names sorted; Lookup must find every name
// (also in upper and lower case where fsys ignores case).
func CompareTree(t testing.TB, fsys volume.FS, ino uint64, host string, opts TreeOptions) (files int) {
	t.Helper()
	hostEntries, err := os.ReadDir(host)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsys.ReadDir(ino)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", host, err)
	}
	var gotNames, wantNames []string
	for _, e := range got {
		if !opts.Extra[e.Name] {
			gotNames = append(gotNames, e.Name)
		}
	}
	for _, e := range hostEntries {
		wantNames = append(wantNames, e.Name())
	}
	sort.Strings(wantNames)
	if !sort.StringsAreSorted(gotNames) {
		t.Errorf("ReadDir(%s) not sorted: %q", host, gotNames)
	}
	if strings.Join(gotNames, "\n") != strings.Join(wantNames, "\n") {
		t.Fatalf("ReadDir(%s):\n got %q\nwant %q", host, gotNames, wantNames)
	}
	sub := opts
	sub.Extra = nil
	for _, e := range got {
		if opts.Extra[e.Name] {
			continue
		}
		hp := filepath.Join(host, e.Name)
		hi, err := os.Lstat(hp)
		if err != nil {
			t.Fatal(err)
		}
		names := []string{e.Name}
		if fsys.CaseInsensitive() {
			names = append(names, strings.ToUpper(e.Name), strings.ToLower(e.Name))
		}
		for _, name := range names {
			if le, err := fsys.Lookup(ino, name); err != nil || le != e {
				t.Errorf("Lookup(%q) = %+v, %v; want %+v", name, le, err, e)
			}
		}
		a, err := fsys.Stat(e.Ino)
		if err != nil {
			t.Fatalf("Stat(%s): %v", hp, err)
		}
		if a.Mode.Type() != e.Mode || e.Mode != hi.Mode().Type() || opts.Unix && a.Mode != hi.Mode() {
			t.Errorf("%s: mode %v (entry %v), want %v", hp, a.Mode, e.Mode, hi.Mode())
		}
		if st := hi.Sys().(*syscall.Stat_t); opts.Unix && (a.Uid != st.Uid || a.Gid != st.Gid || a.Nlink != uint32(st.Nlink)) {
			t.Errorf("%s: uid/gid/nlink %d/%d/%d, want %d/%d/%d", hp, a.Uid, a.Gid, a.Nlink, st.Uid, st.Gid, st.Nlink)
		}
		if g := opts.Mtime; g > 0 && (opts.FolderMtimes || !hi.IsDir()) && !a.Mtime.Truncate(g).Equal(hi.ModTime().Truncate(g)) {
			t.Errorf("%s: mtime %v, want %v", hp, a.Mtime, hi.ModTime())
		}
		switch {
		case hi.IsDir():
			files += CompareTree(t, fsys, e.Ino, hp, sub)
		case hi.Mode()&fs.ModeSymlink != 0:
			want, _ := os.Readlink(hp)
			if got, err := fsys.Readlink(e.Ino); got != want || err != nil {
				t.Errorf("Readlink(%s) = %q, %v; want %q", hp, got, err, want)
			}
			if a.Size != int64(len(want)) {
				t.Errorf("%s: symlink size %d", hp, a.Size)
			}
		case hi.Mode().IsRegular():
			want, _ := os.ReadFile(hp)
			if a.Size != int64(len(want)) {
				t.Errorf("%s: size %d, want %d", hp, a.Size, len(want))
			}
			fl, err := fsys.Open(e.Ino)
			if err != nil {
				t.Fatalf("Open(%s): %v", hp, err)
			}
			// Read past the end too: the reader must stop at the size.
			data, err := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()+100))
			if err != nil {
				t.Fatalf("read %s: %v", hp, err)
			}
			if !bytes.Equal(data, want) {
				t.Errorf("%s: content differs (%d vs %d bytes) at %d", hp, len(data), len(want), FirstDiff(data, want))
			}
			files++
		}
	}
	return files
}

// FirstDiff is the offset of the first byte where a and b differ.
func FirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
