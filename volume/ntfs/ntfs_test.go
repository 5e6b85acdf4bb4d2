package ntfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf16"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// reparseBuffer builds a SYMLINK or MOUNT_POINT reparse point.
func reparseBuffer(tag uint32, sub, print string, flags uint32) []byte {
	enc := func(s string) []byte {
		u := utf16.Encode([]rune(s))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(b[2*i:], c)
		}
		return b
	}
	s, p := enc(sub), enc(print)
	var d bytes.Buffer
	le := func(v any) { binary.Write(&d, binary.LittleEndian, v) }
	if tag == tagSymlink {
		le([]uint16{0, uint16(len(s)), uint16(len(s)), uint16(len(p))})
		le(flags)
		d.Write(s)
		d.Write(p)
	} else {
		le([]uint16{0, uint16(len(s)), uint16(len(s) + 2), uint16(len(p))})
		d.Write(s)
		d.Write([]byte{0, 0})
		d.Write(p)
		d.Write([]byte{0, 0})
	}
	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, tag)
	binary.Write(&out, binary.LittleEndian, uint16(d.Len()))
	binary.Write(&out, binary.LittleEndian, uint16(0))
	out.Write(d.Bytes())
	return out.Bytes()
}

func setXattr(t testing.TB, path, name string, value []byte) {
	t.Helper()
	if err := syscall.Setxattr(path, name, value, 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", path, name, err)
	}
}

// setCompressed marks a directory (or file) compressed through ntfs-3g's
// system.ntfs_attrib_be attribute (big-endian file attribute flags).
func setCompressed(t testing.TB, path string) {
	t.Helper()
	b, err := getXattr(path, "system.ntfs_attrib_be")
	if err != nil || len(b) != 4 {
		t.Fatalf("get ntfs_attrib_be %s: %v", path, err)
	}
	v := binary.BigEndian.Uint32(b) | faCompressed
	binary.BigEndian.PutUint32(b, v)
	setXattr(t, path, "system.ntfs_attrib_be", b)
}

// treeSpec describes what populate created beyond what the snapshot sees.
type treeSpec struct {
	compressed  []string          // files that must be stored compressed
	links       map[string]string // reparse symlinks: path → expected Readlink
	deepPath    string
	caseVariant [2]string
}

