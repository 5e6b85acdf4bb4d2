package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// NTFS3G is an ntfs-3g mount run in the foreground (no_detach), so that
// Unmount can wait until the driver has written everything back.
type NTFS3G struct {
	// Dir is the mount point.
	Dir     string
	created bool
	cmd     *exec.Cmd
	done    chan error
	once    sync.Once
	err     error
	out     lockedBuffer
}

// MountNTFS3G mounts the NTFS image img with ntfs-3g -o
// no_detach,noatime[,opts] on dir, or on a new folder beside img when dir
// is "". It is unmounted at cleanup at the latest.
func MountNTFS3G(t testing.TB, img, dir string, opts ...string) *NTFS3G {
	t.Helper()
	Need(t, "ntfs-3g")
	m := &NTFS3G{Dir: dir, done: make(chan error, 1)}
	if dir == "" {
		d, err := os.MkdirTemp(filepath.Dir(img), "mnt")
		if err != nil {
			t.Fatal(err)
		}
		m.Dir, m.created = d, true
	}
	m.cmd = exec.Command("ntfs-3g", "-o", strings.Join(append([]string{"no_detach", "noatime"}, opts...), ","), img, m.Dir)
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("ntfs-3g: %v", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !IsMounted(m.Dir); time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-m.done:
			m.done <- err
			t.Fatalf("ntfs-3g exited before mounting %s: %v\n%s", img, err, m.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ntfs-3g did not mount %s\n%s", img, m.out.String())
		}
	}
	return m
}

// Path joins a slash-separated relative path to the mount point.
func (m *NTFS3G) Path(rel string) string { return filepath.Join(m.Dir, filepath.FromSlash(rel)) }

// Output is what ntfs-3g has printed so far.
func (m *NTFS3G) Output() string { return m.out.String() }

// Unmount unmounts and waits for ntfs-3g to exit; a mount point it made
// is removed. It may be called more than once.
func (m *NTFS3G) Unmount() error {
	m.once.Do(func() {
		if err := Unmount(m.Dir); err != nil {
			m.err = err
		}
		select {
		case err := <-m.done:
			if err != nil && m.err == nil {
				m.err = fmt.Errorf("ntfs-3g: %v\n%s", err, m.out.String())
			}
		case <-time.After(15 * time.Second):
			m.cmd.Process.Kill()
			m.err = fmt.Errorf("ntfs-3g did not exit after unmounting %s", m.Dir)
		}
		if m.created {
			os.Remove(m.Dir)
		}
	})
	return m.err
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
