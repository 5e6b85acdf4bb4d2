package main

// The fixture of the cp and diff tests: a GPT disk with an NTFS, a FAT32
// and an ext4 partition, filled and changed by the real tools (ntfs-3g,
// mtools, mkfs.ext4 -d and debugfs), converted to a VHDX base by qemu-img;
// each later point is a differencing layer holding exactly the sectors the
// tools changed. A model of every file system at every point says what
// ckptfs must show.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume/ntfs"
	"github.com/ckptfs/ckptfs/volume/probe"
)

// entry is one file, folder or symlink of a model.
type entry struct {
	typ     string // file, dir, symlink
	data    []byte
	mtime   time.Time
	atime   time.Time
	target  string
	mode    os.FileMode // ext4 only
	streams map[string][]byte
	ino     int // hard links share it (0: none)
	broken  bool
}

func (e *entry) sha() string { s := sha256.Sum256(e.data); return hex.EncodeToString(s[:]) }

func (e *entry) clone() *entry {
	c := *e
	c.streams = map[string][]byte{}
	for k, v := range e.streams {
		c.streams[k] = v
	}
	return &c
}

// model is a file system's contents: paths relative to its root.
type model map[string]*entry

func (m model) clone() model {
	c := model{}
	// Hard links share one entry.
	shared := map[*entry]*entry{}
	for p, e := range m {
		if shared[e] == nil {
			shared[e] = e.clone()
		}
		c[p] = shared[e]
	}
	return c
}

// fsKinds are the file systems of the main disk, in partition order.
var fsKinds = []string{"ntfs", "fat", "ext4"}

// Partition geometry of the main disk (bytes).
const (
	mib      = 1 << 20
	diskSize = 124 * mib
)

var partSpec = []struct {
	kind     string
	off, len int64
	name     string
	typ      string
}{
	{"ntfs", 1 * mib, 64 * mib, "Basic data partition", "0700"},
	{"fat", 65 * mib, 40 * mib, "FAT data", "0700"},
	{"ext4", 105 * mib, 16 * mib, "Linux data", "8300"},
}

// fxPoint is one point of the fixture.
type fxPoint struct {
	name   string            // point folder name
	layer  string            // its file
	image  *vhdxtest.Image   // its model (a stub for the qemu-made base)
	parts  map[string]string // partition image per kind
	models map[string]model
}

// fixture is the built chain.
type fixture struct {
	dir    string // the folder holding the disk files (the SOURCE)
	work   string
	points []*fxPoint
	fsPath map[string]string // kind → path of its file system below a point
	data   string            // point folder of the one-FS disk
	broken string            // path (in ntfs) damaged in the last point
}

var t0 = time.Date(2021, 3, 4, 5, 6, 8, 0, time.UTC)

// tm returns a fixture time: t0 plus n seconds (even, for FAT).
func tm(n int) time.Time { return t0.Add(time.Duration(2*n) * time.Second) }

func rnd(seed int64, n int) []byte { return testutil.RandBytes(seed, n) }

// text returns n bytes of compressible text.
func text(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	words := []string{"checkpoint ", "Hyper-V ", "volume ", "cluster ", "Grüße ", "日本 ", "record\n"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.Intn(len(words))])
	}
	return b.Bytes()[:n]
}

func runEnv(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), append([]string{"LC_ALL=C.UTF-8", "TZ=UTC", "MTOOLS_SKIP_CHECK=1"}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mountNTFS mounts an NTFS image with ntfs-3g beside it (unmounted at
// cleanup at the latest).
func mountNTFS(t testing.TB, img string, opts ...string) *testutil.NTFS3G {
	t.Helper()
	return testutil.MountNTFS3G(t, img, "", opts...)
}

// ---- editors: change a file system and its model together ----

// editor changes one file system through a real tool.
type editor interface {
	write(rel string, data []byte, mtime time.Time)
	mkdir(rel string)
	remove(rel string) // a file, or a folder and all below it
	rename(from, to string)
	symlink(rel, target string, mtime time.Time)
	setStream(rel, name string, data []byte)
	patch(rel string, off int64, data []byte) // in place, keeping size and times
	chmod(rel string, mode os.FileMode)
	touch(rel string, mtime time.Time)
	close()
}

// base keeps a model in step.
type base struct {
	t testing.TB
	m model
}

func (b *base) parents(rel string) {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if b.m[d] == nil {
			b.m[d] = &entry{typ: "dir", mode: 0o755}
		}
	}
}

func (b *base) mWrite(rel string, data []byte, mtime time.Time, mode os.FileMode) {
	b.parents(rel)
	e := b.m[rel]
	if e == nil || e.typ != "file" {
		e = &entry{typ: "file", streams: map[string][]byte{}}
		b.m[rel] = e
	}
	e.data, e.mtime, e.atime, e.mode = data, mtime, mtime, mode
}

func (b *base) mRemove(rel string) {
	for p := range b.m {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(b.m, p)
		}
	}
}

