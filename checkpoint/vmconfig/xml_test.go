package vmconfig_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/ckptfs/ckptfs/checkpoint/vmconfig"
	"github.com/ckptfs/ckptfs/checkpoint/vmconfig/vmcxtest"
)

const (
	vmXML   = "testdata/2012r2/Virtual Machines/5E3A9C1B-7D24-4F0E-A6B8-2C91D0E4F713.xml"
	snapXML = "testdata/2012r2/Snapshots/A1C4E7F2-3B56-4D89-9E0A-B2C3D4E5F607.xml"
)

func parseXML(t testing.TB, data []byte) *vmconfig.Tree {
	t.Helper()
	tr, err := vmconfig.ParseXML(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ParseXML: %v", err)
	}
	return tr
}

func TestParseXMLTestdata(t *testing.T) {
	data, err := os.ReadFile(vmXML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte{0xFF, 0xFE, '<', 0}) {
		t.Fatal("test file is not UTF-16LE with BOM")
	}
	tr, err := vmconfig.ParseXMLFile(vmXML)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Format() != vmconfig.FormatXML || tr.Header() != nil {
		t.Errorf("Format %v Header %v", tr.Format(), tr.Header())
	}
	if len(tr.Warnings()) != 0 {
		t.Errorf("warnings: %q", tr.Warnings())
	}
	cases := []struct {
		path string
		kind vmconfig.Kind
		want string // Value.String()
	}{
		{"/configuration/properties/name", vmconfig.KindString, "WEB01 – Contoso Büro"},
		{"/configuration/properties/notes", vmconfig.KindString, "Front-end web server.\nDo not delete."},
		{"/configuration/properties/creation_time", vmconfig.KindBytes, "h4H8MDhAzwE="},
		{"/configuration/properties/version", vmconfig.KindInt, "1280"},
		{"/configuration/properties/highly_available", vmconfig.KindBool, "False"},
		{"/configuration/properties/last_powered_off_time", vmconfig.KindInt, "130408991910000000"},
		{"/configuration/settings/memory/bank/dynamic_memory_enabled", vmconfig.KindBool, "True"},
		{"/configuration/_83f8638b-8dca-4152-9eda-2ca8b33039b4_/controller0/drive1/pathname", vmconfig.KindString, ""},
		{"/configuration/_3f1e9a62-c5d8-4b17-8e2a-91d4c6b0f358_/controller0/drive0/pathname", vmconfig.KindString,
			`E:\Data\WEB01-data & logs_A1C4E7F2-3B56-4D89-9E0A-B2C3D4E5F607.avhdx`},
		{"/configuration/_6c09bb55-d683-4da0-8931-c9bf705f6480_/Connection/FeatureSettings", vmconfig.KindNode, ""},
		{"/configuration/_6c09bb55-d683-4da0-8931-c9bf705f6480_/Connection/AltSwitchName", vmconfig.KindString, "External – Intel(R) 82574L"},
	}
	for _, c := range cases {
		v := mustLookup(t, tr, c.path)
		if v.Kind() != c.kind || v.String() != c.want {
			t.Errorf("%s = %v %q, want %v %q", c.path, v.Kind(), v.String(), c.kind, c.want)
		}
	}
	b, _ := mustLookup(t, tr, "/configuration/properties/creation_time").Bytes()
	if got := vmconfig.FileTime(binary.LittleEndian.Uint64(b)); !got.Equal(time.Date(2014, 3, 15, 10, 20, 30, 123456700, time.UTC)) {
		t.Errorf("creation_time = %v", got)
	}
	if n := len(mustLookup(t, tr, "/configuration/manifest").Children()); n != 5 {
		t.Errorf("manifest has %d children", n)
	}
}

