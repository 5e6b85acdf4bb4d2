package vmconfig_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/checkpoint/vmconfig"
	"github.com/ckptfs/ckptfs/checkpoint/vmconfig/vmcxtest"
)

var sentinels = []error{
	vmconfig.ErrBadSignature, vmconfig.ErrBadChecksum, vmconfig.ErrTruncated,
	vmconfig.ErrCorrupt, vmconfig.ErrLimit, vmconfig.ErrUnsupportedVersion,
	vmconfig.ErrUnknownFormat,
}

// checkErr fails unless err is a *FormatError wrapping a sentinel.
func checkErr(t testing.TB, err error) {
	t.Helper()
	var fe *vmconfig.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v wraps no sentinel", err)
}

func parse(data []byte) (*vmconfig.Tree, error) {
	return vmconfig.Parse(bytes.NewReader(data), int64(len(data)))
}

func mustParse(t testing.TB, data []byte) *vmconfig.Tree {
	t.Helper()
	tr, err := parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tr
}

func mustLookup(t testing.TB, tr *vmconfig.Tree, path string) *vmconfig.Value {
	t.Helper()
	v, ok := tr.Lookup(path)
	if !ok {
		t.Fatalf("Lookup(%q): not found", path)
	}
	return v
}

func hasWarning(tr *vmconfig.Tree, substr string) bool {
	for _, w := range tr.Warnings() {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}

const nonASCII = "Ünïcødé 名前 😀 – \u0000x"

// sampleTree holds every value type, non-ASCII text, values on both sides
// of the out-of-line threshold and children in non-alphabetical order.
func sampleTree() vmcxtest.Node {
	return vmcxtest.Node{
		{Name: "configuration", Value: vmcxtest.Node{
			{Name: "properties", Value: vmcxtest.Node{
				{Name: "name", Value: nonASCII},
				{Name: "empty", Value: ""},
				{Name: "neg", Value: int64(-42)},
				{Name: "minint", Value: int64(math.MinInt64)},
				{Name: "maxuint", Value: uint64(math.MaxUint64)},
				{Name: "pi", Value: 3.25},
				{Name: "yes", Value: true},
				{Name: "no", Value: false},
				{Name: "blob", Value: []byte{0, 1, 2, 0xff}},
				{Name: "emptyblob", Value: []byte{}},
				{Name: "inline2047", Value: bytes.Repeat([]byte{0xAB}, 2047)},
				{Name: "ool2048", Value: bytes.Repeat([]byte{0xCD}, 2048)},
				{Name: "longstring", Value: strings.Repeat("ж😀", 600)},
				{Name: "forced", Value: vmcxtest.OutOfLine{Value: "tiny"}},
				{Name: "Ключ", Value: "utf-8 key name"},
			}},
			{Name: "zeta", Value: vmcxtest.Node{}},
			{Name: "alpha", Value: vmcxtest.Node{{Name: "x", Value: 1}}},
		}},
		{Name: "second_root", Value: int64(7)},
	}
}

// layouts are builder options that must all read back the same tree.
var layouts = []struct {
	name string
	opts *vmcxtest.Options
}{
	{"default", nil},
	{"compact", &vmcxtest.Options{Compact: true}},
	{"one entry per key table", &vmcxtest.Options{MaxEntriesPerKeyTable: 1}},
	{"three per table reversed", &vmcxtest.Options{MaxEntriesPerKeyTable: 3, ReverseKeyTables: true}},
	{"chained object tables", &vmcxtest.Options{MaxEntriesPerKeyTable: 2, ObjectTableSlots: 3}},
	{"small key tables", &vmcxtest.Options{KeyTableSize: 256, OutOfLineThreshold: 64}},
	{"everything out of line", &vmcxtest.Options{OutOfLineThreshold: 1}},
	{"utf-16 key names (format 1.0)", &vmcxtest.Options{UTF16Names: true, FormatVersion: 0x0100}},
}

func TestRoundTripEveryType(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			data := vmcxtest.Build(sampleTree(), l.opts)
			tr := mustParse(t, data)
			if tr.Format() != vmconfig.FormatBinary {
				t.Errorf("Format = %v", tr.Format())
			}
			p := "/configuration/properties/"
			cases := []struct {
				key   string
				kind  vmconfig.Kind
				check func(v *vmconfig.Value) bool
			}{
				{"name", vmconfig.KindString, func(v *vmconfig.Value) bool {
					s, ok := v.Text()
					// Trailing NULs are trimmed, inner ones kept.
					return ok && s == nonASCII && v.String() == nonASCII
				}},
				{"empty", vmconfig.KindString, func(v *vmconfig.Value) bool { s, ok := v.Text(); return ok && s == "" }},
				{"neg", vmconfig.KindInt, func(v *vmconfig.Value) bool {
					n, ok := v.Int()
					_, uok := v.Uint()
					return ok && n == -42 && !uok && v.String() == "-42"
				}},
				{"minint", vmconfig.KindInt, func(v *vmconfig.Value) bool { n, ok := v.Int(); return ok && n == math.MinInt64 }},
				{"maxuint", vmconfig.KindUint, func(v *vmconfig.Value) bool {
					n, ok := v.Uint()
					_, iok := v.Int()
					return ok && n == math.MaxUint64 && !iok
				}},
				{"pi", vmconfig.KindDouble, func(v *vmconfig.Value) bool { f, ok := v.Double(); return ok && f == 3.25 }},
				{"yes", vmconfig.KindBool, func(v *vmconfig.Value) bool { b, ok := v.Bool(); return ok && b && v.String() == "True" }},
				{"no", vmconfig.KindBool, func(v *vmconfig.Value) bool { b, ok := v.Bool(); return ok && !b && v.String() == "False" }},
				{"blob", vmconfig.KindBytes, func(v *vmconfig.Value) bool {
					b, ok := v.Bytes()
					return ok && bytes.Equal(b, []byte{0, 1, 2, 0xff}) && v.String() == "AAEC/w=="
				}},
				{"emptyblob", vmconfig.KindBytes, func(v *vmconfig.Value) bool { b, ok := v.Bytes(); return ok && len(b) == 0 }},
				{"inline2047", vmconfig.KindBytes, func(v *vmconfig.Value) bool {
					b, ok := v.Bytes()
					return ok && bytes.Equal(b, bytes.Repeat([]byte{0xAB}, 2047))
				}},
				{"ool2048", vmconfig.KindBytes, func(v *vmconfig.Value) bool {
					b, ok := v.Bytes()
					return ok && bytes.Equal(b, bytes.Repeat([]byte{0xCD}, 2048))
				}},
				{"longstring", vmconfig.KindString, func(v *vmconfig.Value) bool {
					s, ok := v.Text()
					return ok && s == strings.Repeat("ж😀", 600)
				}},
				{"forced", vmconfig.KindString, func(v *vmconfig.Value) bool {
					s, ok := v.Text()
					return ok && s == "tiny" && v.OutOfLine()
				}},
				{"Ключ", vmconfig.KindString, func(v *vmconfig.Value) bool { s, _ := v.Text(); return s == "utf-8 key name" }},
			}
			for _, c := range cases {
				v := mustLookup(t, tr, p+c.key)
				if v.Kind() != c.kind {
					t.Errorf("%s: kind %v, want %v", c.key, v.Kind(), c.kind)
					continue
				}
				if v.Name() != c.key || v.Path() != p+c.key {
					t.Errorf("%s: name %q path %q", c.key, v.Name(), v.Path())
				}
				if !c.check(v) {
					t.Errorf("%s: wrong value %q", c.key, v.String())
				}
			}
			if v := mustLookup(t, tr, "/second_root"); v.String() != "7" {
				t.Errorf("/second_root = %q", v.String())
			}
			// Children keep their stored (insertion) order, not sorted.
			var names []string
			for _, c := range mustLookup(t, tr, "/configuration").Children() {
				names = append(names, c.Name())
			}
			if got := strings.Join(names, ","); got != "properties,zeta,alpha" {
				t.Errorf("children of /configuration: %s", got)
			}
			if z := mustLookup(t, tr, "/configuration/zeta"); !z.IsNode() || len(z.Children()) != 0 {
				t.Errorf("zeta: %v with %d children", z.Kind(), len(z.Children()))
			}
			if l.opts == nil || l.opts.FormatVersion == 0 {
				if len(tr.Warnings()) != 0 {
					t.Errorf("unexpected warnings: %q", tr.Warnings())
				}
			}
		})
	}
}

