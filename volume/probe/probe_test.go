package probe

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/partition"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func sparseFile(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
}

// TestDisk builds a GPT disk whose partitions hold FAT, NTFS and ext4 file
// systems, then finds and opens each through partition.Read and Open.
func TestDisk(t *testing.T) {
	testutil.Need(t, "sgdisk", "mkfs.vfat", "mcopy", "mkntfs", "ntfscp", "mkfs.ext4")
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello.txt")
	os.WriteFile(hello, []byte("hello from a partition\n"), 0o644)
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello from a partition\n"), 0o644)

	const mib = 1 << 20
	fatImg, ntfsImg, extImg := filepath.Join(dir, "fat"), filepath.Join(dir, "ntfs"), filepath.Join(dir, "ext")
	sparseFile(t, fatImg, 8*mib)
	run(t, "mkfs.vfat", "-n", "ESP", fatImg)
	run(t, "mcopy", "-i", fatImg, hello, "::/")
	sparseFile(t, ntfsImg, 8*mib)
	run(t, "mkntfs", "-q", "-Q", "-F", "-L", "WINVOL", ntfsImg)
	run(t, "ntfscp", ntfsImg, hello, "hello.txt")
	run(t, "mkfs.ext4", "-q", "-F", "-L", "linuxvol", "-d", src, extImg, "8M")

	disk := filepath.Join(dir, "disk.img")
	sparseFile(t, disk, 32*mib)
	run(t, "sgdisk",
		"-n", "1:1M:+8M", "-t", "1:ef00", "-c", "1:EFI system partition",
		"-n", "2:0:+8M", "-t", "2:0700", "-c", "2:Basic data partition",
		"-n", "3:0:+8M", "-t", "3:8300", disk)
	d, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	parts, err := partition.Read(d, 32*mib, 512)
	if err != nil || len(parts) != 3 {
		t.Fatalf("partitions %v, %v", parts, err)
	}
	for i, img := range []string{fatImg, ntfsImg, extImg} {
		data, _ := os.ReadFile(img)
		if _, err := d.WriteAt(data, parts[i].Start); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct{ typ, label string }{{"fat12", "ESP"}, {"ntfs", "WINVOL"}, {"ext4", "linuxvol"}}
	for i, p := range parts {
		fsys, err := Open(io.NewSectionReader(d, p.Start, p.Size), p.Size)
		if err != nil {
			t.Fatalf("partition %d: %v", p.Number, err)
		}
		if fsys.Type() != want[i].typ || fsys.Label() != want[i].label {
			t.Errorf("partition %d: %s %q, want %s %q", p.Number, fsys.Type(), fsys.Label(), want[i].typ, want[i].label)
		}
		e, err := fsys.Lookup(fsys.Root(), "hello.txt")
		if err != nil {
			t.Fatalf("partition %d: %v", p.Number, err)
		}
		fl, err := fsys.Open(e.Ino)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()))
		if string(got) != "hello from a partition\n" {
			t.Errorf("partition %d: hello.txt = %q", p.Number, got)
		}
	}
}

func TestUnknown(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"zeros", make([]byte, 1<<16)},
		{"empty", nil},
		{"text", bytes.Repeat([]byte("not a file system "), 1000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys, err := Open(bytes.NewReader(tc.data), int64(len(tc.data)))
			if fsys != nil || !errors.Is(err, volume.ErrUnknownFS) {
				t.Fatalf("Open = %v, %v; want ErrUnknownFS", fsys, err)
			}
		})
	}
}

func TestSignatureButBroken(t *testing.T) {
	// An ext4 magic with nothing else valid: the ext4 error comes back.
	b := make([]byte, 1<<16)
	b[1024+0x38], b[1024+0x39] = 0x53, 0xEF
	fsys, err := Open(bytes.NewReader(b), int64(len(b)))
	if fsys != nil || err == nil || errors.Is(err, volume.ErrUnknownFS) || !strings.Contains(err.Error(), "ext4") {
		t.Fatalf("Open = %v, %v", fsys, err)
	}
}

// TestXFS opens a whole-volume XFS image (made with mkfs.xfs from a
// protofile, no mount needed) through Open.
func TestXFS(t *testing.T) {
	testutil.Need(t, "mkfs.xfs")
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello.txt")
	os.WriteFile(hello, []byte("hello from xfs\n"), 0o644)
	proto := filepath.Join(dir, "proto")
	os.WriteFile(proto, []byte("/dev/null\n0 0\nd--755 0 0\nhello.txt ---644 0 0 "+hello+"\n$\n"), 0o644)
	img := filepath.Join(dir, "xfs.img")
	sparseFile(t, img, 64<<20)
	cmd := exec.Command("mkfs.xfs", "-q", "-f", "-L", "linuxxfs", "-p", proto, img)
	// mkfs.xfs refuses file systems below 300 MB outside its own test suite.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := Open(f, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if fsys.Type() != "xfs" || fsys.Label() != "linuxxfs" {
		t.Errorf("Type/Label = %q/%q", fsys.Type(), fsys.Label())
	}
	e, err := fsys.Lookup(fsys.Root(), "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fsys.Open(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(io.NewSectionReader(fl, 0, fl.Size()))
	if string(got) != "hello from xfs\n" {
		t.Errorf("hello.txt = %q", got)
	}
	// An XFS magic with nothing else valid: the XFS error comes back.
	b := make([]byte, 1<<16)
	copy(b, "XFSB")
	if fsys, err := Open(bytes.NewReader(b), int64(len(b))); fsys != nil || err == nil || !strings.Contains(err.Error(), "xfs") {
		t.Fatalf("broken XFS: Open = %v, %v", fsys, err)
	}
}
