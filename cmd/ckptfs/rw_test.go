package main

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/internal/units"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the binary sharedBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// sharedBinary builds ckptfs once for all tests of the package.
func sharedBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ckptfs-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ckptfs")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath
}

// rwChain writes a base and a child into dir and returns the leaf, the
// chain's contents and the files.
func rwChain(t *testing.T, dir string, sector uint32) (string, []byte, []string) {
	t.Helper()
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 24 * disk.MiB, BlockSize: disk.MiB, SectorSize: sector})
	base.Write(0, testutil.RandBytes(1, 5*disk.MiB))
	bp := filepath.Join(dir, "Disk.vhdx")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	child := vhdxtest.New(vhdxtest.Options{Parent: base, ParentPath: bp, BlockSize: disk.MiB})
	child.Write(4*disk.MiB, testutil.RandBytes(2, 3*disk.MiB))
	// A partial block keeps the chunk's sector bitmap allocated:
	// vhdimount 20210425 reads a missing sector bitmap from file offset 0
	// and so misreads NOT_PRESENT blocks of such a chunk (it takes the
	// "vhdxfile" signature's bits for present sectors).
	child.Write(8*disk.MiB+4096, testutil.RandBytes(3, 8192))
	cp := filepath.Join(dir, "Disk_0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0.avhdx")
	if err := child.Save(cp); err != nil {
		t.Fatal(err)
	}
	return cp, child.ChainContents(), []string{bp, cp}
}

func layerIn(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.avhdx"))
	if len(m) != 1 {
		t.Fatalf("%d layers in %s, want 1: %v", len(m), dir, m)
	}
	return m[0]
}

// TestMountRW writes through a writable mount (unaligned offsets and
// sizes, across blocks, overwrites), then checks the new layer with the
// chain reader and with vhdimount, an independent reader.
func TestMountRW(t *testing.T) {
	testutil.NeedFUSE(t)
	for _, sector := range []uint32{512, 4096} {
		t.Run(map[uint32]string{512: "512", 4096: "4096"}[sector], func(t *testing.T) {
			bin := sharedBinary(t)
			src, layers := t.TempDir(), t.TempDir()
			leaf, want, paths := rwChain(t, src, sector)
			testutil.Unchanged(t, paths...)
			mnt := mountDir(t)
			pid := ckptfsMount(t, bin, leaf, mnt, "--rw", "--layer-dir", layers)
			layer := layerIn(t, layers)
			raw := filepath.Join(mnt, mtStem(layer), "Disk.raw")
			f, err := os.OpenFile(raw, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewSource(int64(sector)))
			for i := 0; i < 60; i++ {
				n := 1 + rng.Intn(3*disk.MiB)
				if i%3 == 0 {
					n = 1 + rng.Intn(700) // partial sectors
				}
				off := rng.Int63n(int64(len(want) - n))
				b := make([]byte, n)
				rng.Read(b)
				if _, err := f.WriteAt(b, off); err != nil {
					t.Fatalf("write %d+%d: %v", off, n, err)
				}
				copy(want[off:], b)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			mustSame(t, "read back through the mount", got, want)
			// Other points stay read-only.
			if err := os.WriteFile(filepath.Join(mnt, "Disk", "Disk.raw"), []byte("x"), 0); !errors.Is(err, syscall.EROFS) {
				t.Errorf("writing a read-only point: %v, want EROFS", err)
			}
			if err := testutil.Unmount(mnt); err != nil {
				t.Fatal(err)
			}
			if !waitExit(pid, 10*time.Second) {
				t.Fatal("daemon did not exit after unmount")
			}
			// The layer (in another folder) re-opens through relative_path.
			c, err := chain.Open(layer, chain.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Links[1].LocatorKey != disk.KeyRelativePath || c.Leaf().(*disk.File).Log.Replayed {
				t.Errorf("layer parent found through %q, log replayed %v", c.Links[1].LocatorKey, c.Leaf().(*disk.File).Log.Replayed)
			}
			got = make([]byte, c.Size())
			if _, err := c.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			mustSame(t, "layer through the chain reader", got, want)
			// vhdimount finds parents only beside the child: link them there.
			for _, p := range paths {
				if err := os.Symlink(p, filepath.Join(layers, filepath.Base(p))); err != nil {
					t.Fatal(err)
				}
			}
			vh, err := os.ReadFile(testutil.VhdiMount(t, layer))
			if err != nil {
				t.Fatal(err)
			}
			mustSame(t, "layer through vhdimount", vh, want)
		})
	}
}

func mustSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at byte %d", what, i)
		}
	}
}