func (b *base) mRename(from, to string) {
	moved := model{}
	for p, e := range b.m {
		if p == from || strings.HasPrefix(p, from+"/") {
			moved[to+strings.TrimPrefix(p, from)] = e
			delete(b.m, p)
		}
	}
	for p, e := range moved {
		b.m[p] = e
	}
}

// osEditor edits a mounted file system (ntfs-3g) or a staging folder
// (for mkfs.ext4 -d) with ordinary system calls.
type osEditor struct {
	base
	root  string
	mount *testutil.NTFS3G // NTFS: the ntfs-3g mount of img
	img   string
}

func (e *osEditor) p(rel string) string { return filepath.Join(e.root, filepath.FromSlash(rel)) }

func (e *osEditor) write(rel string, data []byte, mtime time.Time) {
	must(e.t, os.MkdirAll(filepath.Dir(e.p(rel)), 0o755))
	must(e.t, os.WriteFile(e.p(rel), data, 0o644))
	must(e.t, os.Chtimes(e.p(rel), mtime, mtime))
	e.mWrite(rel, data, mtime, 0o644)
}

func (e *osEditor) mkdir(rel string) {
	must(e.t, os.MkdirAll(e.p(rel), 0o755))
	e.parents(rel + "/x")
}

func (e *osEditor) remove(rel string) { must(e.t, os.RemoveAll(e.p(rel))); e.mRemove(rel) }

func (e *osEditor) rename(from, to string) {
	must(e.t, os.Rename(e.p(from), e.p(to)))
	e.mRename(from, to)
}

func (e *osEditor) symlink(rel, target string, mtime time.Time) {
	os.Remove(e.p(rel))
	must(e.t, os.Symlink(target, e.p(rel)))
	ts := unix.NsecToTimespec(mtime.UnixNano())
	must(e.t, unix.UtimesNanoAt(unix.AT_FDCWD, e.p(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	e.parents(rel)
	e.m[rel] = &entry{typ: "symlink", target: target, mtime: mtime, atime: mtime}
}

func (e *osEditor) setStream(rel, name string, data []byte) {
	must(e.t, unixSetxattr(e.p(rel), "user."+name, data))
	e.m[rel].streams[name] = data
	// Keep the times the model knows.
	x := e.m[rel]
	if x.typ == "file" {
		must(e.t, os.Chtimes(e.p(rel), x.atime, x.mtime))
	}
}

// bigStream writes a stream too large for the xattr interface (64 KiB)
// through a second mount with streams_interface=windows ("file:stream").
func (e *osEditor) bigStream(rel, name string, data []byte, img string) {
	must(e.t, e.mount.Unmount())
	m := mountNTFS(e.t, img, "streams_interface=windows")
	p := m.Path(rel)
	must(e.t, os.WriteFile(p+":"+name, data, 0o644))
	x := e.m[rel]
	must(e.t, os.Chtimes(p, x.atime, x.mtime))
	must(e.t, m.Unmount())
	e.mount = mountNTFS(e.t, img, "compression")
	e.root = e.mount.Dir
	x.streams[name] = data
}

func (e *osEditor) patch(rel string, off int64, data []byte) {
	x := e.m[rel]
	f, err := os.OpenFile(e.p(rel), os.O_WRONLY, 0)
	must(e.t, err)
	_, err = f.WriteAt(data, off)
	must(e.t, err)
	must(e.t, f.Close())
	must(e.t, os.Chtimes(e.p(rel), x.atime, x.mtime))
	nd := append([]byte(nil), x.data...)
	copy(nd[off:], data)
	x.data = nd
}

func (e *osEditor) chmod(rel string, mode os.FileMode) {
	must(e.t, os.Chmod(e.p(rel), mode))
	e.m[rel].mode = mode
}

func (e *osEditor) touch(rel string, mtime time.Time) {
	x := e.m[rel]
	must(e.t, os.Chtimes(e.p(rel), x.atime, mtime))
	x.mtime = mtime
}

func (e *osEditor) close() {
	if e.mount != nil {
		must(e.t, e.mount.Unmount())
	}
}

// fatEditor edits a FAT image with mtools.
type fatEditor struct {
	base
	img, tmp string
}

func (e *fatEditor) m_(args ...string) { runEnv(e.t, nil, args[0], args[1:]...) }

func (e *fatEditor) write(rel string, data []byte, mtime time.Time) {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if e.m[d] == nil {
			e.mkdir(d)
		}
	}
	src := filepath.Join(e.tmp, path.Base(rel))
	must(e.t, os.WriteFile(src, data, 0o644))
	must(e.t, os.Chtimes(src, mtime, mtime))
	e.m_("mcopy", "-o", "-m", "-i", e.img, src, "::/"+rel)
	os.Remove(src)
	e.mWrite(rel, data, mtime, 0o644)
}

func (e *fatEditor) mkdir(rel string) {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if e.m[d] == nil {
			e.mkdir(d)
		}
	}
	e.m_("mmd", "-i", e.img, "::/"+rel)
	e.m[rel] = &entry{typ: "dir", mode: 0o755}
}

func (e *fatEditor) remove(rel string) {
	if e.m[rel].typ == "dir" {
		e.m_("mdeltree", "-i", e.img, "::/"+rel)
	} else {
		e.m_("mdel", "-i", e.img, "::/"+rel)
	}
	e.mRemove(rel)
}

func (e *fatEditor) rename(from, to string) {
	e.m_("mmove", "-i", e.img, "::/"+from, "::/"+to)
	e.mRename(from, to)
}

func (e *fatEditor) symlink(string, string, time.Time)   { e.t.Fatal("FAT has no symlinks") }
func (e *fatEditor) setStream(string, string, []byte)    { e.t.Fatal("FAT has no streams") }
func (e *fatEditor) patch(string, int64, []byte)         { e.t.Fatal("not with mtools") }
func (e *fatEditor) chmod(string, os.FileMode)           { e.t.Fatal("FAT has no modes") }
func (e *fatEditor) touch(rel string, mtime time.Time)   { e.write(rel, e.m[rel].data, mtime) }
func (e *fatEditor) close()                              {}
func (e *fatEditor) rewrite(rel string, data []byte)     { e.write(rel, data, e.m[rel].mtime) }
func (e *osEditor) rewrite(rel string, data []byte)      { e.write(rel, data, e.m[rel].mtime) }
func (e *debugfsEditor) rewrite(rel string, data []byte) { e.write(rel, data, e.m[rel].mtime) }

// debugfsEditor edits an ext4 image with debugfs -w.
type debugfsEditor struct {
	base
	img, tmp string
	n        int
}

func (e *debugfsEditor) run(cmds ...string) {
	f := filepath.Join(e.tmp, "cmds")
	must(e.t, os.WriteFile(f, []byte(strings.Join(cmds, "\n")+"\n"), 0o644))
	out := runEnv(e.t, nil, "debugfs", "-w", "-f", f, e.img)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": ") && !strings.HasPrefix(l, "debugfs") && !strings.HasPrefix(l, "Allocated inode") {
			e.t.Fatalf("debugfs: %s\n%s", l, out)
		}
	}
}

