package ntfs

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/ckptfs/ckptfs/volume"
)

// TestExtents checks where the helpers say things are against the bytes of
// an image written by ntfs-3g.
func TestExtents(t *testing.T) {
	requireTools(t)
	img := makeImage(t, t.TempDir(), 32, "ext")
	m := mountImage(t, img)
	writeFile(t, m.Path("small.txt"), []byte("resident"))
	big := pattern(1, 300<<10)
	writeFile(t, m.Path("dir/big.bin"), big)
	must(t, os.Link(m.Path("dir/big.bin"), m.Path("link.bin")))
	f, err := os.Create(m.Path("sparse.bin"))
	must(t, err)
	_, err = f.WriteAt(pattern(2, 5000), 2<<20)
	must(t, err)
	must(t, f.Close())
	writeFile(t, m.Path("LongFileName.text"), []byte("long"))
	setXattr(t, m.Path("LongFileName.text"), "system.ntfs_dos_name", []byte("LONGFI~1.TEX"))
	must(t, m.Unmount())

	raw, err := os.ReadFile(img)
	must(t, err)
	fs := openImage(t, img)
	ino := func(p string) uint64 {
		e, err := walkReader(fs, p)
		must(t, err)
		return e.Ino
	}
	at := func(e volume.Extent) []byte { return raw[e.Physical : e.Physical+e.Length] }

	// Records are where RecordLocations says.
	for _, p := range []string{"small.txt", "dir/big.bin", "dir", "sparse.bin"} {
		n := ino(p)
		locs, err := fs.RecordLocations(n)
		must(t, err)
		var rec []byte
		for _, l := range locs {
			rec = append(rec, at(l)...)
		}
		if int64(len(rec)) != fs.RecordSize() || string(rec[:4]) != "FILE" || uint64(le32(rec[0x2C:])) != n {
			t.Errorf("%s: record %d is not at %+v", p, n, locs)
		}
		ri, err := fs.ReadRecordInfo(n)
		if err != nil || !ri.InUse || ri.Inode() != n || ri.Err != nil {
			t.Errorf("%s: ReadRecordInfo: %+v %v", p, ri, err)
		}
	}
	if ext := fs.MFTExtents(); len(ext) == 0 || ext[0].Logical != 0 || string(at(ext[0])[:4]) != "FILE" {
		t.Errorf("MFTExtents: %+v", ext)
	}

	// Data extents hold the data; resident data is its record.
	ext, err := fs.Extents(ino("dir/big.bin"))
	must(t, err)
	var got []byte
	for _, e := range ext {
		if e.Physical < 0 {
			got = append(got, make([]byte, e.Length)...)
		} else {
			got = append(got, at(e)...)
		}
	}
	if len(got) < len(big) || !bytes.Equal(got[:len(big)], big) {
		t.Errorf("big.bin: extents %+v do not hold its data", ext)
	}
	ext, err = fs.Extents(ino("sparse.bin"))
	must(t, err)
	holes := 0
	for _, e := range ext {
		if e.Physical < 0 {
			holes++
		}
	}
	if holes == 0 {
		t.Errorf("sparse.bin: no holes in %+v", ext)
	}
	ext, err = fs.Extents(ino("small.txt"))
	must(t, err)
	if locs, _ := fs.RecordLocations(ino("small.txt")); !slices.Equal(ext, locs) {
		t.Errorf("small.txt: extents %+v, record at %+v", ext, locs)
	}
	if ext, err := fs.Extents(ino("dir")); err != nil || ext != nil {
		t.Errorf("dir: extents %+v %v", ext, err)
	}

	// Names: both hard links, no DOS alias.
	names, err := fs.Names(ino("dir/big.bin"))
	must(t, err)
	want := []Name{{ino("dir"), "big.bin"}, {recRoot, "link.bin"}}
	if !slices.Equal(names, want) && !slices.Equal(names, []Name{want[1], want[0]}) {
		t.Errorf("Names: %+v, want %+v", names, want)
	}
	if names, _ := fs.Names(ino("LongFileName.text")); len(names) != 1 || names[0].Name != "LongFileName.text" {
		t.Errorf("Names with a DOS alias: %+v", names)
	}

	// Paths: one per name, from the root; none for metafiles.
	pf := NewPathFinder(fs)
	for _, c := range []struct {
		ino  uint64
		want []string
	}{
		{ino("dir/big.bin"), []string{"dir/big.bin", "link.bin"}},
		{ino("dir"), []string{"dir"}},
		{ino("LongFileName.text"), []string{"LongFileName.text"}},
		{recRoot, []string{""}},
		{recMFT, nil},
		{recUpCase, nil},
	} {
		got, err := pf.Paths(c.ino)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Paths(%d) = %q, %v; want %q", c.ino, got, err, c.want)
		}
	}
	for ino, want := range map[uint64]bool{recMFT: true, recVolume: true, 23: true, recRoot: false, ino("small.txt"): false} {
		if IsMetafile(ino) != want {
			t.Errorf("IsMetafile(%d) = %v", ino, !want)
		}
	}

	// A scan sees every record, with the clusters of non-resident ones.
	seen := map[uint64]volume.Extent{}
	must(t, fs.ScanRecords(0, fs.RecordCount(), func(ri RecordInfo) error {
		if ri.InUse && len(ri.Extents) > 0 {
			seen[ri.Inode()] = ri.Extents[0]
		}
		return nil
	}))
	if e, ok := seen[ino("dir/big.bin")]; !ok || e.Physical != got2(fs, t, ino("dir/big.bin")) {
		t.Errorf("scan: big.bin %+v", e)
	}
	if _, ok := seen[ino("small.txt")]; ok {
		t.Errorf("scan: resident small.txt has clusters")
	}
	n := 0
	must(t, fs.ScanRecords(3, 7, func(ri RecordInfo) error { n++; return nil }))
	if n != 4 {
		t.Errorf("ScanRecords(3, 7) saw %d records", n)
	}

	// A damaged record is described, not fatal.
	locs, _ := fs.RecordLocations(ino("small.txt"))
	raw2 := slices.Clone(raw)
	copy(raw2[locs[0].Physical:], "JUNKJUNK")
	fs2, err := Open(bytes.NewReader(raw2), int64(len(raw2)))
	must(t, err)
	ri, err := fs2.ReadRecordInfo(ino("small.txt"))
	if err != nil || !errors.Is(ri.Err, volume.ErrCorrupt) || ri.InUse {
		t.Errorf("damaged record: %+v %v", ri, err)
	}
	if _, err := fs.RecordLocations(fs.RecordCount()); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("RecordLocations past the end: %v", err)
	}
}

func got2(fs *FS, t *testing.T, ino uint64) int64 {
	ext, err := fs.Extents(ino)
	must(t, err)
	return ext[0].Physical
}
