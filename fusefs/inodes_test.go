package fusefs_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// wideFS returns a fake volume of dirs folders holding files empty files
// each.
func wideFS(dirs, files int) *fakeFS {
	m := time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC)
	f := &fakeFS{inodes: map[uint64]*fakeInode{}}
	root := &fakeInode{attr: volume.Attr{Ino: 5, Mode: fs.ModeDir | 0o755, Nlink: 2, Mtime: m}}
	f.inodes[5] = root
	ino := uint64(100)
	for d := range dirs {
		dir := &fakeInode{attr: volume.Attr{Ino: ino, Mode: fs.ModeDir | 0o755, Nlink: 2, Mtime: m}}
		f.inodes[ino] = dir
		root.children = append(root.children, volume.Entry{Name: fmt.Sprintf("d%03d", d), Ino: ino, Mode: fs.ModeDir})
		ino++
		for i := range files {
			f.inodes[ino] = &fakeInode{attr: volume.Attr{Ino: ino, Mode: 0o644, Mtime: m}}
			dir.children = append(dir.children, volume.Entry{Name: fmt.Sprintf("f%04d", i), Ino: ino})
			ino++
		}
	}
	return f
}

// TestInodeTableShrinks walks 20 000 files with stat, so that the kernel
// holds an inode for each, then makes the kernel drop its caches: the
// FORGETs it sends must empty the mount's inode table down to what is
// still referenced.
func TestInodeTableShrinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop the kernel's caches (/proc/sys/vm/drop_caches)")
	}
	const dirs, files = 20, 1000
	root := checkpoint.Dir("", &checkpoint.Node{Name: "vol", FS: wideFS(dirs, files)})
	dir, srv := mountServer(t, root)
	before := srv.Inodes()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "vol"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Lstat(p); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1+dirs+dirs*files {
		t.Fatalf("walked %d entries, want %d", n, 1+dirs+dirs*files)
	}
	walked := srv.Inodes()
	if walked < dirs*files {
		t.Fatalf("after the walk the table holds %d inodes (before: %d), want at least %d", walked, before, dirs*files)
	}
	// FORGETs arrive asynchronously; give them a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			t.Fatal(err)
		}
		if srv.Inodes() < walked/10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after dropping the kernel's caches the table still holds %d of %d inodes", srv.Inodes(), walked)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// What was forgotten comes back when looked up again, with the same
	// inode number.
	st1, err := os.Stat(filepath.Join(dir, "vol", "d007", "f0042"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inodes: %d before, %d after the walk, %d after drop_caches", before, walked, srv.Inodes())
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0)
	st2, err := os.Stat(filepath.Join(dir, "vol", "d007", "f0042"))
	if err != nil {
		t.Fatal(err)
	}
	if st1.Sys().(*syscall.Stat_t).Ino != st2.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("inode number changed across a forget: %d, then %d", st1.Sys().(*syscall.Stat_t).Ino, st2.Sys().(*syscall.Stat_t).Ino)
	}
}

// TestAdaptiveListings: listing a folder for a process that does not stat
// its files (find -type f) makes no inodes for them; a process that stats
// what it lists (ls -l) learns after a few files, and later folders come
// with their files' attributes (no LOOKUP each). What both see is the same.
func TestAdaptiveListings(t *testing.T) {
	testutil.Need(t, "find", "ls")
	const dirs, files = 3, 200
	root := checkpoint.Dir("", &checkpoint.Node{Name: "vol", FS: wideFS(dirs, files)})
	dir, srv := mountServer(t, root)
	vol := filepath.Join(dir, "vol")
	out := testutil.Run(t, "find", vol, "-type", "f")
	if n := strings.Count(out, "\n"); n != dirs*files {
		t.Fatalf("find listed %d files, want %d", n, dirs*files)
	}
	if n := srv.Inodes(); n > 2*dirs+4 {
		t.Errorf("after find -type f the kernel holds %d inodes; want only the folders' (%d)", n, dirs)
	}
	// One ls -l of all three folders: the first folder's files are looked
	// up one by one, which teaches the mount, and the next two folders'
	// listings carry their files' attributes: no LOOKUP for them.
	before := srv.Lookups()
	out = testutil.Run(t, "ls", "-l", filepath.Join(vol, "d000"), filepath.Join(vol, "d001"), filepath.Join(vol, "d002"))
	if n := strings.Count(out, "f0"); n != dirs*files {
		t.Fatalf("ls -l listed %d files, want %d", n, dirs*files)
	}
	if n := srv.Lookups() - before; n < files || n > files+10 {
		t.Errorf("ls -l of %d folders of %d files made %d LOOKUPs, want the first folder's %d", dirs, files, n, files)
	}
	if n := srv.Inodes(); n < dirs*files {
		t.Errorf("after ls -l the kernel holds %d inodes, want at least %d", n, dirs*files)
	}
}
