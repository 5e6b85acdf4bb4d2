package disk

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/internal/testutil"
)

// wtLayer is what a chain reader needs from one layer; *File and *Writer
// both provide it.
type wtLayer interface {
	BlockExtents(b int64, dst []Extent) ([]Extent, error)
	ReadFileAt(p []byte, off int64) (int, error)
	BlockSize() int64
	VirtualSize() int64
}

var (
	_ wtLayer = (*File)(nil)
	_ wtLayer = (*Writer)(nil)
)

// wtReadChain reads p at virtual offset off through layers (child first);
// what the last layer leaves to its parent comes from below.
func wtReadChain(layers []wtLayer, below []byte, p []byte, off int64) error {
	l := layers[0]
	bs := l.BlockSize()
	end := off + int64(len(p))
	var ext []Extent
	for pos := off; pos < end; pos = (pos/bs + 1) * bs {
		var err error
		if ext, err = l.BlockExtents(pos/bs, ext[:0]); err != nil {
			return err
		}
		for _, x := range ext {
			lo, hi := max(x.Offset, pos), min(x.Offset+x.Length, end)
			if lo >= hi {
				continue
			}
			dst := p[lo-off : hi-off]
			switch x.Source {
			case Data:
				if _, err := l.ReadFileAt(dst, x.FileOffset+lo-x.Offset); err != nil {
					return err
				}
			case Zeros:
				clear(dst)
			case FromParent:
				switch {
				case len(layers) > 1:
					if err := wtReadChain(layers[1:], below, dst, lo); err != nil {
						return err
					}
				case below != nil:
					copy(dst, below[lo:hi])
				default:
					return fmt.Errorf("extent %+v refers to a parent that is not there", x)
				}
			}
		}
	}
	return nil
}

func wtReadAll(t testing.TB, layers []wtLayer, below []byte) []byte {
	t.Helper()
	got := make([]byte, layers[0].VirtualSize())
	if err := wtReadChain(layers, below, got, 0); err != nil {
		t.Fatalf("reading the chain: %v", err)
	}
	return got
}

// wtMustRead compares the view through layers with want, a piece at a
// time (no copy of the whole disk).
func wtMustRead(t testing.TB, what string, layers []wtLayer, want []byte) {
	t.Helper()
	if n := layers[0].VirtualSize(); n != int64(len(want)) {
		t.Fatalf("%s: %d bytes, want %d", what, n, len(want))
	}
	buf := make([]byte, MiB)
	for off := int64(0); off < int64(len(want)); off += MiB {
		got := buf[:min(MiB, int64(len(want))-off)]
		if err := wtReadChain(layers, nil, got, off); err != nil {
			t.Fatalf("%s: reading the chain: %v", what, err)
		}
		wtCompareAt(t, what, got, want[off:off+int64(len(got))], off)
	}
}

// wtCompare fails the test at the first differing 512-byte sector.
func wtCompare(t testing.TB, what string, got, want []byte) {
	t.Helper()
	wtCompareAt(t, what, got, want, 0)
}

// wtCompareAt is wtCompare for pieces of a disk starting at byte base.
func wtCompareAt(t testing.TB, what string, got, want []byte, base int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if bytes.Equal(got, want) {
		return
	}
	for i := 0; i < len(got); i += 512 {
		e := min(i+512, len(got))
		if !bytes.Equal(got[i:e], want[i:e]) {
			j := i
			for got[j] == want[j] {
				j++
			}
			t.Fatalf("%s: first difference at byte %d (got %#x, want %#x)", what, base+int64(j), got[j], want[j])
		}
	}
}

func wtSHA(t testing.TB, path string) string {
	t.Helper()
	return testutil.SHA256File(t, path)
}

// wtRandom returns n random bytes with an all-zero stretch in the middle.
func wtRandom(rng *rand.Rand, n int64) []byte {
	b := make([]byte, n)
	wtFill(rng, b)
	clear(b[n/2 : n/2+n/16])
	return b
}

// wtFill fills b with random bytes (from a ChaCha8 stream seeded by rng,
// which is much faster than byte-wise generation under the race detector).
func wtFill(rng *rand.Rand, b []byte) {
	var seed [32]byte
	for i := 0; i < 32; i += 8 {
		le.PutUint64(seed[i:], rng.Uint64())
	}
	rand.NewChaCha8(seed).Read(b)
}

// wtQemuBase writes raw as a dynamic VHDX with qemu-img.
func wtQemuBase(t testing.TB, path string, raw []byte, blockSize int) {
	t.Helper()
	rawPath := path + ".raw"
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx",
		"-o", fmt.Sprintf("subformat=dynamic,block_size=%d", blockSize), rawPath, path)
	os.Remove(rawPath)
}

