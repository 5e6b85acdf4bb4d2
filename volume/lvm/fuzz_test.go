package lvm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/volume/internal/fstest"
)

// FuzzReadPV feeds image prefixes (the rest of a 16 MiB device reads as
// zeros) through ReadPV, Assemble and the LV readers.
func FuzzReadPV(f *testing.F) {
	f.Add(synthImage())
	f.Fuzz(func(t *testing.T, data []byte) {
		size := max(int64(len(data)), synthDevSize)
		pv, err := ReadPV(fstest.PadReader{Data: data, Size: size}, size)
		if err != nil {
			return
		}
		vgs, _ := Assemble([]*PV{pv, pv})
		readAll(vgs)
	})
}

// FuzzParseMetadata parses texts, and writes those that parse as the
// committed copy of the standard synthetic PV to run ReadPV, Assemble and
// the LV readers on them.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(synthVGDesc(1, synthLVs()).text()))
	f.Fuzz(func(t *testing.T, text []byte) {
		if _, err := ParseMetadata(text); err != nil || len(text) > 64<<10 {
			return
		}
		d := synthDesc(string(text))
		d.mdas[0].size = 4096 + uint64(len(text)+1+sectorSize-1)/sectorSize*sectorSize
		pv, err := ReadPV(fstest.PadReader{Data: d.image(), Size: synthDevSize}, synthDevSize)
		if err != nil {
			t.Fatalf("ReadPV of a synthetic PV: %v", err)
		}
		vgs, _ := Assemble([]*PV{pv})
		readAll(vgs)
	})
}

// TestWriteFuzzSeeds writes the seed corpus in testdata/fuzz when
// LVM_WRITE_SEEDS=1: synthetic PVs (plain, wrapped, two metadata areas,
// every LV type) trimmed of trailing zeros, and their texts.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("LVM_WRITE_SEEDS") != "1" {
		t.Skip("set LVM_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	// Seeds keep their metadata areas small: the first right after the
	// label sectors, each just big enough for its text.
	tight := func(texts ...string) synthPV {
		d := synthDesc(texts...)
		d.mdas[0].off = 4 * sectorSize
		d.mdas[0].size = mdaHeaderSize + uint64(len(texts[len(texts)-1])+sectorSize)/sectorSize*sectorSize
		return d
	}
	two := tight(synthVGDesc(3, synthLVs()).text())
	m := two.mdas[0]
	two.mdas = append(two.mdas, synthMDA{off: m.off + m.size, size: m.size, first: 512, texts: m.texts})
	wrapped := wrappedDesc()
	wrapped.mdas[0].off = 4 * sectorSize
	pvs := map[string][]byte{
		"plain":    tight(synthVGDesc(1, synthLVs()).text()).image(),
		"wrapped":  wrapped.image(),
		"two-mdas": two.image(),
		"types":    tight(synthVGDesc(2, typesLVs()).text()).image(),
	}
	texts := map[string][]byte{"plain": []byte(synthVGDesc(1, synthLVs()).text()), "types": []byte(synthVGDesc(2, typesLVs()).text())}
	write := func(fuzz string, seeds map[string][]byte) {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			b = bytes.TrimRight(b, "\x00")
			if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzReadPV", pvs)
	write("FuzzParseMetadata", texts)
}

// TestFuzzSeedsAssemble checks the stored FuzzReadPV seeds are PVs that
// assemble into a VG with readable LVs, so fuzzing starts deep inside.
func TestFuzzSeedsAssemble(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzReadPV", "*"))
	if len(files) < 4 {
		t.Fatalf("%d seeds", len(files))
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(strings.TrimSpace(string(b)), "[]byte(")
		data, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		pv, err := ReadPV(fstest.PadReader{Data: []byte(data), Size: synthDevSize}, synthDevSize)
		if err != nil || pv.Metadata == nil || !pv.Metadata.Verified {
			t.Fatalf("%s: %v %+v", file, err, pv)
		}
		vgs, errs := Assemble([]*PV{pv})
		if len(vgs) != 1 || len(errs) != 0 || vgs[0].LV("lin") == nil && vgs[0].LV("origin") == nil {
			t.Fatalf("%s: %d VGs, %v", file, len(vgs), errs)
		}
	}
}