// populate creates the standard test tree on a mounted volume.
func populate(t testing.TB, m *testutil.NTFS3G, compression bool) treeSpec {
	t.Helper()
	spec := treeSpec{links: map[string]string{}}
	w := func(rel string, data []byte) { writeFile(t, m.Path(rel), data) }
	w("hello.txt", []byte("Hello, NTFS!\n"))
	w("empty", nil)
	w("medium.bin", pattern(1, 100<<10))
	w("big.bin", pattern(2, 5<<20+123))
	w("Grüße — 日本/ファイル 1.txt", textPattern(3, 5000))
	w("Grüße — 日本/Ünïcödé ñame.bin", pattern(4, 12345))
	w("name with  spaces .txt", []byte("spaces"))
	w("$notmeta", []byte("a user file whose name starts with $"))

	// Deep nesting.
	deep := "deep"
	for i := 0; i < 30; i++ {
		deep += fmt.Sprintf("/level%02d", i)
	}
	spec.deepPath = deep + "/leaf.txt"
	w(spec.deepPath, []byte("at the bottom"))

	// Hard links, across directories.
	w("links/a", pattern(5, 7000))
	must(t, os.MkdirAll(m.Path("links2"), 0o755))
	must(t, os.Link(m.Path("links/a"), m.Path("links/b")))
	must(t, os.Link(m.Path("links/a"), m.Path("links2/c")))

	// A directory large enough for a multi-block index.
	for i := 0; i < 600; i++ {
		w(fmt.Sprintf("many/entry number %04d.dat", i), []byte(fmt.Sprint(i)))
	}

	// Sparse files.
	f, err := os.Create(m.Path("sparse.bin"))
	must(t, err)
	_, err = f.WriteAt(pattern(6, 4096), 0)
	must(t, err)
	_, err = f.WriteAt(pattern(7, 10000), 10<<20+17)
	must(t, err)
	must(t, f.Truncate(20<<20))
	must(t, f.Close())
	f, err = os.Create(m.Path("shrunk.bin"))
	must(t, err)
	_, err = f.Write(pattern(11, 100<<10))
	must(t, err)
	must(t, f.Truncate(0))
	must(t, f.Close())
	f, err = os.Create(m.Path("allsparse.bin"))
	must(t, err)
	must(t, f.Truncate(64<<20))
	must(t, f.Close())

	// Alternate data streams through ntfs-3g's xattr interface.
	w("ads.txt", []byte("main data"))
	for name, v := range map[string][]byte{
		"small": []byte("tiny value"), "empty": {}, "mid": pattern(8, 3000),
		"big": pattern(9, 65536), "Grüße": []byte("unicode stream name"),
	} {
		setXattr(t, m.Path("ads.txt"), "user."+name, v)
	}
	must(t, os.MkdirAll(m.Path("adsdir"), 0o755))
	setXattr(t, m.Path("adsdir"), "user.onadir", pattern(10, 2000))

	// Symbolic links: Interix ones from ln -s, reparse points set directly.
	must(t, os.Symlink("hello.txt", m.Path("ln_rel")))
	must(t, os.Symlink("/etc/passwd", m.Path("ln_abs")))
	must(t, os.Symlink("Grüße — 日本/ファイル 1.txt", m.Path("ln_unicode")))
	rp := func(rel string, dir bool, tag uint32, sub, print string, flags uint32, want string) {
		if dir {
			must(t, os.Mkdir(m.Path(rel), 0o755))
		} else {
			w(rel, nil)
		}
		setXattr(t, m.Path(rel), "system.ntfs_reparse_data", reparseBuffer(tag, sub, print, flags))
		spec.links[rel] = want
	}
	rp("rp_rel", false, tagSymlink, `..\x\y z`, `..\x\y z`, symlinkFlagRelative, "../x/y z")
	rp("rp_abs", false, tagSymlink, `\??\C:\Windows\System32`, `C:\Windows\System32`, 0, "C:/Windows/System32")
	rp("rp_unc", false, tagSymlink, `\??\UNC\server\share\dir`, `\\server\share\dir`, 0, "//server/share/dir")
	rp("junction", true, tagMountPoint, `\??\C:\Users\Public`, `C:\Users\Public`, 0, "C:/Users/Public")

	// A Win32 name with a DOS 8.3 alias: only the long name is listed.
	w("LongFileName.text", []byte("long"))
	setXattr(t, m.Path("LongFileName.text"), "system.ntfs_dos_name", []byte("LONGFI~1.TEX"))

	// POSIX names differing only in case.
	w("case/Readme", []byte("upper"))
	w("case/readme", []byte("lower"))
	spec.caseVariant = [2]string{"case/Readme", "case/readme"}

	if compression {
		must(t, os.Mkdir(m.Path("comp"), 0o755))
		setCompressed(t, m.Path("comp"))
		files := map[string][]byte{
			"comp/text.txt":  textPattern(11, 300<<10+77),
			"comp/random":    pattern(12, 200<<10),
			"comp/zeros":     make([]byte, 256<<10),
			"comp/small.txt": textPattern(13, 3000),
			"comp/odd":       textPattern(14, 70001),
		}
		mixed := make([]byte, 0, 1<<20)
		for i := 0; i < 16; i++ {
			if i%3 == 1 {
				mixed = append(mixed, pattern(uint64(100+i), 65536)...)
			} else if i%3 == 2 {
				mixed = append(mixed, make([]byte, 65536)...)
			} else {
				mixed = append(mixed, textPattern(uint64(100+i), 65536)...)
			}
		}
		files["comp/mixed"] = mixed
		for rel, data := range files {
			w(rel, data)
		}
		spec.compressed = []string{"comp/text.txt", "comp/odd", "comp/mixed", "comp/random"}
		// A compressed file with holes.
		f, err := os.Create(m.Path("comp/sparse"))
		must(t, err)
		_, err = f.WriteAt(textPattern(15, 100000), 1<<20+5)
		must(t, err)
		must(t, f.Truncate(3<<20))
		must(t, f.Close())
		// Alternate data stream of a compressed file.
		setXattr(t, m.Path("comp/text.txt"), "user.stream", textPattern(16, 60000))
	}
	return spec
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestVolumes builds volumes with different geometries, populates them
// through ntfs-3g and checks every file, directory, stream, link and
// timestamp against ntfs-3g's own view.
func TestVolumes(t *testing.T) {
	requireTools(t)
	cases := []struct {
		name        string
		sizeMiB     int64
		args        []string
		compression bool
	}{
		{"cluster4k", 256, nil, true},
		{"cluster512", 128, []string{"-c", "512"}, true},
		{"cluster2k", 128, []string{"-c", "2048"}, true},
		{"cluster8k", 128, []string{"-c", "8192"}, false},
		{"cluster64k", 256, []string{"-c", "65536"}, false},
		{"sector4k", 256, []string{"-s", "4096"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := makeImage(t, dir, tc.sizeMiB, "Test Vol "+tc.name, tc.args...)
			opts := []string{}
			if tc.compression {
				opts = append(opts, "compression")
			}
			m := mountImage(t, img, opts...)
			spec := populate(t, m, tc.compression)
			isLink := func(rel string) bool { _, ok := spec.links[rel]; return ok }
			snap := snapshot(t, m, isLink)
			must(t, m.Unmount())

			fsys := openImage(t, img)
			t.Logf("sector %d, cluster %d, MFT record %d bytes", fsys.sectorSize, fsys.clusterSize, fsys.recordSize)
			if got, want := fsys.Label(), "Test Vol "+tc.name; got != want {
				t.Errorf("Label = %q, want %q", got, want)
			}
			if fsys.Type() != "ntfs" || fsys.Root() != 5 || !fsys.CaseInsensitive() {
				t.Errorf("Type/Root/CaseInsensitive = %q %d %v", fsys.Type(), fsys.Root(), fsys.CaseInsensitive())
			}
			compareSnapshot(t, fsys, snap, isLink)
			checkSpec(t, fsys, spec, snap)
		})
	}
}

// checkSpec checks what ntfs-3g cannot tell: reparse targets, compression,
// hidden metafiles, DOS names and case-insensitive lookup.
func checkSpec(t *testing.T, fsys *FS, spec treeSpec, snap map[string]*snapNode) {
	for rel, want := range spec.links {
		e, err := walkReader(fsys, rel)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if e.Mode != iofs.ModeSymlink {
			t.Errorf("%s: entry mode %v, want symlink", rel, e.Mode)
		}
		got, err := fsys.Readlink(e.Ino)
		if err != nil || got != want {
			t.Errorf("%s: Readlink = %q, %v; want %q", rel, got, err, want)
		}
	}
	if _, err := fsys.Readlink(snap["hello.txt"].ino); !errors.Is(err, iofs.ErrInvalid) {
		t.Errorf("Readlink of a regular file: %v", err)
	}
	for _, rel := range spec.compressed {
		e, err := walkReader(fsys, rel)
		must(t, err)
		f, err := fsys.Open(e.Ino)
		must(t, err)
		if !f.(*stream).compressed() {
			t.Errorf("%s: not stored compressed", rel)
		}
	}
	// Sparse files have sparse runs and allocate little.
	for _, rel := range []string{"sparse.bin", "allsparse.bin"} {
		e, err := walkReader(fsys, rel)
		must(t, err)
		f, err := fsys.Open(e.Ino)
		must(t, err)
		holes := 0
		for _, r := range f.(*stream).runs {
			if r.lcn < 0 {
				holes++
			}
		}
		st, err := fsys.Stat(e.Ino)
		must(t, err)
		if holes == 0 || st.Alloc >= st.Size/2 {
			t.Errorf("%s: %d sparse runs, %d of %d bytes allocated", rel, holes, st.Alloc, st.Size)
		}
	}
	// Small streams are resident, large ones are not.
	ads := snap["ads.txt"].ino
	for name, resident := range map[string]bool{"small": true, "empty": true, "big": false} {
		f, err := fsys.OpenStream(ads, name)
		must(t, err)
		if f.(*stream).resident != resident {
			t.Errorf("stream %s: resident %v, want %v", name, !resident, resident)
		}
	}
	// Case-insensitive lookups.
	for rel, n := range snap {
		if rel == "." || strings.HasPrefix(rel, "case/") {
			continue
		}
		for _, v := range []string{strings.ToUpper(rel), strings.ToLower(rel)} {
			e, err := walkReader(fsys, v)
			if err != nil {
				t.Errorf("Lookup %q: %v", v, err)
			} else if e.Ino != n.ino {
				t.Errorf("Lookup %q: ino %d, want %d", v, e.Ino, n.ino)
			}
		}
	}
	// Names differing only in case: the exact one wins, either is found.
	for _, rel := range spec.caseVariant {
		e, err := walkReader(fsys, rel)
		must(t, err)
		if e.Ino != snap[rel].ino || "case/"+e.Name != rel {
			t.Errorf("Lookup %q = %+v, want ino %d", rel, e, snap[rel].ino)
		}
	}
	if e, err := walkReader(fsys, "case/README"); err != nil || (e.Ino != snap["case/Readme"].ino && e.Ino != snap["case/readme"].ino) {
		t.Errorf("Lookup case/README = %+v, %v", e, err)
	}
	// Metafiles are hidden, user files starting with $ are not.
	for _, name := range []string{"$MFT", "$Bitmap", "$Extend", "$UpCase", "$mft", "."} {
		if _, err := fsys.Lookup(5, name); !errors.Is(err, volume.ErrNotFound) {
			t.Errorf("Lookup(root, %q) = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := fsys.Lookup(5, "$NOTMETA"); err != nil {
		t.Errorf("Lookup $NOTMETA: %v", err)
	}
	ents, err := fsys.ReadDir(5)
	must(t, err)
	for _, e := range ents {
		if strings.HasPrefix(e.Name, "$") && e.Name != "$notmeta" {
			t.Errorf("root lists metafile %q", e.Name)
		}
	}
	// The DOS alias is neither listed nor found.
	if _, err := fsys.Lookup(5, "LONGFI~1.TEX"); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("Lookup of DOS name: %v", err)
	}
	// Hard links: one inode, two names.
	a, b, c := snap["links/a"], snap["links/b"], snap["links2/c"]
	if a.ino != b.ino || a.ino != c.ino {
		t.Errorf("hard links have inodes %d %d %d", a.ino, b.ino, c.ino)
	}
	if st, err := fsys.Stat(a.ino); err != nil || st.Nlink != 3 {
		t.Errorf("hard link Stat: nlink %d, %v", st.Nlink, err)
	}
	// Directory operations on files and vice versa.
	if _, err := fsys.ReadDir(a.ino); !errors.Is(err, volume.ErrNotDir) {
		t.Errorf("ReadDir on a file: %v", err)
	}
	if _, err := fsys.Lookup(a.ino, "x"); !errors.Is(err, volume.ErrNotDir) {
		t.Errorf("Lookup in a file: %v", err)
	}
	if _, err := fsys.Open(5); err == nil {
		t.Errorf("Open of a directory succeeded")
	}
	if _, err := fsys.OpenStream(snap["ads.txt"].ino, "nosuch"); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("OpenStream of a missing stream: %v", err)
	}
	if f, err := fsys.OpenStream(snap["ads.txt"].ino, "SMALL"); err != nil || f.Size() != 10 {
		t.Errorf("OpenStream ignoring case: %v", err)
	}
	if _, err := fsys.Stat(1 << 40); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("Stat of a huge inode: %v", err)
	}
	// Stat of the metafiles by number works.
	for _, ino := range []uint64{0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11} {
		if _, err := fsys.Stat(ino); err != nil {
			t.Errorf("Stat(%d): %v", ino, err)
		}
	}
	if _, err := fsys.ReadDir(11); err != nil {
		t.Errorf("ReadDir($Extend): %v", err)
	}
}

