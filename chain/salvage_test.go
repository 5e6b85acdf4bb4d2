package chain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	randv2 "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// damageCase is one damaged copy of an intact file.
type damageCase struct {
	name string
	// damage damages the copy of the intact file at path.
	damage func(path string) error
	// checkErrs are the Structures of the errors Check must list for the
	// damaged file, in order; checkWarns those of the warnings.
	checkErrs  []string
	checkWarns []string
	// strict are the sentinels a strict open's error must match; nil
	// means it opens. salvageable: it matches disk.ErrSalvageable.
	strict      []error
	salvageable bool
	// opens: a salvage open succeeds; lost is then its MissingRanges.
	opens bool
	lost  []Range
}

const mib = disk.MiB

// writeAt writes b at off of the file at path.
func writeAt(path string, b []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// patchVHDX sets the BAT entry i of a VHDX file whose BAT is at batOff.
func patchVHDX(batOff int64, i int, e disk.BATEntry) func(string) error {
	return func(path string) error {
		return writeAt(path, binary.LittleEndian.AppendUint64(nil, uint64(e)), batOff+int64(i)*8)
	}
}

// copyVHDX makes BAT entry i of a VHDX file point where entry j does.
func copyVHDX(batOff int64, i, j int) func(string) error {
	return func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 8)
		if _, err := f.ReadAt(b, batOff+int64(j)*8); err != nil {
			return err
		}
		return writeAt(path, b, batOff+int64(i)*8)
	}
}

// flip adds one to the byte at off.
func flip(off int64) func(string) error {
	return func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return writeAt(path, []byte{b[off] + 1}, off)
	}
}

func cut(n int64) func(string) error {
	return func(path string) error { return os.Truncate(path, n) }
}

func intactCopy(path string) error { return nil }

