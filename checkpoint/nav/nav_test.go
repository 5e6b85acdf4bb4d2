package nav

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/volume"
)

// oneDirFS is a file system with /Dir/File.txt, looked up ignoring case.
type oneDirFS struct{ volume.FS }

func (oneDirFS) Type() string          { return "test" }
func (oneDirFS) Root() uint64          { return 1 }
func (oneDirFS) CaseInsensitive() bool { return true }
func (oneDirFS) Stat(ino uint64) (volume.Attr, error) {
	if ino == 3 {
		return volume.Attr{Ino: 3, Mode: 0o444}, nil
	}
	return volume.Attr{Ino: ino, Mode: fs.ModeDir | 0o555}, nil
}
func (oneDirFS) Lookup(dir uint64, name string) (volume.Entry, error) {
	switch {
	case dir == 1 && strings.EqualFold(name, "dir"):
		return volume.Entry{Name: "Dir", Ino: 2, Mode: fs.ModeDir}, nil
	case dir == 2 && strings.EqualFold(name, "file.txt"):
		return volume.Entry{Name: "File.txt", Ino: 3}, nil
	}
	return volume.Entry{}, volume.ErrNotFound
}

func TestWalk(t *testing.T) {
	calls := 0
	fsn := &checkpoint.Node{Name: "2-Data", IsDir: true, FS: oneDirFS{}}
	files := &checkpoint.Node{Name: "Disk.files", IsDir: true, List: func() ([]*checkpoint.Node, error) {
		calls++
		return []*checkpoint.Node{fsn}, nil
	}}
	root := checkpoint.Dir("", checkpoint.Dir("Point", checkpoint.Bytes("Disk.raw", nil), files), checkpoint.Dir("point2"))
	tr := New()
	for _, c := range []struct {
		path, want string
		in         bool
		ino        uint64
	}{
		{"Point/Disk.files/2-Data/dir/FILE.TXT", "Point/Disk.files/2-Data/Dir/File.txt", true, 3},
		{"point/disk.FILES/2-data", "Point/Disk.files/2-Data", false, 0},
		{"/Point//./Disk.files/2-Data/Dir/../Dir", "Point/Disk.files/2-Data/Dir", true, 2},
		{"Point/Disk.raw", "Point/Disk.raw", false, 0},
	} {
		l, err := tr.Walk(root, c.path)
		if err != nil || l.Path != c.want || l.In != c.in || l.Ino != c.ino {
			t.Errorf("Walk(%q) = %+v, %v; want %q", c.path, l, err, c.want)
		}
	}
	if calls != 1 {
		t.Errorf("List called %d times", calls)
	}
	for _, c := range []struct {
		path, msg string
		err       error
	}{
		{"Point/Disk.files/2-Data/Dir/nope", "Point/Disk.files/2-Data/Dir/nope: ", ErrNotFound},
		{"Point/Disk.raw/x", "Point/Disk.raw/x: ", ErrNotDir},
		{"Point/Disk.files/2-Data/Dir/File.txt/x", "Point/Disk.files/2-Data/Dir/File.txt/x: ", ErrNotDir},
		{"POINT2/x", "point2/x: ", ErrNotFound},
	} {
		_, err := tr.Walk(root, c.path)
		if !errors.Is(err, c.err) || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("Walk(%q): %v, want %q… %v", c.path, err, c.msg, c.err)
		}
	}
	fss, err := tr.FileSystems(root)
	if err != nil || len(fss) != 1 || fss[0].Path != "Point/Disk.files/2-Data" {
		t.Errorf("FileSystems: %+v %v", fss, err)
	}
}
