package lvm

import (
	"errors"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// synthDevice returns the standard synthetic PV as a whole device with
// pseudo-random extents.
func synthDevice(img []byte) []byte {
	dev := content(99, synthDevSize)
	copy(dev, img)
	copy(dev[len(img):1<<20], make([]byte, (1<<20)-len(img)))
	return dev
}

// wrappedDesc is the standard PV after six commits into a metadata area
// so small that the last copy wraps around its end.
func wrappedDesc() synthPV {
	var texts []string
	for seq := 1; seq <= 6; seq++ {
		texts = append(texts, synthVGDesc(seq, synthLVs()).text())
	}
	d := synthDesc(texts...)
	d.mdas[0].size = 4096 + 512
	return d
}

func TestSynthetic(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		img  []byte
		seq  uint64
	}{{"plain", synthImage(), 1}, {"wrapped", wrappedDesc().image(), 6}} {
		t.Run(c.name, func(t *testing.T) {
			dev := synthDevice(c.img)
			pv, err := ReadPV(bytesReader(dev), int64(len(dev)))
			if err != nil {
				t.Fatal(err)
			}
			if pv.Metadata == nil || pv.Metadata.Seqno != c.seq || !pv.Metadata.Verified || len(pv.Warnings) != 0 {
				t.Fatalf("metadata %v, warnings %q", pv.Metadata, pv.Warnings)
			}
			vg, errs := assembleOne(t, pv)
			if len(errs) != 0 {
				t.Fatal(errs)
			}
			lin, str := synthExpect(dev)
			checkLV(t, vg.LV("lin"), lin)
			checkLV(t, vg.LV("str"), str)
		})
	}
}

func TestProbe(t *testing.T) {
	img := synthImage()
	for _, c := range []struct {
		name string
		data []byte
		want bool
	}{
		{"pv", img, true},
		{"empty", nil, false},
		{"zeros", make([]byte, 4096), false},
		{"label in sector 3", append(make([]byte, 1024), img[512:1024]...), true},
		{"other type", append(append(make([]byte, 512), img[512:536]...), "LVM1 001"...), false},
		{"truncated", img[:600], false},
	} {
		if got := Probe(fstest.PadReader{Data: c.data, Size: int64(len(c.data))}); got != c.want {
			t.Errorf("%s: Probe = %v", c.name, got)
		}
	}
}

func TestLabelSector(t *testing.T) {
	for _, s := range []int{0, 2, 3} {
		d := synthDesc(synthVGDesc(1, synthLVs()).text())
		d.labelSector = s
		pv, err := ReadPV(fstest.PadReader{Data: d.image(), Size: synthDevSize}, synthDevSize)
		if err != nil || pv.LabelSector != s || pv.Metadata == nil {
			t.Fatalf("label in sector %d: %v, %+v", s, err, pv)
		}
	}
	_, err := ReadPV(fstest.PadReader{Data: make([]byte, 4096), Size: synthDevSize}, synthDevSize)
	if !errors.Is(err, ErrNotPV) || !strings.Contains(err.Error(), "LABELONE") {
		t.Fatalf("no label: %v", err)
	}
}
