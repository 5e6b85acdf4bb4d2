package lvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// typesLVs is a VG text body with one LV of each kind the reader meets.
func typesLVs() string {
	id := func(n int) string { return formatID([]byte(fmt.Sprintf("TypesLVaaaaBBBBccccDDDDeeeeFF%03d", n))) }
	only := func(name string, n int, visible bool, body string) string {
		return lvSection(name, id(n), visible, seg(0, 1, body))
	}
	return lvSection("origin", id(1), true, linSeg(0, 1, "pv0", 0)) +
		lvSection("cow", id(2), false, linSeg(0, 1, "pv0", 1)) +
		only("snapshot0", 3, false, "type = \"snapshot\"\nchunk_size = 8\norigin = \"origin\"\ncow_store = \"cow\"") +
		lvSection("morigin", id(4), true, linSeg(0, 1, "pv0", 2)) +
		lvSection("mcow", id(5), false, linSeg(0, 1, "pv0", 3)) +
		only("snapshot1", 6, false, "type = \"snapshot\"\nchunk_size = 8\norigin = \"morigin\"\nmerging_store = \"mcow\"") +
		only("thin", 7, true, "type = \"thin\"\nthin_pool = \"pool\"") +
		only("pool", 8, true, "type = \"thin-pool\"\nmetadata = \"x\"\npool = \"y\"") +
		only("cached", 9, true, "type = \"cache\"\ncache_pool = \"cpool\"\norigin = \"cached_corig\"") +
		only("cpool", 10, false, "type = \"cache-pool\"") +
		only("wc", 11, true, "type = \"writecache\"") +
		only("vdo", 12, true, "type = \"vdo\"") +
		only("integ", 13, true, "type = \"integrity\"") +
		only("r5", 14, true, "type = \"raid5_ls\"\ndevice_count = 3") +
		only("err", 15, true, "type = \"error\"") +
		only("zero", 16, true, "type = \"zero\"") +
		only("odd", 17, true, "type = \"future-type\"") +
		only("r1off", 18, true, "type = \"raid1\"\ndevice_count = 1\nraids = [\"leg\"]\ndata_offset = 8") +
		lvSection("leg", id(19), false, linSeg(0, 1, "pv0", 4)) +
		// A pvmove in progress: the user LV sits on a hidden mirror whose
		// legs are PV extents; the source (first leg) is read.
		lvSection("moved", id(20), true, linSeg(0, 1, "pvmove0", 0)) +
		only("pvmove0", 21, false, "type = \"mirror\"\nmirror_count = 2\nmirrors = [\"pv0\", 5, \"pv0\", 6]") +
		// A raid1 whose first leg is being rebuilt is read from the second.
		only("r1", 22, true, "type = \"raid1\"\ndevice_count = 2\nraids = [\"r1_rmeta_0\", \"r1_rimage_0\", \"r1_rmeta_1\", \"r1_rimage_1\"]") +
		strings.Replace(lvSection("r1_rimage_0", id(23), false, linSeg(0, 1, "pv0", 7)), `"WRITE"`, `"WRITE", "REBUILD"`, 1) +
		lvSection("r1_rimage_1", id(24), false, linSeg(0, 1, "pv0", 8)) +
		lvSection("r1_rmeta_0", id(25), false, linSeg(0, 1, "pv0", 9)) +
		lvSection("r1_rmeta_1", id(26), false, linSeg(0, 1, "pv0", 10))
}

