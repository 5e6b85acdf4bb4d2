package lvm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/internal/testutil"
)

// lvmEnv is a private lvm2 set-up on loop devices: its own lvm.conf whose
// filter accepts only the test's loop devices, so the tools never see the
// host's real devices, and its own lock directory. Commands run with
// --driverloaded n: this kernel has no device-mapper, so LVs are created
// without activation and their contents are written into the backing
// files at the extents the tools report.
type lvmEnv struct {
	t     *testing.T
	dir   string
	env   []string
	disks []*testDisk
	vgs   []string
}

// testDisk is a backing file attached to a loop device. A PV inside a
// partition has its loop device at off (losetup -o) with size bytes.
type testDisk struct {
	img       string
	loop      string
	off, size int64
}

func newLVMEnv(t *testing.T) *lvmEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: LVM fixtures are built on loop devices")
	}
	testutil.Need(t, "lvm", "losetup")
	return &lvmEnv{t: t, dir: fastTempDir(t)}
}

// fastTempDir returns a temporary folder in memory (/dev/shm) when there
// is one: the tools write metadata with O_DIRECT and flushes, which cost
// milliseconds each on a disk shared with other work.
func fastTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "ckptfs-lvm-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// addDisk creates a sparse disk image of size bytes and attaches it
// whole, or (partOff > 0) only its byte range [partOff, partOff+partSize).
func (e *lvmEnv) addDisk(size, partOff, partSize int64) *testDisk {
	e.t.Helper()
	img := filepath.Join(e.dir, fmt.Sprintf("disk%d.img", len(e.disks)))
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		e.t.Fatal(err)
	}
	d := &testDisk{img: img, size: size}
	args := []string{"-f", "--show"}
	if partOff > 0 {
		testutil.Need(e.t, "sgdisk")
		testutil.Run(e.t, "sgdisk", "-n", fmt.Sprintf("1:%d:+%dK", partOff/512, partSize/1024), "-t", "1:8e00", img)
		d.off, d.size = partOff, partSize
		args = append(args, "-o", strconv.FormatInt(partOff, 10), "--sizelimit", strconv.FormatInt(partSize, 10))
	}
	d.loop = strings.TrimSpace(testutil.Run(e.t, "losetup", append(args, img)...))
	e.t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", d.loop).CombinedOutput(); err != nil {
			e.t.Errorf("losetup -d %s: %v %s", d.loop, err, out)
		}
	})
	e.disks = append(e.disks, d)
	e.configure()
	return d
}

// configure writes lvm.conf for the current set of loop devices.
func (e *lvmEnv) configure() {
	e.t.Helper()
	var accept []string
	for _, d := range e.disks {
		accept = append(accept, fmt.Sprintf(`"a|^%s$|"`, d.loop))
	}
	filter := "[ " + strings.Join(append(accept, `"r|.*|"`), ", ") + " ]"
	conf := fmt.Sprintf(`devices {
	filter = %[1]s
	global_filter = %[1]s
	use_devicesfile = 0
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	hints = "none"
	md_component_detection = 0
	multipath_component_detection = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
global {
	locking_dir = "%[2]s/lock"
	use_lvmlockd = 0
	use_lvmpolld = 0
	event_activation = 0
}
backup {
	backup = 0
	archive = 0
}
`, filter, e.dir)
	etc := filepath.Join(e.dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "lvm.conf"), []byte(conf), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.env = append(os.Environ(), "LVM_SYSTEM_DIR="+etc, "LVM_SUPPRESS_FD_WARNINGS=1")
}

// run runs an lvm command (lvm CMD --driverloaded n ARGS...) and returns
// its standard output; it fails the test on error.
func (e *lvmEnv) run(cmd string, args ...string) string {
	e.t.Helper()
	out, err := e.try(cmd, args...)
	if err != nil {
		e.t.Fatalf("lvm %s %s: %v", cmd, strings.Join(args, " "), err)
	}
	return out
}

func (e *lvmEnv) try(cmd string, args ...string) (string, error) {
	c := exec.Command("lvm", append([]string{cmd, "--driverloaded", "n"}, args...)...)
	c.Env = e.env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}

// vgcreate creates a VG on the given disks and removes it at cleanup.
func (e *lvmEnv) vgcreate(name string, args []string, disks ...*testDisk) {
	e.t.Helper()
	for _, d := range disks {
		args = append(args, d.loop)
	}
	e.run("vgcreate", append([]string{"-y", name}, args...)...)
	e.t.Cleanup(func() { e.try("vgremove", "-ff", "-y", name) })
}

// lvcreate creates an LV without activating or zeroing it.
func (e *lvmEnv) lvcreate(args ...string) {
	e.t.Helper()
	e.run("lvcreate", append([]string{"-an", "-Zn", "-y"}, args...)...)
}

