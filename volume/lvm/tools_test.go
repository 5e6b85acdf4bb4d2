package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume/ext4"
	"github.com/ckptfs/ckptfs/volume/partition"
)

// The tests in this file build real LVM2 physical volumes with the lvm2
// tools on loop devices and check ReadPV/Assemble against the tools' own
// report (vgs, lvs, pvs, pvck) and each LV's reader against the bytes
// written into its extents.

// sameAsTools checks the VG's identity and its user-visible LVs (names,
// sizes, UUIDs) against the tools' report.
func sameAsTools(t *testing.T, vg *VG, v *toolView) {
	t.Helper()
	if vg.Name != v.vgName || vg.UUID != v.vgUUID || int64(vg.Seqno) != v.seqno || int64(vg.ExtentSize) != v.extent {
		t.Fatalf("VG %s %s seqno %d extent %d; tools: %s %s seqno %d extent %d",
			vg.Name, vg.UUID, vg.Seqno, vg.ExtentSize, v.vgName, v.vgUUID, v.seqno, v.extent)
	}
	want := v.visible()
	got := map[string]int64{}
	for _, lv := range vg.LVs {
		got[lv.Name] = lv.Size
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("visible LVs and sizes %v; tools show %v", got, want)
	}
	for _, s := range v.segs {
		if lv := vg.LV(s.lv); lv == nil || lv.UUID != s.uuid {
			t.Fatalf("LV %s: UUID %v, tools say %s", s.lv, lv, s.uuid)
		}
	}
}

func TestToolsOneDisk(t *testing.T) {
	t.Parallel()
	e := newLVMEnv(t)
	testutil.Need(t, "mkfs.ext4")
	d := e.addDisk(32<<20, 0, 0)
	e.vgcreate("ckone", []string{"-s", "1m"}, d)
	e.lvcreate("-n", "single", "-L", "3m", "ckone")
	// Interleave a and b, and put b's last segment in a hole before its
	// first one on disk.
	e.lvcreate("-n", "gap", "-L", "2m", "ckone")
	e.lvcreate("-n", "a", "-L", "2m", "ckone")
	e.lvcreate("-n", "b", "-L", "2m", "ckone")
	e.run("lvextend", "-y", "-L", "+2m", "ckone/a")
	e.run("lvextend", "-y", "-L", "+1m", "ckone/b")
	e.run("lvextend", "-y", "-L", "+1m", "ckone/a")
	e.run("lvremove", "-y", "ckone/gap")
	e.run("lvextend", "-y", "-L", "+2m", "ckone/b")
	v := e.view("ckone")
	segs := map[string]int{}
	for _, s := range v.segs {
		segs[s.lv]++
	}
	if segs["a"] != 3 || segs["b"] != 3 || segs["single"] != 1 {
		t.Fatalf("fixture: segments per LV %v, want a:3 b:3 single:1", segs)
	}

	// a holds a real ext4 file system made by mkfs.ext4; b and single
	// hold random bytes.
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	hello := bytes.Repeat([]byte("hello from an LVM logical volume\n"), 3000)
	os.WriteFile(filepath.Join(src, "hello.txt"), hello, 0o644)
	img := filepath.Join(e.dir, "a.ext4")
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-d", src, img, "5M")
	fsImg, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"a": fsImg, "b": content(2, 5<<20), "single": content(3, 3<<20)}
	for name, data := range want {
		e.place(v, name, data)
	}
	testutil.Unchanged(t, d.img)

	pv := e.openPV(d)
	if pv.UUID != v.pvUUID[d.loop] || pv.Metadata == nil || !pv.Metadata.Verified || len(pv.Warnings) != 0 {
		t.Fatalf("PV %s (tools: %s), metadata %+v, warnings %v", pv.UUID, v.pvUUID[d.loop], pv.Metadata, pv.Warnings)
	}
	if len(pv.DataAreas) != 1 || int64(pv.DataAreas[0].Offset) != v.peStart[d.loop] {
		t.Fatalf("data areas %+v, tools' pe_start %d", pv.DataAreas, v.peStart[d.loop])
	}
	vg, errs := assembleOne(t, pv)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	sameAsTools(t, vg, v)
	for name, data := range want {
		checkLV(t, vg.LV(name), data)
	}
	// The ext4 reader sees the file through the LV.
	r, _ := vg.LV("a").Open()
	fsys, err := ext4.Open(r, r.Size())
	if err != nil {
		t.Fatalf("ext4 on LV a: %v", err)
	}
	ent, err := fsys.Lookup(fsys.Root(), "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open(ent.Ino)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(hello)+1)
	if n, _ := f.ReadAt(got, 0); n != len(hello) || !bytes.Equal(got[:n], hello) {
		t.Fatalf("hello.txt through ext4 on the LV: %d bytes, differ", n)
	}
}