func TestTypes(t *testing.T) {
	t.Parallel()
	img := synthDesc(synthVGDesc(1, typesLVs()).text()).image()
	dev := synthDevice(img)
	pv, err := ReadPV(bytesReader(dev), int64(len(dev)))
	if err != nil {
		t.Fatal(err)
	}
	vg, errs := assembleOne(t, pv)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	got := map[string]string{}
	for _, lv := range vg.LVs {
		got[lv.Name] = lv.Reason
		if (lv.Reason == "") != (lv.Err == nil) || lv.Err != nil && !errors.Is(lv.Err, ErrUnsupported) {
			t.Errorf("LV %s: reason %q, error %v", lv.Name, lv.Reason, lv.Err)
		}
	}
	want := map[string]string{
		"origin": "", "cow": "snapshot: not supported",
		"morigin": "merge of snapshot mcow pending: not supported",
		"thin":    "thin volume: not supported", "pool": "thin pool: not supported",
		"cached": "cache volume: not supported", "wc": "writecache volume: not supported",
		"vdo": "VDO volume: not supported", "integ": "integrity volume: not supported",
		"r5": "raid5_ls volume: not supported", "err": "error segment: not supported",
		"zero": "zero segment: not supported", "odd": `segment type "future-type": not supported`,
		"r1off": "raid1 with data_offset (reshape space): not supported",
		"moved": "", "r1": "",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("visible LVs and reasons:\n got %v\nwant %v", got, want)
	}
	var hidden []string
	for _, lv := range vg.HiddenLVs {
		hidden = append(hidden, lv.Name)
	}
	if strings.Join(hidden, " ") != "cpool leg mcow pvmove0 r1_rimage_0 r1_rimage_1 r1_rmeta_0 r1_rmeta_1 snapshot0 snapshot1" {
		t.Fatalf("hidden LVs %v", hidden)
	}
	pe := func(n int) []byte { return dev[(1+n)<<20 : (2+n)<<20] }
	checkLV(t, vg.LV("origin"), pe(0))
	checkLV(t, vg.LV("moved"), pe(5))
	checkLV(t, vg.LV("r1"), pe(8))
	if len(vg.Warnings) != 1 || !strings.Contains(vg.Warnings[0], "r1_rimage_0 is being rebuilt") {
		t.Fatalf("warnings %q", vg.Warnings)
	}
}

// TestAssembleSeqno: of two PVs of one VG, the newer metadata wins and
// the older PV is still a member; a PV whose metadata names a VG that
// no longer lists it is reported.
func TestAssembleSeqno(t *testing.T) {
	const id2 = "SecondaaaaBBBBccccDDDDeeeeFFFFgg"
	pvs := []synthVGPV{
		{id: formatID([]byte(testPVID)), devSize: synthDevSize / 512, peStart: 2048, peCount: 15},
		{id: formatID([]byte(id2)), devSize: synthDevSize / 512, peStart: 2048, peCount: 15},
	}
	vgText := func(seq int, lvs string, pvs []synthVGPV) string {
		v := synthVGDesc(seq, lvs)
		v.pvs = pvs
		return v.text()
	}
	span := lvSection("span", "x", true, linSeg(0, 2, "pv0", 0), linSeg(2, 2, "pv1", 0))
	old := synthDesc(vgText(4, "", pvs))
	old.id = id2
	newer := synthDesc(vgText(5, span, pvs))
	read := func(d synthPV) *PV {
		pv, err := ReadPV(fstest.PadReader{Data: d.image(), Size: synthDevSize}, synthDevSize)
		if err != nil {
			t.Fatal(err)
		}
		return pv
	}
	pOld, pNew := read(old), read(newer)
	for _, order := range [][]*PV{{pOld, pNew}, {pNew, pOld}} {
		vg, errs := assembleOne(t, order...)
		if len(errs) != 0 || vg.Seqno != 5 || vg.LV("span") == nil || vg.LV("span").Err != nil || len(vg.Warnings) != 1 {
			t.Fatalf("seqno %d, errors %v, warnings %q", vg.Seqno, errs, vg.Warnings)
		}
	}
	// The newest metadata no longer lists the second PV (vgreduce).
	reduced := synthDesc(vgText(6, "", pvs[:1]))
	vgs, errs := Assemble([]*PV{pOld, read(reduced)})
	if len(vgs) != 1 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "does not list it") {
		t.Fatalf("%d VGs, errors %v", len(vgs), errs)
	}
	// A PV the metadata flags MISSING is not read even when present.
	flagged := pvs[:1:1]
	vgs, errs = Assemble([]*PV{read(synthDesc(strings.Replace(vgText(7, span, append(flagged, pvs[1])), "flags = []\ndev_size", "flags = [\"MISSING\"]\ndev_size", 1))), pOld})
	if len(vgs) != 1 || len(errs) != 1 || !errors.Is(errs[0], ErrMissingPV) || !strings.Contains(vgs[0].LV("span").Reason, "flagged MISSING") {
		t.Fatalf("flagged MISSING: %v, %v", errs, vgs[0].LV("span").Reason)
	}
	// The same PV twice.
	_, errs = Assemble([]*PV{pNew, pNew})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "given twice") || !errors.Is(errs[1], ErrMissingPV) {
		t.Fatalf("errors %v", errs)
	}
}
