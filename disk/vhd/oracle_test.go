package vhd_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// TestAgainstQemu reads fixed and dynamic files with qemu-img (-f vpc), an
// independent reader. QEMU sizes a disk by its CHS geometry unless the
// footer's Creator Application is one it knows to record the exact size
// ("win ", "d2v ", "qem2", "CTXS", "tap"): files made by Hyper-V ("win ")
// are compared whole; for a Virtual PC file ("vpc ") the disk is compared
// where its Current Size is the geometry's capacity (what Virtual PC
// writes), and otherwise QEMU's shorter disk is the prefix of ckptfs's:
// ckptfs follows the specification and always uses Current Size.
func TestAgainstQemu(t *testing.T) {
	testutil.Need(t, "qemu-img")
	const mib = 1 << 20
	c, h, s := vhdtest.CHS(9 * mib)
	capacity := int64(c*h*s) * 512
	cases := []struct {
		name   string
		opts   vhdtest.Options
		prefix bool // QEMU shows only the geometry's capacity
	}{
		{"fixed win", vhdtest.Options{VirtualSize: 9*mib + 3*512, Fixed: true}, false},
		{"dynamic win", vhdtest.Options{VirtualSize: 9*mib + 3*512}, false},
		{"dynamic win 512K blocks", vhdtest.Options{VirtualSize: 9 * mib, BlockSize: 512 << 10}, false},
		{"dynamic vpc at the CHS capacity", vhdtest.Options{VirtualSize: capacity, Creator: "vpc "}, false},
		{"dynamic vpc past the CHS capacity", vhdtest.Options{VirtualSize: 9 * mib, Creator: "vpc "}, true},
	}
	for i, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			dir := t.TempDir()
			im := vhdtest.New(k.opts)
			size := k.opts.VirtualSize
			im.Write(0, fill(int64(50+i), 4096))
			im.Write(2*mib+512, fill(int64(60+i), mib+3*512))
			im.Write(size-1024, fill(int64(70+i), 1024))
			p := save(t, im, filepath.Join(dir, "d.vhd"))
			testutil.Unchanged(t, p)
			got := readAll(t, open(t, p), nil)
			if !bytes.Equal(got, im.Contents(nil)) {
				t.Fatal("differs from the model")
			}
			raw := filepath.Join(dir, "q.raw")
			testutil.Run(t, "qemu-img", "convert", "-f", "vpc", "-O", "raw", p, raw)
			q, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			if k.prefix {
				if int64(len(q)) != capacity || !bytes.Equal(q, got[:capacity]) {
					t.Fatalf("QEMU shows %d bytes; want the first %d of ckptfs's %d", len(q), capacity, len(got))
				}
				return
			}
			if !bytes.Equal(q, got) {
				t.Fatalf("qemu-img reads %d bytes, different from ckptfs's %d", len(q), len(got))
			}
		})
	}
}