// copyFile copies the file src to dst (in the kernel where it can).
func copyFile(t *testing.T, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// runDamage copies the intact file into dir as name, damages the copy
// and checks Check, a strict open and a salvage open of it, and every
// read of the salvaged chain against want, the intact disk.
func runDamage(t *testing.T, dir, name, intact string, want []byte, c damageCase) {
	t.Helper()
	path := filepath.Join(dir, name)
	copyFile(t, intact, path)
	if err := c.damage(path); err != nil {
		t.Fatal(err)
	}
	testutil.Unchanged(t, path)

	rep, err := Check(path, Options{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	fr := rep.Links[0].Report
	var errs, warns []string
	for _, p := range fr.Problems {
		if p.Severity == disk.SeverityError {
			errs = append(errs, p.Structure)
		} else {
			warns = append(warns, p.Structure)
		}
		if !strings.Contains(p.Err.Error(), path) {
			t.Errorf("problem %q does not name the file", p.Err)
		}
	}
	if !slices.Equal(errs, c.checkErrs) {
		t.Errorf("Check errors %q, want %q\n%s", errs, c.checkErrs, reportText(rep))
	}
	if c.checkWarns != nil && !slices.Equal(warns, c.checkWarns) {
		t.Errorf("Check warnings %q, want %q", warns, c.checkWarns)
	}
	if fr.Usable != c.opens {
		t.Errorf("Check: Usable %v, want %v", fr.Usable, c.opens)
	}

	ch, err := Open(path, Options{})
	switch {
	case c.strict == nil && err != nil:
		t.Fatalf("strict open: %v", err)
	case c.strict == nil:
		ch.Close()
	case err == nil:
		ch.Close()
		t.Fatalf("strict open succeeded")
	default:
		for _, s := range c.strict {
			if !errors.Is(err, s) {
				t.Errorf("strict open: %v does not match %v", err, s)
			}
		}
		if errors.Is(err, disk.ErrSalvageable) != c.salvageable {
			t.Errorf("strict open: %v: salvageable %v, want %v", err, !c.salvageable, c.salvageable)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("strict open: %v does not name the file", err)
		}
		if c.salvageable && len(fr.Problems) > 0 && err.Error() != firstError(fr).Error() {
			t.Errorf("strict error %q is not Check's first error %q", err, firstError(fr))
		}
	}

	sc, err := Open(path, Options{Salvage: true})
	if !c.opens {
		if err == nil {
			sc.Close()
			t.Fatal("salvage open succeeded")
		}
		return
	}
	if err != nil {
		t.Fatalf("salvage open: %v", err)
	}
	defer sc.Close()
	verifySalvaged(t, sc, want, c.lost)
}

func firstError(r *disk.Report) error {
	for _, p := range r.Problems {
		if p.Severity == disk.SeverityError {
			return p.Err
		}
	}
	return nil
}

func reportText(r *ChainReport) string {
	var s strings.Builder
	for _, l := range r.Links {
		for _, p := range l.Report.Problems {
			fmt.Fprintf(&s, "  %s [%s]\n", p, p.Structure)
		}
		for _, p := range l.Problems {
			fmt.Fprintf(&s, "  %s [%s]\n", p, p.Structure)
		}
	}
	return s.String()
}

// verifySalvaged reads a salvaged chain every way there is and compares
// with want, the intact disk: lost bytes must fail with ErrMissingData
// (never come from a parent or read as stale data) or read as zeros in
// ReadAtZeroFilled; everything else must be byte-exact.
func verifySalvaged(t *testing.T, c *Chain, want []byte, lost []Range) {
	t.Helper()
	isLost := func(off, n int64) (first int64, ok bool) {
		for _, r := range lost {
			if r.Offset < off+n && off < r.End() {
				return max(r.Offset, off), true
			}
		}
		return 0, false
	}
	mr, err := c.MissingRanges()
	if err != nil || !slices.Equal(mr, lost) {
		t.Errorf("MissingRanges = %v, %v; want %v", mr, err, lost)
	}
	// Zero-filled, whole disk.
	zf := bytes.Clone(want)
	for _, r := range lost {
		clear(zf[r.Offset:r.End()])
	}
	got := make([]byte, c.Size())
	n, ranges, err := c.ReadAtZeroFilled(got, 0, nil)
	if err != nil || n != len(got) {
		t.Fatalf("ReadAtZeroFilled: %d, %v", n, err)
	}
	mustEqual(t, "zero-filled disk", got, zf)
	if !slices.Equal(ranges, lost) && !(len(ranges) == 0 && len(lost) == 0) {
		t.Errorf("ReadAtZeroFilled ranges %v, want %v", ranges, lost)
	}
	// Block by block, and 4 KiB reads across each edge of a lost range.
	type read struct{ off, n int64 }
	var reads []read
	for off := int64(0); off < c.Size(); off += mib {
		reads = append(reads, read{off, min(mib, c.Size()-off)})
	}
	for _, r := range lost {
		for _, e := range []int64{r.Offset, r.End()} {
			if e-4096 >= 0 && e+512 <= c.Size() {
				reads = append(reads, read{e - 4096, 4096}, read{e - 4096, 4096 + 512}, read{e, 512})
			}
		}
	}
	buf := make([]byte, mib+4096)
	for _, r := range reads {
		b := buf[:r.n]
		n, err := c.ReadAt(b, r.off)
		if first, ok := isLost(r.off, r.n); ok {
			if !errors.Is(err, disk.ErrMissingData) || int64(n) != first-r.off {
				t.Fatalf("read %d+%d over lost bytes at %d: n=%d err=%v, want n=%d and ErrMissingData", r.off, r.n, first, n, err, first-r.off)
			}
			mustEqual(t, fmt.Sprintf("bytes before the loss at %d", first), b[:n], want[r.off:r.off+int64(n)])
			continue
		}
		if err != nil || int64(n) != r.n {
			t.Fatalf("read %d+%d: n=%d err=%v", r.off, r.n, n, err)
		}
		mustEqual(t, fmt.Sprintf("read %d+%d", r.off, r.n), b, want[r.off:r.off+r.n])
	}
	// Through the read-ahead (a sequential stream, as a mount reads).
	p := NewPrefetcher(c, c.Size())
	p.Window, p.MaxWindows = 2*mib, 4
	for off := int64(0); off < c.Size(); off += 128 << 10 {
		b := buf[:min(128<<10, c.Size()-off)]
		n, err := p.ReadAt(b, off)
		if _, ok := isLost(off, int64(len(b))); ok {
			if !errors.Is(err, disk.ErrMissingData) {
				t.Fatalf("prefetched read at %d over lost bytes: %v", off, err)
			}
			continue
		}
		if (err != nil && err != io.EOF) || n != len(b) {
			t.Fatalf("prefetched read at %d: %d, %v", off, n, err)
		}
		mustEqual(t, fmt.Sprintf("prefetched read at %d", off), b, want[off:off+int64(len(b))])
	}
	// Lost bytes are never handed out as file pieces, and map to Missing
	// runs of the layer that lost them, whose file offsets no comparison
	// can take for data (checkpoint/diff compares them).
	for _, r := range lost {
		if _, ok := c.Pieces(r.Offset, r.Length, nil); ok {
			t.Errorf("Pieces gave file pieces for lost bytes %v", r)
		}
		runs, err := c.Map(r.Offset, r.Length, nil)
		if err != nil || len(runs) != 1 || !runs[0].Missing || runs[0].Layer < 0 || runs[0].FileOffset+runs[0].Length > -(1<<60) {
			t.Errorf("Map of lost bytes %v: %+v %v", r, runs, err)
		}
	}
}

// randBytes returns n pseudo-random bytes from seed (ChaCha8: fast even
// under -race, unlike math/rand).
func randBytes(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	randv2.NewChaCha8(s).Read(b)
	return b
}

// vhdxFixture is a dynamic 8 MiB VHDX of 1 MiB blocks made by vhdxtest:
// data in blocks 0, 1, 2, 4, 5, 7, block 3 NOT_PRESENT, block 6 ZERO.
// Layout: log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB, the blocks with
// data at 4..9 MiB in order; the file is 10 MiB.
func vhdxFixture(t *testing.T) (b, want []byte) {
	vhdxOnce.Do(func() {
		im := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * mib, BlockSize: mib})
		for i, blk := range []int64{0, 1, 2, 4, 5, 7} {
			im.Write(blk*mib, randBytes(byte(i+1), mib))
		}
		im.SetState(6, disk.BlockZero)
		vhdxBytes, vhdxErr = im.Bytes("/x/disk.vhdx")
		vhdxWant = im.Contents(nil)
	})
	if vhdxErr != nil {
		t.Fatal(vhdxErr)
	}
	return vhdxBytes, vhdxWant
}

var (
	vhdxOnce            sync.Once
	vhdxBytes, vhdxWant []byte
	vhdxErr             error
)

func TestSalvageVHDX(t *testing.T) {
	b, want := vhdxFixture(t)
	intact := filepath.Join(t.TempDir(), "intact.vhdx")
	if err := os.WriteFile(intact, b, 0o644); err != nil {
		t.Fatal(err)
	}
	const bat = 3 * mib
	e := func(i int) []string {
		var s []string
		for _, x := range []int{0, 1, 2, 4, 5, 7} {
			if x >= i {
				s = append(s, fmt.Sprintf("BAT entry %d", x))
			}
		}
		return s
	}
	cases := []damageCase{
		{name: "intact", damage: intactCopy, checkWarns: []string{}, opens: true},
		{name: "cut in the header section", damage: cut(100 * disk.KiB),
			checkErrs: []string{"header section", "header 2", "region table 1", "region table 2", "region tables"},
			strict:    []error{disk.ErrTruncated}},
		{name: "cut in the metadata region", damage: cut(2*mib + 4096),
			checkErrs: []string{"region BAT", "region metadata", "metadata table"},
			strict:    []error{disk.ErrTruncated}},
		{name: "cut in the BAT", damage: cut(bat + 4096),
			checkErrs: append([]string{"region BAT"}, e(0)...),
			strict:    []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{0, 3 * mib}, {4 * mib, 2 * mib}, {7 * mib, mib}}},
		{name: "cut in a block", damage: cut(6*mib + mib/2 + 100),
			checkErrs: e(2), strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{2*mib + mib/2, mib / 2}, {4 * mib, 2 * mib}, {7 * mib, mib}}},
		{name: "one byte short", damage: cut(10*mib - 1),
			checkErrs: e(7), strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{8*mib - 512, 512}}},
		{name: "BAT entry past the end", damage: patchVHDX(bat, 1, disk.MakeBATEntry(disk.BlockFullyPresent, 1<<40)),
			checkErrs: []string{"BAT entry 1"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{mib, mib}}},
		{name: "BAT entries overlapping", damage: copyVHDX(bat, 4, 0),
			checkErrs: []string{"BAT entry 4"}, strict: []error{disk.ErrCorrupt}, salvageable: true, opens: true,
			lost: []Range{{0, mib}, {4 * mib, mib}}},
		{name: "BAT entry on the metadata region", damage: patchVHDX(bat, 5, disk.MakeBATEntry(disk.BlockFullyPresent, 2*mib)),
			checkErrs: []string{"BAT entry 5"}, strict: []error{disk.ErrCorrupt}, salvageable: true, opens: true,
			lost: []Range{{5 * mib, mib}}},
		{name: "BAT entry in a reserved state", damage: patchVHDX(bat, 2, disk.MakeBATEntry(4, 6*mib)),
			checkErrs: []string{"BAT entry 2"}, strict: []error{disk.ErrCorrupt}, salvageable: true, opens: true,
			lost: []Range{{2 * mib, mib}}},
		{name: "header 1 checksum (survived)", damage: flip(disk.Header1Offset + 100),
			checkWarns: []string{"header 1"}, opens: true},
		{name: "metadata table signature", damage: flip(2 * mib),
			checkErrs: []string{"metadata table"}, strict: []error{disk.ErrCorrupt}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDamage(t, t.TempDir(), "disk.vhdx", intact, want, c)
		})
	}
}

