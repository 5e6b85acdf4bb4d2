package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// vhdChain writes Disk.vhd (dynamic) and a checkpoint disk whose bitmaps
// mix single sectors into dir.
func vhdChain(t *testing.T, dir string) (leaf string, want []byte, paths []string) {
	t.Helper()
	base := vhdtest.New(vhdtest.Options{VirtualSize: 12<<20 + 512})
	base.Write(1<<20, testutil.RandBytes(1, 3<<20))
	bp := filepath.Join(dir, "Disk.vhd")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	child := vhdtest.New(vhdtest.Options{Parent: base, ParentPath: bp, BlockSize: 512 << 10})
	child.Write(1<<20+512, testutil.RandBytes(2, 512))
	child.Write(2<<20+3*512, testutil.RandBytes(3, 5000/512*512))
	child.Write(9<<20, testutil.RandBytes(4, 1<<20))
	cp := filepath.Join(dir, "Disk_6B1E7A0F-2C3D-4E5F-8A9B-0C1D2E3F4A5B.avhd")
	if err := child.Save(cp); err != nil {
		t.Fatal(err)
	}
	return cp, child.ChainContents(), []string{bp, cp}
}

// vhdiinfoField returns a field of vhdiinfo's report ("Identifier" ...).
func vhdiinfoField(t *testing.T, path, field string) string {
	t.Helper()
	out := testutil.Run(t, "vhdiinfo", path)
	m := regexp.MustCompile(`(?m)^\s*` + field + `\s*:\s*(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("vhdiinfo %s has no %q:\n%s", path, field, out)
	}
	return strings.TrimSpace(m[1])
}

// TestVHDInfoChainExport: info, chain and export of a VHD chain through
// the CLI; identifiers checked against vhdiinfo, exports read back with
// qemu-img.
func TestVHDInfoChainExport(t *testing.T) {
	testutil.Need(t, "vhdiinfo", "qemu-img")
	dir := t.TempDir()
	leaf, want, paths := vhdChain(t, dir)
	testutil.Unchanged(t, paths...)

	code, out, errs := cli("info", "--json", leaf)
	if code != 0 {
		t.Fatalf("info: %s", errs)
	}
	var fi vhdInfo
	if err := json.Unmarshal([]byte(out), &fi); err != nil {
		t.Fatal(err)
	}
	h := fi.DynamicHeader
	if fi.Format != "VHD" || fi.Type != "differencing" || fi.FooterCopy != "end" || h == nil || h.ParentName != "Disk.vhd" ||
		fi.ParentLocator["W2ru"] != `.\Disk.vhd` || fi.VirtualSize != 12<<20+512 || fi.BlockSize != 512<<10 ||
		fi.Blocks["allocated, bitmap partial"] != 2 || fi.Blocks["allocated, bitmap full"] != 2 {
		t.Errorf("info: %s", out)
	}
	if got, want := fi.Footer.UniqueID, vhdiinfoField(t, leaf, "Identifier"); !strings.EqualFold(got, want) {
		t.Errorf("unique ID %s, vhdiinfo says %s", got, want)
	}
	if got, want := h.ParentUniqueID, vhdiinfoField(t, leaf, "Parent identifier"); !strings.EqualFold(got, want) {
		t.Errorf("parent unique ID %s, vhdiinfo says %s", got, want)
	}
	if code, out, _ := cli("info", leaf); code != 0 || !strings.Contains(out, "Format:               VHD") || !strings.Contains(out, "W2ru  .\\Disk.vhd") {
		t.Errorf("info text:\n%s", out)
	}

	code, out, errs = cli("chain", "--json", leaf)
	if code != 0 {
		t.Fatalf("chain: %s", errs)
	}
	var ch struct {
		Depth int        `json:"depth"`
		Links []linkJSON `json:"links"`
	}
	if err := json.Unmarshal([]byte(out), &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Depth != 2 || ch.Links[0].Format != "VHD" || ch.Links[1].Type != "dynamic" || ch.Links[1].LocatorKey != "W2ru" || !ch.Links[1].Linkage.OK {
		t.Errorf("chain: %s", out)
	}
	if code, out, _ := cli("chain", leaf); code != 0 || !strings.Contains(out, "= unique ID") {
		t.Errorf("chain text:\n%s", out)
	}

	raw := filepath.Join(dir, "out.raw")
	if code, _, errs := cli("export", leaf, raw); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if got, err := os.ReadFile(raw); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("exported raw image differs from the chain (%v)", err)
	}
	if code, out, _ := cli("export", leaf, "-"); code != 0 || out != string(want) {
		t.Fatal("export to stdout differs from the chain")
	}

	// The migration path: a standalone VHDX that qemu-img reads back as
	// the chain.
	vx := filepath.Join(dir, "flat.vhdx")
	if code, _, errs := cli("export", "--format", "vhdx", leaf, vx); code != 0 {
		t.Fatalf("export --format vhdx: %s", errs)
	}
	back := filepath.Join(dir, "back.raw")
	testutil.Run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", vx, back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("qemu-img reads the exported VHDX differently from the chain (%v)", err)
	}
	testutil.Run(t, "qemu-img", "check", vx)
}

// TestVHDInfoDamagedFooter: info says which footer copy it used.
func TestVHDInfoDamagedFooter(t *testing.T) {
	dir := t.TempDir()
	_, _, paths := vhdChain(t, dir)
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-512+64] ^= 0xff // the end copy's checksum
	p := filepath.Join(dir, "damaged.vhd")
	os.WriteFile(p, b, 0o644)
	code, out, errs := cli("info", p)
	if code != 0 || !strings.Contains(out, "copy at the offset 0 (the end copy is damaged) used") || !strings.Contains(out, "Warning: footer at the end of the file") {
		t.Errorf("info: %d %s\n%s", code, errs, out)
	}
	if code, out, _ := cli("info", "--json", p); code != 0 || !strings.Contains(out, `"footer_copy": "offset 0"`) {
		t.Errorf("info --json:\n%s", out)
	}
	// In a chain: chain shows the warning, cp and mount log it.
	leaf, want, _ := vhdChain(t, t.TempDir())
	damaged, _ := os.ReadFile(filepath.Join(filepath.Dir(leaf), "Disk.vhd"))
	damaged[len(damaged)-512+64] ^= 0xff
	os.WriteFile(filepath.Join(filepath.Dir(leaf), "Disk.vhd"), damaged, 0o644)
	if code, out, errs := cli("chain", leaf); code != 0 || !strings.Contains(out, "warning: "+filepath.Join(filepath.Dir(leaf), "Disk.vhd")+": footer at the end") {
		t.Errorf("chain: %d %s\n%s", code, errs, out)
	}
	dst := filepath.Join(t.TempDir(), "disk.raw")
	code, _, errs = cli("cp", leaf, mtStem(leaf)+":Disk.raw", dst)
	if got, _ := os.ReadFile(dst); code != 0 || !bytes.Equal(got, want) || !strings.Contains(errs, "copy at offset 0 was used") {
		t.Errorf("cp: %d (%d bytes) %s", code, len(got), errs)
	}
}

// TestVHDRWRefused: --rw needs a VHDX chain and says how to get one.
func TestVHDRWRefused(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	leaf, _, paths := vhdChain(t, t.TempDir())
	testutil.Unchanged(t, paths...)
	mnt := mountDir(t)
	out, err := exec.Command(bin, "mount", "--rw", leaf, mnt).CombinedOutput()
	if testutil.IsMounted(mnt) {
		testutil.Unmount(mnt)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "export --format vhdx") {
		t.Errorf("mount --rw of a VHD chain: %v %s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Dir(leaf)); len(ents) != 2 {
		t.Errorf("a layer was left behind: %d files", len(ents))
	}
}

// TestLs2008R2 lists a Windows Server 2008 R2 VM folder.
func TestLs2008R2(t *testing.T) {
	fx, err := vmtest.Build2008R2(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli("ls", "--json", fx.Root)
	if code != 0 || errs != "" {
		t.Fatalf("ls: %d %s", code, errs)
	}
	var ls lsOutput
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.VMs) != 1 || ls.VMs[0].Name != fx.VMName || len(ls.VMs[0].Checkpoints) != 1 {
		t.Fatalf("ls: %s", out)
	}
	got := map[string]string{} // point → parent
	files := map[string]string{}
	var walk func(p *lsPoint, parent string)
	walk = func(p *lsPoint, parent string) {
		got[p.Name] = parent
		for _, d := range p.Disks {
			if d.Disk == "SRV01" {
				files[p.Name] = filepath.Base(d.File)
			}
		}
		for _, c := range p.Children {
			walk(c, p.Name)
		}
	}
	walk(ls.VMs[0].Checkpoints[0], "")
	for _, c := range append(fx.Checkpoints, fx.Now) {
		if got[c.Name] != c.Parent || files[c.Name] != c.Layers["SRV01"] {
			t.Errorf("%q: parent %q file %s, want %q %s", c.Name, got[c.Name], files[c.Name], c.Parent, c.Layers["SRV01"])
		}
	}
	code, out, _ = cli("ls", fx.Root)
	if code != 0 || !strings.Contains(out, "└─ Before upgrade") || !strings.Contains(out, ".vhd (") || !strings.Contains(out, ".avhd (") {
		t.Errorf("ls text:\n%s", out)
	}
}

// TestMountVM2008R2 mounts a Windows Server 2008 R2 VM folder: a folder
// per checkpoint, each with every disk byte-exact.
func TestMountVM2008R2(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	fx, err := vmtest.Build2008R2(t.TempDir(), 4)
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountDir(t)
	ckptfsMount(t, bin, fx.Root, mnt)
	for _, c := range append(fx.Checkpoints, fx.Now) {
		for _, d := range fx.Disks {
			raw, err := os.ReadFile(filepath.Join(mnt, c.Name, d+".raw"))
			if err != nil || !bytes.Equal(raw, c.Contents[d]) {
				t.Errorf("%s/%s.raw differs from the expected disk (%v)", c.Name, d, err)
			}
		}
	}
}

// TestMountVHDNTFS mounts a VHD chain holding an MBR disk with an NTFS
// partition, made with mkntfs and ntfs-3g, whose checkpoint disk holds
// the sectors that changed when files were edited: every point's raw disk
// is byte-exact, the partition is listed, and the files (in-process NTFS
// reader) are as written at each point; cp and diff work on the chain.
func TestMountVHDNTFS(t *testing.T) {
	testutil.NeedFUSE(t)
	testutil.Need(t, "sfdisk", "mkntfs", "ntfs-3g")
	bin := sharedBinary(t)
	work := t.TempDir()
	const (
		mib      = 1 << 20
		diskSize = 24 * mib
		pStart   = mib
		pSize    = diskSize - pStart
	)
	rawA := filepath.Join(work, "a.raw")
	if err := os.WriteFile(rawA, make([]byte, diskSize), 0o644); err != nil {
		t.Fatal(err)
	}
	sf := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", rawA)
	sf.Stdin = strings.NewReader("label: dos\nstart=2048, type=7\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	part := filepath.Join(work, "p.img")
	if err := os.WriteFile(part, make([]byte, pSize), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "mkntfs", "-F", "-Q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", "Legacy", part)
	big := make([]byte, 2*mib+321)
	vhdxtest.Fill(big, 9)
	n, unmount := ntfs3g(t, part, "")
	mtWrite(t, filepath.Join(n, "Windows", "win.ini"), "[fonts]\n")
	mtWrite(t, filepath.Join(n, "change.txt"), "before\n")
	mtWrite(t, filepath.Join(n, "big.bin"), string(big))
	unmount()
	diskA, _ := os.ReadFile(rawA)
	pa, _ := os.ReadFile(part)
	copy(diskA[pStart:], pa)
	n, unmount = ntfs3g(t, part, "")
	mtWrite(t, filepath.Join(n, "change.txt"), "after, longer than before\n")
	mtWrite(t, filepath.Join(n, "new.txt"), "new\n")
	unmount()
	pb, _ := os.ReadFile(part)
	diskB := bytes.Clone(diskA)
	copy(diskB[pStart:], pb)

	// Base: every non-zero 4 KiB of disk A; child: every 512-byte sector
	// that differs in disk B (bitmaps with single bits).
	src := filepath.Join(work, "vm")
	os.Mkdir(src, 0o755)
	base := vhdtest.New(vhdtest.Options{VirtualSize: diskSize})
	for off := 0; off < diskSize; off += 4096 {
		if !allZero(diskA[off : off+4096]) {
			base.Write(int64(off), diskA[off:off+4096])
		}
	}
	bp := filepath.Join(src, "Legacy.vhd")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	child := vhdtest.New(vhdtest.Options{Parent: base, ParentPath: bp, BlockSize: 512 << 10})
	for off := 0; off < diskSize; off += 512 {
		if !bytes.Equal(diskA[off:off+512], diskB[off:off+512]) {
			child.Write(int64(off), diskB[off:off+512])
		}
	}
	cp := filepath.Join(src, "Legacy_0D9F3B7A-5E21-4C68-A4F0-7B3C2D1E9A86.avhd")
	if err := child.Save(cp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base.Contents(nil), diskA) || !bytes.Equal(child.ChainContents(), diskB) {
		t.Fatal("the fixture's models differ from the disks")
	}
	testutil.Unchanged(t, bp, cp)

	mnt := mountDir(t)
	ckptfsMount(t, bin, src, mnt)
	pA, pB := filepath.Join(mnt, "Legacy"), filepath.Join(mnt, mtStem(cp))
	for _, c := range []struct {
		dir    string
		want   []byte
		change string
	}{{pA, diskA, "before\n"}, {pB, diskB, "after, longer than before\n"}} {
		if got := testutil.SHA256File(t, filepath.Join(c.dir, "Legacy.raw")); got != testutil.SHA256Bytes(c.want) {
			t.Errorf("%s/Legacy.raw differs", filepath.Base(c.dir))
		}
		ents, err := os.ReadDir(filepath.Join(c.dir, "Legacy.partitions"))
		if err != nil || len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), "1-") {
			t.Fatalf("%s: partitions %v %v", filepath.Base(c.dir), ents, err)
		}
		if st, err := os.Stat(filepath.Join(c.dir, "Legacy.partitions", ents[0].Name())); err != nil || st.Size() != pSize {
			t.Errorf("partition size %v %v", st, err)
		}
		fsDir := filepath.Join(c.dir, "Legacy.files", strings.TrimSuffix(ents[0].Name(), ".raw"))
		for name, want := range map[string]string{"Windows/win.ini": "[fonts]\n", "change.txt": c.change, "big.bin": string(big)} {
			if b, err := os.ReadFile(filepath.Join(fsDir, name)); err != nil || string(b) != want {
				t.Errorf("%s/%s through the mount: %d bytes, %v", filepath.Base(c.dir), name, len(b), err)
			}
		}
	}

	// cp and diff read the same chain without FUSE.
	out := filepath.Join(work, "change.txt")
	if code, _, errs := cli("cp", cp, mtStem(cp)+":/change.txt", out); code != 0 {
		t.Fatalf("cp: %s", errs)
	}
	if b, _ := os.ReadFile(out); string(b) != "after, longer than before\n" {
		t.Errorf("cp copied %q", b)
	}
	code, dout, errs := cli("diff", cp, "Legacy", mtStem(cp))
	if code != 0 {
		t.Fatalf("diff: %s", errs)
	}
	if !regexp.MustCompile(`(?m)^M\t.*/change\.txt\t`).MatchString(dout) || !regexp.MustCompile(`(?m)^A\t.*/new\.txt$`).MatchString(dout) || strings.Count(dout, "\n") != 2 {
		t.Errorf("diff:\n%s", dout)
	}
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
