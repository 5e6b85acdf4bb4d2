package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// mountDir returns a new empty folder to mount on.
func mountDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// ckptfsMount runs `ckptfs mount args... SOURCE MNT` (as a daemon unless
// args say -f), expecting success; the mount is removed at cleanup and the
// daemon must then exit.
func ckptfsMount(t *testing.T, bin, source, mnt string, args ...string) int {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"mount"}, args...), source, mnt)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("ckptfs mount %s %s: %v\n%s", source, mnt, err, stderr.String())
	}
	t.Logf("mounted %s in %v", filepath.Base(source), time.Since(start).Round(time.Millisecond))
	pid := daemonPID(mnt)
	t.Cleanup(func() {
		if err := testutil.Unmount(mnt); err != nil {
			t.Errorf("%v", err)
		}
		if pid > 0 && !waitExit(pid, 5*time.Second) {
			t.Errorf("daemon %d still running 5 s after fusermount3 -u", pid)
		}
	})
	if !testutil.IsMounted(mnt) {
		t.Fatalf("ckptfs mount returned but %s is not mounted", mnt)
	}
	if pid <= 0 {
		t.Fatalf("no daemon process found for %s", mnt)
	}
	return pid
}

// daemonPID finds the process serving mnt by its command line.
func daemonPID(mnt string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && args[1] == "mount" && mtContains(args, mnt) {
			return pid
		}
	}
	return 0
}

func mtContains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// waitExit waits until pid is gone or a zombie.
func waitExit(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return true
		}
	}
	return false
}

// chainSHA hashes the virtual disk of the chain ending at path.
func chainSHA(t *testing.T, path string) string {
	t.Helper()
	c, err := chain.Open(path, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return testutil.SHA256(t, c, c.Size())
}

func mtStem(p string) string { return strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)) }

// qemuBase converts raw into a VHDX with qemu-img and returns the SHA-256
// of qemu-img's own conversion back to raw.
func qemuBase(t *testing.T, raw, out, opts string) string {
	t.Helper()
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", opts, raw, out)
	back := filepath.Join(t.TempDir(), "back.raw")
	testutil.Run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", out, back)
	return testutil.SHA256File(t, back)
}