// report runs an lvm reporting command with JSON output and returns the
// rows of its first report section.
func (e *lvmEnv) report(cmd, section string, args ...string) []map[string]string {
	e.t.Helper()
	out := e.run(cmd, append([]string{"--reportformat", "json", "--units", "b", "--nosuffix"}, args...)...)
	var rep struct {
		Report []map[string][]map[string]string `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("lvm %s: %v\n%s", cmd, err, out)
	}
	if len(rep.Report) == 0 {
		return nil
	}
	return rep.Report[0][section]
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("report value %q: %v", s, err)
	}
	return n
}

// toolSeg is one row of "lvs -a --segments".
type toolSeg struct {
	lv, uuid, segtype string
	hidden            bool
	lvSize            int64
	start, count      int64 // extents
	stripeSize        int64 // bytes
	ranges            []toolRange
}

// toolRange is one "dev:first-last" of seg_pe_ranges.
type toolRange struct {
	dev         string
	first, last int64
}

// toolView is the tools' view of a VG: its segments, extent size and
// where each PV's extents start.
type toolView struct {
	vgName, vgUUID string
	seqno          int64
	extent         int64
	peStart        map[string]int64 // loop device -> pe_start bytes
	pvUUID         map[string]string
	segs           []toolSeg
}

func (e *lvmEnv) view(vg string) *toolView {
	e.t.Helper()
	v := &toolView{peStart: map[string]int64{}, pvUUID: map[string]string{}}
	for _, r := range e.report("vgs", "vg", "-o", "vg_name,vg_uuid,vg_seqno,vg_extent_size", vg) {
		v.vgName, v.vgUUID, v.seqno, v.extent = r["vg_name"], r["vg_uuid"], atoi(e.t, r["vg_seqno"]), atoi(e.t, r["vg_extent_size"])
	}
	for _, r := range e.report("pvs", "pv", "-o", "pv_name,pv_uuid,pe_start,vg_name") {
		if r["vg_name"] == vg {
			v.peStart[r["pv_name"]] = atoi(e.t, r["pe_start"])
			v.pvUUID[r["pv_name"]] = r["pv_uuid"]
		}
	}
	for _, r := range e.report("lvs", "seg", "-a", "--segments", "-o", "lv_name,lv_uuid,lv_size,segtype,seg_start_pe,seg_size_pe,stripe_size,seg_pe_ranges", vg) {
		s := toolSeg{lv: r["lv_name"], uuid: r["lv_uuid"], segtype: r["segtype"], lvSize: atoi(e.t, r["lv_size"]),
			start: atoi(e.t, r["seg_start_pe"]), count: atoi(e.t, r["seg_size_pe"]), stripeSize: atoi(e.t, r["stripe_size"])}
		if strings.HasPrefix(s.lv, "[") {
			s.lv, s.hidden = strings.Trim(s.lv, "[]"), true
		}
		for _, f := range strings.Fields(r["seg_pe_ranges"]) {
			i := strings.LastIndexByte(f, ':')
			a, b, _ := strings.Cut(f[i+1:], "-")
			s.ranges = append(s.ranges, toolRange{f[:i], atoi(e.t, a), atoi(e.t, b)})
		}
		v.segs = append(v.segs, s)
	}
	sort.SliceStable(v.segs, func(i, j int) bool {
		if v.segs[i].lv != v.segs[j].lv {
			return v.segs[i].lv < v.segs[j].lv
		}
		return v.segs[i].start < v.segs[j].start
	})
	return v
}

// visible returns the names of the LVs the tools show without -a, with
// their sizes.
func (v *toolView) visible() map[string]int64 {
	out := map[string]int64{}
	for _, s := range v.segs {
		if !s.hidden {
			out[s.lv] = s.lvSize
		}
	}
	return out
}

// diskOf returns the disk whose loop device is dev.
func (e *lvmEnv) diskOf(dev string) *testDisk {
	for _, d := range e.disks {
		if d.loop == dev {
			return d
		}
	}
	e.t.Fatalf("no test disk for %s", dev)
	return nil
}

// place writes data as the contents of LV lv, following the tools'
// segment report: linear ranges in order, striped segments chunk by chunk
// round-robin over their stripes (device-mapper's striped target). It
// writes the backing files, at the partition offset where there is one.
func (e *lvmEnv) place(v *toolView, lv string, data []byte) {
	e.t.Helper()
	found := false
	for _, s := range v.segs {
		if s.lv != lv {
			continue
		}
		found = true
		segData := data[s.start*v.extent : (s.start+s.count)*v.extent]
		if s.segtype != "linear" && s.segtype != "striped" {
			e.t.Fatalf("place: LV %s has a %s segment", lv, s.segtype)
		}
		n := int64(len(s.ranges))
		if n == 1 {
			e.writeExtents(v, s.ranges[0], 0, segData)
			continue
		}
		for k := int64(0); k*s.stripeSize < int64(len(segData)); k++ {
			chunk := segData[k*s.stripeSize : (k+1)*s.stripeSize]
			e.writeExtents(v, s.ranges[k%n], (k/n)*s.stripeSize, chunk)
		}
	}
	if !found {
		e.t.Fatalf("place: no segments for LV %s", lv)
	}
}

// writeExtents writes b at byte off into the extent range r.
func (e *lvmEnv) writeExtents(v *toolView, r toolRange, off int64, b []byte) {
	e.t.Helper()
	if off+int64(len(b)) > (r.last-r.first+1)*v.extent {
		e.t.Fatalf("write of %d bytes at %d overflows range %+v", len(b), off, r)
	}
	d := e.diskOf(r.dev)
	pos := d.off + v.peStart[r.dev] + r.first*v.extent + off
	f, err := os.OpenFile(d.img, os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, pos); err != nil {
		e.t.Fatal(err)
	}
}

// openPV opens a disk's backing file read-only (the PV only, for a
// partition) and reads its PV; the file is checked unchanged at cleanup.
func (e *lvmEnv) openPV(d *testDisk) *PV {
	e.t.Helper()
	f, err := os.Open(d.img)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	pv, err := ReadPV(sectionOf(f, d), d.size)
	if err != nil {
		e.t.Fatalf("ReadPV %s: %v", d.img, err)
	}
	return pv
}

func sectionOf(f *os.File, d *testDisk) io.ReaderAt {
	if d.off == 0 {
		return f
	}
	return io.NewSectionReader(f, d.off, d.size)
}
