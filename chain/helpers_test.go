package chain

import (
	"bytes"
	"fmt"
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

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %s", what, firstDiff(got, want))
	}
}