// TestSalvageDirtyLog: a file whose BAT lives only in its log (a crash
// before the in-place update), cut short. The log is replayed; the bytes
// past the cut are lost, not the zeros the replayed view holds there.
func TestSalvageDirtyLog(t *testing.T) {
	im := vhdxtest.New(vhdxtest.Options{VirtualSize: 4 * mib, BlockSize: mib, DirtyLog: true})
	for i := int64(0); i < 3; i++ {
		im.Write(i*mib, randBytes(byte(20+i), mib))
	}
	intact := filepath.Join(t.TempDir(), "dirty.vhdx")
	if err := im.Save(intact); err != nil {
		t.Fatal(err)
	}
	// Layout: log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB, blocks 0, 1,
	// 2 at 4, 5, 6 MiB; 7 MiB in all.
	runDamage(t, t.TempDir(), "dirty.vhdx", intact, im.Contents(nil), damageCase{
		name: "cut in block 2", damage: cut(6*mib + mib/2),
		checkErrs: []string{"log", "BAT entry 2"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
		lost: []Range{{2*mib + mib/2, mib / 2}}})
}

// TestSalvageChild: a 2-layer chain whose child is cut short. What the
// child lost is never read from the parent, which holds older data there.
func TestSalvageChild(t *testing.T) {
	dir := t.TempDir()
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 8 * mib, BlockSize: mib})
	base.Write(0, randBytes(1, 8*mib))
	bp := filepath.Join(dir, "base.vhdx")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	testutil.Unchanged(t, bp)
	child := vhdxtest.New(vhdxtest.Options{Parent: base, ParentPath: bp, BlockSize: mib})
	child.Write(mib+4096, randBytes(2, 8192)) // block 1: partial
	child.Write(2*mib, randBytes(3, mib))     // block 2: full
	child.Write(5*mib, randBytes(4, mib))     // block 5: full
	cp := filepath.Join(dir, "child.avhdx")
	intact := filepath.Join(t.TempDir(), "child.avhdx")
	if err := child.Save(intact); err != nil {
		t.Fatal(err)
	}
	want := child.Contents(base.Contents(nil))
	// Child layout: blocks 1, 2, 5 at 4, 5, 6 MiB, the sector bitmap at
	// 7 MiB; BAT at 3 MiB, with the bitmap entry at index 4096.
	const bat = 3 * mib
	cases := []damageCase{
		{name: "cut before the sector bitmap", damage: cut(5*mib + mib/2),
			// Block 1's bitmap is gone: which of its sectors the child
			// holds is unknown, so all of the block is lost.
			checkErrs: []string{"BAT entry 2", "BAT entry 5", "BAT entry 4096"},
			strict:    []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{mib, mib}, {2*mib + mib/2, mib / 2}, {5 * mib, mib}}},
		{name: "one byte short", damage: cut(8*mib - 1),
			checkErrs: []string{"BAT entry 4096"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true},
		{name: "sector bitmap entry past the end", damage: patchVHDX(bat, 4096, disk.MakeBATEntry(disk.SectorBitmapPresent, 1<<40)),
			checkErrs: []string{"BAT entry 4096"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{mib, mib}}},
		{name: "block past the end", damage: patchVHDX(bat, 5, disk.MakeBATEntry(disk.BlockFullyPresent, 1<<40)),
			checkErrs: []string{"BAT entry 5"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{5 * mib, mib}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDamage(t, dir, "child.avhdx", intact, want, c)
			rep, err := Check(cp, Options{})
			if err != nil || len(rep.Links) != 2 || rep.Links[1].Path != bp || rep.Links[1].Linkage == nil || !rep.Links[1].Linkage.OK ||
				!rep.Links[1].Report.Clean() || len(rep.Links[0].Problems) != 0 {
				t.Errorf("chain check: %+v, %v\n%s", rep, err, reportText(rep))
			}
			// The parent's data is different where the child's is lost
			// (else a fall-through could not be seen).
			for _, r := range c.lost {
				if bytes.Equal(want[r.Offset:r.End()], base.Contents(nil)[r.Offset:r.End()]) {
					t.Fatalf("fixture: lost range %v holds the parent's data", r)
				}
			}
		})
	}
}

