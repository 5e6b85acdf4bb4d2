package vmconfig

import (
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"strings"
)

// Kind is the type of a value in the configuration tree.
type Kind uint8

// The kinds of values. The binary format's key types map one to one
// (Int, UInt, Double, String, Array, Bool, Node); the 2012 R2 XML format's
// type attributes map to KindInt ("integer", or KindUint when the number
// does not fit an int64), KindBool ("bool"), KindBytes ("bytes") and
// KindString ("string"); XML elements without a type attribute are nodes.
const (
	KindNode   Kind = iota + 1 // a container of other keys
	KindInt                    // signed 64-bit integer
	KindUint                   // unsigned 64-bit integer
	KindDouble                 // IEEE 754 double
	KindString                 // text (UTF-16LE on disk)
	KindBytes                  // byte array ("Array" in the binary format, base64 "bytes" in XML)
	KindBool                   // boolean
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node"
	case KindInt:
		return "int"
	case KindUint:
		return "uint"
	case KindDouble:
		return "double"
	case KindString:
		return "string"
	case KindBytes:
		return "bytes"
	case KindBool:
		return "bool"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Format says which on-disk format a Tree was read from.
type Format uint8

// The on-disk formats.
const (
	FormatBinary Format = iota + 1 // .vmcx / .vmrs / .vsv key-value storage
	FormatXML                      // Windows Server 2012 R2 and earlier .xml
)

// String returns the format's name.
func (f Format) String() string {
	switch f {
	case FormatBinary:
		return "binary"
	case FormatXML:
		return "xml"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// Value is one key of the configuration tree: either a node holding other
// keys or a typed leaf value. Values are immutable once parsed; slices
// returned by accessors must not be modified.
type Value struct {
	name     string
	kind     Kind
	parent   *Value
	children []*Value

	num  uint64 // Int, Uint, Double (bits) and Bool (0/1)
	str  string
	data []byte

	outOfLine bool  // stored in a file object
	loaded    bool  // data is available (false only for large out-of-line values)
	dataOff   int64 // file offset of the out-of-line data
	dataSize  int64 // size of the out-of-line data
}

// Name returns the key's own name (the last element of its path). The
// virtual root has the empty name.
func (v *Value) Name() string { return v.name }

// Kind returns the value's kind.
func (v *Value) Kind() Kind { return v.kind }

// IsNode reports whether v is a node (a container of other keys).
func (v *Value) IsNode() bool { return v.kind == KindNode }

// Parent returns the node holding v, or nil for the root.
func (v *Value) Parent() *Value { return v.parent }

// Path returns the key's full path, such as "/configuration/properties/name".
// The root's path is "/".
func (v *Value) Path() string {
	if v.parent == nil {
		return "/"
	}
	var parts []string
	for p := v; p.parent != nil; p = p.parent {
		parts = append(parts, p.name)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(parts[i])
	}
	return b.String()
}

// Children returns the keys under a node in their stored order (insertion
// sequence for the binary format, document order for XML). It returns nil
// for leaf values.
func (v *Value) Children() []*Value {
	if len(v.children) == 0 {
		return nil
	}
	out := make([]*Value, len(v.children))
	copy(out, v.children)
	return out
}

// Child returns the direct child called name. An exact match is preferred;
// failing that, the first child whose name matches case-insensitively
// (Unicode simple folding) is returned. See Tree.Lookup.
func (v *Value) Child(name string) (*Value, bool) {
	for _, c := range v.children {
		if c.name == name {
			return c, true
		}
	}
	for _, c := range v.children {
		if strings.EqualFold(c.name, name) {
			return c, true
		}
	}
	return nil, false
}

// Lookup resolves a slash-separated path relative to v. Empty elements are
// ignored, so "a//b" and "/a/b" mean the same. Each element is matched as
// by Child.
func (v *Value) Lookup(path string) (*Value, bool) {
	cur := v
	for path != "" {
		var elem string
		if i := strings.IndexByte(path, '/'); i >= 0 {
			elem, path = path[:i], path[i+1:]
		} else {
			elem, path = path, ""
		}
		if elem == "" {
			continue
		}
		next, ok := cur.Child(elem)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// Int returns the value of a KindInt value, or of a KindUint value that
// fits an int64.
func (v *Value) Int() (int64, bool) {
	switch v.kind {
	case KindInt:
		return int64(v.num), true
	case KindUint:
		if v.num <= 1<<63-1 {
			return int64(v.num), true
		}
	}
	return 0, false
}

// Uint returns the value of a KindUint value, or of a non-negative KindInt
// value.
func (v *Value) Uint() (uint64, bool) {
	switch v.kind {
	case KindUint:
		return v.num, true
	case KindInt:
		if int64(v.num) >= 0 {
			return v.num, true
		}
	}
	return 0, false
}

// Double returns the value of a KindDouble value.
func (v *Value) Double() (float64, bool) {
	if v.kind != KindDouble {
		return 0, false
	}
	return math.Float64frombits(v.num), true
}

// Bool returns the value of a KindBool value.
func (v *Value) Bool() (bool, bool) {
	if v.kind != KindBool {
		return false, false
	}
	return v.num != 0, true
}

// Bytes returns the contents of a KindBytes value. It reports false for
// other kinds and for out-of-line values too large to have been loaded
// (see Loaded).
func (v *Value) Bytes() ([]byte, bool) {
	if v.kind != KindBytes || !v.loaded {
		return nil, false
	}
	return v.data, true
}

// Text returns the contents of a KindString value, without trailing NUL
// characters. It reports false for other kinds and for out-of-line strings
// too large to have been loaded.
func (v *Value) Text() (string, bool) {
	if v.kind != KindString || !v.loaded {
		return "", false
	}
	return v.str, true
}

// String renders the value as text: the string itself for KindString,
// decimal numbers, "True"/"False" for booleans (as Hyper-V's XML writes
// them), standard base64 for bytes, and "" for nodes and unloaded values.
// Use Text for a strict string accessor.
func (v *Value) String() string {
	if !v.loaded {
		return ""
	}
	switch v.kind {
	case KindString:
		return v.str
	case KindInt:
		return strconv.FormatInt(int64(v.num), 10)
	case KindUint:
		return strconv.FormatUint(v.num, 10)
	case KindDouble:
		return strconv.FormatFloat(math.Float64frombits(v.num), 'g', -1, 64)
	case KindBool:
		if v.num != 0 {
			return "True"
		}
		return "False"
	case KindBytes:
		return base64.StdEncoding.EncodeToString(v.data)
	}
	return ""
}

// OutOfLine reports whether the binary file stored the value in a separate
// file object rather than inline in its key table (values of 2048 bytes or
// more). Always false for XML.
func (v *Value) OutOfLine() bool { return v.outOfLine }

// Loaded reports whether the value's data is available. Only out-of-line
// values larger than MaxOutOfLineValue, or beyond the MaxOutOfLineTotal
// budget of one file, are left unloaded; DataRange tells where they are.
func (v *Value) Loaded() bool { return v.loaded }

// DataRange returns the file offset and size of an out-of-line value's
// data, so a caller can read an unloaded value itself. It returns (-1, 0)
// for inline values.
func (v *Value) DataRange() (offset, size int64) {
	if !v.outOfLine {
		return -1, 0
	}
	return v.dataOff, v.dataSize
}

// HeaderInfo describes the file header a binary Tree was read with.
type HeaderInfo struct {
	Copy             int    // 0 (offset 0) or 1 (offset 4096): the copy in use
	Sequence         uint16 // its sequence number
	FormatVersion    uint32 // (major << 8) | minor, 0x0400 for current files
	DataVersion      uint32 // application-defined
	Alignment        uint32 // DataAlignmentInBytes
	ReplayLogOffset  uint64 // where the replay log header is
	ReplayLogEntries uint32 // uncommitted replay-log entries (not replayed)
}

// Tree is a parsed configuration file: a virtual root node whose children
// are the top-level keys (for VM configurations, "configuration"). A Tree
// and its Values are immutable and safe for concurrent use.
type Tree struct {
	root     *Value
	format   Format
	header   *HeaderInfo
	warnings []string
}

// Root returns the virtual root node. Its children are the top-level keys.
func (t *Tree) Root() *Value { return t.root }

// Format returns the on-disk format the tree was read from.
func (t *Tree) Format() Format { return t.format }

// Header returns the file header in use for binary files, nil for XML.
func (t *Tree) Header() *HeaderInfo {
	if t.header == nil {
		return nil
	}
	h := *t.header
	return &h
}

// Warnings returns problems that did not stop parsing: a corrupt header
// copy that was skipped, orphaned keys, pending replay-log entries, values
// not loaded, and the like.
func (t *Tree) Warnings() []string {
	if len(t.warnings) == 0 {
		return nil
	}
	out := make([]string, len(t.warnings))
	copy(out, t.warnings)
	return out
}

// Lookup resolves an absolute path such as "/configuration/properties/name".
//
// Matching: each path element is first compared exactly and, failing that,
// case-insensitively. Neither the storage format documentation nor the
// public readers say that key names are case-insensitive, but Hyper-V keys
// embed GUIDs (for example "_83f8638b-8dca-4152-9eda-2ca8b33039b4_") whose
// letter case differs from the same GUID stored elsewhere, and an exact
// match always wins, so the fallback only ever finds keys an exact lookup
// would miss. Path "/" or "" returns the root.
func (t *Tree) Lookup(path string) (*Value, bool) {
	return t.root.Lookup(path)
}

// SkipNode may be returned by a WalkFunc to skip the children of the node
// just visited. Returned for a leaf, it is ignored.
var SkipNode = errors.New("skip this node")

// SkipAll may be returned by a WalkFunc to stop the walk without error.
var SkipAll = errors.New("skip everything")

// WalkFunc is called by Tree.Walk for each key, with its full path.
type WalkFunc func(path string, v *Value) error

// Walk visits every key below the root in depth-first pre-order (a node
// before its children, children in stored order). The root itself is not
// visited. An error returned by fn other than SkipNode and SkipAll stops the
// walk and is returned.
func (t *Tree) Walk(fn WalkFunc) error {
	type frame struct {
		v    *Value
		path string
	}
	stack := make([]frame, 0, 64)
	for i := len(t.root.children) - 1; i >= 0; i-- {
		c := t.root.children[i]
		stack = append(stack, frame{c, "/" + c.name})
	}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		err := fn(f.path, f.v)
		switch {
		case err == nil:
		case errors.Is(err, SkipNode):
			continue
		case errors.Is(err, SkipAll):
			return nil
		default:
			return err
		}
		for i := len(f.v.children) - 1; i >= 0; i-- {
			c := f.v.children[i]
			stack = append(stack, frame{c, f.path + "/" + c.name})
		}
	}
	return nil
}

func newRoot() *Value { return &Value{kind: KindNode, loaded: true} }

// addChild appends c to node p.
func addChild(p, c *Value) {
	c.parent = p
	p.children = append(p.children, c)
}