func q(rel string) string { return `"/` + rel + `"` }

func stamp(t time.Time) string { return t.UTC().Format("20060102150405") }

func (e *debugfsEditor) write(rel string, data []byte, mtime time.Time) {
	e.n++
	src := filepath.Join(e.tmp, fmt.Sprint("f", e.n))
	must(e.t, os.WriteFile(src, data, 0o644))
	must(e.t, os.Chmod(src, 0o644))
	var cmds []string
	if x := e.m[rel]; x != nil {
		cmds = append(cmds, "rm "+q(rel))
	}
	cmds = append(cmds, "write "+src+" "+q(rel), "set_inode_field "+q(rel)+" mtime "+stamp(mtime), "set_inode_field "+q(rel)+" atime "+stamp(mtime))
	e.run(cmds...)
	os.Remove(src)
	e.mWrite(rel, data, mtime, 0o644)
}

func (e *debugfsEditor) mkdir(rel string) { e.run("mkdir " + q(rel)); e.parents(rel + "/x") }
func (e *debugfsEditor) remove(rel string) {
	if e.m[rel].typ == "dir" {
		e.t.Fatal("not with debugfs")
	}
	e.run("rm " + q(rel))
	e.mRemove(rel)
}
func (e *debugfsEditor) rename(from, to string) {
	e.run("ln "+q(from)+" "+q(to), "unlink "+q(from))
	e.mRename(from, to)
}
func (e *debugfsEditor) symlink(rel, target string, mtime time.Time) {
	var cmds []string
	if e.m[rel] != nil {
		cmds = append(cmds, "rm "+q(rel))
	}
	e.run(append(cmds, "symlink "+q(rel)+" "+target, "set_inode_field "+q(rel)+" mtime "+stamp(mtime), "set_inode_field "+q(rel)+" atime "+stamp(mtime))...)
	e.m[rel] = &entry{typ: "symlink", target: target, mtime: mtime, atime: mtime}
}
func (e *debugfsEditor) setStream(string, string, []byte) { e.t.Fatal("ext4 has no streams") }
func (e *debugfsEditor) patch(string, int64, []byte)      { e.t.Fatal("not with debugfs") }
func (e *debugfsEditor) chmod(rel string, mode os.FileMode) {
	e.run(fmt.Sprintf("set_inode_field %s mode 0100%03o", q(rel), mode))
	e.m[rel].mode = mode
}
func (e *debugfsEditor) touch(rel string, mtime time.Time) {
	e.run("set_inode_field " + q(rel) + " mtime " + stamp(mtime))
	e.m[rel].mtime = mtime
}
func (e *debugfsEditor) close() {}

