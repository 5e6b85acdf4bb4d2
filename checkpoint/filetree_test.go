package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"github.com/ckptfs/ckptfs/volume"
)

// ftChild writes a child of parent with a few random extents.
func ftChild(t *testing.T, parent *vhdxtest.Image, parentPath, path string, seed uint64) *vhdxtest.Image {
	t.Helper()
	im := vhdxtest.New(vhdxtest.Options{Parent: parent, ParentPath: parentPath, BlockSize: disk.MiB})
	b := make([]byte, 64<<10)
	vhdxtest.Fill(b, seed)
	im.Write(int64(seed%16)*(128<<10), b)
	vhdxtest.Save(t, im, path)
	return im
}

func ftReadAll(t *testing.T, n *Node) []byte {
	t.Helper()
	b := make([]byte, n.Size)
	if _, err := n.Data.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

func ftChildNames(n *Node) []string {
	var out []string
	for _, c := range n.Children {
		out = append(out, c.Name)
	}
	return out
}

// TestFolderBranches opens a folder holding a branched chain (Disk →
// A → B, Disk → C) and an unrelated disk: three leaves, five points, each
// shown once with its own contents.
func TestFolderBranches(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	base := vhdxtest.Generate(t, dir, "Disk", size, 1, 1)
	pa, pb, pc := filepath.Join(dir, "Disk_A.avhdx"), filepath.Join(dir, "Disk_B.avhdx"), filepath.Join(dir, "Disk_C.AVHDX")
	a := ftChild(t, base.Images[0], base.Paths[0], pa, 1)
	b := ftChild(t, a, pa, pb, 2)
	c := ftChild(t, base.Images[0], base.Paths[0], pc, 3)
	other := vhdxtest.Generate(t, dir, "Other", 2<<20, 1, 9)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a disk"), 0o644)
	testutil.Unchanged(t, base.Paths[0], pa, pb, pc, other.Paths[0])

	src, err := OpenSource(dir, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var leaves []string
	for _, ch := range src.Chains {
		leaves = append(leaves, filepath.Base(ch.Links[0].Path))
	}
	if got := strings.Join(leaves, ","); got != "Disk_B.avhdx,Disk_C.AVHDX,Other.vhdx" {
		t.Errorf("leaves %s", got)
	}
	points, err := src.FileTree(FileTreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	baseC := base.Images[0].Contents(nil)
	aC := a.Contents(baseC)
	want := map[string][]byte{
		"Disk":   baseC,
		"Disk_A": aC,
		"Disk_B": b.Contents(aC),
		"Disk_C": c.Contents(baseC),
		"Other":  other.Images[0].Contents(nil),
	}
	var got []string
	for _, p := range points {
		got = append(got, p.Name)
		if !p.IsDir || p.Mode != 0o555 || p.Mtime.IsZero() {
			t.Errorf("%s: not a read-only folder with a time: %+v", p.Name, p)
		}
		disk := "Disk"
		if p.Name == "Other" {
			disk = "Other"
		}
		if cn := strings.Join(ftChildNames(p), ","); cn != disk+".raw,"+disk+".partitions" {
			t.Errorf("%s holds %s", p.Name, cn)
			continue
		}
		raw := p.Children[0]
		if raw.Size != int64(len(want[p.Name])) || !raw.Immutable || raw.Mode != 0o444 {
			t.Errorf("%s/%s: size %d immutable %v mode %v", p.Name, raw.Name, raw.Size, raw.Immutable, raw.Mode)
		}
		if !bytes.Equal(ftReadAll(t, raw), want[p.Name]) {
			t.Errorf("%s/%s: contents differ", p.Name, raw.Name)
		}
		parts := p.Children[1]
		if parts.List == nil || !parts.IsDir {
			t.Errorf("%s: partitions folder is not lazy", p.Name)
		} else if ps, err := parts.List(); err != nil || len(ps) != 0 {
			t.Errorf("%s: partitions of an unpartitioned disk: %v, %v", p.Name, ps, err)
		}
	}
	if s := strings.Join(got, ","); s != "Disk,Disk_A,Disk_B,Disk_C,Other" {
		t.Errorf("points %s", s)
	}
}

// TestNameCollisions shows two chains whose files have the same names.
func TestNameCollisions(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	g1 := vhdxtest.Generate(t, d1, "Disk", 2<<20, 2, 1)
	g2 := vhdxtest.Generate(t, d2, "Disk", 2<<20, 1, 2)
	os.Rename(g2.Paths[0], filepath.Join(d2, "Disk.VHDX"))
	var chains []*chain.Chain
	for _, p := range []string{g1.Leaf(), filepath.Join(d2, "Disk.VHDX")} {
		c, err := chain.Open(p, chain.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		chains = append(chains, c)
	}
	points, err := BuildFileTree(chains, FileTreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range points {
		got = append(got, p.Name)
	}
	want := []string{"Disk", strings.TrimSuffix(filepath.Base(g1.Leaf()), ".avhdx"), "Disk (2)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("points %q, want %q", got, want)
	}
	if _, err := BuildFileTree(nil, FileTreeOptions{}); err == nil {
		t.Error("no chains: no error")
	}
}

// ftRawToVHDX writes raw as a base VHDX with vhdxtest.
func ftRawToVHDX(t *testing.T, raw []byte, path string) *vhdxtest.Image {
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: int64(len(raw)), BlockSize: disk.MiB})
	zero := make([]byte, 64<<10)
	for off := 0; off < len(raw); off += len(zero) {
		if chunk := raw[off:min(off+len(zero), len(raw))]; !bytes.Equal(chunk, zero[:len(chunk)]) {
			im.Write(int64(off), chunk)
		}
	}
	vhdxtest.Save(t, im, path)
	return im
}

// TestPartitions lists GPT and MBR partitions of a point lazily, with
// their sizes and contents, and calls the file-system hook.
func TestPartitions(t *testing.T) {
	testutil.Need(t, "sgdisk", "sfdisk")
	dir := t.TempDir()
	const size = 12 << 20
	for _, kind := range []string{"gpt", "mbr"} {
		t.Run(kind, func(t *testing.T) {
			img := filepath.Join(dir, kind+".img")
			vhdxtest.RawFixture(t, img, size, 3)
			if kind == "gpt" {
				testutil.Run(t, "sgdisk", "-Z", img)
				testutil.Run(t, "sgdisk", "-n", "1:2048:+3M", "-t", "1:EF00", "-c", "1:EFI system partition",
					"-n", "2:0:+5M", "-t", "2:0700", "-c", "2:", "-n", "3:0:+1M", "-t", "3:8300", "-c", "3:a/b", img)
			} else {
				cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", img)
				cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=6144, type=7\nstart=8192, size=10240, type=83\n")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("sfdisk: %v\n%s", err, out)
				}
			}
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, strings.ToUpper(kind)+".vhdx")
			ftRawToVHDX(t, raw, path)
			c, err := chain.Open(path, chain.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var probed []int64
			log := &ftLog{}
			bad := int64(1 << 20) // the last partition's file system is damaged
			if kind == "mbr" {
				bad = 10240 * 512
			}
			opts := FileTreeOptions{Log: log, FileSystems: func(r io.ReaderAt, size int64) (volume.FS, error) {
				probed = append(probed, size)
				switch size {
				case 3 << 20: // GPT 1 and MBR 1 (6144 sectors)
					return ftFakeFS{}, nil
				case bad:
					return nil, fmt.Errorf("boot sector: %w", volume.ErrCorrupt)
				}
				return nil, fmt.Errorf("probe: %w", volume.ErrUnknownFS)
			}}
			points, err := BuildFileTree([]*chain.Chain{c}, opts)
			if err != nil {
				t.Fatal(err)
			}
			parts := points[0].Children[1]
			if parts.Name != strings.ToUpper(kind)+".partitions" {
				t.Fatalf("partitions folder %q", parts.Name)
			}
			if len(probed) != 0 {
				t.Errorf("partitions read before listing")
			}
			ps, err := parts.List()
			if err != nil {
				t.Fatal(err)
			}
			type want struct {
				name        string
				start, size int64
			}
			var ws []want
			if kind == "gpt" {
				ws = []want{{"1-EFI system partition", 2048 * 512, 3 << 20}, {"2-Microsoft basic data", 2048*512 + 3<<20, 5 << 20}, {"3-a_b", 2048*512 + 8<<20, 1 << 20}}
			} else {
				ws = []want{{"1-0x07", 2048 * 512, 6144 * 512}, {"2-0x83", 8192 * 512, 10240 * 512}}
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.Name)
			}
			var wantNames []string
			for _, w := range ws {
				wantNames = append(wantNames, w.name+".raw")
			}
			if strings.Join(got, "|") != strings.Join(wantNames, "|") {
				t.Fatalf("partitions %q, want %q", got, wantNames)
			}
			// File systems are in <disk>.files/: only the one the probe knows.
			files := points[0].Children[2]
			if files.Name != strings.ToUpper(kind)+".files" {
				t.Fatalf("files folder %q", files.Name)
			}
			fss, err := files.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(fss) != 1 || fss[0].Name != ws[0].name || fss[0].FS == nil || !fss[0].IsDir {
				t.Errorf("file systems: %+v", fss)
			}
			// The damaged one is left out, and the log says so.
			if w := fmt.Sprintf("%s.vhdx: partition %d: boot sector: %v", strings.ToUpper(kind), len(ws), volume.ErrCorrupt); len(log.warns) != 1 || !strings.HasSuffix(log.warns[0], w) {
				t.Errorf("warnings %q, want one ending in %q", log.warns, w)
			}
			for _, w := range ws {
				var f *Node
				for _, p := range ps {
					if p.Name == w.name+".raw" {
						f = p
					}
				}
				if f.Size != w.size || !bytes.Equal(ftReadAll(t, f), raw[w.start:w.start+w.size]) {
					t.Errorf("%s: size %d (want %d) or contents differ", f.Name, f.Size, w.size)
				}
			}
		})
	}
}

// TestSourceErrors: what cannot be opened is refused as a whole.
func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	notVHDX := filepath.Join(dir, "x.vhdx")
	os.WriteFile(notVHDX, bytes.Repeat([]byte("junk"), 1<<12), 0o644)
	if _, err := OpenSource(notVHDX, chain.Options{}); !errors.Is(err, disk.ErrNotVHDX) {
		t.Errorf("not a VHDX: %v", err)
	}
	if _, err := OpenSource(dir, chain.Options{}); !errors.Is(err, disk.ErrNotVHDX) {
		t.Errorf("folder with a bad disk: %v", err)
	}
	empty := t.TempDir()
	if _, err := OpenSource(empty, chain.Options{}); !errors.Is(err, ErrNoDisks) {
		t.Errorf("empty folder: %v", err)
	}
	orphanDir := t.TempDir()
	g := vhdxtest.Generate(t, orphanDir, "Disk", 2<<20, 2, 1)
	os.Remove(g.Paths[0])
	if _, err := OpenSource(g.Leaf(), chain.Options{}); !errors.Is(err, chain.ErrParentNotFound) {
		t.Errorf("missing parent: %v", err)
	}
	if _, err := OpenSource(orphanDir, chain.Options{}); !errors.Is(err, chain.ErrParentNotFound) {
		t.Errorf("folder with a missing parent: %v", err)
	}
	if _, err := OpenSource(filepath.Join(dir, "nope"), chain.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing source: %v", err)
	}
}

type ftFakeFS struct{ volume.FS }

// ftLog is a Logger that keeps the warnings.
type ftLog struct{ warns []string }

func (l *ftLog) Warnf(format string, args ...any) {
	l.warns = append(l.warns, fmt.Sprintf(format, args...))
}
func (l *ftLog) Infof(string, ...any)  {}
func (l *ftLog) Debugf(string, ...any) {}
