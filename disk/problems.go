package disk

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// ReadOptions change how a disk file is opened for reading (OpenWith).
type ReadOptions struct {
	// Salvage opens a damaged file as far as its data can still be told
	// apart from what is lost: a file cut short (BAT entries, sector
	// bitmaps or blocks past its end), BAT entries that are invalid, lie
	// past the end of the file or overlap each other or a structure, and
	// regions the operating system fails to read. The blocks concerned
	// report their bytes as Missing in BlockExtents, never as zeros or as
	// the parent's data. A partially present block whose sector bitmap
	// is lost is Missing whole: which of its sectors the file held is
	// unknown. Blocks whose BAT entries overlap are all Missing: which
	// one owns the bytes is unknown. Headers, region tables, metadata and
	// a log that cannot be replayed still fail: there is nothing to read
	// without them.
	Salvage bool
}

// Severity says how bad a Problem is.
type Severity uint8

const (
	// SeverityError: the file breaks the specification; some data may be
	// lost or unreadable.
	SeverityError Severity = iota
	// SeverityWarning: something is wrong, but every byte still reads as
	// intended (a damaged header copy whose twin is intact, ...).
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Problem is one thing wrong with a file.
type Problem struct {
	Severity Severity
	// Structure names what is at fault: "header 2", "region table 1",
	// "metadata item Virtual Disk Size", "BAT entry 4711", "sector bitmap
	// of chunk 3", "log", "footer", ...
	Structure string
	// Offset is the file offset of the structure, -1 when none applies.
	Offset int64
	// Err names the file and the field, as the error a strict open
	// returns; it wraps a sentinel of this package.
	Err error
}

func (p Problem) String() string { return p.Severity.String() + ": " + p.Err.Error() }

// Kind is the Structure without its trailing number: problems are counted
// (and capped) per kind.
func (p Problem) Kind() string {
	return strings.TrimRight(p.Structure, "0123456789 ")
}

// MaxProblemsPerKind caps the problems a Report lists per kind; the rest
// are only counted (Report.Omitted), so absurd inputs cannot make a report
// unbounded.
const MaxProblemsPerKind = 100

// Report is what checking one disk file found. See Check.
type Report struct {
	Path     string
	Format   string // "VHDX" or "VHD"
	FileSize int64
	// Type and VirtualSize are known when the metadata (VHDX) or footer
	// (VHD) could be decoded; Known says whether they were.
	Known       bool
	Type        Type
	VirtualSize int64
	// Usable says the structures needed to read the disk decoded: a
	// salvage open succeeds (possibly with lost blocks).
	Usable bool
	// Log is the state of a VHDX file's log: "clean" (no LogGuid),
	// "clean (LogGuid set, no valid entry)", "dirty (replayed in
	// memory)", "unreplayable" (see the problems), or "" when the parse
	// stopped before the log or the format has none.
	Log string
	// Problems are listed in the order they were found, at most
	// MaxProblemsPerKind of each kind.
	Problems []Problem
	// Omitted counts the problems not listed, by kind.
	Omitted map[string]int
	// Notes describe the file: which header copy is current, the log's
	// state, how much of the file the blocks use.
	Notes []string

	omittedErrors int
}

// Errors counts the problems of severity error, listed or omitted.
func (r *Report) Errors() int { return r.count(SeverityError) }

// Warnings counts the problems of severity warning, listed or omitted.
func (r *Report) Warnings() int { return r.count(SeverityWarning) }

func (r *Report) count(s Severity) int {
	n := 0
	for _, p := range r.Problems {
		if p.Severity == s {
			n++
		}
	}
	if s == SeverityError {
		return n + r.omittedErrors
	}
	return n + r.omitted() - r.omittedErrors
}

func (r *Report) omitted() int {
	n := 0
	for _, k := range r.Omitted {
		n += k
	}
	return n
}

// Clean reports a file with no problem at all.
func (r *Report) Clean() bool { return len(r.Problems) == 0 && len(r.Omitted) == 0 }

// Level says how far a parser can go past a problem it found.
type Level uint8

const (
	// Fatal: nothing further can be decoded; every mode stops.
	Fatal Level = iota
	// Checkable: the file breaks the specification in a way a reader
	// must not guess around, but the remaining structures can still be
	// examined: Check goes on, an open stops.
	Checkable
	// Salvageable: the damage is confined to blocks whose bytes then read
	// as missing: a salvage open and Check go on, a strict open stops.
	Salvageable
)

// Collector gathers the problems a parser finds. The parsers of this
// package and of disk/vhd decode a file once, whatever the mode, and ask
// the collector at each problem whether to stop: a strict open is a
// salvage parse that refuses the result if any error was recorded (see
// StrictError), so the strict, salvage and check modes share every check
// and every message.
type Collector struct {
	// Check: go on past Checkable problems too.
	Check bool
	// Problems found so far (at most MaxProblemsPerKind per kind).
	Problems []Problem
	// Omitted counts problems past the cap, by kind.
	Omitted       map[string]int
	omittedErrors int
	counts        map[string]int
	// fatal is the error the parse stopped at, if it did; blocking is
	// the first error a salvage open cannot pass.
	fatal, blocking error
}

// Error records a problem of severity error found at level lv and returns
// err if the parser must stop there, nil if it may go on.
func (c *Collector) Error(lv Level, structure string, off int64, err error) error {
	c.add(Problem{SeverityError, structure, off, err})
	if lv != Salvageable && c.blocking == nil {
		c.blocking = err
	}
	if lv == Fatal || (lv == Checkable && !c.Check) {
		c.fatal = err
		return err
	}
	return nil
}

// Warning records a problem of severity warning.
func (c *Collector) Warning(structure string, off int64, err error) {
	c.add(Problem{SeverityWarning, structure, off, err})
}

// Stop records that the parse stops at err, already recorded, and returns
// it.
func (c *Collector) Stop(err error) error {
	c.fatal = err
	if c.blocking == nil {
		c.blocking = err
	}
	return err
}

func (c *Collector) add(p Problem) {
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	k := p.Kind()
	c.counts[k]++
	if c.counts[k] > MaxProblemsPerKind {
		if c.Omitted == nil {
			c.Omitted = map[string]int{}
		}
		c.Omitted[k]++
		if p.Severity == SeverityError {
			c.omittedErrors++
		}
		return
	}
	c.Problems = append(c.Problems, p)
}

// Fatal is the error the parse stopped at, or nil.
func (c *Collector) Fatal() error { return c.fatal }

// Salvageable reports that a salvage open gets past every problem
// recorded: none is Fatal or Checkable.
func (c *Collector) Salvageable() bool { return c.blocking == nil }

// StrictError is what a strict open returns: the first error recorded (as
// the parse order found it), or nil. When the parse got past every error
// (a salvage open succeeds), the error also matches ErrSalvageable.
func (c *Collector) StrictError() error {
	for _, p := range c.Problems {
		if p.Severity != SeverityError {
			continue
		}
		if c.blocking != nil {
			return p.Err
		}
		var fe *FormatError
		if errors.As(p.Err, &fe) {
			x := *fe
			x.Salvageable = true
			return &x
		}
		return MarkSalvageable(p.Err)
	}
	return c.blocking
}

// MarkSalvageable returns err, unchanged in its message, also matching
// ErrSalvageable: for errors a reader in salvage mode gets past, such as
// a failed read of a block's data.
func MarkSalvageable(err error) error {
	if err == nil || errors.Is(err, ErrSalvageable) {
		return err
	}
	return fmt.Errorf("%w%w", err, salvageMark{})
}

// salvageMark makes a wrapped error match ErrSalvageable without changing
// its message.
type salvageMark struct{}

func (salvageMark) Error() string        { return "" }
func (salvageMark) Is(target error) bool { return target == ErrSalvageable }

// Report fills r's problem lists from the collector.
func (c *Collector) Report(r *Report) {
	r.Problems = c.Problems
	r.Omitted = c.Omitted
	r.omittedErrors = c.omittedErrors
	r.Notes = append(r.Notes, c.omittedNotes()...)
}

func (c *Collector) omittedNotes() []string {
	kinds := make([]string, 0, len(c.Omitted))
	for k := range c.Omitted {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var out []string
	for _, k := range kinds {
		out = append(out, fmt.Sprintf("%d more %s problems not listed", c.Omitted[k], k))
	}
	return out
}

// Passed are the messages of the errors recorded and the counts of those
// not listed: what a salvage open found wrong and went past, for its
// warnings.
func (c *Collector) Passed() []string {
	var out []string
	for _, p := range c.Problems {
		if p.Severity == SeverityError {
			out = append(out, p.Err.Error())
		}
	}
	return append(out, c.omittedNotes()...)
}

// ReadTable reads b at offset off of r, a file whose readable bytes end
// at size, for a block table. If the read fails, it is retried in 4 KiB
// pieces, and each piece that still fails is cleared and passed to bad
// (its range within b and the error); ReadTable returns what bad returns
// to stop. A read reaching size may end with io.EOF.
func ReadTable(r io.ReaderAt, b []byte, off, size int64, bad func(lo, hi int64, err error) error) error {
	ok := func(p []byte, at int64) error {
		_, err := r.ReadAt(p, at)
		if err == nil || errors.Is(err, io.EOF) && at+int64(len(p)) >= size {
			return nil
		}
		return err
	}
	if ok(b, off) == nil {
		return nil
	}
	const piece = LogSectorSize
	for lo := int64(0); lo < int64(len(b)); lo += piece {
		hi := min(lo+piece, int64(len(b)))
		if err := ok(b[lo:hi], off+lo); err != nil {
			clear(b[lo:hi])
			if err := bad(lo, hi, err); err != nil {
				return err
			}
		}
	}
	return nil
}
