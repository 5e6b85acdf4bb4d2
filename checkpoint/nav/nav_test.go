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
		l, err := Walk(root, c.path)
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
		_, err := Walk(root, c.path)
		if !errors.Is(err, c.err) || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("Walk(%q): %v, want %q… %v", c.path, err, c.msg, c.err)
		}
	}
	fss, err := FileSystems(root)
	if err != nil || len(fss) != 1 || fss[0].Path != "Point/Disk.files/2-Data" {
		t.Errorf("FileSystems: %+v %v", fss, err)
	}
}

func TestResolve(t *testing.T) {
	fsNode := func(name string) *checkpoint.Node {
		return &checkpoint.Node{Name: name, IsDir: true, FS: oneDirFS{}}
	}
	one := checkpoint.Dir("Before: 10:02", checkpoint.Bytes("Disk.raw", nil), checkpoint.Dir("Disk.files", fsNode("1-Data")))
	two := checkpoint.Dir("Two", checkpoint.Dir("Disk.files", fsNode("1-A"), fsNode("2-B")))
	none := checkpoint.Dir("None", checkpoint.Bytes("Disk.raw", nil))
	root := checkpoint.Dir("", one, two, none)
	for _, c := range []struct {
		arg, str, name string
		ino            uint64
	}{
		{"Before: 10:02:/dir/file.txt", "Before: 10:02:/Dir/File.txt", "File.txt", 3},
		{"Before: 10:02:/", "Before: 10:02:/", "1-Data", 1},
		{"before: 10:02:Disk.files/1-Data/DIR", "before: 10:02:Disk.files/1-Data/Dir", "Dir", 2},
		{"Two:Disk.files/2-B/Dir", "Two:Disk.files/2-B/Dir", "Dir", 2},
		{"Two:", "Two:", "Two", 0},
	} {
		p, err := Resolve(root, c.arg)
		if err != nil || p.String() != c.str || p.Name != c.name || p.Loc.Ino != c.ino {
			t.Errorf("Resolve(%q) = %q %q ino %d, %v; want %q %q ino %d", c.arg, p, p.Name, p.Loc.Ino, err, c.str, c.name, c.ino)
		}
	}
	for _, c := range []struct {
		arg, msg string
		err      error
	}{
		{"no colon", `"no colon": not POINT:PATH`, ErrNotPointPath},
		{"Nope:/x", `Nope: no such point (points: "Before: 10:02", "Two", "None")`, ErrNoPoint},
		{"Two:/Dir", "Two: the point has 2 file systems (Disk.files/1-A, Disk.files/2-B); give the path below the point, e.g. Two:Disk.files/1-A/Dir", ErrFileSystems},
		{"None:/Dir", "None: the point has no file system ckptfs can read", ErrFileSystems},
		{"Two:Disk.files/3-C", "Two:Disk.files/3-C: file does not exist", ErrNotFound},
		{"Before: 10:02:/Dir/nope", "Before: 10:02:/Dir/nope: file does not exist", ErrNotFound},
	} {
		_, err := Resolve(root, c.arg)
		if !errors.Is(err, c.err) || err.Error() != c.msg {
			t.Errorf("Resolve(%q): %v, want %q (%v)", c.arg, err, c.msg, c.err)
		}
	}
	var pe *PointError
	if _, err := Point(root, "by-file"); !errors.As(err, &pe) || pe.Name != "by-file" || len(pe.Points) != 3 {
		t.Errorf("Point(by-file): %v", err)
	}
	var fe *FileSystemsError
	if _, err := Resolve(root, "Two:/x"); !errors.As(err, &fe) || len(fe.FileSystems) != 2 {
		t.Errorf("Resolve(Two:/x): %v", err)
	}
	if pt, err := Point(root, "two"); err != nil || pt != two {
		t.Errorf("Point(two) = %v, %v", pt, err)
	}
}
