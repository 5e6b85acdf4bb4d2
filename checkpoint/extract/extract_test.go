package extract_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/extract"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/probe"
)

// The fixture: Disk.vhdx is a 2 MiB disk with an MBR whose one partition,
// from 1 MiB on, is testdata/fat12.img.gz: a 1 MiB FAT12 volume made by
// mkfs.vfat and filled by mcopy -m:
//
//	hello.txt   "hello from the checkpoint\n"
//	docs/a.txt  "alpha\n"
//	docs/b.bin  5000 zero bytes, then "tail\n"
//
// every file modified 2024-03-01 12:00:00 (FAT keeps local time; mtools
// wrote it as UTC here). TestMain writes it into a temporary folder and
// runs the tests there.
const helloData = "hello from the checkpoint\n"

var bData = append(make([]byte, 5000), "tail\n"...)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "extract")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := writeFixture(filepath.Join(dir, "Disk.vhdx")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Chdir(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func writeFixture(path string) error {
	f, err := os.Open(filepath.Join("testdata", "fat12.img.gz"))
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	mbr := make([]byte, 512)
	e := mbr[446:462]
	e[4] = 0x01                                        // FAT12
	binary.LittleEndian.PutUint32(e[8:], disk.MiB/512) // first sector
	binary.LittleEndian.PutUint32(e[12:], uint32(len(raw)/512))
	mbr[510], mbr[511] = 0x55, 0xAA
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: disk.MiB + int64(len(raw)), BlockSize: disk.MiB})
	im.Write(0, mbr)
	im.Write(disk.MiB, raw)
	return im.Save(path)
}

// open resolves arg in the fixture's tree.
func open(t *testing.T, arg string) nav.Place {
	t.Helper()
	view, err := checkpoint.OpenView("Disk.vhdx", chain.Options{}, checkpoint.FileTreeOptions{FileSystems: probe.Open})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { view.Close() })
	p, err := nav.Resolve(view.Root, arg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCopyFolder(t *testing.T) {
	dst := t.TempDir()
	var entries []extract.Entry
	var progress int64
	sum, err := extract.Copy(open(t, "Disk:/"), dst, extract.Options{
		OnEntry:  func(e extract.Entry) { entries = append(entries, e) },
		Progress: func(n int64) { progress += n },
	})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dst, "1-0x01") // DEST is a folder: the copy gets the file system's folder name (partition 1, MBR type 0x01)
	for rel, want := range map[string][]byte{"hello.txt": []byte(helloData), "docs/a.txt": []byte("alpha\n"), "docs/b.bin": bData} {
		p := filepath.Join(root, rel)
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: %q, %v", rel, b, err)
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if !st.ModTime().Equal(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)) || st.Mode().Perm() != 0o644&^umask(t) {
			t.Errorf("%s: %v %v", rel, st.ModTime(), st.Mode())
		}
	}
	want := extract.Summary{Entries: 5, Files: 3, Folders: 2, Bytes: int64(len(helloData) + 6 + len(bData))}
	if sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	if progress != want.Bytes {
		t.Errorf("progress told %d bytes, want %d", progress, want.Bytes)
	}
	// Entries come in copy order, each folder after what it holds.
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%d %s %s", e.Depth, e.Type, e.Src))
	}
	if s := strings.Join(got, "\n"); s != strings.Join([]string{
		"2 file Disk:/docs/a.txt", "2 file Disk:/docs/b.bin", "1 folder Disk:/docs", "1 file Disk:/hello.txt", "0 folder Disk:/",
	}, "\n") {
		t.Errorf("entries:\n%s", s)
	}
	// b.bin's 4 KiB of zeros became a hole.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(root, "docs/b.bin"), &st); err != nil || st.Blocks*512 >= int64(len(bData)) {
		t.Errorf("docs/b.bin: %d bytes allocated (%v), want a hole", st.Blocks*512, err)
	}
}

func umask(t *testing.T) fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}

func TestCat(t *testing.T) {
	var buf bytes.Buffer
	if err := extract.Cat(&buf, open(t, "Disk:/docs/b.bin"), nil); err != nil || !bytes.Equal(buf.Bytes(), bData) {
		t.Errorf("Cat: %d bytes, %v", buf.Len(), err)
	}
	if err := extract.Cat(io.Discard, open(t, "Disk:/docs"), nil); !errors.Is(err, extract.ErrNotRegular) || !strings.HasPrefix(err.Error(), "Disk:/docs: ") {
		t.Errorf("Cat of a folder: %v", err)
	}
	if n := extract.Size(open(t, "Disk:").Loc); n != 3<<20+int64(len(helloData)+6+len(bData)) {
		t.Errorf("Size of the point: %d (raw disk, partition and files)", n)
	}
}

// brokenFS fails to open one file and lists a name no local folder can
// hold.
type brokenFS struct {
	volume.FS
	bad uint64
}

func (b brokenFS) Open(ino uint64) (volume.File, error) {
	if ino == b.bad {
		return nil, fmt.Errorf("inode %d: cluster chain: %w", ino, volume.ErrCorrupt)
	}
	return b.FS.Open(ino)
}

func (b brokenFS) ReadDir(ino uint64) ([]volume.Entry, error) {
	ents, err := b.FS.ReadDir(ino)
	if ino == b.Root() {
		ents = append(ents, volume.Entry{Name: "../escape", Ino: b.bad})
	}
	return ents, err
}

func TestCopyGoesOn(t *testing.T) {
	p := open(t, "Disk:/")
	e, err := p.Loc.Node.FS.Lookup(p.Loc.Node.FS.Root(), "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	p.Loc.Node = &checkpoint.Node{Name: "1-0x01", FS: brokenFS{FS: p.Loc.Node.FS, bad: e.Ino}}
	dst := filepath.Join(t.TempDir(), "copy")
	var failed []string
	sum, err := extract.Copy(p, dst, extract.Options{OnEntry: func(e extract.Entry) {
		if e.Err != nil {
			failed = append(failed, e.Err.Error())
		}
	}})
	if err != nil || sum.Failed != 2 || sum.Files != 2 {
		t.Fatalf("Copy: %+v, %v", sum, err)
	}
	if len(failed) != 2 || !strings.HasPrefix(failed[0], "Disk:/hello.txt: input/output error: ") ||
		!strings.Contains(failed[1], `Disk:/: an entry named "../escape" cannot be a local file name`) {
		t.Errorf("failures: %q", failed)
	}
	if _, err := os.Lstat(filepath.Join(dst, "hello.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed file was left: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "docs/a.txt")); err != nil || string(b) != "alpha\n" {
		t.Errorf("docs/a.txt after a failure: %q %v", b, err)
	}
}