// ---- building ----

func unixSetxattr(p, name string, v []byte) error { return unix.Setxattr(p, name, v, 0) }

// setCompressed marks a folder compressed through ntfs-3g's
// system.ntfs_attrib_be attribute (big-endian file attribute flags).
func setCompressed(t testing.TB, p string) {
	b := make([]byte, 4)
	n, err := unix.Getxattr(p, "system.ntfs_attrib_be", b)
	if err != nil || n != 4 {
		t.Fatalf("get ntfs_attrib_be %s: %v", p, err)
	}
	b[2] |= 0x08 // FILE_ATTRIBUTE_COMPRESSED 0x800
	must(t, unix.Setxattr(p, "system.ntfs_attrib_be", b, 0))
}

// needFixtureTools skips (or, in CI, fails) without the tools.
func needFixtureTools(t testing.TB) {
	testutil.Need(t, "sgdisk", "mkntfs", "ntfs-3g", "fusermount", "mkfs.vfat", "mcopy", "mmd", "mdeltree", "mmove",
		"mkfs.ext4", "debugfs", "qemu-img", "diff", "cp")
	testutil.NeedFUSE(t)
}

// buildFixture builds the fixture in dir.
func buildFixture(t *testing.T, dir string) *fixture {
	start := time.Now()
	f := &fixture{dir: filepath.Join(dir, "vm"), work: filepath.Join(dir, "work"), fsPath: map[string]string{}}
	must(t, os.MkdirAll(f.dir, 0o755))
	must(t, os.MkdirAll(f.work, 0o755))

	// Point 0: empty file systems, then filled.
	p0 := &fxPoint{name: "Disk", layer: filepath.Join(f.dir, "Disk.vhdx"), parts: map[string]string{}, models: map[string]model{}}
	for _, ps := range partSpec {
		img := filepath.Join(f.work, "p0-"+ps.kind+".img")
		p0.parts[ps.kind] = img
		if ps.kind == "ext4" {
			continue // made by mkfs.ext4 -d below
		}
		mkSparse(t, img, ps.len)
		switch ps.kind {
		case "ntfs":
			runEnv(t, nil, "mkntfs", "-F", "-f", "-q", "-L", "Data", img)
		case "fat":
			runEnv(t, nil, "mkfs.vfat", "-F", "32", "-s", "1", "-n", "FATVOL", img)
		}
	}
	eds := f.editors(t, p0, nil, true)
	fill0(t, eds)
	closeAll(eds)
	stage := eds["ext4"].(*osEditor).root
	mkSparse(t, p0.parts["ext4"], partSpec[2].len)
	runEnv(t, nil, "mkfs.ext4", "-q", "-F", "-L", "linux", "-d", stage, p0.parts["ext4"])
	// The root and lost+found are in every ext4 model.
	p0.models["ext4"]["lost+found"] = &entry{typ: "dir", mode: 0o700}

	raw := filepath.Join(f.work, "disk0.raw")
	mkSparse(t, raw, diskSize)
	args := []string{}
	for i, ps := range partSpec {
		args = append(args, fmt.Sprintf("-n=%d:%d:+%dM", i+1, ps.off/512, ps.len/mib), fmt.Sprintf("-t=%d:%s", i+1, ps.typ), fmt.Sprintf("-c=%d:%s", i+1, ps.name))
	}
	runEnv(t, nil, "sgdisk", append(args, raw)...)
	for _, ps := range partSpec {
		copyInto(t, raw, ps.off, p0.parts[ps.kind])
	}
	runEnv(t, nil, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", raw, p0.layer)
	os.Remove(raw)
	p0.image = stubImage(t, p0.layer)
	f.points = append(f.points, p0)

	// Points 1..3: each a layer of the sectors the tools changed.
	for i, change := range []func(t *testing.T, eds map[string]editor, f *fixture, p *fxPoint){change1, change2, change3} {
		prev := f.points[len(f.points)-1]
		guid := strings.ToUpper(strings.Trim(disk.NewGUID().Braced(), "{}"))
		p := &fxPoint{name: "Disk_" + guid, layer: filepath.Join(f.dir, "Disk_"+guid+".avhdx"), parts: map[string]string{}, models: map[string]model{}}
		for _, ps := range partSpec {
			p.parts[ps.kind] = filepath.Join(f.work, fmt.Sprintf("p%d-%s.img", i+1, ps.kind))
			runEnv(t, nil, "cp", "--sparse=always", prev.parts[ps.kind], p.parts[ps.kind])
		}
		eds := f.editors(t, p, prev, false)
		change(t, eds, f, p)
		closeAll(eds)
		if i == 2 {
			f.damage(t, p)
		}
		p.image = buildLayer(t, prev, p)
		f.points = append(f.points, p)
	}

	// A second disk with one FAT file system, for POINT:/PATH.
	f.buildDataDisk(t)

	// Where the file systems are in the tree.
	v, err := checkpoint.OpenView(f.dir, chain.Options{}, checkpoint.FileTreeOptions{FileSystems: probe.Open})
	must(t, err)
	defer v.Close()
	pt, err := nav.Walk(v.Root, "Disk")
	must(t, err)
	fss, err := nav.FileSystems(pt.Node)
	must(t, err)
	for _, l := range fss {
		switch typ := l.Node.FS.Type(); {
		case typ == "ntfs":
			f.fsPath["ntfs"] = l.Path
		case strings.HasPrefix(typ, "fat"):
			f.fsPath["fat"] = l.Path
		case typ == "ext4":
			f.fsPath["ext4"] = l.Path
		}
	}
	if len(f.fsPath) != 3 {
		t.Fatalf("file systems found in point Disk: %v", f.fsPath)
	}
	t.Logf("fixture built in %v: points %d, file systems at %v", time.Since(start).Round(time.Millisecond), len(f.points), f.fsPath)
	return f
}

func closeAll(eds map[string]editor) {
	for _, k := range fsKinds {
		eds[k].close()
	}
}

func mkSparse(t testing.TB, p string, size int64) {
	fh, err := os.Create(p)
	must(t, err)
	must(t, fh.Truncate(size))
	must(t, fh.Close())
}

func copyInto(t testing.TB, dst string, off int64, src string) {
	in, err := os.Open(src)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	must(t, err)
	defer out.Close()
	_, err = io.Copy(io.NewOffsetWriter(out, off), in)
	must(t, err)
}

// stubImage stands for a file vhdxtest did not write, as a parent.
func stubImage(t testing.TB, p string) *vhdxtest.Image {
	df, err := disk.Open(p)
	must(t, err)
	defer df.Close()
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: df.VirtualSize(), SectorSize: uint32(df.SectorSize())})
	im.DataWriteGUID = df.Header.DataWriteGUID
	im.VirtualDiskID = df.Metadata.VirtualDiskID
	return im
}

