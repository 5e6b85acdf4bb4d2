package chain

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// qemuFixture converts an 8 MiB raw disk with data in blocks 0, 1, 2, 4,
// 5 and 7 (1 MiB blocks; 3 and 6 are zeros) to a dynamic VHDX with
// qemu-img, and reads it back with qemu-img convert -O raw: the intact
// file and the oracle's disk.
func qemuFixture(t *testing.T) (intact string, want []byte) {
	testutil.Need(t, "qemu-img")
	dir := t.TempDir()
	raw, img, back := filepath.Join(dir, "in.raw"), filepath.Join(dir, "q.vhdx"), filepath.Join(dir, "back.raw")
	b := make([]byte, 8*mib)
	for i, blk := range []int64{0, 1, 2, 4, 5, 7} {
		copy(b[blk*mib:], randBytes(byte(i+10), mib))
	}
	if err := os.WriteFile(raw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic,block_size=1M", raw, img)
	testutil.Run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", img, back)
	want, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, b) {
		t.Fatal("qemu-img does not read back what it was given")
	}
	return img, want
}

// qemuCheck runs qemu-img check on path and returns the BAT entries it
// reports as pointing past the end of the file, and whether it found
// errors.
func qemuCheck(t *testing.T, path string) (entries []string, clean bool) {
	out, err := exec.Command("qemu-img", "check", path).CombinedOutput()
	for _, m := range regexp.MustCompile(`VHDX BAT entry (\d+) `).FindAllStringSubmatch(string(out), -1) {
		entries = append(entries, "BAT entry "+m[1])
	}
	return entries, err == nil && strings.Contains(string(out), "No errors were found")
}

// TestSalvageQemu damages a qemu-made VHDX (layout: log at 1 MiB, BAT at
// 2 MiB, metadata at 3 MiB, blocks 0, 1, 2, 4, 5, 7 at 8..13 MiB, file of
// 14 MiB) and reads what survives against qemu-img's reading of the intact
// file. qemu-img check is the oracle for the damage both detect: BAT
// entries past the end of the file. (It misses a block ending one byte past
// the end, and overlapping blocks.)
func TestSalvageQemu(t *testing.T) {
	intact, want := qemuFixture(t)
	const bat = 2 * mib
	cases := []struct {
		damageCase
		qemu bool // qemu-img check must report the same BAT entries
	}{
		{damageCase{name: "intact", damage: intactCopy, checkWarns: []string{}, opens: true}, true},
		{damageCase{name: "cut in the header section", damage: cut(100 * disk.KiB),
			checkErrs: []string{"header section", "header 2", "region table 1", "region table 2", "region tables"},
			strict:    []error{disk.ErrTruncated}}, false},
		// The metadata region follows the BAT: nothing to salvage.
		{damageCase{name: "cut in the BAT", damage: cut(bat + 4096),
			checkErrs: []string{"region BAT", "region metadata", "metadata table"},
			strict:    []error{disk.ErrTruncated}}, false},
		// Only the first item (File Parameters, 8 bytes) survives.
		{damageCase{name: "cut in the metadata items", damage: cut(3*mib + 64*disk.KiB + 8),
			checkErrs: []string{"region metadata", "metadata item Virtual Disk Size",
				"metadata item Virtual Disk ID", "metadata item Logical Sector Size", "metadata item Physical Sector Size"},
			strict: []error{disk.ErrTruncated}}, false},
		{damageCase{name: "cut in a block", damage: cut(10*mib + mib/2 + 100),
			checkErrs: []string{"BAT entry 2", "BAT entry 4", "BAT entry 5", "BAT entry 7"},
			strict:    []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{2*mib + mib/2, mib / 2}, {4 * mib, 2 * mib}, {7 * mib, mib}}}, true},
		{damageCase{name: "one byte short", damage: cut(14*mib - 1),
			checkErrs: []string{"BAT entry 7"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{8*mib - 512, 512}}}, false},
		{damageCase{name: "BAT entry past the end", damage: patchVHDX(bat, 1, disk.MakeBATEntry(disk.BlockFullyPresent, 1<<40)),
			checkErrs: []string{"BAT entry 1"}, strict: []error{disk.ErrTruncated}, salvageable: true, opens: true,
			lost: []Range{{mib, mib}}}, true},
		{damageCase{name: "BAT entries overlapping", damage: copyVHDX(bat, 4, 0),
			checkErrs: []string{"BAT entry 4"}, strict: []error{disk.ErrCorrupt}, salvageable: true, opens: true,
			lost: []Range{{0, mib}, {4 * mib, mib}}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			runDamage(t, dir, "q.vhdx", intact, want, c.damageCase)
			if !c.qemu {
				return
			}
			// qemu-img check on a copy: it may write what it opens.
			cp := filepath.Join(dir, "copy.vhdx")
			copyFile(t, filepath.Join(dir, "q.vhdx"), cp)
			got, clean := qemuCheck(t, cp)
			sort.Strings(got)
			var ours []string
			for _, s := range c.checkErrs {
				if strings.HasPrefix(s, "BAT entry ") {
					ours = append(ours, s)
				}
			}
			sort.Strings(ours)
			if clean != (len(c.checkErrs) == 0) || !slices.Equal(got, ours) {
				t.Errorf("qemu-img check: clean %v, entries %q; ours: %q", clean, got, ours)
			}
		})
	}
}