func TestOutOfLineValues(t *testing.T) {
	img, err := vmcxtest.BuildImage(sampleTree(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := mustParse(t, img.Data)
	for _, c := range []struct {
		key       string
		outOfLine bool
	}{
		{"/configuration/properties/inline2047", false},
		{"/configuration/properties/ool2048", true},
		{"/configuration/properties/longstring", true},
		{"/configuration/properties/forced", true},
		{"/configuration/properties/name", false},
	} {
		v := mustLookup(t, tr, c.key)
		if v.OutOfLine() != c.outOfLine {
			t.Errorf("%s: OutOfLine = %v, want %v", c.key, v.OutOfLine(), c.outOfLine)
		}
		off, size := v.DataRange()
		if c.outOfLine {
			if off != img.FileObjects[c.key] || size <= 0 {
				t.Errorf("%s: DataRange = %d,%d, want offset %d", c.key, off, size, img.FileObjects[c.key])
			}
		} else if off != -1 || size != 0 {
			t.Errorf("%s: inline DataRange = %d,%d", c.key, off, size)
		}
		if !v.Loaded() {
			t.Errorf("%s: not loaded", c.key)
		}
	}
}

func TestOutOfLineBeyondLoadLimit(t *testing.T) {
	big := make([]byte, vmconfig.MaxOutOfLineValue+1)
	big[len(big)-1] = 0x5A
	img, err := vmcxtest.BuildImage(vmcxtest.Node{{Name: "big", Value: big}, {Name: "small", Value: vmcxtest.OutOfLine{Value: []byte("x")}}}, &vmcxtest.Options{Compact: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := mustParse(t, img.Data)
	v := mustLookup(t, tr, "/big")
	if v.Loaded() || v.Kind() != vmconfig.KindBytes {
		t.Fatalf("big: Loaded %v kind %v", v.Loaded(), v.Kind())
	}
	if _, ok := v.Bytes(); ok {
		t.Error("Bytes of an unloaded value reported ok")
	}
	off, size := v.DataRange()
	if off != img.FileObjects["/big"] || size != int64(len(big)) {
		t.Errorf("DataRange = %d,%d", off, size)
	}
	if b, ok := mustLookup(t, tr, "/small").Bytes(); !ok || string(b) != "x" {
		t.Errorf("small = %q %v", b, ok)
	}
	if !hasWarning(tr, "not loaded") {
		t.Errorf("no warning about unloaded values: %q", tr.Warnings())
	}
}

func TestHeaderCopies(t *testing.T) {
	tree := vmcxtest.Node{{Name: "k", Value: "v"}}
	mark := func(c int, h *vmcxtest.Header) { h.DataVersion = uint32(100 + c) }
	cases := []struct {
		name     string
		seq      [2]uint16
		damage   func(b []byte)
		wantCopy int
		wantErr  error
		warning  string
	}{
		{name: "copy 0 newer", seq: [2]uint16{5, 4}, wantCopy: 0},
		{name: "copy 1 newer", seq: [2]uint16{4, 5}, wantCopy: 1},
		{name: "equal sequences", seq: [2]uint16{7, 7}, wantCopy: 0, warning: "both header copies"},
		{name: "newer copy bad checksum", seq: [2]uint16{4, 5}, wantCopy: 0, warning: "copy 1",
			damage: func(b []byte) { b[4096+20] ^= 0xFF }},
		{name: "newer copy bad signature", seq: [2]uint16{9, 2}, wantCopy: 1, warning: "copy 0",
			damage: func(b []byte) { b[0] ^= 0xFF }},
		{name: "older copy zeroed", seq: [2]uint16{1, 2}, wantCopy: 1, warning: "copy 0",
			damage: func(b []byte) { clear(b[:4096]) }},
		{name: "both checksums bad", seq: [2]uint16{1, 2}, wantErr: vmconfig.ErrBadChecksum,
			damage: func(b []byte) { b[20] ^= 1; b[4096+20] ^= 1 }},
		{name: "one checksum bad, other signature bad", seq: [2]uint16{1, 2}, wantErr: vmconfig.ErrBadChecksum,
			damage: func(b []byte) { b[20] ^= 1; b[4096] ^= 1 }},
		{name: "both signatures bad", seq: [2]uint16{1, 2}, wantErr: vmconfig.ErrBadSignature,
			damage: func(b []byte) { b[0] ^= 1; b[4096] ^= 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := vmcxtest.Build(tree, &vmcxtest.Options{Sequences: c.seq, EditHeader: mark})
			if c.damage != nil {
				c.damage(data)
			}
			tr, err := parse(data)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				checkErr(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := tr.Header()
			if h.Copy != c.wantCopy || h.DataVersion != uint32(100+c.wantCopy) || h.Sequence != c.seq[c.wantCopy] {
				t.Errorf("header = %+v, want copy %d", h, c.wantCopy)
			}
			if h.FormatVersion != 0x0400 || h.Alignment != 4096 {
				t.Errorf("header = %+v", h)
			}
			if c.warning != "" && !hasWarning(tr, c.warning) {
				t.Errorf("warnings %q lack %q", tr.Warnings(), c.warning)
			}
			if c.warning == "" && len(tr.Warnings()) > 0 {
				t.Errorf("unexpected warnings %q", tr.Warnings())
			}
			if v := mustLookup(t, tr, "/k"); v.String() != "v" {
				t.Errorf("k = %q", v.String())
			}
		})
	}
}

// corruptionImage has two chained object tables, several key tables and
// out-of-line values, so each structure exists at least twice.
func corruptionImage(t testing.TB) *vmcxtest.Image {
	t.Helper()
	img, err := vmcxtest.BuildImage(sampleTree(), &vmcxtest.Options{MaxEntriesPerKeyTable: 4, ObjectTableSlots: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.ObjectTableOffsets) < 2 || len(img.KeyTableOffsets) < 3 {
		t.Fatalf("layout too small: %d object tables, %d key tables", len(img.ObjectTableOffsets), len(img.KeyTableOffsets))
	}
	return img
}

func objectEntry(t testing.TB, img *vmcxtest.Image, typ byte) int64 {
	for _, e := range img.ObjectEntries {
		if e.Type == typ {
			return e.Offset
		}
	}
	t.Fatalf("no object entry of type %d", typ)
	return 0
}

func TestCorruption(t *testing.T) {
	const (
		name = "/configuration/properties/name"
		neg  = "/configuration/properties/neg"
		yes  = "/configuration/properties/yes"
		ool  = "/configuration/properties/ool2048"
		prop = "/configuration/properties"
	)
	le32 := binary.LittleEndian.PutUint32
	le64 := binary.LittleEndian.PutUint64
	cases := []struct {
		name      string
		mutate    func(t *testing.T, img *vmcxtest.Image, b []byte)
		want      error
		structure string
	}{
		{"object table signature", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[8192] ^= 1 },
			vmconfig.ErrBadSignature, "object table"},
		{"chained object table signature", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[img.ObjectTableOffsets[1]] ^= 1 },
			vmconfig.ErrBadSignature, "object table"},
		{"key table object entry checksum", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[objectEntry(t, img, 2)+6] ^= 1 },
			vmconfig.ErrBadChecksum, "object table entry"},
		{"file object entry checksum", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[objectEntry(t, img, 3)+14] ^= 1 },
			vmconfig.ErrBadChecksum, "object table entry"},
		{"object table link checksum", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[objectEntry(t, img, 1)+17] ^= 1 },
			vmconfig.ErrBadChecksum, "object table entry"},
		{"key table header checksum", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[img.KeyTableOffsets[0]+4] ^= 1 },
			vmconfig.ErrBadChecksum, "key table"},
		{"key table signature", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			b[img.KeyTableOffsets[1]] ^= 1
			vmcxtest.ResealKeyTable(b, img.KeyTableOffsets[1])
		}, vmconfig.ErrBadSignature, "key table"},
		{"key entry name", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[img.Entries[name]+21] ^= 1 },
			vmconfig.ErrBadChecksum, "key table"},
		{"key entry value", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[img.Entries[neg]+21+4] ^= 1 },
			vmconfig.ErrBadChecksum, `entry "neg"`},
		{"key entry header", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[img.Entries[neg]+16] ^= 1 },
			vmconfig.ErrBadChecksum, `entry "neg"`},
		{"node entry data", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			b[img.Entries[prop]+21+int64(len("properties"))+1+9] ^= 1
		}, vmconfig.ErrBadChecksum, `entry "properties"`},
		{"file object pointer", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			b[img.Entries[ool]+21+int64(len("ool2048"))+1+5] ^= 1
		},
			vmconfig.ErrBadChecksum, `entry "ool2048"`},
		{"replay log checksum", func(t *testing.T, img *vmcxtest.Image, b []byte) { b[img.ReplayLogOffset+8] ^= 1 },
			vmconfig.ErrBadChecksum, "replay log"},
		{"replay log signature", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			b[img.ReplayLogOffset] ^= 1
			vmcxtest.ResealReplayLog(b, img.ReplayLogOffset)
		}, vmconfig.ErrBadSignature, "replay log"},
		{"unsupported version", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			for _, off := range img.HeaderOffsets {
				le32(b[off+10:], 0x0500)
				vmcxtest.ResealHeader(b, off)
			}
		}, vmconfig.ErrUnsupportedVersion, "file header"},
		{"object table count absurd", func(t *testing.T, img *vmcxtest.Image, b []byte) { le32(b[8192+4:], 0xFFFFFFFF) },
			vmconfig.ErrLimit, "object table"},
		{"object table count past end of file", func(t *testing.T, img *vmcxtest.Image, b []byte) { le32(b[8192+4:], 60000) },
			vmconfig.ErrTruncated, "object table entries"},
		{"key table past end of file", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			e := objectEntry(t, img, 2)
			le64(b[e+5:], uint64(len(b))+4096)
			vmcxtest.ResealObjectEntry(b, e)
		}, vmconfig.ErrTruncated, "key table"},
		{"key table offset absurd", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			e := objectEntry(t, img, 2)
			le64(b[e+5:], math.MaxUint64)
			vmcxtest.ResealObjectEntry(b, e)
		}, vmconfig.ErrCorrupt, "object table entry"},
		{"key table size absurd", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			e := objectEntry(t, img, 2)
			le32(b[e+13:], 0xFFFFFFFF)
			vmcxtest.ResealObjectEntry(b, e)
		}, vmconfig.ErrLimit, "key table"},
		{"key table size tiny", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			e := objectEntry(t, img, 2)
			le32(b[e+13:], 4)
			vmcxtest.ResealObjectEntry(b, e)
		}, vmconfig.ErrCorrupt, "key table"},
		{"key table inside headers", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			e := objectEntry(t, img, 2)
			le64(b[e+5:], 4096)
			vmcxtest.ResealObjectEntry(b, e)
		}, vmconfig.ErrCorrupt, "key table"},
		{"object table loop", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			e := objectEntry(t, img, 1)
			le64(b[e+5:], 8192)
			vmcxtest.ResealObjectEntry(b, e)
		}, vmconfig.ErrCorrupt, "object table entry"},
		{"entry size overruns table", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			le32(b[img.Entries[name]+2:], 0x7FFFFFFF)
			vmcxtest.ResealEntry(b, img.Entries[name], false)
		}, vmconfig.ErrCorrupt, "key table"},
		{"entry size below header size", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			le32(b[img.Entries[name]+2:], 5)
		}, vmconfig.ErrCorrupt, "key table"},
		{"string length overruns entry", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			le32(b[img.Entries[name]+21+int64(len("name"))+1:], 0xFFFF)
			vmcxtest.ResealEntry(b, img.Entries[name], false)
		}, vmconfig.ErrCorrupt, `entry "name"`},
		{"name overruns entry", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			b[img.Entries[yes]+20] = 255
			vmcxtest.ResealEntry(b, img.Entries[yes], false)
		}, vmconfig.ErrCorrupt, "key table"},
		{"file object past end of file", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			p := img.Entries[ool] + 21 + int64(len("ool2048")+1)
			le64(b[p+4:], uint64(len(b))+100)
			vmcxtest.ResealEntry(b, img.Entries[ool], false)
		}, vmconfig.ErrTruncated, `entry "ool2048"`},
		{"file object size absurd", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			p := img.Entries[ool] + 21 + int64(len("ool2048")+1)
			le32(b[p:], 0xFFFFFFFF)
			vmcxtest.ResealEntry(b, img.Entries[ool], false)
		}, vmconfig.ErrTruncated, `entry "ool2048"`},
		{"file object inside headers", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			p := img.Entries[ool] + 21 + int64(len("ool2048")+1)
			le64(b[p+4:], 100)
			vmcxtest.ResealEntry(b, img.Entries[ool], false)
		}, vmconfig.ErrCorrupt, `entry "ool2048"`},
		{"replay log past end of file", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			for _, off := range img.HeaderOffsets {
				le64(b[off+26:], 1<<40)
				vmcxtest.ResealHeader(b, off)
			}
		}, vmconfig.ErrTruncated, "replay log"},
		{"replay log inside headers", func(t *testing.T, img *vmcxtest.Image, b []byte) {
			for _, off := range img.HeaderOffsets {
				le64(b[off+26:], 4000)
				vmcxtest.ResealHeader(b, off)
			}
		}, vmconfig.ErrCorrupt, "replay log"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := corruptionImage(t)
			b := bytes.Clone(img.Data)
			c.mutate(t, img, b)
			_, err := parse(b)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			checkErr(t, err)
			if !strings.Contains(err.Error(), c.structure) {
				t.Errorf("error %q does not name %q", err, c.structure)
			}
		})
	}
}