// encodings returns doc in every encoding ParseXML accepts.
func encodings(doc string) map[string][]byte {
	u := utf16.Encode([]rune(doc))
	le := make([]byte, 2*len(u))
	be := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(le[2*i:], c)
		binary.BigEndian.PutUint16(be[2*i:], c)
	}
	return map[string][]byte{
		"utf-8":            []byte(doc),
		"utf-8 bom":        append([]byte{0xEF, 0xBB, 0xBF}, doc...),
		"utf-16le bom":     append([]byte{0xFF, 0xFE}, le...),
		"utf-16le no bom":  le,
		"utf-16be bom":     append([]byte{0xFE, 0xFF}, be...),
		"utf-16be no bom":  be,
		"leading newlines": []byte("\r\n" + doc),
	}
}

func TestParseXMLEncodings(t *testing.T) {
	doc := `<?xml version="1.0" encoding="UTF-16" standalone="yes"?>
<configuration><properties><name type="string">Žluťoučký kůň 😀</name></properties></configuration>`
	for name, data := range encodings(doc) {
		t.Run(name, func(t *testing.T) {
			tr := parseXML(t, data)
			if v := mustLookup(t, tr, "/configuration/properties/name"); v.String() != "Žluťoučký kůň 😀" {
				t.Errorf("name = %q", v.String())
			}
		})
	}
}

func TestParseXMLTypes(t *testing.T) {
	cases := []struct {
		name    string
		elem    string
		kind    vmconfig.Kind
		want    string
		warning string
	}{
		{"integer", `<v type="integer">-12</v>`, vmconfig.KindInt, "-12", ""},
		{"integer with spaces", `<v type="integer"> 12 </v>`, vmconfig.KindInt, "12", ""},
		{"integer beyond int64", `<v type="integer">18446744073709551615</v>`, vmconfig.KindUint, "18446744073709551615", ""},
		{"integer invalid", `<v type="integer">12x</v>`, vmconfig.KindString, "12x", "not a valid integer"},
		{"bool True", `<v type="bool">True</v>`, vmconfig.KindBool, "True", ""},
		{"bool false lower", `<v type="bool">false</v>`, vmconfig.KindBool, "False", ""},
		{"boolean 1", `<v type="boolean">1</v>`, vmconfig.KindBool, "True", ""},
		{"bool invalid", `<v type="bool">maybe</v>`, vmconfig.KindString, "maybe", "not a valid bool"},
		{"bytes with line breaks", "<v type=\"bytes\">AAEC\r\n/w==\n</v>", vmconfig.KindBytes, "AAEC/w==", ""},
		{"bytes unpadded", `<v type="bytes">AAEC/w</v>`, vmconfig.KindBytes, "AAEC/w==", ""},
		{"bytes empty", `<v type="bytes"></v>`, vmconfig.KindBytes, "", ""},
		{"bytes invalid", `<v type="bytes">!!!</v>`, vmconfig.KindString, "!!!", "not a valid bytes"},
		{"string keeps spaces", `<v type="string">  a b  </v>`, vmconfig.KindString, "  a b  ", ""},
		{"string entities", `<v type="string">a &amp; &lt;b&gt; &#x263A;</v>`, vmconfig.KindString, "a & <b> ☺", ""},
		{"string cdata", `<v type="string"><![CDATA[<x>]]></v>`, vmconfig.KindString, "<x>", ""},
		{"string self-closing", `<v type="string"/>`, vmconfig.KindString, "", ""},
		{"double", `<v type="double">2.5</v>`, vmconfig.KindDouble, "2.5", ""},
		{"unknown type", `<v type="guid">x</v>`, vmconfig.KindString, "x", "unknown type"},
		{"node with stray text", `<v>text<w type="integer">1</w></v>`, vmconfig.KindNode, "", "text inside untyped element"},
		{"child of typed element", `<v type="string">a<w>b</w>c</v>`, vmconfig.KindString, "ac", "inside typed element"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := parseXML(t, []byte("<configuration>"+c.elem+"</configuration>"))
			v := mustLookup(t, tr, "/configuration/v")
			if v.Kind() != c.kind || v.String() != c.want {
				t.Errorf("got %v %q, want %v %q", v.Kind(), v.String(), c.kind, c.want)
			}
			if c.warning != "" && !hasWarning(tr, c.warning) {
				t.Errorf("warnings %q lack %q", tr.Warnings(), c.warning)
			}
			if c.warning == "" && len(tr.Warnings()) > 0 {
				t.Errorf("unexpected warnings %q", tr.Warnings())
			}
		})
	}
}

