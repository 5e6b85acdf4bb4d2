package lvm

import (
	"strconv"
	"strings"
)

// Limits on metadata text: lvm2's own metadata is a few KiB to a few MiB.
const (
	// MaxTextSize is the largest metadata text ParseMetadata accepts.
	MaxTextSize = 32 << 20
	// MaxDepth is the deepest nesting of sections ParseMetadata accepts
	// (a VG description nests four deep).
	MaxDepth = 32
)

// ValueKind tells which field of a Value is set.
type ValueKind int

// The kinds of values in metadata text.
const (
	KindInt ValueKind = iota
	KindFloat
	KindString
	KindList
)

// Value is the right-hand side of "key = value" in metadata text.
type Value struct {
	Kind  ValueKind
	Int   int64
	Float float64
	Str   string
	List  []Value // elements of an array: scalars only
}

// Section is a "name { ... }" block of metadata text, or the whole text
// (Name ""). Names are unique within a section.
type Section struct {
	Name     string
	Keys     []string // value names in text order
	Values   map[string]Value
	Children []*Section // subsections in text order
	byName   map[string]*Section
}

// Child returns the subsection called name, or nil.
func (s *Section) Child(name string) *Section {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// Value returns the value called key.
func (s *Section) Value(key string) (Value, bool) {
	if s == nil {
		return Value{}, false
	}
	v, ok := s.Values[key]
	return v, ok
}

// ParseMetadata parses lvm2 metadata text (lvm2's configuration syntax)
// into its top-level section. Text after a NUL byte is ignored. It rejects
// texts over MaxTextSize, sections nested deeper than MaxDepth, duplicate
// names in a section and malformed tokens, with errors wrapping ErrCorrupt.
func ParseMetadata(text []byte) (*Section, error) {
	if len(text) > MaxTextSize {
		return nil, corrupt("metadata text: %d bytes, more than the limit of %d", len(text), MaxTextSize)
	}
	for i, c := range text {
		if c == 0 {
			text = text[:i]
			break
		}
	}
	p := &parser{text: text, line: 1}
	root := newSection("")
	if err := p.items(root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

func newSection(name string) *Section {
	return &Section{Name: name, Values: map[string]Value{}, byName: map[string]*Section{}}
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokString
	tokPunct // one of { } [ ] = ,
)

type token struct {
	kind tokKind
	text string // word or unescaped string; the punctuation byte
	line int
}

type parser struct {
	text   []byte
	pos    int
	line   int
	peeked *token
}

func (p *parser) errf(line int, format string, args ...any) error {
	return corrupt("metadata text line %d: "+format, append([]any{line}, args...)...)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isPunct(c byte) bool {
	switch c {
	case '{', '}', '[', ']', '=', ',':
		return true
	}
	return false
}

func (p *parser) next() (token, error) {
	if p.peeked != nil {
		t := *p.peeked
		p.peeked = nil
		return t, nil
	}
	for p.pos < len(p.text) {
		c := p.text[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case isSpace(c):
			p.pos++
		case c == '#':
			for p.pos < len(p.text) && p.text[p.pos] != '\n' {
				p.pos++
			}
		default:
			return p.token()
		}
	}
	return token{kind: tokEOF, line: p.line}, nil
}

func (p *parser) peek() (token, error) {
	if p.peeked == nil {
		t, err := p.next()
		if err != nil {
			return t, err
		}
		p.peeked = &t
	}
	return *p.peeked, nil
}

// token reads one token starting at a non-space byte.
func (p *parser) token() (token, error) {
	c := p.text[p.pos]
	line := p.line
	if isPunct(c) {
		p.pos++
		return token{kind: tokPunct, text: string(c), line: line}, nil
	}
	if c == '"' || c == '\'' {
		quote := c
		var sb strings.Builder
		for i := p.pos + 1; i < len(p.text); i++ {
			switch b := p.text[i]; {
			case b == quote:
				p.pos = i + 1
				return token{kind: tokString, text: sb.String(), line: line}, nil
			case b == '\\' && quote == '"' && i+1 < len(p.text):
				i++
				if p.text[i] == '\n' {
					p.line++
				}
				sb.WriteByte(p.text[i])
			default:
				if b == '\n' {
					p.line++
				}
				sb.WriteByte(b)
			}
		}
		return token{}, p.errf(line, "unterminated string")
	}
	start := p.pos
	for p.pos < len(p.text) {
		b := p.text[p.pos]
		if isSpace(b) || isPunct(b) || b == '#' || b == '"' || b == '\'' {
			break
		}
		if b < 0x20 || b == 0x7f {
			return token{}, p.errf(line, "control character 0x%02x", b)
		}
		p.pos++
	}
	return token{kind: tokWord, text: string(p.text[start:p.pos]), line: line}, nil
}

// items parses "key = value" and "name { ... }" until '}' (depth > 0,
// consumed) or the end of the text (depth 0).
func (p *parser) items(s *Section, depth int) error {
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tokEOF:
			if depth > 0 {
				return p.errf(t.line, "section %q not closed", s.Name)
			}
			return nil
		case t.kind == tokPunct && t.text == "}":
			if depth == 0 {
				return p.errf(t.line, "unexpected '}'")
			}
			return nil
		case t.kind != tokWord:
			return p.errf(t.line, "expected a name, found %s", describe(t))
		}
		name := t.text
		if _, dup := s.Values[name]; dup || s.byName[name] != nil {
			return p.errf(t.line, "duplicate name %q in section %q", name, s.Name)
		}
		op, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case op.kind == tokPunct && op.text == "{":
			if depth+1 > MaxDepth {
				return p.errf(op.line, "sections nested deeper than %d", MaxDepth)
			}
			child := newSection(name)
			if err := p.items(child, depth+1); err != nil {
				return err
			}
			s.Children = append(s.Children, child)
			s.byName[name] = child
		case op.kind == tokPunct && op.text == "=":
			v, err := p.value()
			if err != nil {
				return err
			}
			s.Keys = append(s.Keys, name)
			s.Values[name] = v
		default:
			return p.errf(op.line, "expected '=' or '{' after %q, found %s", name, describe(op))
		}
	}
}

func describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of text"
	case tokString:
		return "a string"
	}
	s := t.text
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return strconv.Quote(s)
}