// buildLayer writes p's layer: the sectors where p's partition images
// differ from prev's.
func buildLayer(t testing.TB, prev, p *fxPoint) *vhdxtest.Image {
	im := vhdxtest.New(vhdxtest.Options{Parent: prev.image, ParentPath: prev.layer})
	for _, ps := range partSpec {
		// Mapped, not read: 120 MiB per point copied into Go memory is
		// slow under the race detector.
		a, unmapA := testutil.MapFile(t, prev.parts[ps.kind])
		b, unmapB := testutil.MapFile(t, p.parts[ps.kind])
		defer unmapA()
		defer unmapB()
		for s := 0; s < len(b); {
			if bytes.Equal(a[s:s+512], b[s:s+512]) {
				s += 512
				continue
			}
			e := s + 512
			for e < len(b) && !bytes.Equal(a[e:e+512], b[e:e+512]) {
				e += 512
			}
			im.Write(ps.off+int64(s), b[s:e])
			s = e
		}
	}
	must(t, im.Save(p.layer))
	return im
}

// editors opens an editor per file system of point p, whose models start
// as prev's (or empty).
func (f *fixture) editors(t *testing.T, p, prev *fxPoint, first bool) map[string]editor {
	eds := map[string]editor{}
	for _, k := range fsKinds {
		m := model{}
		if prev != nil {
			m = prev.models[k].clone()
		}
		p.models[k] = m
		b := base{t: t, m: m}
		tmp := t.TempDir()
		switch {
		case k == "ntfs":
			mnt := mountNTFS(t, p.parts[k], "compression")
			eds[k] = &osEditor{base: b, root: mnt.Dir, mount: mnt, img: p.parts[k]}
		case k == "fat":
			eds[k] = &fatEditor{base: b, img: p.parts[k], tmp: tmp}
		case k == "ext4" && first:
			eds[k] = &osEditor{base: b, root: tmp}
		default:
			eds[k] = &debugfsEditor{base: b, img: p.parts[k], tmp: tmp}
		}
	}
	return eds
}

// The changes of each point. Each file system gets names with spaces and
// non-ASCII letters, deep folders, additions, deletions, renames and
// modifications; NTFS also sparse and compressed files, streams, hard and
// symbolic links.

func deepDir(n int) string {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, fmt.Sprintf("level%02d", i))
	}
	return "deep/" + strings.Join(parts, "/")
}

