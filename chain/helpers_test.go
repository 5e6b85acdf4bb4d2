package chain

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/internal/testutil"
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
	mustEqualReader(t, what, c, c.Size(), want)
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %s", what, firstDiff(got, want))
	}
}

// mustEqualFile compares the first size bytes of r (a virtual disk) with
// the file at path, mapped into memory, a piece at a time: large disks are
// not copied into Go memory.
func mustEqualFile(t testing.TB, what string, r io.ReaderAt, size int64, path string) {
	t.Helper()
	want, unmap := testutil.MapFile(t, path)
	defer unmap()
	mustEqualReader(t, what, r, size, want)
}

// mustEqualReader compares the first size bytes of r with want, a piece
// at a time.
func mustEqualReader(t testing.TB, what string, r io.ReaderAt, size int64, want []byte) {
	t.Helper()
	if int64(len(want)) != size {
		t.Fatalf("%s: %d bytes, want %d", what, size, len(want))
	}
	const piece = 1 << 20
	buf := make([]byte, piece)
	for off := int64(0); off < size; off += piece {
		got := buf[:min(piece, size-off)]
		if _, err := r.ReadAt(got, off); err != nil {
			t.Fatalf("%s: ReadAt(%d, %d): %v", what, off, len(got), err)
		}
		if w := want[off : off+int64(len(got))]; !bytes.Equal(got, w) {
			t.Fatalf("%s: at offset %d: %s", what, off, firstDiff(got, w))
		}
	}
}