func TestToolsTwoDisks(t *testing.T) {
	t.Parallel()
	e := newLVMEnv(t)
	d0, d1 := e.addDisk(24<<20, 0, 0), e.addDisk(24<<20, 0, 0)
	e.vgcreate("cktwo", []string{"-s", "1m"}, d0, d1)
	e.lvcreate("-n", "only0", "-L", "3m", "cktwo", d0.loop)
	e.lvcreate("-n", "span", "-L", "5m", "cktwo", d0.loop)
	e.run("lvextend", "-y", "-L", "+4m", "cktwo/span", d1.loop)
	e.lvcreate("-n", "stripe", "-i", "2", "-I", "64k", "-L", "8m", "cktwo")
	v := e.view("cktwo")
	for _, s := range v.segs {
		if s.lv == "stripe" && (len(s.ranges) != 2 || s.ranges[0].dev == s.ranges[1].dev || s.stripeSize != 64<<10) {
			t.Fatalf("fixture: stripe segment %+v", s)
		}
	}
	want := map[string][]byte{"only0": content(10, 3<<20), "span": content(11, 9<<20), "stripe": content(12, 8<<20)}
	for name, data := range want {
		e.place(v, name, data)
	}
	testutil.Unchanged(t, d0.img, d1.img)
	pv0, pv1 := e.openPV(d0), e.openPV(d1)

	// Given in either order, both PVs make the VG the tools show.
	for _, order := range [][]*PV{{pv0, pv1}, {pv1, pv0}} {
		vg, errs := assembleOne(t, order...)
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		sameAsTools(t, vg, v)
		for name, data := range want {
			checkLV(t, vg.LV(name), data)
		}
	}

	// Without disk 1, only the LV entirely on disk 0 can be read.
	vg, errs := assembleOne(t, pv0)
	if len(errs) != 1 || !errors.Is(errs[0], ErrMissingPV) || !strings.Contains(errs[0].Error(), v.pvUUID[d1.loop]) {
		t.Fatalf("errors %v, want one ErrMissingPV naming %s", errs, v.pvUUID[d1.loop])
	}
	sameAsTools(t, vg, v)
	checkLV(t, vg.LV("only0"), want["only0"])
	for _, name := range []string{"span", "stripe"} {
		lv := vg.LV(name)
		if _, err := lv.Open(); !errors.Is(err, ErrMissingPV) || !errors.Is(lv.Err, ErrMissingPV) || !strings.Contains(lv.Reason, "missing") {
			t.Fatalf("LV %s without disk 1: reason %q, Open error %v", name, lv.Reason, err)
		}
	}
	// Disk 1 alone (its own metadata copy) gives the VG with only0 missing.
	vg, _ = assembleOne(t, pv1)
	if vg.LV("only0").Err == nil || !errors.Is(vg.LV("only0").Err, ErrMissingPV) {
		t.Fatalf("only0 without disk 0: %v", vg.LV("only0").Err)
	}
}