func fill0(t *testing.T, eds map[string]editor) {
	n := eds["ntfs"].(*osEditor)
	n.write("hello.txt", []byte("Hello, NTFS!\n"), tm(1))
	n.write("Grüße — 日本/ファイル 1.txt", text(2, 5000), tm(2))
	n.write("name with  spaces .txt", []byte("spaces"), tm(3))
	n.write("big.bin", rnd(4, 3*mib+123), tm(4))
	n.write("inetpub/web.config", []byte("<configuration/>\n"), tm(5))
	n.write(deepDir(20)+"/leaf.txt", []byte("at the bottom"), tm(6))
	n.mkdir("comp")
	setCompressed(t, n.p("comp"))
	n.write("comp/text.txt", text(7, 300<<10+77), tm(7))
	n.write("comp/random", rnd(8, 100<<10), tm(8))
	sparse(n, "sparse.bin", 12*mib, map[int64][]byte{0: rnd(9, 4096), 8 * mib: rnd(10, 10000)}, tm(9))
	n.write("links/a", rnd(11, 7000), tm(10))
	must(t, os.Link(n.p("links/a"), n.p("links/b")))
	n.m["links/b"] = n.m["links/a"]
	n.symlink("ln_rel", "hello.txt", tm(11))
	for i := 0; i < 3; i++ {
		n.write(fmt.Sprintf("olddir/f%d.txt", i), []byte(fmt.Sprint("file ", i)), tm(12+i))
	}
	n.write("tochange", []byte("a file that becomes a folder"), tm(15))
	n.write("todelete.txt", []byte("bye"), tm(16))
	n.write("case.txt", []byte("case"), tm(17))
	for i := 0; i < 150; i++ {
		n.write(fmt.Sprintf("many/entry number %03d.dat", i), []byte(fmt.Sprint(i)), tm(100+i))
	}
	n.write("ads.txt", []byte("main data"), tm(18))
	n.setStream("ads.txt", "small", []byte("tiny value"))
	n.bigStream("ads.txt", "huge", rnd(12, 70<<10), n.img)

	fa := eds["fat"].(*fatEditor)
	fa.write("readme.txt", []byte("FAT readme\n"), tm(1))
	fa.write("docs/a.txt", []byte("doc a"), tm(2))
	fa.write("docs/b.txt", []byte("doc b"), tm(3))
	fa.write("Späße mit Leerzeichen.txt", text(20, 3000), tm(4))
	fa.write("big.bin", rnd(21, mib+7), tm(5))
	fa.write("todelete.txt", []byte("bye"), tm(6))
	fa.write("keep/x.txt", []byte("x"), tm(7))
	fa.write("deep/a/b/c/d/e/f/g/h/leaf.txt", []byte("deep fat"), tm(8))

	e := eds["ext4"].(*osEditor)
	e.write("etc/hosts", []byte("127.0.0.1 localhost\n"), tm(1))
	e.write("etc/motd", []byte("welcome\n"), tm(2))
	e.write("bin/tool", rnd(30, 20000), tm(3))
	e.chmod("bin/tool", 0o755)
	e.symlink("link", "etc/hosts", tm(4))
	e.write("data/big.bin", rnd(31, mib), tm(5))
	e.write("todelete", []byte("bye"), tm(6))
	e.write("dir with space/ümlaut.txt", []byte("ü"), tm(7))
	must(t, os.Chtimes(e.p("dir with space/ümlaut.txt"), tm(7), tm(7)))
	// mkfs.ext4 -d keeps the staged modes: the model says 0644 / 0755.
	must(t, filepath.Walk(e.root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return err
	}))
}

func sparse(n *osEditor, rel string, size int64, chunks map[int64][]byte, mtime time.Time) {
	fh, err := os.Create(n.p(rel))
	must(n.t, err)
	data := make([]byte, size)
	for off, b := range chunks {
		_, err := fh.WriteAt(b, off)
		must(n.t, err)
		copy(data[off:], b)
	}
	must(n.t, fh.Truncate(size))
	must(n.t, fh.Close())
	must(n.t, os.Chtimes(n.p(rel), mtime, mtime))
	n.mWrite(rel, data, mtime, 0o644)
}

func change1(t *testing.T, eds map[string]editor, f *fixture, p *fxPoint) {
	n := eds["ntfs"].(*osEditor)
	n.write("hello.txt", []byte("Hello, NTFS! Changed.\n"), tm(201))
	n.write("new/dir with space/ñ ü.txt", text(40, 2000), tm(202))
	n.remove("todelete.txt")
	n.rename("olddir", "newdir")
	n.setStream("inetpub/web.config", "Zone.Identifier", []byte("[ZoneTransfer]\nZoneId=3\n"))
	n.write(deepDir(20)+"/leaf2.txt", []byte("another"), tm(203))
	n.write("comp/text.txt", text(41, 280<<10), tm(204))
	sparse(n, "sparse2.bin", 10*mib, map[int64][]byte{5 * mib: rnd(42, 5000)}, tm(205))
	n.rename("case.txt", "CASE.txt")

	fa := eds["fat"].(*fatEditor)
	fa.write("readme.txt", []byte("FAT readme, second edition\n"), tm(201))
	fa.remove("todelete.txt")
	fa.write("docs/c.txt", []byte("doc c"), tm(202))
	fa.rename("keep/x.txt", "keep/y.txt")

	e := eds["ext4"].(*debugfsEditor)
	e.write("etc/motd", []byte("welcome back\n"), tm(201))
	e.write("etc/new.conf", []byte("key = value\n"), tm(202))
	e.remove("todelete")
	e.touch("data/big.bin", tm(203))
}

