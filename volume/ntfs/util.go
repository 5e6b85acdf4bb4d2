package ntfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/ckptfs/ckptfs/volume"
)

// corruptf returns an error wrapping volume.ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("ntfs: "+format+": %w", append(args, volume.ErrCorrupt)...)
}

// badf is corruptf without the "ntfs: " prefix, for low-level errors that
// callers wrap with context.
func badf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, volume.ErrCorrupt)...)
}

var (
	le16 = binary.LittleEndian.Uint16
	le32 = binary.LittleEndian.Uint32
	le64 = binary.LittleEndian.Uint64
)

// device bounds every read to the volume and turns short reads into
// corruption errors (a structure pointing past the end of the volume).
type device struct {
	r    io.ReaderAt
	size int64 // bytes; reads at or beyond it are refused
}

// readFull fills p from offset off or fails.
func (d *device) readFull(p []byte, off int64) error {
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return badf("read of %d bytes at offset %d beyond end of volume (%d bytes)", len(p), off, d.size)
	}
	n, err := d.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return badf("short read of %d bytes at offset %d (got %d)", len(p), off, n)
	}
	return fmt.Errorf("read at offset %d: %w", off, err)
}

// filetime converts an NTFS timestamp (100 ns units since 1601-01-01 UTC).
func filetime(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	const epochDiff = 11644473600 // seconds from 1601 to 1970
	secs := int64(v/10_000_000) - epochDiff
	nsec := int64(v%10_000_000) * 100
	return time.Unix(secs, nsec).UTC()
}

// utf16le decodes little-endian UTF-16 bytes into code units.
func utf16le(b []byte) []uint16 {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le16(b[2*i:])
	}
	return u
}

// utf16ToString converts UTF-16 to UTF-8. Unpaired surrogates, which NTFS
// allows in names, are encoded as three-byte sequences (WTF-8) so that the
// name round-trips through stringToUTF16.
func utf16ToString(u []uint16) string {
	b := make([]byte, 0, len(u)+len(u)/2)
	for i := 0; i < len(u); i++ {
		c := rune(u[i])
		switch {
		case c >= 0xD800 && c < 0xDC00 && i+1 < len(u) && u[i+1] >= 0xDC00 && u[i+1] < 0xE000:
			r := 0x10000 + (c-0xD800)<<10 + (rune(u[i+1]) - 0xDC00)
			b = utf8.AppendRune(b, r)
			i++
		case c >= 0xD800 && c < 0xE000:
			b = append(b, byte(0xE0|c>>12), byte(0x80|(c>>6)&0x3F), byte(0x80|c&0x3F))
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return string(b)
}

// stringToUTF16 is the inverse of utf16ToString. It reports false for byte
// sequences that no NTFS name can produce.
func stringToUTF16(s string) ([]uint16, bool) {
	u := make([]uint16, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			// A WTF-8 encoded lone surrogate: ED A0..BF 80..BF.
			if i+2 < len(s) && s[i] == 0xED && s[i+1] >= 0xA0 && s[i+1] <= 0xBF && s[i+2]&0xC0 == 0x80 {
				u = append(u, uint16(0xD000|uint16(s[i+1]&0x3F)<<6|uint16(s[i+2]&0x3F)))
				i += 3
				continue
			}
			return nil, false
		}
		if r >= 0x10000 {
			r -= 0x10000
			u = append(u, uint16(0xD800+(r>>10)), uint16(0xDC00+(r&0x3FF)))
		} else {
			u = append(u, uint16(r))
		}
		i += n
	}
	return u, true
}