func TestToolsGPTPartition(t *testing.T) {
	t.Parallel()
	e := newLVMEnv(t)
	d := e.addDisk(24<<20, 1<<20, 20<<20)
	e.vgcreate("ckpart", []string{"-s", "1m"}, d)
	e.lvcreate("-n", "data", "-L", "10m", "ckpart")
	v := e.view("ckpart")
	data := content(20, 10<<20)
	e.place(v, "data", data)
	testutil.Unchanged(t, d.img)

	f, err := os.Open(d.img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if Probe(f) {
		t.Fatal("Probe of the whole GPT disk is true")
	}
	parts, err := partition.Read(f, 24<<20, 512)
	if err != nil || len(parts) != 1 || parts[0].Start != 1<<20 || parts[0].Size != 20<<20 {
		t.Fatalf("partitions %+v, %v", parts, err)
	}
	sec := io.NewSectionReader(f, parts[0].Start, parts[0].Size)
	if !Probe(sec) {
		t.Fatal("Probe of the partition is false")
	}
	pv, err := ReadPV(sec, parts[0].Size)
	if err != nil {
		t.Fatal(err)
	}
	vg, errs := assembleOne(t, pv)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	sameAsTools(t, vg, v)
	checkLV(t, vg.LV("data"), data)
}

// pvckHeaders runs pvck --dump headers and returns its "name value" lines.
func (e *lvmEnv) pvckHeaders(d *testDisk) map[string]string {
	e.t.Helper()
	out, _ := e.try("pvck", "--dump", "headers", d.loop) // exits 5 on damaged headers
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// pvckCopy is one copy of the metadata listed by pvck --dump metadata_all.
type pvckCopy struct {
	off, length, seqno int64
	crc                uint32
}

var pvckCopyRE = regexp.MustCompile(`metadata at (\d+) length (\d+) crc ([0-9a-f]+) vg \S+ seqno (\d+)`)

func (e *lvmEnv) pvckCopies(d *testDisk) []pvckCopy {
	e.t.Helper()
	out, _ := e.try("pvck", "--dump", "metadata_all", "-f", filepath.Join(e.dir, "all.txt"), d.loop)
	var cs []pvckCopy
	for _, m := range pvckCopyRE.FindAllStringSubmatch(out, -1) {
		crc, _ := strconv.ParseUint(m[3], 16, 32)
		cs = append(cs, pvckCopy{atoi(e.t, m[1]), atoi(e.t, m[2]), atoi(e.t, m[4]), uint32(crc)})
	}
	return cs
}

// committed reads raw_locn[0] of the metadata area at mdaOff straight
// from the image (test-side decoding, to steer the fixture).
func committed(t *testing.T, img string, mdaOff int64) (areaSize, off, size uint64) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := make([]byte, 64)
	if _, err := f.ReadAt(h, mdaOff); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	return le.Uint64(h[32:]), le.Uint64(h[40:]), le.Uint64(h[48:])
}

// flipByte inverts one byte of an image.
func flipByte(t *testing.T, img string, off int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func visibleNames(vg *VG) []string {
	var out []string
	for _, lv := range vg.LVs {
		out = append(out, lv.Name)
	}
	return out
}

func TestToolsMetadataWrap(t *testing.T) {
	t.Parallel()
	e := newLVMEnv(t)
	d := e.addDisk(16<<20, 0, 0)
	e.run("pvcreate", "-y", "--metadatasize", "32k", "--dataalignment", "64k", d.loop)
	e.vgcreate("ckwrap", []string{"-s", "1m"}, d)
	h := e.pvckHeaders(d)
	mdaOff := atoi(t, h["pv_header.disk_locn[2].offset"])

	// Create (with a 1000-character tag, so the text grows fast), rename
	// and remove LVs until the committed text wraps around the end of the
	// metadata area. names tracks the LVs after each commit, prev the LVs
	// one commit earlier.
	names := map[string]bool{}
	var prev []string
	list := func() []string {
		var l []string
		for n := range names {
			l = append(l, n)
		}
		sort.Strings(l)
		return l
	}
	tag := strings.Repeat("t", 1000)
	wrapped := false
	for i := 0; i < 30 && !wrapped; i++ {
		for step := 0; step < 3 && !wrapped; step++ {
			lv, renamed := fmt.Sprintf("lv%02d", i), fmt.Sprintf("renamed%02d", i)
			prev = list()
			switch {
			case step == 0:
				e.lvcreate("-n", lv, "-L", "1m", "--addtag", tag, "ckwrap")
				names[lv] = true
			case step == 1:
				e.run("lvrename", "ckwrap", lv, renamed)
				delete(names, lv)
				names[renamed] = true
			case i%2 == 1:
				e.run("lvremove", "-y", "ckwrap/"+fmt.Sprintf("renamed%02d", i-1))
				delete(names, fmt.Sprintf("renamed%02d", i-1))
			default:
				continue
			}
			area, off, size := committed(t, d.img, mdaOff)
			wrapped = off+size > area
		}
	}
	if !wrapped {
		t.Fatal("fixture: the committed metadata never wrapped")
	}
	v := e.view("ckwrap")
	h = e.pvckHeaders(d)
	areaSize, rlOff, rlSize := atoi(t, h["mda_header_1.size"]), atoi(t, h["mda_header_1.raw_locn[0].offset"]), atoi(t, h["mda_header_1.raw_locn[0].size"])
	if rlOff+rlSize <= areaSize {
		t.Fatalf("pvck: raw_locn[0] %d+%d does not wrap in an area of %d", rlOff, rlSize, areaSize)
	}

	pv := e.openPV(d)
	m := pv.Metadata
	if m == nil || !m.Verified || int64(m.Offset) != rlOff || int64(m.Seqno) != v.seqno || len(pv.Warnings) != 0 {
		t.Fatalf("metadata %+v, warnings %v; pvck: offset %d, vgs seqno %d", m, pv.Warnings, rlOff, v.seqno)
	}
	rl := pv.MetadataAreas[0].Header.RawLocations[0]
	if fmt.Sprintf("0x%x", rl.Checksum) != h["mda_header_1.raw_locn[0].checksum"] || int64(rl.Size) != rlSize {
		t.Fatalf("raw_locn[0] %+v; pvck %v", rl, h)
	}
	vg, _ := assembleOne(t, pv)
	sameAsTools(t, vg, v)

	// The older copies in the ring are the ones pvck finds, byte for byte
	// (same length and CRC), wrapped ones included.
	copies := e.pvckCopies(d)
	found, err := pv.scanRing(0, pv.MetadataAreas[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[int64]string{}
	for _, c := range found {
		text := append(append([]byte(nil), c.Text...), 0)
		ours[int64(c.Offset)+mdaOff] = fmt.Sprintf("len %d crc %08x seqno %d", len(text), lvmCRC(crcInitial, text), c.Seqno)
	}
	theirs := map[int64]string{}
	for _, c := range copies {
		theirs[c.off] = fmt.Sprintf("len %d crc %08x seqno %d", c.length, c.crc, c.seqno)
	}
	if len(theirs) < 10 || fmt.Sprint(ours) != fmt.Sprint(theirs) {
		t.Fatalf("ring copies:\nours  %v\npvck %v", ours, theirs)
	}

	// Damage the newest copy: ReadPV falls back to seqno-1, says so, and
	// the VG is the one before the last command.
	flipByte(t, d.img, mdaOff+int64(mdaHeaderSize)+(rlOff-mdaHeaderSize+rlSize/2)%(areaSize-mdaHeaderSize))
	pv = e.openPV(d)
	if pv.MetadataAreas[0].Err == nil || !errors.Is(pv.MetadataAreas[0].Err, ErrCorrupt) {
		t.Fatalf("area error %v", pv.MetadataAreas[0].Err)
	}
	m = pv.Metadata
	if m == nil || m.Verified || int64(m.Seqno) != v.seqno-1 || len(pv.Warnings) != 2 || !strings.Contains(pv.Warnings[1], "older copy") {
		t.Fatalf("after damage: metadata %+v, warnings %q", m, pv.Warnings)
	}
	vg, _ = assembleOne(t, pv)
	if fmt.Sprint(visibleNames(vg)) != fmt.Sprint(prev) || int64(vg.Seqno) != v.seqno-1 || len(vg.Warnings) == 0 {
		t.Fatalf("fallback VG seqno %d LVs %v warnings %v; want seqno %d LVs %v", vg.Seqno, visibleNames(vg), vg.Warnings, v.seqno-1, prev)
	}
}

func TestToolsTwoMetadataCopies(t *testing.T) {
	t.Parallel()
	e := newLVMEnv(t)
	d := e.addDisk(16<<20, 0, 0)
	e.run("pvcreate", "-y", "--pvmetadatacopies", "2", d.loop)
	e.vgcreate("ckcopies", []string{"-s", "1m"}, d)
	e.lvcreate("-n", "lv", "-L", "4m", "ckcopies")
	v := e.view("ckcopies")
	data := content(30, 4<<20)
	e.place(v, "lv", data)
	h := e.pvckHeaders(d)

	pv := e.openPV(d)
	if len(pv.MetadataAreas) != 2 {
		t.Fatalf("%d metadata areas", len(pv.MetadataAreas))
	}
	for i, a := range pv.MetadataAreas {
		p := fmt.Sprintf("mda_header_%d.", i+1)
		if a.Err != nil || a.Header == nil || strconv.FormatUint(a.Header.Start, 10) != h[p+"start"] ||
			strconv.FormatUint(a.Header.RawLocations[0].Offset, 10) != h[p+"raw_locn[0].offset"] {
			t.Fatalf("area %d: %+v %v; pvck start %s offset %s", i, a, a.Err, h[p+"start"], h[p+"raw_locn[0].offset"])
		}
	}
	vg, _ := assembleOne(t, pv)
	sameAsTools(t, vg, v)
	checkLV(t, vg.LV("lv"), data)

	// Damage the first area's text: the second area's copy (same seqno)
	// is used, verified.
	a0 := pv.MetadataAreas[0]
	flipByte(t, d.img, int64(a0.Offset+a0.Header.RawLocations[0].Offset+20))
	pv = e.openPV(d)
	if pv.Metadata == nil || !pv.Metadata.Verified || pv.Metadata.Area != 1 || int64(pv.Metadata.Seqno) != v.seqno || len(pv.Warnings) != 1 {
		t.Fatalf("first copy damaged: metadata %+v warnings %q", pv.Metadata, pv.Warnings)
	}
	// Damage the second area's header too: the ring scan still finds the
	// second area's intact text, unverified.
	a1 := pv.MetadataAreas[1]
	flipByte(t, d.img, int64(a1.Offset+100))
	pv = e.openPV(d)
	if pv.Metadata == nil || pv.Metadata.Verified || int64(pv.Metadata.Seqno) != v.seqno || !strings.Contains(pv.MetadataAreas[1].Err.Error(), "bad CRC") {
		t.Fatalf("both damaged: metadata %+v warnings %q", pv.Metadata, pv.Warnings)
	}
	vg, _ = assembleOne(t, pv)
	checkLV(t, vg.LV("lv"), data)
}

// restoreLVs writes LV sections into the VG's metadata with vgcfgrestore
// (the tools cannot create thin pools, snapshots, raid or mirrors without
// device-mapper, but they validate and write such metadata).
func (e *lvmEnv) restoreLVs(vg, lvs string) {
	e.t.Helper()
	file := filepath.Join(e.dir, vg+".vg")
	e.run("vgcfgbackup", "-f", file, vg)
	text, err := os.ReadFile(file)
	if err != nil {
		e.t.Fatal(err)
	}
	i := bytes.LastIndexByte(text, '}')
	text = append(append(append([]byte(nil), text[:i]...), "logical_volumes {\n"+lvs+"}\n"...), text[i:]...)
	if err := os.WriteFile(file, text, 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.run("vgcfgrestore", "--force", "-f", file, vg)
}

func TestToolsOtherTypes(t *testing.T) {
	t.Parallel()
	e := newLVMEnv(t)
	d0, d1 := e.addDisk(24<<20, 0, 0), e.addDisk(24<<20, 0, 0)
	e.vgcreate("ckother", []string{"-s", "1m"}, d0, d1)
	id := func(c byte) string { return formatID(bytes.Repeat([]byte{c}, idLen)) }
	lvs := lvSection("origin", id('a'), true, linSeg(0, 4, "pv0", 0)) +
		lvSection("snap", id('b'), false, linSeg(0, 2, "pv0", 4)) +
		lvSection("snapshot0", id('c'), false, seg(0, 4, "type = \"snapshot\"\nchunk_size = 8\norigin = \"origin\"\ncow_store = \"snap\"")) +
		lvSection("pool_tmeta", id('d'), false, linSeg(0, 1, "pv0", 6)) +
		lvSection("pool_tdata", id('e'), false, linSeg(0, 4, "pv0", 7)) +
		lvSection("pool", id('f'), true, seg(0, 4, "type = \"thin-pool\"\nmetadata = \"pool_tmeta\"\npool = \"pool_tdata\"\ntransaction_id = 1\nchunk_size = 128\ndiscards = \"passdown\"\nzero_new_blocks = 1")) +
		lvSection("thin1", id('g'), true, seg(0, 8, "type = \"thin\"\nthin_pool = \"pool\"\ntransaction_id = 0\ndevice_id = 1")) +
		lvSection("r1_rmeta_0", id('h'), false, linSeg(0, 1, "pv0", 11)) +
		lvSection("r1_rimage_0", id('i'), false, linSeg(0, 3, "pv0", 12)) +
		lvSection("r1_rmeta_1", id('j'), false, linSeg(0, 1, "pv1", 0)) +
		lvSection("r1_rimage_1", id('k'), false, linSeg(0, 3, "pv1", 1)) +
		lvSection("r1", id('l'), true, seg(0, 3, "type = \"raid1\"\ndevice_count = 2\nregion_size = 1024\nraids = [\"r1_rmeta_0\", \"r1_rimage_0\", \"r1_rmeta_1\", \"r1_rimage_1\"]")) +
		lvSection("m1_mimage_0", id('m'), false, linSeg(0, 2, "pv0", 15)) +
		lvSection("m1_mimage_1", id('n'), false, linSeg(0, 2, "pv1", 4)) +
		lvSection("m1", id('o'), true, seg(0, 2, "type = \"mirror\"\nmirror_count = 2\nregion_size = 1024\nmirrors = [\"m1_mimage_0\", 0, \"m1_mimage_1\", 0]"))
	e.restoreLVs("ckother", lvs)
	v := e.view("ckother")
	types := map[string]string{}
	for _, s := range v.segs {
		types[s.lv] = s.segtype
	}
	if types["thin1"] != "thin" || types["pool"] != "thin-pool" || types["r1"] != "raid1" || types["m1"] != "mirror" || v.visible()["snap"] == 0 {
		t.Fatalf("fixture: the tools see %v, visible %v", types, v.visible())
	}
	want := map[string][]byte{"origin": content(40, 4<<20), "r1": content(41, 3<<20), "m1": content(42, 2<<20)}
	e.place(v, "origin", want["origin"])
	for _, leg := range []string{"r1_rimage_0", "r1_rimage_1"} {
		e.place(v, leg, want["r1"])
	}
	for _, leg := range []string{"m1_mimage_0", "m1_mimage_1"} {
		e.place(v, leg, want["m1"])
	}
	testutil.Unchanged(t, d0.img, d1.img)
	pv0, pv1 := e.openPV(d0), e.openPV(d1)

	vg, errs := assembleOne(t, pv0, pv1)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	sameAsTools(t, vg, v)
	reasons := map[string]string{"snap": "snapshot: not supported", "pool": "thin pool: not supported", "thin1": "thin volume: not supported"}
	for name, reason := range reasons {
		lv := vg.LV(name)
		if _, err := lv.Open(); lv.Reason != reason || !errors.Is(err, ErrUnsupported) {
			t.Fatalf("LV %s: reason %q, Open error %v; want %q", name, lv.Reason, err, reason)
		}
	}
	for name, data := range want {
		checkLV(t, vg.LV(name), data)
	}
	// Without disk 0 the raid1 and the mirror are read from their second
	// leg; the origin is gone.
	vg, _ = assembleOne(t, pv1)
	checkLV(t, vg.LV("r1"), want["r1"])
	checkLV(t, vg.LV("m1"), want["m1"])
	if !errors.Is(vg.LV("origin").Err, ErrMissingPV) || len(vg.Warnings) != 2 {
		t.Fatalf("origin: %v; warnings %q", vg.LV("origin").Err, vg.Warnings)
	}
}

// TestToolsAcceptSynthetic proves the synthetic PVs the unit tests use are
// laid out as lvm2 lays them out: the tools read them as this package
// does, the wrapped one included.
func TestToolsAcceptSynthetic(t *testing.T) {
	t.Parallel()
	wd := wrappedDesc()
	last := wd.mdas[0].texts[len(wd.mdas[0].texts)-1]
	for _, c := range []struct {
		name  string
		img   []byte
		seqno string
	}{{"plain", synthImage(), "1"}, {"wrapped", wd.image(), "6"}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newLVMEnv(t)
			d := e.addDisk(synthDevSize, 0, 0)
			f, err := os.OpenFile(d.img, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(c.img, 0)
			f.Close()
			h := e.pvckHeaders(d)
			if c.name == "wrapped" {
				off, size := atoi(t, h["mda_header_1.raw_locn[0].offset"]), atoi(t, h["mda_header_1.raw_locn[0].size"])
				if off+size <= atoi(t, h["mda_header_1.size"]) || size != int64(len(last)+1) {
					t.Fatalf("fixture does not wrap: %v", h)
				}
			}
			v := e.view("synth")
			if fmt.Sprint(v.seqno) != c.seqno || v.vgUUID != synthVGID || v.pvUUID[d.loop] != formatID([]byte(testPVID)) {
				t.Fatalf("tools see VG %s %s seqno %d, PV %v", v.vgName, v.vgUUID, v.seqno, v.pvUUID)
			}
			pv := e.openPV(d)
			vg, errs := assembleOne(t, pv)
			if len(errs) != 0 {
				t.Fatal(errs)
			}
			sameAsTools(t, vg, v)
			// Placing synthExpect's LV bytes by the tools' extent map
			// rebuilds the device's extents: the unit tests' expectations
			// are the tools' layout.
			dev := synthDevice(c.img)
			lin, str := synthExpect(dev)
			e.place(v, "lin", lin)
			e.place(v, "str", str)
			got, err := os.ReadFile(d.img)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range [][2]int{{1 << 20, 3 << 20}, {6 << 20, 11 << 20}, {12 << 20, 14 << 20}} {
				if !bytes.Equal(got[r[0]:r[1]], dev[r[0]:r[1]]) {
					t.Fatalf("the tools place LV bytes differently in [%d, %d)", r[0], r[1])
				}
			}
		})
	}
}