func TestProbe(t *testing.T) {
	good := make([]byte, 512)
	copy(good[3:], "NTFS    ")
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"ntfs", good, true},
		{"short", good[:8], false},
		{"fat", append([]byte{0xEB, 0x3C, 0x90}, []byte("MSDOS5.0")...), false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		if got := Probe(bytes.NewReader(tc.data)); got != tc.want {
			t.Errorf("%s: Probe = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// imageBytes builds a small formatted image (no files) for boot-sector and
// record tests.
func imageBytes(t *testing.T) []byte {
	requireTools(t)
	img := makeImage(t, t.TempDir(), 8, "small")
	b, err := os.ReadFile(img)
	must(t, err)
	return b
}

func TestBadBootSector(t *testing.T) {
	base := imageBytes(t)
	tests := []struct {
		name    string
		mutate  func(b []byte)
		wantErr error
		msg     string
	}{
		{"oem", func(b []byte) { copy(b[3:], "MSDOS5.0") }, volume.ErrUnknownFS, "OEM ID"},
		{"zeroed", func(b []byte) { clear(b[:512]) }, volume.ErrUnknownFS, "OEM ID"},
		{"bytes per sector", func(b []byte) { binary.LittleEndian.PutUint16(b[0x0B:], 300) }, volume.ErrCorrupt, "bytes per sector"},
		{"sectors per cluster", func(b []byte) { b[0x0D] = 3 }, volume.ErrCorrupt, "sectors per cluster"},
		{"zero sectors per cluster", func(b []byte) { b[0x0D] = 0 }, volume.ErrCorrupt, "sectors per cluster"},
		{"total sectors", func(b []byte) { binary.LittleEndian.PutUint64(b[0x28:], 0) }, volume.ErrCorrupt, "total sectors"},
		{"mft lcn", func(b []byte) { binary.LittleEndian.PutUint64(b[0x30:], 1<<40) }, volume.ErrCorrupt, "$MFT"},
		{"record size", func(b []byte) { b[0x40] = 0x7F }, volume.ErrCorrupt, "record size"},
		{"record size small", func(b []byte) { b[0x40] = 0xF8 }, volume.ErrCorrupt, "record size"},
		{"index size", func(b []byte) { b[0x44] = 0 }, volume.ErrCorrupt, "index block"},
		{"mft and mirror garbage", func(b []byte) {
			cs := int64(binary.LittleEndian.Uint16(b[0x0B:])) * int64(b[0x0D])
			for _, at := range []int64{0x30, 0x38} {
				off := int64(binary.LittleEndian.Uint64(b[at:])) * cs
				copy(b[off:], "XXXX")
			}
		}, volume.ErrCorrupt, "$MFT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(base)
			tc.mutate(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Open error %q, want %v mentioning %q", err, tc.wantErr, tc.msg)
			}
		})
	}
	// A damaged $MFT record 0 is replaced by its mirror copy.
	b := bytes.Clone(base)
	cs := int64(binary.LittleEndian.Uint16(b[0x0B:])) * int64(b[0x0D])
	off := int64(binary.LittleEndian.Uint64(b[0x30:])) * cs
	b[off+0x1FE] ^= 0xFF // breaks the fixup of the first sector
	fsys, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Open with damaged record 0 but good mirror: %v", err)
	}
	if _, err := fsys.ReadDir(5); err != nil {
		t.Errorf("ReadDir: %v", err)
	}
	// Too small to hold a boot sector.
	if _, err := Open(bytes.NewReader(base[:100]), 100); !errors.Is(err, volume.ErrUnknownFS) {
		t.Errorf("Open of 100 bytes: %v", err)
	}
	// A volume truncated before its MFT.
	if _, err := Open(bytes.NewReader(base[:off]), off); !errors.Is(err, volume.ErrCorrupt) {
		t.Errorf("Open of truncated image: %v", err)
	}
	// A volume truncated after its MFT opens; reads beyond the end fail.
	if _, err := Open(bytes.NewReader(base[:off+64<<10]), off+64<<10); err != nil {
		t.Errorf("Open of image truncated after the MFT: %v", err)
	}
}

// TestDirtyVolume reads a volume whose $Volume says the journal is dirty
// and whose $LogFile is garbage: the reader uses the on-disk state.
func TestDirtyVolume(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	img := makeImage(t, dir, 16, "dirty")
	m := mountImage(t, img)
	writeFile(t, m.Path("file.txt"), []byte("still readable"))
	must(t, m.Unmount())
	b, err := os.ReadFile(img)
	must(t, err)
	fsys, err := Open(bytes.NewReader(b), int64(len(b)))
	must(t, err)
	// Set VOLUME_IS_DIRTY in $VOLUME_INFORMATION and scribble over $LogFile.
	setVolumeFlag(t, fsys, b, 0x0001)
	logf, err := fsys.Open(2)
	must(t, err)
	for _, r := range logf.(*stream).runs {
		for i := r.lcn * fsys.clusterSize; i < (r.lcn+r.n)*fsys.clusterSize; i++ {
			b[i] = byte(i * 7)
		}
	}
	fsys, err = Open(bytes.NewReader(b), int64(len(b)))
	must(t, err)
	e, err := fsys.Lookup(5, "FILE.TXT")
	must(t, err)
	f, err := fsys.Open(e.Ino)
	must(t, err)
	got, err := readAllFast(f)
	if err != nil || string(got) != "still readable" {
		t.Errorf("read %q, %v", got, err)
	}
}

// setVolumeFlag ORs flag into the $VOLUME_INFORMATION flags of image b,
// redoing the record's update sequence protection.
func setVolumeFlag(t *testing.T, fsys *FS, b []byte, flag uint16) {
	t.Helper()
	off := recordOffset(t, fsys, recVolume)
	rec := b[off : off+fsys.recordSize]
	undo := unprotect(rec)
	first := int(binary.LittleEndian.Uint16(rec[0x14:]))
	for p := first; p+8 < len(rec); {
		typ := binary.LittleEndian.Uint32(rec[p:])
		if typ == atEnd {
			t.Fatal("no $VOLUME_INFORMATION")
		}
		if typ == 0x70 {
			voff := p + int(binary.LittleEndian.Uint16(rec[p+0x14:]))
			binary.LittleEndian.PutUint16(rec[voff+10:], binary.LittleEndian.Uint16(rec[voff+10:])|flag)
			break
		}
		p += int(binary.LittleEndian.Uint32(rec[p+4:]))
	}
	undo()
}

// unprotect undoes the fixups of a record in place and returns a function
// that reapplies them.
func unprotect(rec []byte) func() {
	usa := int(binary.LittleEndian.Uint16(rec[4:]))
	n := int(binary.LittleEndian.Uint16(rec[6:]))
	for i := 1; i < n; i++ {
		copy(rec[i*512-2:i*512], rec[usa+2*i:usa+2*i+2])
	}
	return func() {
		for i := 1; i < n; i++ {
			copy(rec[usa+2*i:usa+2*i+2], rec[i*512-2:i*512])
			copy(rec[i*512-2:i*512], rec[usa:usa+2])
		}
	}
}

// recordOffset returns the byte offset of MFT record num in the image.
func recordOffset(t testing.TB, fsys *FS, num uint64) int64 {
	t.Helper()
	pos := int64(num) * fsys.recordSize
	for _, r := range fsys.mft.runs {
		start, end := r.vcn*fsys.clusterSize, (r.vcn+r.n)*fsys.clusterSize
		if pos >= start && pos+fsys.recordSize <= end && r.lcn >= 0 {
			return r.lcn*fsys.clusterSize + pos - start
		}
	}
	t.Fatalf("record %d not found", num)
	return 0
}

// TestCorruptRecords damages single MFT records and index blocks: the
// affected inode reports ErrCorrupt, everything else still reads.
func TestCorruptRecords(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	img := makeImage(t, dir, 32, "corrupt")
	m := mountImage(t, img)
	names := []string{"victim.txt", "bystander.txt", "victim2.txt", "victim3.txt", "victim4.bin"}
	for i, n := range names {
		writeFile(t, m.Path(n), []byte(strings.Repeat(n, i+1)))
	}
	writeFile(t, m.Path("victim4.bin"), pattern(3, 100000))
	for i := 0; i < 300; i++ {
		writeFile(t, m.Path(fmt.Sprintf("bigdir/file%03d", i)), nil)
	}
	writeFile(t, m.Path("victimdir/inside"), []byte("x"))
	snap := snapshot(t, m, nil)
	must(t, m.Unmount())
	clean, err := os.ReadFile(img)
	must(t, err)
	fsys0, err := Open(bytes.NewReader(clean), int64(len(clean)))
	must(t, err)

	tests := []struct {
		name   string
		victim string
		damage func(rec []byte)
		op     string // stat, read, readdir
	}{
		{"fixup mismatch", "victim.txt", func(r []byte) { r[510] ^= 0x55 }, "stat"},
		{"bad magic", "victim.txt", func(r []byte) { copy(r, "BAAD") }, "stat"},
		{"usa count", "victim.txt", func(r []byte) { binary.LittleEndian.PutUint16(r[6:], 77) }, "stat"},
		{"usa offset", "victim.txt", func(r []byte) { binary.LittleEndian.PutUint16(r[4:], 1020) }, "stat"},
		{"first attribute offset", "victim2.txt", func(r []byte) { binary.LittleEndian.PutUint16(r[0x14:], 0x3FF) }, "stat"},
		{"bytes in use", "victim2.txt", func(r []byte) { binary.LittleEndian.PutUint32(r[0x18:], 0xFFFF) }, "stat"},
		{"attribute length", "victim3.txt", func(r []byte) {
			undo := unprotect(r)
			first := int(binary.LittleEndian.Uint16(r[0x14:]))
			binary.LittleEndian.PutUint32(r[first+4:], 0x10000)
			undo()
		}, "stat"},
		{"runlist", "victim4.bin", func(r []byte) {
			undo := unprotect(r)
			forEachAttr(r, func(p int) {
				if binary.LittleEndian.Uint32(r[p:]) == atData && r[p+8] == 1 {
					ro := p + int(binary.LittleEndian.Uint16(r[p+0x20:]))
					r[ro] = 0x8F // 15-byte length field
				}
			})
			undo()
		}, "read"},
		{"runlist beyond volume", "victim4.bin", func(r []byte) {
			undo := unprotect(r)
			forEachAttr(r, func(p int) {
				if binary.LittleEndian.Uint32(r[p:]) == atData && r[p+8] == 1 {
					ro := p + int(binary.LittleEndian.Uint16(r[p+0x20:]))
					h := r[ro]
					ls, os := int(h&15), int(h>>4)
					for k := 0; k < os; k++ {
						r[ro+1+ls+k] = 0x7F
					}
				}
			})
			undo()
		}, "read"},
		{"directory index root", "victimdir", func(r []byte) {
			undo := unprotect(r)
			forEachAttr(r, func(p int) {
				if binary.LittleEndian.Uint32(r[p:]) == atIndexRoot {
					voff := p + int(binary.LittleEndian.Uint16(r[p+0x14:]))
					binary.LittleEndian.PutUint32(r[voff+0x10:], 0xFFFF) // entries offset
				}
			})
			undo()
		}, "readdir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(clean)
			ino := snap[tc.victim].ino
			off := recordOffset(t, fsys0, ino)
			tc.damage(b[off : off+fsys0.recordSize])
			fsys, err := Open(bytes.NewReader(b), int64(len(b)))
			must(t, err)
			switch tc.op {
			case "stat":
				_, err := fsys.Stat(ino)
				t.Logf("Stat: %v", err)
				if !errors.Is(err, volume.ErrCorrupt) {
					t.Errorf("Stat of damaged inode: %v, want ErrCorrupt", err)
				}
				if _, err := fsys.Open(ino); !errors.Is(err, volume.ErrCorrupt) {
					t.Errorf("Open of damaged inode: %v, want ErrCorrupt", err)
				}
			case "read":
				f, err := fsys.Open(ino)
				if err == nil {
					_, err = readAllFast(f)
				}
				t.Logf("read: %v", err)
				if !errors.Is(err, volume.ErrCorrupt) {
					t.Errorf("reading damaged file: %v, want ErrCorrupt", err)
				}
			case "readdir":
				_, err := fsys.ReadDir(ino)
				t.Logf("ReadDir: %v", err)
				if !errors.Is(err, volume.ErrCorrupt) {
					t.Errorf("ReadDir of damaged directory: %v, want ErrCorrupt", err)
				}
				if _, err := fsys.Lookup(ino, "inside"); !errors.Is(err, volume.ErrCorrupt) {
					t.Errorf("Lookup in damaged directory: %v, want ErrCorrupt", err)
				}
			}
			// The directory still lists the victim, and everything else reads.
			ents, err := fsys.ReadDir(5)
			if err != nil {
				t.Fatalf("ReadDir(root): %v", err)
			}
			if len(ents) == 0 {
				t.Fatal("root is empty")
			}
			checkReadable(t, fsys, snap, tc.victim)
		})
	}

	// A damaged index block of a large directory.
	t.Run("index block", func(t *testing.T) {
		b := bytes.Clone(clean)
		ino := snap["bigdir"].ino
		n, err := fsys0.inode(ino)
		must(t, err)
		idx, err := fsys0.openIndex(n)
		must(t, err)
		if idx.alloc == nil {
			t.Fatal("bigdir has no index allocation")
		}
		r := idx.alloc.runs[0]
		b[r.lcn*fsys0.clusterSize+1000] ^= 0xFF
		b[r.lcn*fsys0.clusterSize+510] ^= 0xFF
		fsys, err := Open(bytes.NewReader(b), int64(len(b)))
		must(t, err)
		_, err = fsys.ReadDir(ino)
		t.Logf("ReadDir: %v", err)
		if !errors.Is(err, volume.ErrCorrupt) {
			t.Errorf("ReadDir with damaged index block: %v", err)
		}
		checkReadable(t, fsys, snap, "bigdir")
	})
}