// TestMountChains mounts a folder holding a generated chain and qemu-img
// images with generated children, as a daemon: every point of every chain
// is there once, each <disk>.raw hashes like the chain reader (and like
// the generator's model, and qemu-img for bases), the sources are opened
// read-only and never change, and fusermount3 -u stops the daemon.
func TestMountChains(t *testing.T) {
	testutil.NeedFUSE(t)
	testutil.Need(t, "qemu-img")
	bin := sharedBinary(t)
	src := t.TempDir()

	gen := vhdxtest.Generate(t, src, "Disk", 6<<20+512*5, 3, 11)
	want := map[string]string{} // point -> sha256 of <disk>.raw
	diskOf := map[string]string{}
	for i, c := range gen.Contents() {
		want[mtStem(gen.Paths[i])], diskOf[mtStem(gen.Paths[i])] = testutil.SHA256Bytes(c), "Disk"
	}

	// A dynamic qemu-img base with two generated children.
	raw := filepath.Join(t.TempDir(), "q.raw")
	qraw := vhdxtest.RawFixture(t, raw, 5<<20, 5)
	qpath := filepath.Join(src, "Q.vhdx")
	want["Q"], diskOf["Q"] = qemuBase(t, raw, qpath, "subformat=dynamic,block_size=1M"), "Q"
	parent, parentPath := vhdxtest.StandIn(t, qpath), qpath
	paths := []string{gen.Paths[0], gen.Paths[1], gen.Paths[2], qpath}
	for i := 0; i < 2; i++ {
		next := append([]byte(nil), qraw...)
		vhdxtest.Fill(next[(i+1)<<20:(i+1)<<20+300<<9], uint64(i)) // a run of sectors
		copy(next[len(next)-1024:], fmt.Sprintf("child %d", i))
		p := filepath.Join(src, vhdxtest.ChildName("Q"))
		parent = vhdxtest.DiffChild(t, parent, parentPath, p, qraw, next)
		want[mtStem(p)], diskOf[mtStem(p)] = testutil.SHA256Bytes(next), "Q"
		qraw, parentPath = next, p
		paths = append(paths, p)
	}
	// A fixed qemu-img disk alone.
	raw2 := filepath.Join(t.TempDir(), "f.raw")
	vhdxtest.RawFixture(t, raw2, 3<<20, 6)
	fpath := filepath.Join(src, "Fixed.vhdx")
	want["Fixed"], diskOf["Fixed"] = qemuBase(t, raw2, fpath, "subformat=fixed"), "Fixed"
	paths = append(paths, fpath)
	testutil.Unchanged(t, paths...)

	// The chain reader agrees with every expectation.
	for _, p := range paths {
		if got := chainSHA(t, p); got != want[mtStem(p)] {
			t.Fatalf("chain reader of %s: %s, want %s", filepath.Base(p), got, want[mtStem(p)])
		}
	}

	mnt := mountDir(t)
	pid := ckptfsMount(t, bin, src, mnt)
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var got, wantPoints []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	for p := range want {
		wantPoints = append(wantPoints, p)
	}
	sort.Strings(got)
	sort.Strings(wantPoints)
	if strings.Join(got, ",") != strings.Join(wantPoints, ",") {
		t.Fatalf("points %v, want %v", got, wantPoints)
	}
	for p, sum := range want {
		f := filepath.Join(mnt, p, diskOf[p]+".raw")
		if s := testutil.SHA256File(t, f); s != sum {
			t.Errorf("%s: sha256 %s, want %s", f, s, sum)
		}
	}
	// Writes are refused.
	if _, err := os.OpenFile(filepath.Join(mnt, "Q", "Q.raw"), os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open for writing: %v, want EROFS", err)
	}
	// Every source the daemon holds is open read-only.
	checkReadOnlyFDs(t, pid, src)

	// A single file shows only its own chain; --direct-io reads the same
	// bytes; --debug --log-file logs FUSE operations.
	mnt2 := mountDir(t)
	logFile := filepath.Join(t.TempDir(), "log")
	ckptfsMount(t, bin, gen.Paths[1], mnt2, "--debug", "--direct-io", "--log-file", logFile)
	ents, err = os.ReadDir(mnt2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 || ents[0].Name() != "Disk" && ents[1].Name() != "Disk" {
		t.Errorf("mount of %s shows %v", filepath.Base(gen.Paths[1]), ents)
	}
	p1 := mtStem(gen.Paths[1])
	if s := testutil.SHA256File(t, filepath.Join(mnt2, p1, "Disk.raw")); s != want[p1] {
		t.Errorf("--direct-io: %s/Disk.raw differs", p1)
	}
	if b, _ := os.ReadFile(logFile); !bytes.Contains(b, []byte("READ")) || !bytes.Contains(b, []byte("mounted")) {
		t.Errorf("--debug --log-file: no FUSE operations logged:\n%.500s", b)
	}
}

// checkReadOnlyFDs checks that every file of dir process pid holds open is
// open with O_RDONLY.
func checkReadOnlyFDs(t *testing.T, pid int, dir string) {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		n++
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, _ := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
				if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
					t.Errorf("%s is open with flags %o", target, flags)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("daemon %d holds no file of %s", pid, dir)
	}
}

