package lvm

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMetadata(t *testing.T) {
	root, err := ParseMetadata([]byte(`# a comment
top = "v\"al\\ue"	# trailing comment
n = -42
f = 1.5
empty = []
mixed = ["pv0", 10, "pv1", +7]
vg-1.x { inner { k = 'single "quoted"' } }
after = 0` + "\x00garbage { after the NUL"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"top": `"v\"al\\ue"`, "n": "-42", "f": "1.5", "empty": "[]", "mixed": `["pv0", 10, "pv1", 7]`, "after": "0"}
	for k, w := range want {
		if v, ok := root.Value(k); !ok || v.String() != w {
			t.Errorf("%s = %v, want %s", k, v, w)
		}
	}
	if strings.Join(root.Keys, ",") != "top,n,f,empty,mixed,after" {
		t.Errorf("keys %v", root.Keys)
	}
	in := root.Child("vg-1.x").Child("inner")
	if v, _ := in.Value("k"); v.Str != `single "quoted"` || len(root.Children) != 1 {
		t.Errorf("nested: %+v", in)
	}
	if root.Child("nope").Child("x") != nil {
		t.Error("Child of a missing section is not nil")
	}
}

func TestParseMetadataErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ text, want string }{
		{`a = `, "line 1: expected a value, found end of text"},
		{`a = "open`, "line 1: unterminated string"},
		{"a {\nb = 1\n", `section "a" not closed`},
		{`}`, "unexpected '}'"},
		{`a b`, `expected '=' or '{' after "a"`},
		{`a = 1 a = 2`, `duplicate name "a"`},
		{`a { } a = 1`, `duplicate name "a"`},
		{`a = [1 2]`, "expected ',' or ']'"},
		{`a = [1, [2]]`, "expected a value"},
		{`a = [1,`, "expected a value, found end of text"},
		{`a = 99999999999999999999`, "out of range"},
		{`a = 1.2.3`, "bad number"},
		{`a = word`, `expected a value, found "word"`},
		{`= 1`, `expected a name, found "="`},
		{"a = \x01", "control character 0x01"},
		{strings.Repeat("a {", MaxDepth+1) + strings.Repeat("}", MaxDepth+1), "nested deeper than 32"},
	} {
		_, err := ParseMetadata([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
	if _, err := ParseMetadata(make([]byte, MaxTextSize+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("too big: %v", err)
	}
	ok := strings.Repeat("a {", MaxDepth) + strings.Repeat("}", MaxDepth)
	if _, err := ParseMetadata([]byte(ok)); err != nil {
		t.Errorf("depth %d: %v", MaxDepth, err)
	}
}

func TestCRC(t *testing.T) {
	// lvm2's calc_crc of "123456789" from INITIAL_CRC, computed bit by bit
	// as crc.c describes: reflected polynomial, no inversions.
	crc := uint32(crcInitial)
	for _, c := range []byte("123456789") {
		crc ^= uint32(c)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xedb88320
			} else {
				crc >>= 1
			}
		}
	}
	if got := lvmCRC(crcInitial, []byte("123456789")); got != crc {
		t.Fatalf("lvmCRC = %08x, bitwise %08x", got, crc)
	}
}