// wtOwnBase writes raw as a dynamic VHDX with CreateDynamic.
func wtOwnBase(t testing.TB, path string, raw []byte, opts CreateOptions) {
	t.Helper()
	w, err := CreateDynamic(path, int64(len(raw)), opts)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(raw); off += 3 * MiB / 2 {
		if _, err := w.WriteAt(raw[off:min(off+3*MiB/2, len(raw))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func wtOpen(t testing.TB, path string) *File {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// wtVhdimount compares the chain view of the VHDX file at path (of layers
// files) as vhdimount (libvhdi, which finds parents beside the child by
// name) shows it with want, while it is mounted.
func wtVhdimount(t testing.TB, what, path string, layers int, want []byte) {
	t.Helper()
	mnt := t.TempDir()
	out, err := exec.Command("vhdimount", path, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("vhdimount %s: %v\n%s", path, err, out)
	}
	defer func() {
		if out, err := exec.Command("fusermount", "-u", mnt).CombinedOutput(); err != nil {
			t.Errorf("fusermount -u %s: %v\n%s", mnt, err, out)
		}
	}()
	// vhdimount exposes the chain as vhdi1 (the base alone) .. vhdiN (the
	// file given, read through its parents).
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != layers {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("vhdimount shows %v, want %d layers", names, layers)
	}
	img := filepath.Join(mnt, fmt.Sprintf("vhdi%d", layers))
	b, unmap := testutil.MapFile(t, img)
	defer unmap() // before unmounting
	wtCompare(t, what, b, want)
}

type wtWrite struct {
	off  int64
	data []byte
}

// wtGenWrites makes n writes of assorted shapes: tiny unaligned ones,
// sector-aligned ones, writes across block boundaries, whole blocks, and
// repeated overwrites of a small hot region.
func wtGenWrites(rng *rand.Rand, vsize, bs int64, n int, maxLen int64) []wtWrite {
	ws := make([]wtWrite, 0, n)
	for range n {
		var off, ln int64
		switch k := rng.IntN(20); {
		case k < 6:
			ln = 1 + rng.Int64N(700)
			off = rng.Int64N(vsize - ln)
		case k < 10:
			ln = (1 + rng.Int64N(16)) * 4096
			off = rng.Int64N((vsize-ln)/512) * 512
		case k < 15:
			ln = 1 + rng.Int64N(min(maxLen, bs+bs/2))
			b := 1 + rng.Int64N(vsize/bs-1)
			off = b*bs - 1 - rng.Int64N(min(ln, b*bs))
		case k < 16:
			off, ln = rng.Int64N(vsize/bs)*bs, bs
		default:
			ln = 1 + rng.Int64N(20000)
			off = rng.Int64N(3*bs - ln)
		}
		off = max(0, min(off, vsize-1))
		ln = max(1, min(ln, vsize-off, maxLen))
		d := make([]byte, ln)
		wtFill(rng, d)
		if rng.IntN(20) == 0 {
			clear(d)
		}
		ws = append(ws, wtWrite{off, d})
	}
	return ws
}

func TestCreateDifferencingStructure(t *testing.T) {
	testutil.Need(t, "qemu-img")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	raw := wtRandom(rng, 8*MiB)
	base := filepath.Join(dir, "base.vhdx")
	wtQemuBase(t, base, raw, MiB)
	bf := wtOpen(t, base)
	sub := filepath.Join(dir, "Snapshots")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	childPath := filepath.Join(sub, "base_1234.avhdx")
	w, err := CreateDifferencing(childPath, ParentInfoOf(bf), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f := wtOpen(t, childPath)
	m := f.Metadata
	if f.Type() != Differencing || f.Identifier.Creator != "ckptfs" {
		t.Errorf("type %v creator %q", f.Type(), f.Identifier.Creator)
	}
	if m.BlockSize != 2*MiB || m.VirtualSize != bf.Metadata.VirtualSize || m.VirtualDiskID != bf.Metadata.VirtualDiskID ||
		m.LogicalSectorSize != bf.Metadata.LogicalSectorSize || m.PhysicalSectorSize != bf.Metadata.PhysicalSectorSize {
		t.Errorf("metadata %+v, parent %+v", m, bf.Metadata)
	}
	want := map[string]string{
		KeyParentLinkage:     bf.Header.DataWriteGUID.Braced(),
		KeyRelativePath:      `..\base.vhdx`,
		KeyAbsoluteWin32Path: `\\?\Z:` + strings.ReplaceAll(base, "/", `\`),
	}
	if len(m.ParentLocator.Entries) != len(want) {
		t.Errorf("locator %+v", m.ParentLocator.Entries)
	}
	for k, v := range want {
		if got, _ := m.ParentLocator.Get(k); got != v {
			t.Errorf("locator %s = %q, want %q", k, got, v)
		}
	}
	if v, _ := m.ParentLocator.Get(KeyParentLinkage); v != strings.ToLower(v) || v[0] != '{' {
		t.Errorf("parent_linkage %q is not lower case with braces", v)
	}
	if f.HeaderErrs != [2]error{} || f.RegionErrs != [2]error{} || len(f.Warnings) > 0 {
		t.Errorf("header errors %v, region errors %v, warnings %v", f.HeaderErrs, f.RegionErrs, f.Warnings)
	}
	if !f.Header.LogGUID.IsZero() || f.Header.LogOffset != MiB || f.Header.LogLength != MiB {
		t.Errorf("header %+v", f.Header)
	}
	b, err := os.ReadFile(childPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[RegionTable1Offset:RegionTable1Offset+RegionTableSize], b[RegionTable2Offset:RegionTable2Offset+RegionTableSize]) {
		t.Error("the region tables differ")
	}
	// BAT: ceil(blocks / chunk ratio) × (chunk ratio + 1) entries, all zero.
	if got, want := f.batEntries, int64(2048+1); got != want {
		t.Errorf("BAT has %d entries, want %d", got, want)
	}
	if c := f.StateCounts(); c[BlockNotPresent] != f.BlockCount() {
		t.Errorf("state counts %v", c)
	}
	got := wtReadAll(t, []wtLayer{f, bf}, nil)
	wtCompare(t, "empty child", got, raw)

	// A session that writes: new FileWriteGuid and DataWriteGuid first,
	// LogGuid while the log is in use, zero again after Close; every
	// header update writes both copies.
	h0 := f.Header
	w, err = OpenWriter(childPath, OpenOptions{Parent: bytes.NewReader(raw)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("hello"), 4095); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	h1 := w.Header()
	if h1.LogGUID.IsZero() || h1.FileWriteGUID == h0.FileWriteGUID || h1.DataWriteGUID == h0.DataWriteGUID || h1.SequenceNumber != h0.SequenceNumber+4 {
		t.Errorf("header after a synced write %+v, before %+v", h1, h0)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f = wtOpen(t, childPath)
	h2 := f.Header
	if !h2.LogGUID.IsZero() || h2.DataWriteGUID != h1.DataWriteGUID || h2.SequenceNumber != h1.SequenceNumber+2 || f.HeaderErrs != [2]error{} {
		t.Errorf("header after Close %+v (errors %v), before %+v", h2, f.HeaderErrs, h1)
	}
	hb, err := os.ReadFile(childPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{Header1Offset, Header2Offset} {
		h, err := unmarshalHeader(hb[off:])
		if err != nil || h.SequenceNumber < h2.SequenceNumber-1 || !h.LogGUID.IsZero() || h.DataWriteGUID != h2.DataWriteGUID {
			t.Errorf("header at %d: %+v, %v", off, h, err)
		}
	}
	copy(raw[4095:], "hello")
	wtMustRead(t, "after a write", []wtLayer{f, bf}, raw)

	// Options: block size, win32 and volume paths.
	p := ParentInfoOf(bf)
	p.Path = base
	w, err = CreateDifferencing(filepath.Join(dir, "c2.avhdx"), p, CreateOptions{
		BlockSize:               MiB,
		ParentAbsoluteWin32Path: `\\?\D:\vms\base.vhdx`,
		ParentVolumePath:        `\\?\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\vms\base.vhdx`,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	f2 := wtOpen(t, filepath.Join(dir, "c2.avhdx"))
	if f2.BlockSize() != MiB {
		t.Errorf("block size %d", f2.BlockSize())
	}
	for k, v := range map[string]string{KeyRelativePath: "base.vhdx", KeyAbsoluteWin32Path: `\\?\D:\vms\base.vhdx`,
		KeyVolumePath: `\\?\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\vms\base.vhdx`} {
		if got, _ := f2.Metadata.ParentLocator.Get(k); got != v {
			t.Errorf("locator %s = %q, want %q", k, got, v)
		}
	}
}

func TestCreateErrors(t *testing.T) {
	testutil.Need(t, "qemu-img")
	dir := t.TempDir()
	raw := wtRandom(rand.New(rand.NewPCG(3, 4)), 4*MiB)
	base := filepath.Join(dir, "base.vhdx")
	wtQemuBase(t, base, raw, MiB)
	bf := wtOpen(t, base)
	sum := wtSHA(t, base)
	p := ParentInfoOf(bf)

	// Existing target: refused, untouched.
	existing := filepath.Join(dir, "existing.avhdx")
	if err := os.WriteFile(existing, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateDifferencing(existing, p, CreateOptions{}); !errors.Is(err, os.ErrExist) || !strings.Contains(err.Error(), existing) {
		t.Errorf("existing target: %v", err)
	}
	if b, _ := os.ReadFile(existing); string(b) != "precious" {
		t.Errorf("existing target was changed to %q", b)
	}
	// The parent itself as the target.
	if _, err := CreateDifferencing(base, p, CreateOptions{}); !errors.Is(err, os.ErrExist) {
		t.Errorf("parent as target: %v", err)
	}
	// Missing parent.
	q := p
	q.Path = filepath.Join(dir, "missing.vhdx")
	target := filepath.Join(dir, "child.avhdx")
	if _, err := CreateDifferencing(target, q, CreateOptions{}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.vhdx") {
		t.Errorf("missing parent: %v", err)
	}
	// Missing or unusable layer directory.
	for _, bad := range []string{filepath.Join(dir, "nodir", "c.avhdx"), filepath.Join(existing, "c.avhdx")} {
		if _, err := CreateDifferencing(bad, p, CreateOptions{}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("bad directory %s: %v", bad, err)
		}
	}
	// An unwritable directory (permissions do not stop root).
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(ro, "c.avhdx")
		if _, err := CreateDifferencing(bad, p, CreateOptions{}); !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), bad) {
			t.Errorf("unwritable directory: %v", err)
		}
		os.Remove(ro)
	}
	// Bad options.
	for _, bs := range []uint32{512 * KiB, 3 * MiB, 512 * MiB} {
		if _, err := CreateDifferencing(target, p, CreateOptions{BlockSize: bs}); err == nil {
			t.Errorf("block size %d accepted", bs)
		}
	}
	if _, err := CreateDifferencing(target, p, CreateOptions{ParentAbsoluteWin32Path: `C:\x.vhdx`}); err == nil {
		t.Error("absolute_win32_path without \\\\?\\ accepted")
	}
	if _, err := CreateDynamic(target, 1000, CreateOptions{}); err == nil {
		t.Error("virtual size 1000 accepted")
	}
	for _, name := range []string{target} {
		if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want base and existing", len(ents))
	}
	// OpenWriter refuses files ckptfs did not create, and locked files.
	if _, err := OpenWriter(base, OpenOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("OpenWriter on a qemu-img file: %v", err)
	}
	w, err := CreateDifferencing(target, p, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWriter(target, OpenOptions{}); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Errorf("second writer: %v", err)
	}
	// Writes outside the disk, and partial sectors without a parent reader.
	if _, err := w.WriteAt([]byte{1}, bf.VirtualSize()); err == nil {
		t.Error("write past the end accepted")
	}
	if _, err := w.WriteAt([]byte{1}, 5); err == nil || !strings.Contains(err.Error(), "no parent reader") {
		t.Errorf("partial sector without parent: %v", err)
	}
	if _, err := w.WriteAt(make([]byte, 512), 512); err != nil {
		t.Errorf("aligned write without parent: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.WriteAt(make([]byte, 512), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	if wtSHA(t, base) != sum {
		t.Error("the parent changed")
	}
}

// TestWriterDifferencing writes random data through differencing layers and
// checks the result with this package's reader and with vhdimount.
func TestWriterDifferencing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lss        uint32
		baseBS     int
		childBS    uint32
		vsize      int64
		ownBase    bool
		vhdimount  bool
		writes     int
		syncEveryN int
	}{
		{"512-2M", 512, MiB, 2 * MiB, 48 * MiB, false, true, 200, 3},
		{"512-1M", 512, 2 * MiB, MiB, 32*MiB + 7*4096, false, true, 150, 40},
		{"4096-1M", 4096, 0, MiB, 32*MiB + 7*4096, true, true, 150, 5},
		{"4096-4M", 4096, 0, 4 * MiB, 40 * MiB, true, false, 100, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.Need(t, "qemu-img")
			if tc.vhdimount {
				testutil.Need(t, "vhdimount", "fusermount")
				if _, err := os.Stat("/dev/fuse"); err != nil {
					t.Log("no /dev/fuse: vhdimount is not used")
					tc.vhdimount = false
				}
			}
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(tc.lss), uint64(tc.childBS)))
			raw := wtRandom(rng, tc.vsize)
			base := filepath.Join(dir, "base.vhdx")
			if tc.ownBase {
				wtOwnBase(t, base, raw, CreateOptions{BlockSize: MiB, LogicalSectorSize: tc.lss})
			} else {
				wtQemuBase(t, base, raw, tc.baseBS)
			}
			baseSum := wtSHA(t, base)
			bf := wtOpen(t, base)
			if got := bf.SectorSize(); got != int64(tc.lss) {
				t.Fatalf("base sector size %d", got)
			}
			if tc.vhdimount {
				wtVhdimount(t, "base via vhdimount", base, 1, raw)
			}
			child := filepath.Join(dir, "base_C0FFEE.avhdx")
			w, err := CreateDifferencing(child, ParentInfoOf(bf), CreateOptions{BlockSize: tc.childBS, Parent: bytes.NewReader(raw)})
			if err != nil {
				t.Fatal(err)
			}
			model := bytes.Clone(raw)

			// Readers run alongside the writer (for the race detector).
			var stop atomic.Bool
			var wg sync.WaitGroup
			for g := range 1 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(g), 9))
					buf := make([]byte, 64*KiB)
					for !stop.Load() {
						off := r.Int64N(tc.vsize - int64(len(buf)))
						if err := wtReadChain([]wtLayer{w, bf}, nil, buf, off); err != nil {
							t.Error(err)
							return
						}
						time.Sleep(200 * time.Microsecond)
					}
				}()
			}
			// Fewer writes under the race detector: its interest is the
			// readers running alongside, not the bytes.
			const maxLen = 3 * MiB
			ws := wtGenWrites(rng, tc.vsize, int64(tc.childBS), testutil.Scale(tc.writes, tc.writes/2), maxLen)
			for i, x := range ws {
				if n, err := w.WriteAt(x.data, x.off); err != nil || n != len(x.data) {
					t.Fatalf("write %d (%d bytes at %d): %d, %v", i, len(x.data), x.off, n, err)
				}
				copy(model[x.off:], x.data)
				if i%tc.syncEveryN == 0 {
					if err := w.Sync(); err != nil {
						t.Fatal(err)
					}
				}
				if i%100 == 99 || i == len(ws)/2 {
					wtMustRead(t, fmt.Sprintf("live view after %d writes", i+1), []wtLayer{w, bf}, model)
				}
			}
			stop.Store(true)
			wg.Wait()
			counts := w.StateCounts()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if counts[BlockPartiallyPresent] == 0 || counts[BlockFullyPresent] == 0 {
				t.Errorf("block states %v: want both partial and full blocks", counts)
			}
			check := func(what string, wantLayers int, files ...*File) {
				t.Helper()
				for _, f := range files[:len(files)-1] {
					if f.Log.Replayed || !f.Header.LogGUID.IsZero() || len(f.Warnings) > 0 {
						t.Errorf("%s: %s: log %+v, warnings %v", what, f.Name(), f.Log, f.Warnings)
					}
				}
				var ls []wtLayer
				for _, f := range files {
					ls = append(ls, f)
				}
				wtMustRead(t, what+" via disk.Open", ls, model)
				if tc.vhdimount {
					wtVhdimount(t, what+" via vhdimount", files[0].Name(), wantLayers, model)
				}
			}
			check("child", 2, wtOpen(t, child), bf)

			// A second session on the same layer.
			w, err = OpenWriter(child, OpenOptions{Parent: bytes.NewReader(raw)})
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range wtGenWrites(rng, tc.vsize, int64(tc.childBS), testutil.Scale(40, 15), maxLen) {
				if _, err := w.WriteAt(x.data, x.off); err != nil {
					t.Fatal(err)
				}
				copy(model[x.off:], x.data)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			cf := wtOpen(t, child)
			check("child, second session", 2, cf, bf)

			// A grandchild.
			grand := filepath.Join(dir, "base_BEEF.avhdx")
			w, err = CreateDifferencing(grand, ParentInfoOf(cf), CreateOptions{BlockSize: tc.childBS, Parent: bytes.NewReader(bytes.Clone(model))})
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range wtGenWrites(rng, tc.vsize, int64(tc.childBS), testutil.Scale(60, 20), maxLen) {
				if _, err := w.WriteAt(x.data, x.off); err != nil {
					t.Fatal(err)
				}
				copy(model[x.off:], x.data)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			check("grandchild", 3, wtOpen(t, grand), cf, bf)
			if wtSHA(t, base) != baseSum {
				t.Error("the base changed")
			}
		})
	}
}

// TestWriterDynamic checks CreateDynamic against QEMU and vhdimount.
func TestWriterDynamic(t *testing.T) {
	testutil.Need(t, "qemu-img")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	const vsize = 48 * MiB
	path := filepath.Join(dir, "flat.vhdx")
	w, err := CreateDynamic(path, vsize, CreateOptions{BlockSize: 2 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, vsize)
	for b := int64(0); b < vsize/(2*MiB); b++ {
		switch b % 4 {
		case 0: // left alone
		case 1: // zeros only: stays unallocated
			if _, err := w.WriteAt(make([]byte, 2*MiB), b*2*MiB); err != nil {
				t.Fatal(err)
			}
		default:
			d := wtRandom(rng, 2*MiB)
			copy(model[b*2*MiB:], d)
			if _, err := w.WriteAt(d, b*2*MiB); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, x := range wtGenWrites(rng, vsize, 2*MiB, 100, 3*MiB) {
		if _, err := w.WriteAt(x.data, x.off); err != nil {
			t.Fatal(err)
		}
		copy(model[x.off:], x.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f := wtOpen(t, path)
	if f.Type() != Dynamic {
		t.Errorf("type %v", f.Type())
	}
	wtMustRead(t, "dynamic via disk.Open", []wtLayer{f}, model)
	allocated := f.StateCounts()[BlockFullyPresent]
	var nonzero int64
	for b := int64(0); b < vsize/(2*MiB); b++ {
		if !writerIsZero(model[b*2*MiB : (b+1)*2*MiB]) {
			nonzero++
		}
	}
	if allocated < nonzero || allocated > nonzero+10 {
		t.Errorf("%d blocks allocated for %d non-zero blocks", allocated, nonzero)
	}
	out := testutil.Run(t, "qemu-img", "check", path)
	if !strings.Contains(out, "No errors") {
		t.Errorf("qemu-img check: %s", out)
	}
	rawOut := filepath.Join(dir, "flat.raw")
	testutil.Run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", path, rawOut)
	got, err := os.ReadFile(rawOut)
	if err != nil {
		t.Fatal(err)
	}
	wtCompare(t, "dynamic via qemu-img", got, model)
}

// TestWriterDirtyLog leaves a dynamic file as a power failure after a log
// flush would: the log holds the BAT, the BAT in place is still empty. The
// reader (in memory), OpenWriter (in place) and QEMU must all replay it,
// also when the entry wraps round the end of the log.
func TestWriterDirtyLog(t *testing.T) {
	testutil.Need(t, "qemu-img")
	for _, head := range []int64{0, 12 * KiB, MiB - 4*KiB} {
		t.Run(fmt.Sprintf("head=%d", head), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(8, uint64(head)))
			const vsize = 16 * MiB
			path := filepath.Join(dir, "dirty.vhdx")
			w, err := CreateDynamic(path, vsize, CreateOptions{BlockSize: MiB})
			if err != nil {
				t.Fatal(err)
			}
			w.logHead = head
			model := make([]byte, vsize)
			for _, x := range wtGenWrites(rng, vsize, MiB, 30, 3*MiB) {
				if _, err := w.WriteAt(x.data, x.off); err != nil {
					t.Fatal(err)
				}
				copy(model[x.off:], x.data)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			if w.logSeq != 1 {
				t.Fatalf("%d log entries, want 1", w.logSeq)
			}
			batOff, batLen := w.f.batOffset, w.f.batEntries*8
			w.osf.Close() // crash: no Close
			fd, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fd.WriteAt(make([]byte, batLen), batOff); err != nil {
				t.Fatal(err)
			}
			fd.Close()

			f := wtOpen(t, path)
			if !f.Log.Replayed || f.Log.Entries != 1 {
				t.Fatalf("log %+v", f.Log)
			}
			wtMustRead(t, "replayed in memory", []wtLayer{f}, model)

			// QEMU replays a copy.
			cp := filepath.Join(dir, "copy.vhdx")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cp, b, 0o644); err != nil {
				t.Fatal(err)
			}
			testutil.Run(t, "qemu-img", "check", "-r", "all", cp)
			testutil.Run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", cp, cp+".raw")
			got, err := os.ReadFile(cp + ".raw")
			if err != nil {
				t.Fatal(err)
			}
			wtCompare(t, "replayed by qemu", got, model)

			// OpenWriter replays in place and clears the log.
			w, err = OpenWriter(path, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f = wtOpen(t, path)
			if f.Log.Replayed || !f.Header.LogGUID.IsZero() {
				t.Fatalf("after OpenWriter: log %+v", f.Log)
			}
			wtMustRead(t, "replayed in place", []wtLayer{f}, model)
			testutil.Run(t, "qemu-img", "check", path)
		})
	}
}

// TestWriterLogWrap commits hundreds of times so that the log ring wraps
// several times, then abandons the writer without Close: the file must read
// correctly through its log, and again after OpenWriter replays it.
func TestWriterLogWrap(t *testing.T) {
	testutil.Need(t, "qemu-img")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 12))
	const vsize = 32 * MiB
	raw := wtRandom(rng, vsize)
	base := filepath.Join(dir, "base.vhdx")
	wtQemuBase(t, base, raw, MiB)
	bf := wtOpen(t, base)
	child := filepath.Join(dir, "child.avhdx")
	w, err := CreateDifferencing(child, ParentInfoOf(bf), CreateOptions{BlockSize: MiB, Parent: bytes.NewReader(raw)})
	if err != nil {
		t.Fatal(err)
	}
	model := bytes.Clone(raw)
	var logged int64
	for i := 0; logged < 3*MiB; i++ {
		// Scattered small writes: every commit carries BAT and bitmap sectors.
		for range 1 + rng.IntN(20) {
			off := rng.Int64N(vsize - 4096)
			d := make([]byte, 1+rng.IntN(4096))
			wtFill(rng, d)
			if _, err := w.WriteAt(d, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], d)
		}
		head := w.logHead
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		logged += (w.logHead - head + w.logLen) % w.logLen
		if i%100 == 0 {
			wtMustRead(t, "live view", []wtLayer{w, bf}, model)
		}
	}
	t.Logf("%d log entries, %d bytes logged", w.logSeq, logged)
	w.osf.Close() // crash: no Close
	f := wtOpen(t, child)
	if !f.Log.Replayed || f.Log.HeadSequence != w.logSeq {
		t.Fatalf("log %+v, want head sequence %d", f.Log, w.logSeq)
	}
	wtMustRead(t, "after the crash", []wtLayer{f, bf}, model)
	w, err = OpenWriter(child, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f = wtOpen(t, child)
	if f.Log.Replayed {
		t.Fatalf("log %+v", f.Log)
	}
	wtMustRead(t, "after replay in place", []wtLayer{f, bf}, model)
}

// --- crash test ---

// The crash trials' disk: 16 MiB under the race detector (each trial
// starts a helper process and checks the whole layer).
var wtCrashVSize = testutil.Scale[int64](64*MiB, 16*MiB)

const wtCrashBS = MiB

// wtCrashPoints are the writerCrashHook points a trial may kill at.
var wtCrashPoints = []string{"header", "allocated", "block-written", "data-synced", "log-written", "log-wrapping", "log-synced", "in-place"}

// wtCrashPlan is the deterministic write stream of one crash trial: the
// writes, and after which of them the helper calls Sync.
func wtCrashPlan(seed uint64) ([]wtWrite, []bool) {
	rng := rand.New(rand.NewPCG(seed, 77))
	ws := wtGenWrites(rng, wtCrashVSize, wtCrashBS, 80, 512*KiB)
	syncs := make([]bool, len(ws))
	for i := range syncs {
		syncs[i] = rng.IntN(3) == 0
	}
	return ws, syncs
}

// TestWriterCrashHelper is the child process of TestWriterCrash. It
// writes a trial's stream to WT_CHILD (creating it from WT_CREATE_FROM if
// set) and prints "S n" each time a Sync covering the first n writes has
// returned. WT_MODE=replay only opens and closes the file. WT_HOOK=point:n
// kills the process at the n-th time the writer passes point; WT_LOGHEAD
// sets where the first log entry goes.
func TestWriterCrashHelper(t *testing.T) {
	if os.Getenv("WT_CRASH_HELPER") != "1" {
		t.Skip("helper process for TestWriterCrash")
	}
	if hook := os.Getenv("WT_HOOK"); hook != "" {
		point, ns, _ := strings.Cut(hook, ":")
		n, _ := strconv.Atoi(ns)
		seen := 0
		writerCrashHook = func(p string) {
			if p == point {
				if seen++; seen == n {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {}
				}
			}
		}
	}
	seed, _ := strconv.ParseUint(os.Getenv("WT_SEED"), 10, 64)
	child := os.Getenv("WT_CHILD")
	raw, err := os.Open(os.Getenv("WT_RAW"))
	if err != nil {
		t.Fatal(err)
	}
	var w *Writer
	if base := os.Getenv("WT_CREATE_FROM"); base != "" {
		bf, err := Open(base)
		if err != nil {
			t.Fatal(err)
		}
		if w, err = CreateDifferencing(child, ParentInfoOf(bf), CreateOptions{BlockSize: wtCrashBS, Parent: raw}); err != nil {
			t.Fatal(err)
		}
		fmt.Println("C")
	} else if w, err = OpenWriter(child, OpenOptions{Parent: raw}); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("WT_MODE") == "replay" {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		fmt.Println("D")
		return
	}
	if h, err := strconv.ParseInt(os.Getenv("WT_LOGHEAD"), 10, 64); err == nil {
		w.logHead = h
	}
	ws, syncs := wtCrashPlan(seed)
	for i, x := range ws {
		if _, err := w.WriteAt(x.data, x.off); err != nil {
			t.Fatal(err)
		}
		writerCrashPoint("block-written")
		if syncs[i] {
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("S %d\n", i+1)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("S %d\nD\n", len(ws))
}

// wtHelperRun is what a helper run reported before it ended.
type wtHelperRun struct {
	synced        int  // writes covered by the last completed Sync
	created, done bool // "C" and "D" seen
	killed        bool // ended by SIGKILL
}

// wtRunHelper runs the crash helper with env. With killAfter >= 0 it kills
// the helper delay after the killAfter-th "S" report (at once after start
// for 0); with killAfter < 0 the helper runs until it ends or kills itself.
func wtRunHelper(t *testing.T, env []string, killAfter int, delay time.Duration) wtHelperRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriterCrashHelper$", "-test.count=1")
	// Under the race detector a process sleeps a second before exiting
	// unless told otherwise.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), append(env, "WT_CRASH_HELPER=1", "GORACE="+gorace)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var r wtHelperRun
	reports := 0
	handle := func(l string) {
		switch {
		case l == "C":
			r.created = true
		case l == "D":
			r.done = true
		case strings.HasPrefix(l, "S "):
			r.synced, _ = strconv.Atoi(l[2:])
			reports++
		}
	}
	if killAfter >= 0 {
		if killAfter > 0 {
			for l := range lines {
				if handle(l); reports >= killAfter {
					break
				}
			}
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
	}
	for l := range lines {
		handle(l)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
		r.killed = true
	default:
		t.Fatalf("helper failed: %v\n%s", err, stderr.String())
	}
	return r
}

// TestWriterCrash kills a writing process at random moments and at chosen
// points of the commit protocol, sometimes kills the next open again while
// it replays the log, and checks that the file opens, that everything
// synced reads back, and that nothing else changed. CKPTFS_CRASH_TRIALS
// sets the number of trials (default 50).
func TestWriterCrash(t *testing.T) {
	testutil.Need(t, "qemu-img")
	trials := 50
	if s := os.Getenv("CKPTFS_CRASH_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		trials = n
	}
	// SIGKILL leaves the page cache intact, so what is tested is the
	// order and content of the writer's writes, not the file system's
	// durability: tmpfs, when there is one, only saves I/O time.
	dir := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "ckptfs-crash-"); err == nil {
			dir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	seed0 := rng.Uint64()
	if s := os.Getenv("CKPTFS_CRASH_SEED"); s != "" {
		seed0, _ = strconv.ParseUint(s, 10, 64)
		rng = rand.New(rand.NewPCG(seed0, 6))
	}
	t.Logf("seed %d (set CKPTFS_CRASH_SEED to repeat)", seed0)
	raw := wtRandom(rand.New(rand.NewPCG(seed0, 1)), wtCrashVSize)
	rawPath := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.vhdx")
	wtQemuBase(t, base, raw, MiB)
	baseSum, rawSum := wtSHA(t, base), wtSHA(t, rawPath)
	bf := wtOpen(t, base)
	want := bytes.Clone(raw)
	var stats struct{ early, mid, finished, hooked, replayKilled, dirty, createKilled int }
	for trial := range trials {
		seed := seed0 + uint64(trial)
		child := filepath.Join(dir, fmt.Sprintf("base_%d.avhdx", trial))
		create := trial%5 == 4
		env := []string{"WT_SEED=" + strconv.FormatUint(seed, 10), "WT_CHILD=" + child, "WT_RAW=" + rawPath}
		if create {
			env = append(env, "WT_CREATE_FROM="+base)
		} else {
			w, err := CreateDifferencing(child, ParentInfoOf(bf), CreateOptions{BlockSize: wtCrashBS})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(2) == 0 {
			env = append(env, fmt.Sprintf("WT_LOGHEAD=%d", rng.IntN(MiB/LogSectorSize)*LogSectorSize))
		}
		ws, syncs := wtCrashPlan(seed)
		nsync := 0
		for _, s := range syncs {
			if s {
				nsync++
			}
		}
		var r wtHelperRun
		if trial%2 == 1 {
			point := wtCrashPoints[rng.IntN(len(wtCrashPoints))]
			n := 1 + rng.IntN(40)
			switch {
			case create && rng.IntN(2) == 0:
				point, n = "create", 1
			case point == "header" || point == "log-wrapping":
				n = 1 + rng.IntN(4)
			}
			r = wtRunHelper(t, append(env, fmt.Sprintf("WT_HOOK=%s:%d", point, n)), -1, 0)
		} else {
			r = wtRunHelper(t, env, rng.IntN(nsync+2), time.Duration(rng.IntN(4000))*time.Microsecond)
		}
		switch {
		case r.done:
			stats.finished++
		case r.killed && trial%2 == 1:
			stats.hooked++
		case r.synced == 0:
			stats.early++
		default:
			stats.mid++
		}
		if create && !r.created {
			f, err := Open(child)
			switch {
			case errors.Is(err, os.ErrNotExist), errors.Is(err, ErrNotVHDX):
				stats.createKilled++
				os.Remove(child)
				continue // killed before the file was complete: it is not a VHDX file
			case err != nil:
				t.Fatalf("trial %d: killed while creating: %v", trial, err)
			}
			f.Close()
		}
		if f, err := Open(child); err == nil {
			if f.Log.Replayed {
				stats.dirty++
			}
			f.Close()
		}
		// Sometimes the next open is killed too, while it replays the log
		// or updates the headers.
		if !r.done && rng.IntN(3) == 0 {
			point := []string{"header", "replay"}[rng.IntN(2)]
			rr := wtRunHelper(t, append(env[:3:3], "WT_MODE=replay", fmt.Sprintf("WT_HOOK=%s:%d", point, 1+rng.IntN(4))), -1, 0)
			if rr.killed {
				stats.replayKilled++
			}
		}
		wtCheckCrash(t, trial, child, raw, want, ws, r.synced)
		os.Remove(child)
	}
	t.Logf("%d trials: %d killed at a hook point, %d killed at random before the first sync, %d after, %d finished; "+
		"%d left a log to replay; %d replays killed; %d creations killed", trials, stats.hooked, stats.early, stats.mid,
		stats.finished, stats.dirty, stats.replayKilled, stats.createKilled)
	if wtSHA(t, base) != baseSum || wtSHA(t, rawPath) != rawSum {
		t.Error("the base changed")
	}
}

// wtCheckCrash verifies a layer after a kill: writes [0, synced) must read
// back; every other byte must hold its value after those writes or a value
// one of the later writes gave it. Then OpenWriter replays the log in place,
// which must not change what the layer reads.
//
// want is raw with nothing applied; it is used as scratch space and
// restored. The layer is scanned extent by extent, never assembled:
// large copies are slow under the race detector.
func wtCheckCrash(t *testing.T, trial int, child string, raw, want []byte, ws []wtWrite, synced int) {
	t.Helper()
	for _, x := range ws[:synced] {
		copy(want[x.off:], x.data)
	}
	defer func() {
		for _, x := range ws[:synced] {
			copy(want[x.off:], raw[x.off:x.off+int64(len(x.data))])
		}
	}()
	f, err := Open(child)
	if err != nil {
		t.Fatalf("trial %d: Open after the kill: %v", trial, err)
	}
	log := f.Log
	before := wtCrashScan(t, f, raw, func(got []byte, off int64) {
		wtCheckRange(t, fmt.Sprintf("trial %d (%d writes synced, log %+v)", trial, synced, log), got, want[off:off+int64(len(got))], off, ws[synced:])
	})
	f.Close()
	w, err := OpenWriter(child, OpenOptions{Parent: bytes.NewReader(raw)})
	if err != nil {
		t.Fatalf("trial %d: OpenWriter after the kill: %v", trial, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err = Open(child); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Log.Replayed || !f.Header.LogGUID.IsZero() {
		t.Fatalf("trial %d: log not cleared: %+v", trial, f.Log)
	}
	if after := wtCrashScan(t, f, raw, nil); after != before {
		t.Fatalf("trial %d: replaying the log in place changed the contents", trial)
	}
}

// wtCrashScan reads differencing layer f over raw extent by extent, passes
// each piece to check (if not nil) and returns the SHA-256 of the whole.
func wtCrashScan(t *testing.T, f *File, raw []byte, check func(got []byte, off int64)) [32]byte {
	t.Helper()
	h := sha256.New()
	buf := make([]byte, f.BlockSize())
	zeros := make([]byte, f.BlockSize())
	var ext []Extent
	for b := range f.BlockCount() {
		var err error
		if ext, err = f.BlockExtents(b, ext[:0]); err != nil {
			t.Fatal(err)
		}
		for _, x := range ext {
			var got []byte
			switch x.Source {
			case FromParent:
				got = raw[x.Offset : x.Offset+x.Length]
			case Zeros:
				got = zeros[:x.Length]
			case Data:
				got = buf[:x.Length]
				if _, err := f.ReadFileAt(got, x.FileOffset); err != nil {
					t.Fatal(err)
				}
			}
			h.Write(got)
			if check != nil {
				check(got, x.Offset)
			}
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// wtCheckRange checks bytes got read at virtual offset off: each must equal
// want or the value one of the later writes gave it.
func wtCheckRange(t *testing.T, what string, got, want []byte, off int64, later []wtWrite) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	for i := int64(0); i < int64(len(got)); i += 4096 {
		e := min(i+4096, int64(len(got)))
		if bytes.Equal(got[i:e], want[i:e]) {
			continue
		}
		var cand []wtWrite // later writes that touch these bytes
		for _, x := range later {
			if x.off < off+e && off+i < x.off+int64(len(x.data)) {
				cand = append(cand, x)
			}
		}
		for j := i; j < e; j++ {
			if got[j] == want[j] {
				continue
			}
			v := off + j
			ok := false
			for _, x := range cand {
				if v >= x.off && v < x.off+int64(len(x.data)) && x.data[v-x.off] == got[j] {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("%s: byte %d is %#x, want %#x", what, v, got[j], want[j])
			}
		}
	}
}

// BenchmarkWriter measures WriteAt on a differencing layer over a 256 MiB
// parent: sequential writes of whole and partial blocks, and random 4 KiB
// writes with a Sync every 256 writes.
func BenchmarkWriter(b *testing.B) {
	const vsize = 256 * MiB
	for _, bc := range []struct {
		name   string
		size   int64
		random bool
	}{
		{"seq-2M", 2 * MiB, false},
		{"seq-128K", 128 * KiB, false},
		{"rand-4K", 4 * KiB, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			p := ParentInfo{Path: filepath.Join(dir, "parent.vhdx"), DataWriteGUID: NewGUID(), VirtualSize: vsize,
				LogicalSectorSize: 512, PhysicalSectorSize: 4096, VirtualDiskID: NewGUID()}
			if err := os.WriteFile(p.Path, nil, 0o644); err != nil {
				b.Fatal(err)
			}
			w, err := CreateDifferencing(filepath.Join(dir, "child.avhdx"), p, CreateOptions{Parent: bytes.NewReader(make([]byte, vsize))})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			data := make([]byte, bc.size)
			wtFill(rand.New(rand.NewPCG(1, 1)), data)
			rng := rand.New(rand.NewPCG(2, 2))
			b.SetBytes(bc.size)
			b.ResetTimer()
			var off int64
			for i := 0; i < b.N; i++ {
				if bc.random {
					off = rng.Int64N(vsize/bc.size) * bc.size
				} else {
					off = off % vsize
				}
				if _, err := w.WriteAt(data, off); err != nil {
					b.Fatal(err)
				}
				off += bc.size
				if i%256 == 255 {
					if err := w.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