// TestSalvageVHD: a dynamic VHD cut short.
func TestSalvageVHD(t *testing.T) {
	dir := t.TempDir()
	im := vhdtest.New(vhdtest.Options{VirtualSize: 8 * mib, BlockSize: mib})
	for i, blk := range []int64{0, 1, 2, 4, 5, 7} {
		im.Write(blk*mib, randBytes(byte(i+1), mib))
	}
	intact := filepath.Join(dir, "intact.vhd")
	if err := im.Save(intact); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(intact)
	if err != nil {
		t.Fatal(err)
	}
	want := im.Contents(nil)
	// Layout: footer copy, dynamic header at 512, BAT at 1536, blocks
	// (a 512-byte bitmap, then 1 MiB of data) from 2048 in the order
	// written, the footer.
	blk := func(k int64) int64 { return 2048 + k*(512+mib) }
	cases := []damageCase{
		{name: "cut in a block", damage: cut(blk(2) + 512 + mib/2 + 100),
			checkErrs: []string{"BAT entry 2", "BAT entry 4", "BAT entry 5", "BAT entry 7"}, checkWarns: []string{"footer"},
			strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{2*mib + mib/2, mib / 2}, {4 * mib, 2 * mib}, {7 * mib, mib}}},
		// The footer at the end is gone, its copy at 0 serves, and the
		// data is whole.
		{name: "one byte short", damage: cut(st.Size() - 1), checkWarns: []string{"footer"}, opens: true},
		{name: "cut in the BAT", damage: cut(1536 + 16),
			checkErrs: []string{"dynamic header", "BAT entry 0", "BAT entry 1", "BAT entry 2"}, checkWarns: []string{"footer"},
			strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			// Entries 4 to 7 are unknown: lost even where the intact
			// file had none (block 6).
			lost: []Range{{0, 3 * mib}, {4 * mib, 4 * mib}}},
		{name: "cut in the dynamic header", damage: cut(1000),
			checkErrs: []string{"dynamic header"}, checkWarns: []string{"footer"}, strict: []error{disk.ErrTruncated}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDamage(t, t.TempDir(), "disk.vhd", intact, want, c)
		})
	}
}

