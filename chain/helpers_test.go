package chain

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
)

func mkdirAll(t testing.TB, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

// firstDiff describes where two byte slices differ.
func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d (0x%x): %02x vs %02x", i, i, a[i], b[i])
		}
	}
	return "equal"
}

func readAll(t testing.TB, c *Chain) []byte {
	t.Helper()
	got := make([]byte, c.Size())
	if n, err := c.ReadAt(got, 0); err != nil || n != len(got) {
		t.Fatalf("ReadAt whole disk: n=%d err=%v", n, err)
	}
	return got
}

// mustRead compares the virtual disk c with want, a piece at a time (no
// copy of the whole disk).
func mustRead(t testing.TB, what string, c *Chain, want []byte) {
	t.Helper()
	if c.Size() != int64(len(want)) {
		t.Fatalf("%s: size %d, want %d", what, c.Size(), len(want))
	}
	const piece = 1 << 20
	buf := make([]byte, piece)
	for off := int64(0); off < c.Size(); off += piece {
		got := buf[:min(piece, c.Size()-off)]
		if _, err := c.ReadAt(got, off); err != nil {
			t.Fatalf("%s: ReadAt(%d, %d): %v", what, off, len(got), err)
		}
		if !bytes.Equal(got, want[off:off+int64(len(got))]) {
			t.Fatalf("%s: at offset %d: %s", what, off, firstDiff(got, want[off:off+int64(len(got))]))
		}
	}
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %s", what, firstDiff(got, want))
	}
}

// mustEqualFile compares the first size bytes of r (a virtual disk) with
// the file at path, a piece at a time: large disks are not held in
// memory.
func mustEqualFile(t testing.TB, what string, c io.ReaderAt, size int64, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != size {
		t.Fatalf("%s: %s has %d bytes (%v), want %d", what, path, st.Size(), err, size)
	}
	const piece = 4 << 20
	got, want := make([]byte, piece), make([]byte, piece)
	for off := int64(0); off < size; off += piece {
		n := min(piece, size-off)
		if _, err := c.ReadAt(got[:n], off); err != nil {
			t.Fatalf("%s: ReadAt(%d, %d): %v", what, off, n, err)
		}
		if _, err := f.ReadAt(want[:n], off); err != nil {
			t.Fatalf("%s: %s: %v", what, path, err)
		}
		if !bytes.Equal(got[:n], want[:n]) {
			t.Fatalf("%s: at offset %d: %s", what, off, firstDiff(got[:n], want[:n]))
		}
	}
}
