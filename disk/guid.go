package disk

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is a Microsoft GUID in its on-disk byte order: the first three fields
// little-endian, the last eight bytes as stored.
type GUID [16]byte

// IsZero reports whether g is all zeros.
func (g GUID) IsZero() bool { return g == GUID{} }

// String formats g as Windows does, upper case without braces:
// "F88D4D92-0F8A-4C1E-9B8E-5A3C2D1E0F11".
func (g GUID) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(g[0:4]),
		binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]),
		g[8:10], g[10:16])
}

// Braced formats g as Hyper-V writes parent_linkage: lower case with braces.
func (g GUID) Braced() string { return "{" + strings.ToLower(g.String()) + "}" }

// ParseGUID parses the textual form of a GUID. Either letter case is
// accepted, with or without enclosing braces.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
		t = t[1 : len(t)-1]
	}
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return g, fmt.Errorf("%w: %q is not a GUID", ErrCorrupt, s)
	}
	raw, err := hex.DecodeString(t[0:8] + t[9:13] + t[14:18] + t[19:23] + t[24:36])
	if err != nil {
		return g, fmt.Errorf("%w: %q is not a GUID", ErrCorrupt, s)
	}
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(raw[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(raw[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(raw[6:8]))
	copy(g[8:], raw[8:])
	return g, nil
}

// mustGUID parses a constant GUID; it panics only on a programming error.
func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// NewGUID returns a random (version 4) GUID.
func NewGUID() GUID {
	var g GUID
	if _, err := rand.Read(g[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	g[7] = g[7]&0x0f | 0x40 // version 4 lives in the high nibble of field 3 (little-endian)
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g
}
