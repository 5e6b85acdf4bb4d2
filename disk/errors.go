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
	// ErrMissingData means a read touched bytes a damaged file opened in
	// salvage mode cannot supply (see ReadOptions.Salvage and Missing).
	ErrMissingData = errors.New("data missing from a damaged file")
	// ErrSalvageable is matched (errors.Is) by the error of a strict open
	// that a salvage open gets past: the file is damaged (cut short, BAT
	// entries past its end or overlapping, a region that cannot be read)
	// but what remains can be read with ReadOptions.Salvage. It is never
	// part of an error's message; callers add their own advice.
	ErrSalvageable = errors.New("a salvage open can read what remains")
)

// FormatError reports a problem with one field of one file.
type FormatError struct {
	File   string // path of the file at fault
	Field  string // the structure and field, e.g. "header 1: Checksum"
	Offset int64  // file offset of the structure, or -1 if not meaningful
	Err    error  // what is wrong; wraps a sentinel above
	// Salvageable: a salvage open gets past this error (see
	// ErrSalvageable).
	Salvageable bool
}

func (e *FormatError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%s: %s (at offset 0x%x): %v", e.File, e.Field, e.Offset, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.File, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *FormatError) Unwrap() error { return e.Err }

// Is matches ErrSalvageable when the error is Salvageable.
func (e *FormatError) Is(target error) bool { return target == ErrSalvageable && e.Salvageable }

func (f *File) errorf(field string, off int64, sentinel error, format string, args ...any) error {
	return &FormatError{File: f.name, Field: field, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

func (f *File) wrap(field string, off int64, err error) error {
	return &FormatError{File: f.name, Field: field, Offset: off, Err: err}
}