// eofReader serves data but fails reads that reach limit, as a file that
// shrank after its size was taken would.
type eofReader struct {
	data  []byte
	limit int64
}

func (r eofReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.limit {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:min(r.limit, int64(len(r.data)))])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestTruncated(t *testing.T) {
	// Chained object tables sit at the end of the corruption image, so the
	// later structures are cut in an image with a single object table.
	chained := corruptionImage(t)
	img, err := vmcxtest.BuildImage(sampleTree(), &vmcxtest.Options{MaxEntriesPerKeyTable: 4})
	if err != nil {
		t.Fatal(err)
	}
	kt := img.KeyTableOffsets[len(img.KeyTableOffsets)-1]
	fo := img.FileObjects["/configuration/properties/ool2048"]
	cases := []struct {
		name      string
		at        int64
		structure string // named in the error when the reader (not the size) runs short
		data      []byte
	}{
		{"empty file", 0, "file header", nil},
		{"inside header copy 0", 30, "file header", nil},
		{"inside header copy 1", 4096 + 20, "object table", nil},
		{"object table header", 8192 + 4, "object table", nil},
		{"object table entries", 8192 + 8 + 18*2, "object table entries", nil},
		{"chained object table", chained.ObjectTableOffsets[1] + 10, "object table", chained.Data},
		{"key table", kt + 100, "key table", nil},
		{"file object", fo + 10, "file object", nil},
		{"replay log", img.ReplayLogOffset + 10, "replay log", nil},
	}
	for _, c := range cases {
		data := c.data
		if data == nil {
			data = img.Data
		}
		t.Run(c.name+" (short file)", func(t *testing.T) {
			_, err := parse(data[:c.at])
			if !errors.Is(err, vmconfig.ErrTruncated) {
				t.Fatalf("err = %v, want ErrTruncated", err)
			}
			checkErr(t, err)
		})
		t.Run(c.name+" (reader ends early)", func(t *testing.T) {
			_, err := vmconfig.Parse(eofReader{data, c.at}, int64(len(data)))
			if !errors.Is(err, vmconfig.ErrTruncated) {
				t.Fatalf("err = %v, want ErrTruncated", err)
			}
			checkErr(t, err)
			if !strings.Contains(err.Error(), c.structure) {
				t.Errorf("error %q does not name %q", err, c.structure)
			}
		})
	}
}

