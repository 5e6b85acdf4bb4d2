package fusefs_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
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
