package vmconfig_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint/vmconfig"
	"github.com/ckptfs/ckptfs/checkpoint/vmconfig/vmcxtest"
)

// fuzzTree is small but has every key type, an out-of-line value and a
// disk, so that seeds stay small and still reach all of the parser.
func fuzzTree() vmcxtest.Node {
	tree := vmcxtest.ConfigTree(vmcxtest.Config{
		Name:    "fz",
		Created: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		Disks:   []vmcxtest.Disk{{Controller: "SCSI", Path: `C:\d.vhdx`}},
		Extra: vmcxtest.Node{
			{Name: "t", Value: vmcxtest.Node{
				{Name: "u", Value: uint64(5)}, {Name: "d", Value: 1.5}, {Name: "b", Value: true},
				{Name: "o", Value: vmcxtest.OutOfLine{Value: "x"}},
			}},
		},
	})
	return tree
}

// fuzzSeeds are the binary seeds added in code (the corpus in
// testdata/fuzz/FuzzParse holds compact copies of two of them).
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for name, o := range map[string]*vmcxtest.Options{
		"compact":          {Compact: true, KeyTableSize: 1024, ObjectTableSlots: 4},
		"compact-chained":  {Compact: true, KeyTableSize: 256, ObjectTableSlots: 3, MaxEntriesPerKeyTable: 5, ReverseKeyTables: true},
		"compact-utf16-v1": {Compact: true, KeyTableSize: 2048, ObjectTableSlots: 4, UTF16Names: true, FormatVersion: 0x0100},
	} {
		img, err := vmcxtest.BuildImage(fuzzTree(), o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seeds[name] = img.Data
	}
	return seeds
}

// exercise uses everything a parsed tree offers.
func exercise(t *testing.T, tr *vmconfig.Tree) {
	err := tr.Walk(func(path string, v *vmconfig.Value) error {
		_ = v.String()
		_, _ = v.Int()
		_, _ = v.Uint()
		_, _ = v.Bool()
		_, _ = v.Bytes()
		_, _ = v.Double()
		_, _ = v.Text()
		if p := v.Path(); p != path {
			t.Fatalf("Walk path %q != Path() %q", path, p)
		}
		// Names may contain '/' or be empty, so a lookup by path need not
		// find v; it must merely not fail badly.
		_, _ = tr.Lookup(path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = tr.Warnings()
	_ = vmconfig.FromTree(tr, "/x/Snapshots/00000000-0000-0000-0000-000000000000.vmcx")
}

// FuzzParse feeds arbitrary bytes to Parse. With reseal set, every checksum
// reachable by following the layout is fixed first, so mutations reach the
// structural checks instead of stopping at the first CRC.
func FuzzParse(f *testing.F) {
	for _, data := range fuzzSeeds(f) {
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		if reseal {
			data = bytes.Clone(data)
			vmcxtest.ResealAll(data)
		}
		tr, err := vmconfig.Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			checkErr(t, err)
			return
		}
		exercise(t, tr)
	})
}

var xmlSeeds = []string{
	`<configuration><properties><name type="string">a</name><creation_time type="bytes">gDCojklOzwE=</creation_time></properties></configuration>`,
	`<?xml version="1.0" encoding="UTF-16"?><configuration><_83f8638b-8dca-4152-9eda-2ca8b33039b4_><controller0><drive0><pathname type="string">C:\a.vhdx</pathname><type type="string">VHD</type></drive0></controller0></_83f8638b-8dca-4152-9eda-2ca8b33039b4_><x type="integer">-1</x><y type="bool">True</y></configuration>`,
	`<a><b type="integer">18446744073709551615</b><c type="double">1e3</c><d type="bytes">AA</d><e/></a>`,
}

// FuzzParseXML feeds arbitrary bytes to ParseXML (and so to the encoding
// detection).
func FuzzParseXML(f *testing.F) {
	for _, s := range xmlSeeds {
		f.Add([]byte(s))
	}
	if data, err := os.ReadFile(snapXML); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := vmconfig.ParseXML(bytes.NewReader(data))
		if err != nil {
			checkErr(t, err)
			return
		}
		exercise(t, tr)
	})
}

// TestWriteFuzzSeeds regenerates the seed corpus in testdata/fuzz when
// VMCONFIG_WRITE_FUZZ_SEEDS=1 is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("VMCONFIG_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set VMCONFIG_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target, name string, values ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n"
		for _, v := range values {
			body += v + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seeds := fuzzSeeds(t)
	for _, name := range []string{"compact", "compact-chained"} {
		write("FuzzParse", name, fmt.Sprintf("[]byte(%s)", strconv.Quote(string(seeds[name]))), "bool(true)")
	}
	for i, s := range xmlSeeds {
		write("FuzzParseXML", fmt.Sprintf("seed%d", i), fmt.Sprintf("[]byte(%s)", strconv.Quote(s)))
	}
}

// TestFuzzSeedsAreValid keeps the seeds meaningful: each must parse, with
// and without resealing.
func TestFuzzSeedsAreValid(t *testing.T) {
	for name, data := range fuzzSeeds(t) {
		for _, reseal := range []bool{false, true} {
			b := bytes.Clone(data)
			if reseal {
				vmcxtest.ResealAll(b)
			}
			tr, err := vmconfig.Parse(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("%s (reseal %v): %v", name, reseal, err)
			}
			if cfg := vmconfig.FromTree(tr, ""); cfg.Name != "fz" || len(cfg.Disks) != 1 {
				t.Errorf("%s: %+v", name, cfg)
			}
			if !bytes.Equal(b, data) {
				t.Errorf("%s: ResealAll changed a valid file", name)
			}
		}
	}
}