// TestRandomDamage flips bytes all over the file, with and without fixing
// the checksums afterwards, and requires a clean result or a sentinel
// error: never a panic.
func TestRandomDamage(t *testing.T) {
	img := corruptionImage(t)
	rng := rand.New(rand.NewSource(1))
	var regions [][2]int64
	regions = append(regions, [2]int64{0, 64}, [2]int64{4096, 4096 + 64})
	for _, off := range img.ObjectTableOffsets {
		regions = append(regions, [2]int64{off, off + 8 + 4*18})
	}
	for _, off := range img.KeyTableOffsets {
		regions = append(regions, [2]int64{off, off + 4096})
	}
	regions = append(regions, [2]int64{img.ReplayLogOffset, img.ReplayLogOffset + 34})
	var entryOffs []int64
	for _, off := range img.Entries {
		entryOffs = append(entryOffs, off)
	}
	iterations := 4000
	if testing.Short() {
		iterations = 500
	}
	for i := 0; i < iterations; i++ {
		b := bytes.Clone(img.Data)
		for n := 1 + rng.Intn(4); n > 0; n-- {
			r := regions[rng.Intn(len(regions))]
			b[r[0]+rng.Int63n(r[1]-r[0])] ^= byte(1 << rng.Intn(8))
		}
		if i%2 == 1 {
			// Fix every checksum so the structural checks are reached.
			for _, off := range img.HeaderOffsets {
				vmcxtest.ResealHeader(b, off)
			}
			for _, e := range img.ObjectEntries {
				vmcxtest.ResealObjectEntry(b, e.Offset)
			}
			for _, off := range img.KeyTableOffsets {
				vmcxtest.ResealKeyTable(b, off)
			}
			for _, off := range entryOffs {
				vmcxtest.ResealEntry(b, off, false)
			}
			vmcxtest.ResealReplayLog(b, img.ReplayLogOffset)
		}
		tr, err := parse(b)
		if err != nil {
			checkErr(t, err)
			continue
		}
		_ = tr.Walk(func(path string, v *vmconfig.Value) error {
			_ = v.String()
			_ = v.Path()
			return nil
		})
		_ = vmconfig.FromTree(tr, "")
	}
}

