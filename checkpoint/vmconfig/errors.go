package vmconfig

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error about file content returned by this package
// is a *FormatError wrapping one of them, so callers can test with
// errors.Is. Failures to open a file are returned as the operating system
// reported them; read failures are a *FormatError around the system's error.
var (
	// ErrBadSignature means a structure does not start with the signature
	// the format requires (file header, object table, key table, replay log).
	ErrBadSignature = errors.New("bad signature")
	// ErrBadChecksum means a stored CRC-32 does not match the data it covers.
	ErrBadChecksum = errors.New("checksum mismatch")
	// ErrTruncated means a structure or value extends past the end of the
	// file.
	ErrTruncated = errors.New("truncated")
	// ErrCorrupt means a field holds a value the format does not allow
	// (sizes that overrun their container, offsets into the headers, loops,
	// malformed XML and the like).
	ErrCorrupt = errors.New("corrupt structure")
	// ErrLimit means the file is larger or more complex than this reader is
	// prepared to handle (see the Max* constants); such a file is almost
	// certainly corrupt, as real configuration files are small.
	ErrLimit = errors.New("exceeds reader limit")
	// ErrUnsupportedVersion means the file header announces a format
	// version this reader does not know.
	ErrUnsupportedVersion = errors.New("unsupported format version")
	// ErrUnknownFormat means Load found neither a binary Hyper-V storage
	// file nor XML.
	ErrUnknownFormat = errors.New("not a Hyper-V configuration file")
)

// FormatError reports a problem with one structure of one file.
type FormatError struct {
	File      string // name of the file at fault, or "" if unknown
	Structure string // the structure, e.g. "header copy 1" or "key table 3 entry"
	Offset    int64  // absolute file offset of the structure, or -1
	Err       error  // what is wrong; wraps one of the sentinels above
}

// Error implements error.
func (e *FormatError) Error() string {
	name := e.File
	if name == "" {
		name = "<input>"
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("vmconfig: %s: %s at offset 0x%x: %v", name, e.Structure, e.Offset, e.Err)
	}
	return fmt.Sprintf("vmconfig: %s: %s: %v", name, e.Structure, e.Err)
}

// Unwrap returns the underlying error, which wraps a sentinel.
func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(file, structure string, off int64, sentinel error, format string, args ...any) error {
	return &FormatError{
		File:      file,
		Structure: structure,
		Offset:    off,
		Err:       fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...),
	}
}