// TestUnreadableRegion injects read errors where the BAT, a sector bitmap
// or a block's data lie.
func TestUnreadableRegion(t *testing.T) {
	intact, want := vhdxFixture(t)
	cases := []struct {
		name       string
		lo, hi     int64
		strictOpen bool    // the strict open succeeds (the error comes at the read)
		lost       []Range // MissingRanges
		readLost   []Range // what ReadAtZeroFilled finds
	}{
		{name: "BAT", lo: 3 * mib, hi: 3*mib + 512,
			lost: []Range{{0, 8 * mib}}, readLost: []Range{{0, 8 * mib}}},
		{name: "block 4's data", lo: 7*mib + 8192, hi: 7*mib + 8193, strictOpen: true,
			readLost: []Range{{4*mib + 8192, 4096}}},
		{name: "header 1", lo: disk.Header1Offset, hi: disk.Header1Offset + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := testutil.FailingReader{R: bytes.NewReader(intact), Lo: c.lo, Hi: c.hi}
			sf, err := disk.NewFile(r, int64(len(intact)), "disk.vhdx")
			if c.strictOpen {
				if err != nil {
					t.Fatal(err)
				}
				strict := newChain([]Link{{File: sf, Path: "disk.vhdx"}}, nil, false)
				_, err := strict.ReadAt(make([]byte, mib), 4*mib)
				if !errors.Is(err, testutil.ErrInjected) || errors.Is(err, disk.ErrMissingData) || !errors.Is(err, disk.ErrSalvageable) {
					t.Errorf("strict read: %v", err)
				}
			} else if !errors.Is(err, testutil.ErrInjected) || !errors.Is(err, disk.ErrSalvageable) || errors.Is(err, disk.ErrTruncated) {
				t.Errorf("strict open: %v", err)
			}
			_, rep := disk.CheckReader(r, int64(len(intact)), "disk.vhdx")
			if !c.strictOpen && (rep.Errors() != 1 || !errors.Is(rep.Problems[0].Err, testutil.ErrInjected)) {
				t.Errorf("check: %+v", rep.Problems)
			}
			f, err := disk.NewFileWith(r, int64(len(intact)), "disk.vhdx", disk.ReadOptions{Salvage: true})
			if err != nil {
				t.Fatal(err)
			}
			c2 := newChain([]Link{{File: f, Path: "disk.vhdx"}}, nil, true)
			mr, err := c2.MissingRanges()
			if err != nil || !slices.Equal(mr, c.lost) {
				t.Errorf("MissingRanges %v %v, want %v", mr, err, c.lost)
			}
			got := make([]byte, c2.Size())
			_, ranges, err := c2.ReadAtZeroFilled(got, 0, nil)
			if err != nil || !slices.Equal(ranges, c.readLost) && len(ranges)+len(c.readLost) > 0 {
				t.Errorf("ReadAtZeroFilled: %v %v, want %v", ranges, err, c.readLost)
			}
			zf := bytes.Clone(want)
			for _, r := range c.readLost {
				clear(zf[r.Offset:r.End()])
			}
			mustEqual(t, "zero-filled", got, zf)
			for _, r := range c.readLost {
				if _, err := c2.ReadAt(make([]byte, 4096), r.Offset); !errors.Is(err, disk.ErrMissingData) {
					t.Errorf("read of a lost range: %v", err)
				}
			}
		})
	}
}
