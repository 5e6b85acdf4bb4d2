package lvm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
)

var (
	// ErrCorrupt marks a damaged on-disk structure or metadata text. It is
	// volume.ErrCorrupt, so callers may test for either.
	ErrCorrupt = volume.ErrCorrupt
	// ErrMissingPV marks an LV (or VG) that needs a physical volume that
	// was not among the PVs given to Assemble.
	ErrMissingPV = errors.New("physical volume missing")
	// ErrUnsupported marks an LV whose segment type cannot be read here. It
	// is volume.ErrUnsupported.
	ErrUnsupported = volume.ErrUnsupported
	// ErrNotPV is returned by ReadPV when no LVM2 label is found.
	ErrNotPV = errors.New("no LVM2 physical volume label")
)

// corrupt returns an error naming the structure and field at fault,
// wrapping ErrCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("volume/lvm: "+format+": %w", append(args, ErrCorrupt)...)
}

// ctxError is an error of this package with more context in front; it
// unwraps to the original.
type ctxError struct {
	msg string
	err error
}

func (e *ctxError) Error() string { return e.msg }
func (e *ctxError) Unwrap() error { return e.err }

// within puts context in front of err: "volume/lvm: <context>: <err>",
// without repeating the package prefix; errors.Is still sees err's chain.
func within(err error, format string, args ...any) error {
	msg := strings.TrimPrefix(err.Error(), "volume/lvm: ")
	return &ctxError{msg: "volume/lvm: " + fmt.Sprintf(format, args...) + ": " + msg, err: err}
}