func change2(t *testing.T, eds map[string]editor, f *fixture, p *fxPoint) {
	n := eds["ntfs"].(*osEditor)
	n.patch("big.bin", mib+4096, rnd(50, 64<<10)) // same size, same times
	n.remove("tochange")
	n.write("tochange/inner.txt", []byte("now a folder"), tm(301))
	n.symlink("ln_rel", "name with  spaces .txt", tm(302))
	n.write("links/a", rnd(51, 7000), tm(303))
	fh, err := os.OpenFile(n.p("sparse.bin"), os.O_WRONLY, 0)
	must(t, err)
	_, err = fh.WriteAt(rnd(52, 3000), 4*mib)
	must(t, err)
	must(t, fh.Close())
	x := n.m["sparse.bin"]
	x.data = append([]byte(nil), x.data...)
	copy(x.data[4*mib:], rnd(52, 3000))
	x.mtime = tm(304)
	must(t, os.Chtimes(n.p("sparse.bin"), tm(304), tm(304)))
	x.atime = tm(304)
	for i := 0; i < 10; i++ {
		n.remove(fmt.Sprintf("many/entry number %03d.dat", i*7))
		n.write(fmt.Sprintf("many/added %03d.dat", i), []byte(fmt.Sprint("added ", i)), tm(310+i))
	}
	n.setStream("inetpub/web.config", "Zone.Identifier", []byte("[ZoneTransfer]\nZoneId=4\n"))

	fa := eds["fat"].(*fatEditor)
	b := fa.m["big.bin"]
	nb := append([]byte(nil), b.data...)
	copy(nb[1000:], rnd(53, 5000))
	fa.rewrite("big.bin", nb) // same size and time, other bytes
	fa.remove("docs")

	e := eds["ext4"].(*debugfsEditor)
	e.chmod("bin/tool", 0o700)
	e.symlink("link", "etc/motd", tm(305))
}

func change3(t *testing.T, eds map[string]editor, f *fixture, p *fxPoint) {
	n := eds["ntfs"].(*osEditor)
	n.write("hello.txt", []byte("Hello again.\n"), tm(401))
	f.broken = "inetpub/web.config"
}

// damage overwrites the MFT record of f.broken in p's NTFS image.
func (f *fixture) damage(t *testing.T, p *fxPoint) {
	img := p.parts["ntfs"]
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	defer fh.Close()
	st, err := fh.Stat()
	must(t, err)
	v, err := ntfs.Open(fh, st.Size())
	must(t, err)
	ino := v.Root()
	for _, name := range strings.Split(f.broken, "/") {
		e, err := v.Lookup(ino, name)
		must(t, err)
		ino = e.Ino
	}
	locs, err := v.RecordLocations(ino)
	must(t, err)
	for i, l := range locs {
		_, err := fh.WriteAt(rnd(int64(99+i), int(l.Length)), l.Physical)
		must(t, err)
	}
	p.models["ntfs"][f.broken].broken = true
}