func TestParseXMLErrors(t *testing.T) {
	deep := strings.Repeat("<a>", vmconfig.MaxDepth+1) + strings.Repeat("</a>", vmconfig.MaxDepth+1)
	cases := []struct {
		name string
		doc  string
		want error
	}{
		{"empty", "", vmconfig.ErrCorrupt},
		{"only declaration", `<?xml version="1.0"?>`, vmconfig.ErrCorrupt},
		{"truncated", `<configuration><properties><name type="string">x`, vmconfig.ErrTruncated},
		{"mismatched tags", `<configuration><a></b></configuration>`, vmconfig.ErrCorrupt},
		{"undefined entity", `<configuration><a type="string">&nope;</a></configuration>`, vmconfig.ErrCorrupt},
		{"not xml", "\x00\x01\x02garbage", vmconfig.ErrCorrupt},
		{"too deep", deep, vmconfig.ErrLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := vmconfig.ParseXML(strings.NewReader(c.doc))
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			checkErr(t, err)
		})
	}
	big := bytes.Repeat([]byte(" "), vmconfig.MaxXMLSize+1)
	if _, err := vmconfig.ParseXML(bytes.NewReader(big)); !errors.Is(err, vmconfig.ErrLimit) {
		t.Errorf("oversized document: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(path, []byte("<a><b>"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vmconfig.ParseXMLFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ParseXMLFile error %v does not name the file", err)
	}
}

// TestXMLAndBinaryAgree builds one tree in both formats and compares every
// key.
func TestXMLAndBinaryAgree(t *testing.T) {
	tree := vmcxtest.ConfigTree(vmcxtest.Config{
		Name:     "Agree ✓",
		GlobalID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		Created:  time.Date(2023, 1, 2, 3, 4, 5, 600, time.UTC),
		Disks: []vmcxtest.Disk{
			{Controller: "SCSI", Location: 1, Path: `C:\a.vhdx`},
			{Controller: "IDE", ControllerNumber: 0, Location: 0, Path: `C:\b.avhdx`},
		},
		Extra: vmcxtest.Node{{Name: "flags", Value: vmcxtest.Node{{Name: "on", Value: true}, {Name: "big", Value: uint64(1 << 63)}}}},
	})
	bin := mustParse(t, vmcxtest.Build(tree, nil))
	for _, utf8 := range []bool{false, true} {
		data, err := vmcxtest.BuildXML(tree, &vmcxtest.XMLOptions{UTF8: utf8})
		if err != nil {
			t.Fatal(err)
		}
		x := parseXML(t, data)
		var keys []string
		_ = bin.Walk(func(path string, v *vmconfig.Value) error {
			keys = append(keys, path)
			xv, ok := x.Lookup(path)
			if !ok {
				t.Errorf("%s missing from XML", path)
				return nil
			}
			if xv.Kind() != v.Kind() || xv.String() != v.String() {
				t.Errorf("%s: binary %v %q, XML %v %q", path, v.Kind(), v.String(), xv.Kind(), xv.String())
			}
			return nil
		})
		n := 0
		_ = x.Walk(func(string, *vmconfig.Value) error { n++; return nil })
		if n != len(keys) {
			t.Errorf("XML has %d keys, binary %d", n, len(keys))
		}
	}
}

func TestWarningsAreBounded(t *testing.T) {
	doc := "<c>" + strings.Repeat(`<v type="guid">x</v>`, 150) + "</c>"
	tr := parseXML(t, []byte(doc))
	w := tr.Warnings()
	if len(w) != 101 || !strings.Contains(w[100], "50 more warnings") {
		t.Errorf("%d warnings, last %q", len(w), w[len(w)-1])
	}
}
