package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// ntfs3g mounts image on a new folder with ntfs-3g and returns the folder
// and a function that unmounts it (and waits for ntfs-3g to finish
// writing). Also called at cleanup.
func ntfs3g(t *testing.T, image string, opts ...string) (string, func()) {
	t.Helper()
	m := testutil.MountNTFS3G(t, image, mountDir(t), opts...)
	return m.Dir, func() {
		if err := m.Unmount(); err != nil {
			t.Error(err)
		}
	}
}

func mtWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMountGPTWithNTFS builds a GPT disk holding an EFI FAT32 partition
// and an NTFS partition (qemu-img makes the base VHDX), and a checkpoint
// layer holding exactly the sectors that changed when files were edited.
// Through the mount: partition files have the right sizes, mtools and
// ntfs-3g read known files from them, and diff -r between the two points
// shows exactly the edited files.
func TestMountGPTWithNTFS(t *testing.T) {
	testutil.NeedFUSE(t)
	testutil.Need(t, "qemu-img", "sgdisk", "mkfs.vfat", "mkntfs", "ntfs-3g", "mcopy", "mtype", "diff")
	bin := sharedBinary(t)
	work := t.TempDir()
	const (
		mib      = 1 << 20
		diskSize = 64 * mib
		p1Start  = 2048 * 512
		p1Size   = 34 * mib
		p2Start  = p1Start + p1Size
		p2Size   = 28 * mib
	)
	rawA := filepath.Join(work, "a.raw")
	if err := os.WriteFile(rawA, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(rawA, diskSize); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "sgdisk", "-n", "1:2048:+34M", "-t", "1:EF00", "-c", "1:EFI system partition",
		"-n", "2:71680:+28M", "-t", "2:0700", "-c", "2:Basic data partition", rawA)
	testutil.Run(t, "mkfs.vfat", "-F", "32", "-s", "1", "-S", "512", "--offset", "2048", "-n", "EFI", rawA, "34816")
	hello := filepath.Join(work, "hello.txt")
	mtWrite(t, hello, "hello from FAT32\n")
	testutil.Run(t, "mmd", "-i", rawA+"@@1M", "::/EFI")
	testutil.Run(t, "mcopy", "-i", rawA+"@@1M", hello, "::/EFI/hello.txt")

	// The NTFS partition, before and after the edits.
	p2a := filepath.Join(work, "p2a.img")
	if err := os.WriteFile(p2a, make([]byte, p2Size), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "mkntfs", "-F", "-Q", "-s", "512", "-p", "71680", "-H", "255", "-S", "63", "-L", "Data", p2a)
	n, unmount := ntfs3g(t, p2a)
	mtWrite(t, filepath.Join(n, "Users", "known.txt"), "hello from NTFS\n")
	mtWrite(t, filepath.Join(n, "keep.txt"), "kept\n")
	mtWrite(t, filepath.Join(n, "change.txt"), "before\n")
	mtWrite(t, filepath.Join(n, "delete.txt"), "to be deleted\n")
	big := make([]byte, 3*mib+123)
	vhdxtest.Fill(big, 42)
	mtWrite(t, filepath.Join(n, "Users", "big.bin"), string(big))
	unmount()
	p2b := filepath.Join(work, "p2b.img")
	b, err := os.ReadFile(p2a)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p2b, b, 0o644)
	n, unmount = ntfs3g(t, p2b)
	mtWrite(t, filepath.Join(n, "change.txt"), "after, longer than before\n")
	os.Remove(filepath.Join(n, "delete.txt"))
	mtWrite(t, filepath.Join(n, "new.txt"), "new\n")
	mtWrite(t, filepath.Join(n, "More", "x.txt"), "x\n")
	unmount()

	// Whole disks A (base) and B (checkpoint).
	diskA, err := os.ReadFile(rawA)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := os.ReadFile(p2a)
	pb, _ := os.ReadFile(p2b)
	copy(diskA[p2Start:], pa)
	diskB := append([]byte(nil), diskA...)
	copy(diskB[p2Start:], pb)
	os.WriteFile(rawA, diskA, 0o644)

	src := filepath.Join(work, "vm")
	os.Mkdir(src, 0o755)
	base := filepath.Join(src, "Win.vhdx")
	if got, want := qemuBase(t, rawA, base, "subformat=dynamic,block_size=2M"), testutil.SHA256Bytes(diskA); got != want {
		t.Fatalf("qemu-img round trip differs")
	}
	childPath := filepath.Join(src, vhdxtest.ChildName("Win"))
	vhdxtest.DiffChild(t, vhdxtest.StandIn(t, base), base, childPath, diskA, diskB)
	testutil.Unchanged(t, base, childPath)

	mnt := mountDir(t)
	ckptfsMount(t, bin, src, mnt)
	pA, pB := filepath.Join(mnt, "Win"), filepath.Join(mnt, mtStem(childPath))
	for _, c := range []struct {
		dir  string
		want []byte
	}{{pA, diskA}, {pB, diskB}} {
		if got := testutil.SHA256File(t, filepath.Join(c.dir, "Win.raw")); got != testutil.SHA256Bytes(c.want) {
			t.Errorf("%s/Win.raw differs", filepath.Base(c.dir))
		}
		ents, err := os.ReadDir(filepath.Join(c.dir, "Win.partitions"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if strings.Join(names, "|") != "1-EFI system partition.raw|2-Basic data partition.raw" {
			t.Fatalf("%s: partitions %q", filepath.Base(c.dir), names)
		}
		for i, size := range []int64{p1Size, p2Size} {
			st, err := os.Stat(filepath.Join(c.dir, "Win.partitions", names[i]))
			if err != nil || st.Size() != size {
				t.Errorf("%s: %v size %d, want %d", names[i], err, st.Size(), size)
			}
		}
	}
	efi := filepath.Join(pB, "Win.partitions", "1-EFI system partition.raw")
	if out := testutil.Run(t, "mtype", "-i", efi, "::/EFI/hello.txt"); out != "hello from FAT32\n" {
		t.Errorf("FAT32 through the mount: %q", out)
	}

	ntA, _ := ntfs3g(t, filepath.Join(pA, "Win.partitions", "2-Basic data partition.raw"), "ro")
	ntB, _ := ntfs3g(t, filepath.Join(pB, "Win.partitions", "2-Basic data partition.raw"), "ro")
	for _, d := range []string{ntA, ntB} {
		if b, err := os.ReadFile(filepath.Join(d, "Users", "known.txt")); err != nil || string(b) != "hello from NTFS\n" {
			t.Errorf("known.txt through the mount: %q, %v", b, err)
		}
		if b, err := os.ReadFile(filepath.Join(d, "Users", "big.bin")); err != nil || !bytes.Equal(b, big) {
			t.Errorf("big.bin through the mount: %d bytes, %v", len(b), err)
		}
	}
	out, err := exec.Command("diff", "-rq", ntA, ntB).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("diff -r: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(strings.NewReplacer(ntA, "A", ntB, "B").Replace(string(out))), "\n")
	sort.Strings(lines)
	want := []string{"Files A/change.txt and B/change.txt differ", "Only in A: delete.txt", "Only in B: More", "Only in B: new.txt"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff -r between the points:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