// buildDataDisk writes Data.vhdx: one FAT16 partition.
func (f *fixture) buildDataDisk(t *testing.T) {
	img := filepath.Join(f.work, "data-fat.img")
	mkSparse(t, img, 16*mib)
	runEnv(t, nil, "mkfs.vfat", "-F", "16", "-n", "DATA", img)
	src := filepath.Join(f.work, "web.config")
	must(t, os.WriteFile(src, []byte("<data/>\n"), 0o644))
	must(t, os.Chtimes(src, tm(9), tm(9)))
	runEnv(t, nil, "mmd", "-i", img, "::/inetpub")
	runEnv(t, nil, "mcopy", "-m", "-i", img, src, "::/inetpub/web.config")
	raw := filepath.Join(f.work, "data.raw")
	mkSparse(t, raw, 18*mib)
	runEnv(t, nil, "sgdisk", "-n=1:2048:+16M", "-t=1:0700", "-c=1:Data", raw)
	copyInto(t, raw, mib, img)
	runEnv(t, nil, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", raw, filepath.Join(f.dir, "Data.vhdx"))
	f.data = "Data"
}

// ---- independent views of a point's file system ----

// extract copies point p's file system kind into a new folder with the
// file system's own tool (ntfs-3g mount: the mount point is returned).
func (f *fixture) extract(t *testing.T, p *fxPoint, kind string) string {
	switch kind {
	case "ntfs":
		return mountNTFS(t, p.parts[kind], "ro").Dir
	case "fat":
		out := t.TempDir()
		runEnv(t, nil, "mcopy", "-s", "-m", "-n", "-i", p.parts[kind], "::*", out)
		return out
	default:
		out := t.TempDir()
		runEnv(t, nil, "debugfs", "-R", "rdump / "+out, p.parts[kind])
		return out
	}
}

// diffRQ runs diff -rq over two trees and returns the changes it shows,
// with folders only in one tree expanded to everything below them.
func diffRQ(t *testing.T, a, b string) map[string]string {
	cmd := exec.Command("diff", "-rq", "--no-dereference", a, b)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("diff -rq: %v\n%s", err, out)
	}
	got := map[string]string{}
	rel := func(root, p string) string { r, _ := filepath.Rel(root, p); return filepath.ToSlash(r) }
	addTree := func(st, root, p string) {
		filepath.Walk(p, func(q string, fi os.FileInfo, err error) error {
			if err == nil {
				got[rel(root, q)] = st
			}
			return nil
		})
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "Only in "):
			i := strings.Index(l, ": ")
			dir, name := l[len("Only in "):i], l[i+2:]
			if strings.HasPrefix(dir, a) && (len(dir) == len(a) || dir[len(a)] == '/') {
				addTree("D", a, filepath.Join(dir, name))
			} else {
				addTree("A", b, filepath.Join(dir, name))
			}
		case strings.HasPrefix(l, "Files "), strings.HasPrefix(l, "Symbolic links "):
			s := strings.TrimPrefix(strings.TrimPrefix(l, "Files "), "Symbolic links ")
			i := strings.Index(s, " and "+b)
			got[rel(a, s[:i])] = "M"
		case strings.HasPrefix(l, "File "):
			// File X is a regular file while file Y is a directory
			s := strings.TrimPrefix(l, "File ")
			i := strings.Index(s, " is a ")
			p := rel(a, s[:i])
			got[p] = "T"
			if fi, err := os.Lstat(filepath.Join(b, p)); err == nil && fi.IsDir() {
				addTree("A", b, filepath.Join(b, p))
			}
			if fi, err := os.Lstat(filepath.Join(a, p)); err == nil && fi.IsDir() {
				addTree("D", a, filepath.Join(a, p))
			}
			got[p] = "T"
		default:
			t.Fatalf("diff -rq says %q", l)
		}
	}
	return got
}

// ---- what ckptfs must show ----

// modelChanges computes the changes between two models as ckptfs diff
// reports them, with paths relative to the file system's folder.
func modelChanges(a, b model) map[string]string {
	out := map[string]string{}
	for p, x := range a {
		y := b[p]
		switch {
		case y == nil:
			out[p] = "D " + x.typ
		case x.typ != y.typ:
			out[p] = "T " + y.typ
		case y.broken:
			out[p] = "E"
		case x.typ == "file":
			var r []string
			if !bytes.Equal(x.data, y.data) && len(x.data) != len(y.data) {
				r = append(r, "size")
			}
			if !x.mtime.Equal(y.mtime) {
				r = append(r, "mtime")
			}
			if len(r) == 0 && !bytes.Equal(x.data, y.data) {
				r = append(r, "content")
			}
			if x.mode != y.mode {
				r = append([]string{"mode"}, r...)
			}
			if !sameStreams(x.streams, y.streams) {
				r = append(r, "streams")
			}
			if len(r) > 0 {
				out[p] = "M " + strings.Join(r, ",")
			}
		case x.typ == "symlink" && x.target != y.target:
			out[p] = "M target"
		}
	}
	for p, y := range b {
		if a[p] == nil {
			out[p] = "A " + y.typ
		}
	}
	return out
}

func sameStreams(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// contentChanges are the changes diff -rq can see: existence, type,
// bytes and symlink targets.
func contentChanges(a, b model) map[string]string {
	out := map[string]string{}
	for p, x := range a {
		y := b[p]
		switch {
		case y == nil:
			out[p] = "D"
		case x.typ != y.typ:
			out[p] = "T"
		case x.typ == "file" && !bytes.Equal(x.data, y.data), x.typ == "symlink" && x.target != y.target:
			out[p] = "M"
		}
	}
	for p := range b {
		if a[p] == nil {
			out[p] = "A"
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestFiles builds the fixture once and runs the cp and diff checks on it.
func TestFiles(t *testing.T) {
	needFixtureTools(t)
	dir := t.TempDir()
	if keep := os.Getenv("CKPTFS_KEEP_FIXTURE"); keep != "" {
		dir = keep // for looking at it by hand: the folder is left behind
	}
	f := buildFixture(t, dir)
	t.Run("cp", func(t *testing.T) { testCp(t, f) })
	t.Run("diff", func(t *testing.T) { testDiff(t, f) })
}
