package disk

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them
// (or an *os.PathError from the operating system), so callers can test with
// errors.Is.
var (
	// ErrNotVHDX means the file identifier signature is missing.
	ErrNotVHDX = errors.New("not a VHDX file")
	// ErrTruncated means a structure extends past the end of the file.
	ErrTruncated = errors.New("file is truncated")
	// ErrChecksum means a stored CRC-32C does not match the data.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrCorrupt means a field holds a value the specification forbids.
	ErrCorrupt = errors.New("corrupt structure")
	// ErrUnsupported means a valid file uses a feature this reader lacks.
	ErrUnsupported = errors.New("unsupported feature")
	// ErrLog means the log cannot be replayed.
	ErrLog = errors.New("log cannot be replayed")
)

// FormatError reports a problem with one field of one file.
type FormatError struct {
	File   string // path of the file at fault
	Field  string // the structure and field, e.g. "header 1: Checksum"
	Offset int64  // file offset of the structure, or -1 if not meaningful
	Err    error  // what is wrong; wraps a sentinel above
}

func (e *FormatError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%s: %s (at offset 0x%x): %v", e.File, e.Field, e.Offset, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.File, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *FormatError) Unwrap() error { return e.Err }

func (f *File) errorf(field string, off int64, sentinel error, format string, args ...any) error {
	return &FormatError{File: f.name, Field: field, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

func (f *File) wrap(field string, off int64, err error) error {
	return &FormatError{File: f.name, Field: field, Offset: off, Err: err}
}
