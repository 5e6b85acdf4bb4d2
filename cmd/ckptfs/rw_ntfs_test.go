package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume/ntfs"
	"github.com/ckptfs/ckptfs/volume/partition"
)

// dirtyNTFS builds an NTFS partition image holding hello.txt whose volume is
// marked dirty and whose $LogFile is not clean, as a checkpoint of a running
// Windows guest is.
func dirtyNTFS(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(dir, "part.img")
	f, _ := os.Create(img)
	f.Truncate(48 << 20)
	f.Close()
	testutil.Run(t, "mkntfs", "-F", "-f", "-q", "-L", "Checkpoint", img)
	mnt := filepath.Join(dir, "fill")
	os.Mkdir(mnt, 0o755)
	stop := testutil.MountNTFS3G(t, img, mnt, "rw").Unmount
	if err := os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("hello from the checkpoint\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := ntfs.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	// VOLUME_IS_DIRTY in $Volume's $VOLUME_INFORMATION (record 3).
	loc, err := fsys.RecordLocations(3)
	if err != nil || len(loc) != 1 {
		t.Fatalf("$Volume record: %v %v", loc, err)
	}
	mirr, err := fsys.Extents(1) // $MFTMirr holds copies of records 0-3
	if err != nil || len(mirr) == 0 {
		t.Fatalf("$MFTMirr: %v %v", mirr, err)
	}
	rs := fsys.RecordSize()
	for _, at := range []int64{loc[0].Physical, mirr[0].Physical + 3*rs} {
		rec := b[at : at+rs]
		set := false
		for p := int(le16(rec[0x14:])); p+24 < len(rec); {
			typ := le32(rec[p:])
			if typ == 0xffffffff {
				break
			}
			if typ == 0x70 {
				v := p + int(le16(rec[p+0x14:]))
				if (v+10)%512 >= 510 {
					t.Fatal("flags field under a fixup")
				}
				rec[v+10] |= 1
				set = true
				break
			}
			p += int(le32(rec[p+4:]))
		}
		if !set {
			t.Fatal("no $VOLUME_INFORMATION in $Volume")
		}
	}
	// A $LogFile that is not clean: overwrite its restart areas.
	ext, err := fsys.Extents(2)
	if err != nil || len(ext) == 0 {
		t.Fatalf("$LogFile extents: %v %v", ext, err)
	}
	for i := int64(0); i < 16<<10; i++ {
		b[ext[0].Physical+i] = byte(i*31 + 7)
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }

// TestNTFSDirtyCheckpointRW mounts the partition of a dirty NTFS checkpoint
// read-write with ntfs-3g through ckptfs mount --rw: ntfs-3g resets the
// journal and writes, all into the new layer; the checkpoint file stays
// byte-identical and the layer holds the changes.
func TestNTFSDirtyCheckpointRW(t *testing.T) {
	testutil.NeedFUSE(t)
	testutil.Need(t, "mkntfs", "ntfs-3g", "sgdisk", "qemu-img")
	bin := sharedBinary(t)
	dir := t.TempDir()
	part := dirtyNTFS(t, dir)
	raw := filepath.Join(dir, "disk.raw")
	f, _ := os.Create(raw)
	f.Truncate(52 << 20)
	f.Close()
	testutil.Run(t, "sgdisk", "-n", "1:2048:+48M", "-t", "1:0700", "-c", "1:Windows", raw)
	pb, _ := os.ReadFile(part)
	rf, _ := os.OpenFile(raw, os.O_WRONLY, 0)
	rf.WriteAt(pb, 2048*512)
	rf.Close()
	base := filepath.Join(dir, "Win.vhdx")
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", raw, base)
	testutil.Unchanged(t, base)

	layers, mnt := t.TempDir(), mountDir(t)
	pid := ckptfsMount(t, bin, base, mnt, "--rw", "--layer-dir", layers)
	layer := layerIn(t, layers)
	pfile := filepath.Join(mnt, mtStem(layer), "Win.partitions", "1-Windows.raw")
	nt := filepath.Join(t.TempDir(), "nt")
	os.Mkdir(nt, 0o755)
	m := testutil.MountNTFS3G(t, pfile, nt, "rw")
	stop, msg := m.Unmount, m.Output()
	if !bytes.Contains([]byte(msg), []byte("wasn't safely closed")) {
		t.Fatalf("the fixture is not dirty: ntfs-3g said %q", msg)
	}
	got, err := os.ReadFile(filepath.Join(nt, "hello.txt"))
	if err != nil || string(got) != "hello from the checkpoint\n" {
		t.Fatalf("hello.txt through ntfs-3g rw: %q %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(nt, "recovered.txt"), []byte("written after the checkpoint\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop()
	testutil.Unmount(mnt)
	waitExit(pid, 10*time.Second)

	// The layer holds the new file; the checkpoint does not.
	for _, c := range []struct {
		file string
		want bool
	}{{layer, true}, {base, false}} {
		ch, err := chain.Open(c.file, chain.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ps, err := partition.Read(ch, ch.Size(), 512)
		if err != nil || len(ps) != 1 {
			t.Fatalf("partitions of %s: %v %v", c.file, ps, err)
		}
		fsys, err := ntfs.Open(io.NewSectionReader(ch, ps[0].Start, ps[0].Size), ps[0].Size)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fsys.Lookup(fsys.Root(), "recovered.txt")
		if (err == nil) != c.want {
			t.Errorf("%s: recovered.txt present = %v, want %v", filepath.Base(c.file), err == nil, c.want)
		}
		ch.Close()
	}
}