func TestWarnings(t *testing.T) {
	t.Run("pending replay log entries", func(t *testing.T) {
		tr := mustParse(t, vmcxtest.Build(vmcxtest.Node{{Name: "k", Value: 1}}, &vmcxtest.Options{ReplayLogEntries: 3}))
		if tr.Header().ReplayLogEntries != 3 || !hasWarning(tr, "3 uncommitted entries") {
			t.Errorf("header %+v, warnings %q", tr.Header(), tr.Warnings())
		}
	})
	t.Run("unknown key type", func(t *testing.T) {
		tr := mustParse(t, vmcxtest.Build(vmcxtest.Node{{Name: "odd", Value: vmcxtest.Raw{Type: 2, Data: []byte{1, 2, 3}}}, {Name: "k", Value: 1}}, nil))
		if !hasWarning(tr, "unknown type 2") {
			t.Errorf("warnings %q", tr.Warnings())
		}
		if _, ok := tr.Lookup("/odd"); ok {
			t.Error("entry of unknown type was kept")
		}
		mustLookup(t, tr, "/k")
	})
	t.Run("duplicate names", func(t *testing.T) {
		tr := mustParse(t, vmcxtest.Build(vmcxtest.Node{{Name: "a", Value: 1}, {Name: "a", Value: 2}}, nil))
		if v := mustLookup(t, tr, "/a"); v.String() != "1" {
			t.Errorf("/a = %s, want the first", v.String())
		}
		if !hasWarning(tr, "more than one key") {
			t.Errorf("warnings %q", tr.Warnings())
		}
	})
	t.Run("orphaned key", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "n", Value: vmcxtest.Node{{Name: "child", Value: 1}}}}, nil)
		e := img.Entries["/n/child"]
		binary.LittleEndian.PutUint32(img.Data[e+8:], 0x700)
		vmcxtest.ResealEntry(img.Data, e, false)
		tr := mustParse(t, img.Data)
		if !hasWarning(tr, "parent node that does not exist") {
			t.Errorf("warnings %q", tr.Warnings())
		}
		if _, ok := tr.Lookup("/n/child"); ok {
			t.Error("orphan attached")
		}
	})
	t.Run("parent loop", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "n", Value: vmcxtest.Node{{Name: "child", Value: 1}}}, {Name: "k", Value: true}}, nil)
		e := img.Entries["/n"]
		// The node names itself as parent.
		binary.LittleEndian.PutUint16(img.Data[e+6:], 1)
		binary.LittleEndian.PutUint32(img.Data[e+8:], uint32(e-img.KeyTableOffsets[0]))
		vmcxtest.ResealEntry(img.Data, e, false)
		tr := mustParse(t, img.Data)
		if !hasWarning(tr, "not reachable") {
			t.Errorf("warnings %q", tr.Warnings())
		}
		if _, ok := tr.Lookup("/n"); ok {
			t.Error("looping node reachable")
		}
		mustLookup(t, tr, "/k")
	})
	t.Run("file object not in object table", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "big", Value: vmcxtest.OutOfLine{Value: []byte("data")}}}, nil)
		for _, oe := range img.ObjectEntries {
			if oe.Type == 3 {
				img.Data[oe.Offset] = 0 // now an empty entry
			}
		}
		tr := mustParse(t, img.Data)
		if !hasWarning(tr, "not listed in the object table") {
			t.Errorf("warnings %q", tr.Warnings())
		}
		if b, _ := mustLookup(t, tr, "/big").Bytes(); string(b) != "data" {
			t.Errorf("big = %q", b)
		}
	})
	t.Run("key tables sharing an index", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "a", Value: 1}, {Name: "b", Value: 2}}, &vmcxtest.Options{MaxEntriesPerKeyTable: 1})
		kt := img.KeyTableOffsets[1]
		binary.LittleEndian.PutUint16(img.Data[kt+2:], 1) // index 1 like the first table
		binary.LittleEndian.PutUint16(img.Data[kt+4:], 9) // but newer
		vmcxtest.ResealKeyTable(img.Data, kt)
		tr := mustParse(t, img.Data)
		if !hasWarning(tr, "share index 1") {
			t.Errorf("warnings %q", tr.Warnings())
		}
		if _, ok := tr.Lookup("/a"); ok {
			t.Error("key from the older table kept")
		}
		mustLookup(t, tr, "/b")
	})
	t.Run("format version 3.0", func(t *testing.T) {
		tr := mustParse(t, vmcxtest.Build(vmcxtest.Node{{Name: "k", Value: 1}}, &vmcxtest.Options{FormatVersion: 0x0300}))
		if !hasWarning(tr, "predates 4.0") || !hasWarning(tr, "not verified") {
			t.Errorf("warnings %q", tr.Warnings())
		}
	})
}

