package vmconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf16"
)

// MaxXMLSize bounds the size of an XML configuration file.
const MaxXMLSize = 64 << 20

// ParseXML reads a Windows Server 2012 R2 (and earlier) XML configuration
// file: UTF-16LE with a byte-order mark as Hyper-V writes it, UTF-16BE, or
// UTF-8 (with or without BOM). Elements carrying a type attribute are leaf
// values: "string", "integer", "bool" (or "boolean"), "bytes" (base64);
// elements without one are nodes. The result has the same shape as a
// binary file's tree: the document element ("configuration") is a child of
// the virtual root, so the same paths work for both formats.
//
// Leaf text that does not parse as its declared type is kept as a string
// and reported in Tree.Warnings; malformed XML is an error wrapping
// ErrCorrupt (or ErrTruncated if the document ends early).
func ParseXML(r io.Reader) (*Tree, error) {
	name := ""
	if n, ok := r.(interface{ Name() string }); ok {
		name = n.Name()
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxXMLSize+1))
	if err != nil {
		return nil, err
	}
	return parseXMLBytes(data, name)
}

// ParseXMLFile opens path read-only and parses it with ParseXML.
func ParseXMLFile(path string) (*Tree, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxXMLSize+1))
	if err != nil {
		return nil, err
	}
	return parseXMLBytes(data, path)
}

// decodeXMLText converts the document to UTF-8 according to its byte-order
// mark, or the byte pattern of a leading '<' when there is none.
func decodeXMLText(data []byte) []byte {
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		return data[3:]
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}):
		return utf16ToUTF8(data[2:], binary.LittleEndian)
	case bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		return utf16ToUTF8(data[2:], binary.BigEndian)
	case len(data) >= 2 && data[0] != 0 && data[1] == 0:
		return utf16ToUTF8(data, binary.LittleEndian)
	case len(data) >= 2 && data[0] == 0 && data[1] != 0:
		return utf16ToUTF8(data, binary.BigEndian)
	}
	return data
}

func utf16ToUTF8(b []byte, order binary.ByteOrder) []byte {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = order.Uint16(b[2*i:])
	}
	return []byte(string(utf16.Decode(u)))
}

type xmlParser struct {
	file       string
	warnings   []string
	suppressed int
}

func (p *xmlParser) warnf(format string, args ...any) {
	if len(p.warnings) >= maxWarnings {
		p.suppressed++
		return
	}
	p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
}

func parseXMLBytes(data []byte, file string) (*Tree, error) {
	if len(data) > MaxXMLSize {
		return nil, formatErr(file, "XML document", -1, ErrLimit, "larger than %d bytes", MaxXMLSize)
	}
	p := &xmlParser{file: file}
	text := decodeXMLText(data)
	d := xml.NewDecoder(bytes.NewReader(text))
	d.Strict = true
	// The text is already UTF-8; the declaration usually says "UTF-16".
	d.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }

	root := newRoot()
	type frame struct {
		v      *Value
		typ    string // type attribute; "" for nodes
		text   strings.Builder
		strayT bool // non-space text in a node
	}
	stack := []*frame{{v: root}}
	sawElement := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, p.syntaxErr(err, d.InputOffset())
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			sawElement = true
			if top.typ != "" {
				p.warnf("element <%s> inside typed element %s ignored", t.Name.Local, top.v.Path())
				if err := d.Skip(); err != nil {
					return nil, p.syntaxErr(err, d.InputOffset())
				}
				continue
			}
			if len(stack) > MaxDepth {
				return nil, formatErr(file, "XML element <"+t.Name.Local+">", d.InputOffset(), ErrLimit, "nested deeper than %d levels", MaxDepth)
			}
			name := t.Name.Local
			if t.Name.Space != "" {
				name = t.Name.Space + ":" + name
			}
			f := &frame{v: &Value{name: name, kind: KindNode, loaded: true}}
			for _, a := range t.Attr {
				if a.Name.Local == "type" && a.Name.Space == "" {
					f.typ = a.Value
					if f.typ == "" {
						f.typ = "string"
					}
				}
			}
			addChild(top.v, f.v)
			stack = append(stack, f)
		case xml.CharData:
			if len(stack) == 1 {
				continue
			}
			if top.typ != "" {
				top.text.Write(t)
			} else if !top.strayT && len(bytes.TrimSpace(t)) > 0 {
				top.strayT = true
				p.warnf("text inside untyped element %s ignored", top.v.Path())
			}
		case xml.EndElement:
			if len(stack) == 1 {
				return nil, formatErr(file, "XML document", d.InputOffset(), ErrCorrupt, "unexpected end element </%s>", t.Name.Local)
			}
			if top.typ != "" {
				p.setLeaf(top.v, top.typ, top.text.String())
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 1 {
		return nil, formatErr(file, "XML document", d.InputOffset(), ErrTruncated, "document ends inside <%s>", stack[len(stack)-1].v.name)
	}
	if !sawElement {
		return nil, formatErr(file, "XML document", -1, ErrCorrupt, "no root element")
	}
	if len(root.children) > 1 {
		p.warnf("document has %d top-level elements", len(root.children))
	}
	if p.suppressed > 0 {
		p.warnings = append(p.warnings, fmt.Sprintf("%d more warnings not shown", p.suppressed))
	}
	return &Tree{root: root, format: FormatXML, warnings: p.warnings}, nil
}

func (p *xmlParser) syntaxErr(err error, off int64) error {
	sentinel := ErrCorrupt
	var se *xml.SyntaxError
	if errors.As(err, &se) && strings.Contains(se.Msg, "unexpected EOF") {
		sentinel = ErrTruncated
	}
	return formatErr(p.file, "XML document", off, sentinel, "%v", err)
}

// setLeaf converts the text of a typed element.
func (p *xmlParser) setLeaf(v *Value, typ, text string) {
	trimmed := strings.TrimSpace(text)
	switch strings.ToLower(typ) {
	case "string":
		v.kind, v.str = KindString, text
		return
	case "integer", "int":
		if n, err := strconv.ParseInt(trimmed, 10, 64); err == nil {
			v.kind, v.num = KindInt, uint64(n)
			return
		}
		if n, err := strconv.ParseUint(trimmed, 10, 64); err == nil {
			v.kind, v.num = KindUint, n
			return
		}
	case "bool", "boolean":
		switch {
		case strings.EqualFold(trimmed, "true") || trimmed == "1":
			v.kind, v.num = KindBool, 1
			return
		case strings.EqualFold(trimmed, "false") || trimmed == "0":
			v.kind, v.num = KindBool, 0
			return
		}
	case "bytes":
		compact := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, text)
		if b, err := base64.StdEncoding.DecodeString(compact); err == nil {
			v.kind, v.data = KindBytes, b
			return
		}
		if b, err := base64.RawStdEncoding.DecodeString(compact); err == nil {
			v.kind, v.data = KindBytes, b
			return
		}
	case "double", "float", "real":
		if f, err := strconv.ParseFloat(trimmed, 64); err == nil {
			v.kind, v.num = KindDouble, math.Float64bits(f)
			return
		}
	default:
		p.warnf("%s has unknown type %q; kept as a string", v.Path(), typ)
		v.kind, v.str = KindString, text
		return
	}
	p.warnf("%s: %q is not a valid %s; kept as a string", v.Path(), truncateForMessage(trimmed), typ)
	v.kind, v.str = KindString, text
}

// truncateForMessage shortens s to at most 40 runes for an error message.
func truncateForMessage(s string) string {
	n := 0
	for i := range s {
		if n == 40 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