// TestMountErrors: what cannot be mounted fails with one line saying what
// to do, and leaves nothing mounted.
func TestMountErrors(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	src := t.TempDir()
	notVHDX := filepath.Join(src, "notes.vhdx")
	os.WriteFile(notVHDX, bytes.Repeat([]byte("not a disk "), 1000), 0o644)
	orphan := t.TempDir()
	g := vhdxtest.Generate(t, orphan, "Disk", 2<<20, 2, 3)
	os.Remove(g.Paths[0])
	good := vhdxtest.Generate(t, t.TempDir(), "Good", 2<<20, 1, 4)
	busy := mountDir(t)
	ckptfsMount(t, bin, good.Leaf(), busy)
	aFile := filepath.Join(t.TempDir(), "file")
	os.WriteFile(aFile, nil, 0o644)

	cases := []struct {
		name, source, mnt string
		want              []string
	}{
		{"not VHDX", notVHDX, "", []string{"not a VHDX file", "SOURCE must be a .vhdx/.avhdx file"}},
		{"missing parent", g.Leaf(), "", []string{"parent not found", "--search-path"}},
		{"missing parent in folder", orphan, "", []string{"parent not found", "--search-path"}},
		{"missing source", filepath.Join(src, "nope.vhdx"), "", []string{"no such file", "SOURCE must be"}},
		{"missing mount point", good.Leaf(), filepath.Join(src, "nope"), []string{"does not exist", "mkdir -p"}},
		{"mount point is a file", good.Leaf(), aFile, []string{"not a folder"}},
		{"busy mount point", good.Leaf(), busy, []string{"busy", "fusermount3 -u"}},
	}
	for _, c := range cases {
		for _, fg := range []bool{false, true} {
			mnt := c.mnt
			if mnt == "" {
				mnt = mountDir(t)
			}
			args := []string{"mount", c.source, mnt}
			if fg {
				args = append(args, "-f")
			}
			cmd := exec.Command(bin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("%s (foreground %v): %v, want exit status 1", c.name, fg, err)
			}
			msg := stderr.String()
			if strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.HasPrefix(msg, "ckptfs mount: ") {
				t.Errorf("%s: not one line: %q", c.name, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%s: %q does not say %q", c.name, msg, w)
				}
			}
			if mnt != busy && testutil.IsMounted(mnt) {
				testutil.Unmount(mnt)
				t.Errorf("%s: %s left mounted", c.name, mnt)
			}
		}
	}
	// Usage errors.
	if err := exec.Command(bin, "mount", good.Leaf()).Run(); err == nil {
		t.Error("one argument accepted")
	}
}

// TestMountForegroundSignal: -f serves until SIGTERM/SIGINT, then unmounts
// cleanly and exits 0.
func TestMountForegroundSignal(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	g := vhdxtest.Generate(t, t.TempDir(), "Disk", 2<<20, 2, 8)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		mnt := mountDir(t)
		cmd := exec.Command(bin, "mount", "-f", g.Leaf(), mnt)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { testutil.Unmount(mnt) })
		for end := time.Now().Add(20 * time.Second); !testutil.IsMounted(mnt); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				cmd.Process.Kill()
				t.Fatalf("not mounted after 20 s: %s", stderr.String())
			}
		}
		if _, err := os.Stat(filepath.Join(mnt, mtStem(g.Leaf()), "Disk.raw")); err != nil {
			t.Error(err)
		}
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: exit %v\n%s", sig, err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: still running after 10 s", sig)
		}
		if testutil.IsMounted(mnt) {
			t.Errorf("%v: still mounted", sig)
		}
		if !strings.Contains(stderr.String(), "unmounted") {
			t.Errorf("%v: log does not say unmounted:\n%s", sig, stderr.String())
		}
	}
}

func TestServeProcs(t *testing.T) {
	for _, tc := range []struct {
		env       string
		cur, want int
	}{
		{"", 1, minServeProcs},
		{"", 2, minServeProcs},
		{"", 16, 16},
		{"2", 2, 2}, // the user's GOMAXPROCS wins
		{"1", 1, 1},
	} {
		if got := serveProcs(tc.env, tc.cur); got != tc.want {
			t.Errorf("serveProcs(%q, %d) = %d, want %d", tc.env, tc.cur, got, tc.want)
		}
	}
}