func TestDeepNesting(t *testing.T) {
	var tree vmcxtest.Node = vmcxtest.Node{{Name: "leaf", Value: 1}}
	for i := 0; i < vmconfig.MaxDepth+40; i++ {
		tree = vmcxtest.Node{{Name: "n", Value: tree}}
	}
	tr := mustParse(t, vmcxtest.Build(tree, nil))
	if !hasWarning(tr, "deeper than") {
		t.Errorf("warnings %q", tr.Warnings())
	}
	if _, ok := tr.Lookup(strings.Repeat("/n", vmconfig.MaxDepth)); !ok {
		t.Error("key at the depth limit missing")
	}
	if _, ok := tr.Lookup(strings.Repeat("/n", vmconfig.MaxDepth+1)); ok {
		t.Error("key beyond the depth limit kept")
	}
}

func TestLookupAndWalk(t *testing.T) {
	tree := vmcxtest.Node{
		{Name: "configuration", Value: vmcxtest.Node{
			{Name: "_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_", Value: vmcxtest.Node{{Name: "x", Value: 1}}},
			{Name: "Name", Value: "upper"},
			{Name: "name", Value: "lower"},
			{Name: "skip", Value: vmcxtest.Node{{Name: "hidden", Value: 2}}},
			{Name: "after", Value: 3},
		}},
	}
	tr := mustParse(t, vmcxtest.Build(tree, nil))
	for _, c := range []struct{ path, want string }{
		{"/configuration/name", "lower"},
		{"/configuration/Name", "upper"},
		{"/configuration/NAME", "upper"}, // first case-insensitive match
		{"configuration//_83f8638b-8dca-4152-9eda-2ca8b33039b4_/x", "1"},
	} {
		if v := mustLookup(t, tr, c.path); v.String() != c.want {
			t.Errorf("%s = %q, want %q", c.path, v.String(), c.want)
		}
	}
	if r := mustLookup(t, tr, "/"); r != tr.Root() || r.Path() != "/" {
		t.Error("Lookup(/) is not the root")
	}
	if _, ok := tr.Lookup("/configuration/name/deeper"); ok {
		t.Error("lookup through a leaf succeeded")
	}
	cfg := mustLookup(t, tr, "/configuration")
	if v, ok := cfg.Lookup("skip/hidden"); !ok || v.String() != "2" || v.Parent().Name() != "skip" {
		t.Error("relative lookup failed")
	}

	var visited []string
	err := tr.Walk(func(path string, v *vmconfig.Value) error {
		visited = append(visited, path)
		if v.Name() == "skip" {
			return vmconfig.SkipNode
		}
		if path != v.Path() {
			t.Errorf("walk path %q != Path() %q", path, v.Path())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "/configuration,/configuration/_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_,/configuration/_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_/x,/configuration/Name,/configuration/name,/configuration/skip,/configuration/after"
	if got := strings.Join(visited, ","); got != want {
		t.Errorf("walk order\n got %s\nwant %s", got, want)
	}
	n := 0
	if err := tr.Walk(func(string, *vmconfig.Value) error { n++; return vmconfig.SkipAll }); err != nil || n != 1 {
		t.Errorf("SkipAll: err %v after %d visits", err, n)
	}
	stop := errors.New("stop")
	if err := tr.Walk(func(string, *vmconfig.Value) error { return stop }); err != stop {
		t.Errorf("Walk returned %v, want the callback's error", err)
	}
}

func TestParseFileNamesFileInErrors(t *testing.T) {
	img, _ := vmcxtest.BuildImage(sampleTree(), nil)
	const key = "/configuration/properties/neg"
	img.Data[img.Entries[key]+21+4] ^= 1
	path := filepath.Join(t.TempDir(), "broken.vmcx")
	if err := os.WriteFile(path, img.Data, 0o400); err != nil {
		t.Fatal(err)
	}
	_, err := vmconfig.ParseFile(path)
	var fe *vmconfig.FormatError
	if !errors.As(err, &fe) || !errors.Is(err, vmconfig.ErrBadChecksum) {
		t.Fatalf("err = %v", err)
	}
	if fe.File != path || fe.Offset != img.Entries[key] || !strings.Contains(fe.Structure, `key table 1 entry "neg"`) {
		t.Errorf("FormatError = %+v", fe)
	}
	for _, s := range []string{path, `"neg"`, "offset 0x", "checksum"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	// Parse learns the name from an *os.File too.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := vmconfig.Parse(f, int64(len(img.Data))); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Parse(*os.File) error %v lacks the path", err)
	}
	if _, err := vmconfig.ParseFile(filepath.Join(t.TempDir(), "missing.vmcx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestKindAndFormatNames(t *testing.T) {
	for k, want := range map[vmconfig.Kind]string{
		vmconfig.KindNode: "node", vmconfig.KindInt: "int", vmconfig.KindUint: "uint",
		vmconfig.KindDouble: "double", vmconfig.KindString: "string", vmconfig.KindBytes: "bytes",
		vmconfig.KindBool: "bool", vmconfig.Kind(99): "kind(99)",
	} {
		if k.String() != want {
			t.Errorf("Kind %d: %q", k, k.String())
		}
	}
	if vmconfig.FormatBinary.String() != "binary" || vmconfig.FormatXML.String() != "xml" || vmconfig.Format(9).String() != "format(9)" {
		t.Error("Format names")
	}
}

// TestChecksumVariants: besides the documented coverage (header, name and
// meaningful value bytes), the reader accepts node data counted as 8 bytes
// and checksums over the whole entry including slack; anything else fails.
func TestChecksumVariants(t *testing.T) {
	crc := func(b []byte, at int) uint32 {
		c := append([]byte(nil), b...)
		clear(c[at : at+4])
		return crc32.ChecksumIEEE(c)
	}
	t.Run("node data as 8 bytes", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "n", Value: vmcxtest.Node{{Name: "k", Value: 1}}}}, nil)
		e := img.Entries["/n"]
		end := e + 21 + 2 + 8
		binary.LittleEndian.PutUint32(img.Data[e+12:], crc(img.Data[e:end], 12))
		mustLookup(t, mustParse(t, img.Data), "/n/k")
	})
	t.Run("whole entry including slack", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "s", Value: "abc"}, {Name: "k", Value: 1}}, nil)
		e := img.Entries["/s"]
		size := int64(binary.LittleEndian.Uint32(img.Data[e+2:]))
		binary.LittleEndian.PutUint32(img.Data[e+21+2:], 6) // drop the NUL: 2 bytes of slack
		binary.LittleEndian.PutUint32(img.Data[e+12:], crc(img.Data[e:e+size], 12))
		if v := mustLookup(t, mustParse(t, img.Data), "/s"); v.String() != "abc" {
			t.Errorf("s = %q", v.String())
		}
		// The same edit without a matching checksum is rejected.
		img.Data[e+12] ^= 1
		if _, err := parse(img.Data); !errors.Is(err, vmconfig.ErrBadChecksum) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("zero-sized entry before garbage", func(t *testing.T) {
		img, _ := vmcxtest.BuildImage(vmcxtest.Node{{Name: "k", Value: 1}}, nil)
		// The table ends with a Free entry; zero its size but keep its type.
		free := img.Entries["/k"] + 21 + 2 + 8
		binary.LittleEndian.PutUint32(img.Data[free+2:], 0)
		tr := mustParse(t, img.Data)
		if !hasWarning(tr, "zero-sized entry") {
			t.Errorf("warnings %q", tr.Warnings())
		}
		mustLookup(t, tr, "/k")
	})
}
