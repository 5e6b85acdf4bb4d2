package lvm

import (
	"testing"
)

// BenchmarkReadAt reads a striped LV (2 stripes of 64 KiB over two
// in-memory PVs) in 1 MiB reads, against the same reads of one PV's bytes
// ("raw"), so the reader's own overhead shows.
func BenchmarkReadAt(b *testing.B) {
	const devSize = 40 << 20
	ids := []string{testPVID, "BenchPVaaaaBBBBccccDDDDeeeeFFFFg"}
	var vgpvs []synthVGPV
	for _, id := range ids {
		vgpvs = append(vgpvs, synthVGPV{id: formatID([]byte(id)), devSize: devSize / 512, peStart: 2048, peCount: 39})
	}
	v := synthVGDesc(1, lvSection("str", "x", true, seg(0, 64, "type = \"striped\"\nstripe_count = 2\nstripe_size = 128\nstripes = [\"pv0\", 0, \"pv1\", 0]")))
	v.pvs = vgpvs
	var pvs []*PV
	var devs []bytesReader
	for _, id := range ids {
		d := synthDesc(v.text())
		d.id, d.devSize = id, devSize
		dev := content(int64(len(devs)), devSize)
		copy(dev, d.image())
		pv, err := ReadPV(bytesReader(dev), devSize)
		if err != nil {
			b.Fatal(err)
		}
		pvs, devs = append(pvs, pv), append(devs, dev)
	}
	vg, errs := Assemble(pvs)
	if len(errs) != 0 {
		b.Fatal(errs)
	}
	r, err := vg[0].LV("str").Open()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for _, c := range []struct {
		name string
		read func(off int64) (int, error)
		size int64
	}{
		{"striped", func(off int64) (int, error) { return r.ReadAt(buf, off) }, r.Size()},
		{"raw", func(off int64) (int, error) { return devs[0].ReadAt(buf, off+1<<20) }, r.Size() / 2},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			off := int64(0)
			for b.Loop() {
				if _, err := c.read(off); err != nil {
					b.Fatal(err)
				}
				if off += int64(len(buf)); off+int64(len(buf)) > c.size {
					off = 0
				}
			}
		})
	}
}