func forEachAttr(r []byte, fn func(p int)) {
	for p := int(binary.LittleEndian.Uint16(r[0x14:])); p+8 < len(r); {
		if binary.LittleEndian.Uint32(r[p:]) == atEnd {
			return
		}
		fn(p)
		l := int(binary.LittleEndian.Uint32(r[p+4:]))
		if l <= 0 {
			return
		}
		p += l
	}
}

// checkReadable reads every file in snap except victim (and below it).
func checkReadable(t *testing.T, fsys *FS, snap map[string]*snapNode, victim string) {
	t.Helper()
	for rel, n := range snap {
		if rel == victim || strings.HasPrefix(rel, victim+"/") {
			continue
		}
		e, err := walkReader(fsys, rel)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if n.mode.IsRegular() {
			f, err := fsys.Open(e.Ino)
			if err == nil {
				_, err = readAllFast(f)
			}
			if err != nil {
				t.Errorf("%s: %v", rel, err)
			}
		}
	}
}

// TestConcurrent reads files and lists directories from many goroutines
// at once (run with -race).
func TestConcurrent(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	img := makeImage(t, dir, 64, "conc")
	m := mountImage(t, img, "compression")
	must(t, os.Mkdir(m.Path("c"), 0o755))
	setCompressed(t, m.Path("c"))
	want := map[string][]byte{}
	for i := 0; i < 20; i++ {
		var data []byte
		if i%2 == 0 {
			data = textPattern(uint64(i), 200<<10+i)
		} else {
			data = pattern(uint64(i), 150<<10+i)
		}
		rel := fmt.Sprintf("c/f%02d", i)
		writeFile(t, m.Path(rel), data)
		want[rel] = data
	}
	must(t, m.Unmount())
	fsys := openImage(t, img)
	errs := make(chan error, 64)
	done := make(chan struct{})
	for g := 0; g < 16; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for rel, data := range want {
				e, err := walkReader(fsys, rel)
				if err != nil {
					errs <- err
					return
				}
				f, err := fsys.Open(e.Ino)
				if err != nil {
					errs <- err
					return
				}
				got, err := readAllOdd(f, uint64(g))
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s: content differs", rel)
					return
				}
				if _, err := fsys.ReadDir(5); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	for g := 0; g < 16; g++ {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

var _ = filepath.Join