func (p *parser) value() (Value, error) {
	t, err := p.next()
	if err != nil {
		return Value{}, err
	}
	if t.kind == tokPunct && t.text == "[" {
		var list []Value
		for {
			t, err := p.peek()
			if err != nil {
				return Value{}, err
			}
			if t.kind == tokPunct && t.text == "]" {
				p.next()
				return Value{Kind: KindList, List: list}, nil
			}
			if len(list) > 0 {
				if t.kind != tokPunct || t.text != "," {
					return Value{}, p.errf(t.line, "expected ',' or ']' in array, found %s", describe(t))
				}
				p.next()
			}
			t, err = p.next()
			if err != nil {
				return Value{}, err
			}
			v, err := p.scalar(t)
			if err != nil {
				return Value{}, err
			}
			list = append(list, v)
		}
	}
	return p.scalar(t)
}

func (p *parser) scalar(t token) (Value, error) {
	switch t.kind {
	case tokString:
		return Value{Kind: KindString, Str: t.text}, nil
	case tokWord:
		if strings.Contains(t.text, ".") {
			f, err := strconv.ParseFloat(t.text, 64)
			if err != nil || !isNumberWord(t.text) {
				return Value{}, p.errf(t.line, "bad number %s", describe(t))
			}
			return Value{Kind: KindFloat, Float: f}, nil
		}
		if !isNumberWord(t.text) {
			return Value{}, p.errf(t.line, "expected a value, found %s", describe(t))
		}
		i, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return Value{}, p.errf(t.line, "number %s out of range", describe(t))
		}
		return Value{Kind: KindInt, Int: i}, nil
	}
	return Value{}, p.errf(t.line, "expected a value, found %s", describe(t))
}

// isNumberWord reports whether w is an optionally signed run of digits
// with at most one '.'.
func isNumberWord(w string) bool {
	if w != "" && (w[0] == '-' || w[0] == '+') {
		w = w[1:]
	}
	digits, dots := 0, 0
	for i := 0; i < len(w); i++ {
		switch {
		case w[i] >= '0' && w[i] <= '9':
			digits++
		case w[i] == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// String renders a value roughly as lvm2 writes it (for messages).
func (v Value) String() string {
	switch v.Kind {
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case KindString:
		return strconv.Quote(v.Str)
	}
	parts := make([]string, len(v.List))
	for i, e := range v.List {
		parts[i] = e.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// kindName names a kind for error messages.
func kindName(k ValueKind) string {
	return [...]string{"an integer", "a float", "a string", "an array"}[k]
}
