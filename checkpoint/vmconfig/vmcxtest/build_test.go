package vmcxtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// TestKeyTablesFilledExactly checks the filling rule of FORMAT.md: entries
// cover each key table's data area exactly, so no entry starts within the
// last 21 bytes, whatever the mix of entry sizes.
func TestKeyTablesFilledExactly(t *testing.T) {
	items := Node{}
	for i := 0; i < 300; i++ {
		items = append(items, Item{Name: fmt.Sprintf("key_%04d", i), Value: bytes.Repeat([]byte{0xAB}, (i*7)%50)})
	}
	for _, o := range []*Options{nil, {KeyTableSize: 512}, {MaxEntriesPerKeyTable: 7}} {
		img, err := BuildImage(Node{{Name: "parent", Value: items}}, o)
		if err != nil {
			t.Fatal(err)
		}
		size := int64(4096)
		if o != nil && o.KeyTableSize != 0 {
			size = int64(o.KeyTableSize)
		}
		for _, kt := range img.KeyTableOffsets {
			pos := int64(ktHdrSize)
			for pos < size {
				if pos > size-entryHdrSize {
					t.Fatalf("table at 0x%x: entry at %d starts in the last %d bytes", kt, pos, entryHdrSize)
				}
				n := int64(binary.LittleEndian.Uint32(img.Data[kt+pos+2:]))
				if n < entryHdrSize {
					t.Fatalf("table at 0x%x: entry at %d has size %d", kt, pos, n)
				}
				pos += n
			}
			if pos != size {
				t.Fatalf("table at 0x%x: entries end at %d, table is %d", kt, pos, size)
			}
		}
	}
}

func TestInsertionSequences(t *testing.T) {
	img, err := BuildImage(Node{{Name: "n", Value: Node{{Name: "b", Value: 1}, {Name: "a", Value: 2}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := func(path string) uint32 { return binary.LittleEndian.Uint32(img.Data[img.Entries[path]+16:]) }
	if seq("/n") != 1 || seq("/n/b") != 1 || seq("/n/a") != 2 {
		t.Errorf("sequences %d %d %d", seq("/n"), seq("/n/b"), seq("/n/a"))
	}
	// The node's NextInsertionSequence is max(child) + 1.
	node := img.Entries["/n"] + entryHdrSize + 2
	if next := binary.LittleEndian.Uint32(img.Data[node+8:]); next != 3 {
		t.Errorf("NextInsertionSequence = %d", next)
	}
}

func TestBuildRejectsBadTrees(t *testing.T) {
	cases := []struct {
		name string
		tree any
		opts *Options
	}{
		{"unsupported value", Node{{Name: "x", Value: struct{}{}}}, nil},
		{"not a node", 5, nil},
		{"long name", Node{{Name: strings.Repeat("n", 300), Value: 1}}, nil},
		{"OutOfLine int", Node{{Name: "x", Value: OutOfLine{Value: 1}}}, nil},
		{"entry bigger than key table", Node{{Name: "x", Value: bytes.Repeat([]byte{1}, 600)}}, &Options{KeyTableSize: 256, OutOfLineThreshold: 4096}},
		{"one object table slot", Node{{Name: "x", Value: 1}}, &Options{ObjectTableSlots: 1}},
	}
	for _, c := range cases {
		if _, err := BuildImage(c.tree, c.opts); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Build did not panic on a bad tree")
		}
	}()
	Build(Node{{Name: "x", Value: struct{}{}}}, nil)
}

func TestBuildXML(t *testing.T) {
	x, err := BuildXML(map[string]any{"configuration": map[string]any{"a": "x<y", "b": true, "c": []byte{1}, "d": -3}}, &XMLOptions{UTF8: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n<configuration>\r\n" +
		"  <a type=\"string\">x&lt;y</a>\r\n  <b type=\"bool\">True</b>\r\n  <c type=\"bytes\">AQ==</c>\r\n" +
		"  <d type=\"integer\">-3</d>\r\n</configuration>\r\n"
	if string(x) != want {
		t.Errorf("got\n%s\nwant\n%s", x, want)
	}
	u, err := BuildXML(Node{{Name: "c", Value: "é"}}, nil)
	if err != nil || !bytes.HasPrefix(u, []byte{0xFF, 0xFE, '<', 0}) {
		t.Errorf("UTF-16 output %x, %v", u[:min(len(u), 8)], err)
	}
	if _, err := BuildXML(Node{{Name: "r", Value: Raw{Type: 2}}}, nil); err == nil {
		t.Error("Raw accepted by BuildXML")
	}
}
