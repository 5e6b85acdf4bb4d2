// Package testutil holds helpers shared by tests: external tools, FUSE
// mounts that are always cleaned up, checksums.
package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Need skips the test when a command is not installed. CI installs all of
// them (see .ci/run), so there a skip means a broken CI script: set
// CKPTFS_REQUIRE_TOOLS=1 to turn skips into failures.
func Need(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv("CKPTFS_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s is required (CKPTFS_REQUIRE_TOOLS is set) but not installed", c)
			}
			t.Skipf("%s not installed; `bash .ci/run` installs it", c)
		}
	}
}

// NeedFUSE skips the test when FUSE mounts are impossible here.
func NeedFUSE(t testing.TB) {
	t.Helper()
	Need(t, "fusermount3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CKPTFS_REQUIRE_TOOLS") != "" {
			t.Fatalf("/dev/fuse is required (CKPTFS_REQUIRE_TOOLS is set): %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// SHA256File returns the hex SHA-256 of a file. It hashes the file mapped
// into memory: no copy through a buffer, which the race detector would
// make some ten times dearer per byte.
func SHA256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 0 && st.Mode().IsRegular() {
		b, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err == nil {
			h.Write(b)
			syscall.Munmap(b)
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MapFile maps the file at path into memory, read-only, until unmap or
// cleanup (an empty file gives nil). Tests compare what an oracle wrote
// (qemu-img, a FUSE mount of vhdimount) through it: no copy into Go
// memory, which the race detector makes some ten times dearer per byte.
func MapFile(t testing.TB, path string) (b []byte, unmap func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() == 0 {
		return nil, func() {}
	}
	b, err = syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap %s: %v", path, err)
	}
	var once sync.Once
	unmap = func() { once.Do(func() { syscall.Munmap(b) }) }
	t.Cleanup(unmap)
	return b, unmap
}

// Unchanged records the SHA-256 of files now and checks at cleanup that
// none of them changed: the proof that sources are never written.
func Unchanged(t testing.TB, paths ...string) {
	t.Helper()
	sums := map[string]string{}
	for _, p := range paths {
		sums[p] = SHA256File(t, p)
	}
	t.Cleanup(func() {
		for _, p := range paths {
			if got := SHA256File(t, p); got != sums[p] {
				t.Errorf("source %s was modified: sha256 %s, was %s", p, got, sums[p])
			}
		}
	})
}

// RandBytes returns n pseudo-random bytes from seed.
func RandBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// Unmount unmounts a FUSE mount point, retrying while it is busy.
func Unmount(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		out, e := exec.Command("fusermount3", "-u", dir).CombinedOutput()
		if e == nil {
			return nil
		}
		if !isMounted(dir) {
			return nil
		}
		err = &exec.ExitError{}
		_ = out
		time.Sleep(100 * time.Millisecond)
	}
	if out, e := exec.Command("fusermount3", "-uz", dir).CombinedOutput(); e != nil {
		return &mountError{dir: dir, out: string(out), err: err}
	}
	return nil
}

type mountError struct {
	dir, out string
	err      error
}

func (e *mountError) Error() string { return "unmount " + e.dir + ": " + e.out }

func isMounted(dir string) bool { return mountOf(dir) != nil }

// mountOf returns the fields of /proc/self/mountinfo's line for the mount
// point dir, or nil.
func mountOf(dir string) []string {
	abs, _ := filepath.Abs(dir)
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == abs {
			return f
		}
	}
	return nil
}

// AbortFUSE aborts the FUSE connection of the mount at dir (root only,
// through /sys/fs/fuse/connections): every request its daemon has not
// answered fails. A daemon killed while one of its own threads waited on
// its own mount (go-fuse opens a file in the mount once mounted) can then
// exit; without it the daemon and whoever waits for it hang.
func AbortFUSE(dir string) error {
	f := mountOf(dir)
	if f == nil {
		return fmt.Errorf("%s is not a mount point", dir)
	}
	_, minor, ok := strings.Cut(f[2], ":") // the device, 0:<connection>
	if !ok {
		return fmt.Errorf("%s: device %q in mountinfo", dir, f[2])
	}
	return os.WriteFile(filepath.Join("/sys/fs/fuse/connections", minor, "abort"), []byte("1"), 0)
}

// WaitKilled waits for cmd, a FUSE daemon serving dir that was sent
// SIGKILL; if it has not exited after 5 seconds, it aborts the mount's
// connection (AbortFUSE) and waits again.
func WaitKilled(t testing.TB, cmd *exec.Cmd, dir string) {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	if err := AbortFUSE(dir); err != nil {
		t.Logf("the killed daemon has not exited; aborting its connection: %v", err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the killed daemon of %s did not exit", dir)
	}
}

// IsMounted reports whether dir is a mount point.
func IsMounted(dir string) bool { return isMounted(dir) }

// VhdiMount mounts file with libvhdi's vhdimount and returns the path of
// the image file that presents the whole chain (the last vhdiN). The mount
// is removed at cleanup, also when the test fails.
func VhdiMount(t testing.TB, file string) string {
	t.Helper()
	Need(t, "vhdimount")
	NeedFUSE(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	Run(t, "vhdimount", file, mnt)
	t.Cleanup(func() {
		if err := Unmount(mnt); err != nil {
			t.Errorf("%v", err)
		}
	})
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	// vhdi1 is the base; the highest number is the file given, seen
	// through its whole chain.
	last, lastN := "", 0
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "vhdi%d", &n); err == nil && n > lastN {
			last, lastN = e.Name(), n
		}
	}
	if last == "" {
		t.Fatalf("vhdimount of %s shows no image", file)
	}
	return filepath.Join(mnt, last)
}

// SHA256 hashes size bytes of r.
func SHA256(t testing.TB, r io.ReaderAt, size int64) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256Bytes hashes b.
func SHA256Bytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Long reports whether long tests were asked for (CKPTFS_LONG=1): 100 000
// files, many crash trials, full-size fixtures. CI runs without them;
// scripts/test-long runs them.
func Long() bool { return os.Getenv("CKPTFS_LONG") != "" }

// Scale returns full for a long run, or when the race detector is off;
// otherwise small: the size of a byte-heavy, sequential part of a test
// under the race detector (see Race).
func Scale[N int | int64](full, small N) N {
	if Long() || !Race {
		return full
	}
	return small
}

// ErrInjected is the error FailingReader returns.
var ErrInjected = fmt.Errorf("injected I/O error")

// FailingReader reads R but fails every read that touches [Lo, Hi) with
// ErrInjected, as a disk with an unreadable region does.
type FailingReader struct {
	R      io.ReaderAt
	Lo, Hi int64
}

// ReadAt reads from R unless the range touches [Lo, Hi).
func (f FailingReader) ReadAt(p []byte, off int64) (int, error) {
	if off < f.Hi && f.Lo < off+int64(len(p)) {
		return 0, ErrInjected
	}
	return f.R.ReadAt(p, off)
}
