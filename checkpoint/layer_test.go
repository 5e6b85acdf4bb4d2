package checkpoint

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// TestOpenWritable writes through a new layer, keeps it (Close) or drops
// it (Discard), and never touches the source files.
func TestOpenWritable(t *testing.T) {
	src := t.TempDir()
	const size = 3 << 20
	gen := vhdxtest.Generate(t, src, "Disk", size, 2, 4)
	testutil.Unchanged(t, gen.Paths...)
	for _, discard := range []bool{false, true} {
		layers := t.TempDir()
		w, err := OpenWritable(gen.Leaf(), WritableOptions{LayerDir: layers})
		if err != nil {
			t.Fatal(err)
		}
		if dir, name := filepath.Split(w.Layer); dir != layers+"/" || !strings.HasPrefix(name, "Disk_") || !strings.HasSuffix(name, ".avhdx") {
			t.Errorf("layer %s", w.Layer)
		}
		// Two read-only points and the layer's, writable.
		if got := ftChildNames(w.Root); len(got) != 3 || got[2] != stem(w.Layer) {
			t.Fatalf("points %v", got)
		}
		if newest := w.Root.Children[2].Mtime; !w.Root.Mtime.Equal(newest) || time.Since(newest) > time.Minute {
			t.Errorf("root mtime %v, newest point %v", w.Root.Mtime, newest)
		}
		raw := w.Root.Children[2].Children[0]
		if raw.Writer == nil || raw.Size != size {
			t.Fatalf("%s: writable %v, size %d", raw.Name, raw.Writer != nil, raw.Size)
		}
		msg := []byte("written through the layer")
		if _, err := raw.Writer.WriteAt(msg, 1<<20+7); err != nil {
			t.Fatal(err)
		}
		want := append([]byte(nil), gen.Contents()[1]...)
		copy(want[1<<20+7:], msg)
		if got := ftReadAll(t, raw); !bytes.Equal(got, want) {
			t.Errorf("the writable disk does not read back what was written")
		}
		if discard {
			if err := w.Discard(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(w.Layer); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Discard left %s: %v", w.Layer, err)
			}
			continue
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := chain.Open(w.Layer, chain.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		_, err = c.ReadAt(got, 0)
		c.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("the kept layer does not hold the write (%v)", err)
		}
	}
	if _, err := OpenWritable(src, WritableOptions{}); !errors.Is(err, ErrFolderSource) {
		t.Errorf("a folder: %v", err)
	}
	_, err := OpenWritable(gen.Leaf(), WritableOptions{LayerDir: filepath.Join(src, "missing")})
	if !errors.Is(err, ErrCreateLayer) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing layer folder: %v", err)
	}
}