func TestMountRWDiscardAndErrors(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	src, layers := t.TempDir(), t.TempDir()
	leaf, _, paths := rwChain(t, src, 512)
	testutil.Unchanged(t, paths...)

	mnt := mountDir(t)
	pid := ckptfsMount(t, bin, leaf, mnt, "--rw", "--discard", "--layer-dir", layers)
	layer := layerIn(t, layers)
	if f, err := os.OpenFile(filepath.Join(mnt, mtStem(layer), "Disk.raw"), os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else if _, err := f.WriteAt([]byte("hello"), 4096); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	// A disk cannot be truncated.
	if err := os.WriteFile(filepath.Join(mnt, mtStem(layer), "Disk.raw"), []byte("x"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("truncating the writable disk: %v, want EPERM", err)
	}
	testutil.Unmount(mnt)
	waitExit(pid, 10*time.Second)
	if m, _ := filepath.Glob(filepath.Join(layers, "*")); len(m) != 0 {
		t.Errorf("--discard left %v", m)
	}

	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--rw", src}, "--rw needs"},
		{[]string{"--rw", "--layer-dir", notDir, leaf}, "--layer-dir"},
		{[]string{"--rw", "--layer-dir", filepath.Join(layers, "missing"), leaf}, "--layer-dir"},
		{[]string{"--discard", leaf}, "need --rw"},
	}
	for _, c := range cases {
		m := mountDir(t)
		out, err := exec.Command(bin, append(append([]string{"mount"}, c.args[:len(c.args)-1]...), c.args[len(c.args)-1], m)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: err %v, output %q, want %q", c.args, err, out, c.want)
		}
		if testutil.IsMounted(m) {
			t.Errorf("%v left a mount", c.args)
			testutil.Unmount(m)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(layers, "*")); len(m) != 0 {
		t.Errorf("failed mounts left %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(src, "*")); len(m) != 2 {
		t.Errorf("source folder changed: %v", m)
	}
}

// TestMountRWCrash kills the daemon with SIGKILL at random moments of a
// write stream. The layer must always open (its log replayed), every write
// fsynced before the kill must read back, and every sector must hold either
// its old content or the content of a write that covered it.
func TestMountRWCrash(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	trials := 50
	if testing.Short() {
		trials = 10
	}
	if s := os.Getenv("CKPTFS_RW_CRASH_TRIALS"); s != "" {
		if n, err := units.ParseSize(s); err == nil {
			trials = int(n)
		}
	}
	src := t.TempDir()
	leaf, old, paths := rwChain(t, src, 512)
	testutil.Unchanged(t, paths...)
	const slot = 64 << 10
	// One pair of buffers for every trial: fresh memory per trial is
	// what makes the trials slow under the race detector.
	got, newer := make([]byte, len(old)), make([]byte, len(old))
	for trial := 0; trial < trials; trial++ {
		rng := rand.New(rand.NewSource(int64(trial)))
		layers, mnt := t.TempDir(), mountDir(t)
		cmd := exec.Command(bin, "mount", "-f", "--rw", "--layer-dir", layers, leaf, mnt)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var raw string
		for end := time.Now().Add(10 * time.Second); raw == "" && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if m, _ := filepath.Glob(filepath.Join(layers, "*.avhdx")); len(m) == 1 && testutil.IsMounted(mnt) {
				raw = filepath.Join(mnt, mtStem(m[0]), "Disk.raw")
			}
		}
		if raw == "" {
			cmd.Process.Kill()
			t.Fatalf("trial %d: mount not ready", trial)
		}
		// Writes go to distinct slots, so each sector has one candidate
		// new content.
		type write struct {
			off  int64
			data []byte
		}
		slots := rng.Perm(len(old) / slot)
		var writes []write
		var mu sync.Mutex
		synced := -1
		done := make(chan struct{})
		wrng := rand.New(rand.NewSource(int64(trial) + 1e6)) // the writer's own
		go func() {
			defer close(done)
			rng := wrng
			f, err := os.OpenFile(raw, os.O_RDWR, 0)
			if err != nil {
				return
			}
			defer f.Close()
			for k := 0; k < len(slots); k++ {
				w := write{off: int64(slots[k])*slot + rng.Int63n(slot/2), data: make([]byte, 1+rng.Intn(slot/2))}
				rng.Read(w.data)
				mu.Lock()
				writes = append(writes, w)
				mu.Unlock()
				if _, err := f.WriteAt(w.data, w.off); err != nil {
					return
				}
				if k%4 == 3 {
					if f.Sync() != nil {
						return
					}
					mu.Lock()
					synced = k
					mu.Unlock()
				}
			}
		}()
		time.Sleep(time.Duration(rng.Intn(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		testutil.WaitKilled(t, cmd, mnt)
		exec.Command("fusermount3", "-u", "-z", mnt).Run()
		<-done
		mu.Lock()
		ws, lastSynced := writes, synced
		mu.Unlock()

		layer := layerIn(t, layers)
		c, err := chain.Open(layer, chain.Options{})
		if err != nil {
			t.Fatalf("trial %d: the layer does not open after SIGKILL: %v", trial, err)
		}
		if c.Size() != int64(len(got)) {
			t.Fatalf("trial %d: the layer shows %d bytes, want %d", trial, c.Size(), len(got))
		}
		_, err = c.ReadAt(got, 0)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		copy(newer, old)
		for _, w := range ws {
			copy(newer[w.off:], w.data)
		}
		for k, w := range ws {
			if k <= lastSynced && !bytes.Equal(got[w.off:w.off+int64(len(w.data))], w.data) {
				t.Fatalf("trial %d: write %d (%d bytes at %d) was fsynced but did not survive", trial, k, len(w.data), w.off)
			}
		}
		for s := 0; s < len(got); s += 512 {
			g := got[s : s+512]
			if !bytes.Equal(g, old[s:s+512]) && !bytes.Equal(g, newer[s:s+512]) {
				t.Fatalf("trial %d: sector %d holds neither its old content nor what was written", trial, s/512)
			}
		}
		t.Logf("trial %d: %d writes, %d fsynced", trial, len(ws), lastSynced+1)
	}
}

// tmpfs mounts a tmpfs of size bytes (root only), removed at cleanup.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	d := filepath.Join(t.TempDir(), "small")
	os.Mkdir(d, 0o755)
	testutil.Run(t, "mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", d)
	t.Cleanup(func() { exec.Command("umount", "-l", d).Run() })
	return d
}

// TestMountRWDiskFull: a layer folder too small to create the layer gives a
// clear error and leaves nothing; a folder that fills up while writing gives
// ENOSPC to the writer, and the layer still opens afterwards.
func TestMountRWDiskFull(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	src := t.TempDir()
	leaf, want, paths := rwChain(t, src, 512)
	testutil.Unchanged(t, paths...)

	// The new layer's structures take 4 KiB blocks here and there (the
	// file is sparse): 64 KiB is too little for them.
	tiny := tmpfs(t, "64k")
	m := mountDir(t)
	out, err := exec.Command(bin, "mount", "--rw", "--layer-dir", tiny, leaf, m).CombinedOutput()
	if testutil.IsMounted(m) {
		testutil.Unmount(m)
		t.Fatal("mounted although the layer folder is full")
	}
	if err == nil || !strings.Contains(string(out), "no space left") {
		t.Errorf("layer in a full folder: %v %q", err, out)
	}
	if m, _ := filepath.Glob(filepath.Join(tiny, "*")); len(m) != 0 {
		t.Errorf("a failed creation left %v", m)
	}

	small := tmpfs(t, "7m")
	mnt := mountDir(t)
	pid := ckptfsMount(t, bin, leaf, mnt, "--rw", "--layer-dir", small)
	layer := layerIn(t, small)
	f, err := os.OpenFile(filepath.Join(mnt, mtStem(layer), "Disk.raw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	data := testutil.RandBytes(9, disk.MiB)
	written := 0
	for off := int64(0); off < 16*disk.MiB && werr == nil; off += disk.MiB {
		if _, werr = f.WriteAt(data, off); werr == nil {
			if werr = f.Sync(); werr == nil {
				copy(want[off:], data)
				written++
			}
		}
	}
	f.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Errorf("writing past a full layer folder: %v, want ENOSPC", werr)
	}
	testutil.Unmount(mnt)
	waitExit(pid, 10*time.Second)
	c, err := chain.Open(layer, chain.Options{})
	if err != nil {
		t.Fatalf("the layer does not open after ENOSPC: %v", err)
	}
	defer c.Close()
	got := make([]byte, c.Size())
	if _, err := c.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	// Every fsynced write is there; the rest of the disk is unchanged
	// (the write that failed may be partly there).
	mustSame(t, "synced writes", got[:written*disk.MiB], want[:written*disk.MiB])
	mustSame(t, "beyond the writes", got[(written+1)*disk.MiB:], want[(written+1)*disk.MiB:])
	t.Logf("%d MiB written before ENOSPC", written)
}

// TestMountRWMissingParent: --rw on a point whose parent is missing fails
// before creating anything.
func TestMountRWMissingParent(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	src, layers := t.TempDir(), t.TempDir()
	leaf, _, paths := rwChain(t, src, 512)
	os.Rename(paths[0], paths[0]+".moved")
	out, err := exec.Command(bin, "mount", "--rw", "--layer-dir", layers, leaf, mountDir(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "parent not found") || !strings.Contains(string(out), "--search-path") {
		t.Errorf("--rw with a missing parent: %v %q", err, out)
	}
	if m, _ := filepath.Glob(filepath.Join(layers, "*")); len(m) != 0 {
		t.Errorf("left %v", m)
	}
}
