package disk

import (
	"fmt"
	"io"
)

// Check examines the VHDX file at path, read-only, and reports every
// problem it finds, as `qemu-img check` does: both headers (signature,
// checksum, sequence, which is current), both region tables, the metadata
// table and every known item, the log (empty, replayable, or not, and
// why), every BAT entry (its state for the file's type, its offset in the
// file, not overlapping another block, the header section, the regions or
// the log), the sector bitmaps of partially present blocks, and the file's
// size against the blocks. It goes on past every problem it can: a damaged
// structure stops it only where nothing behind it can be decoded (no valid
// header, no region table, no metadata). The error is only for a file that
// cannot be opened at all.
func Check(path string) (*Report, error) {
	f, r, err := OpenCheck(path)
	if f != nil {
		f.Close()
	}
	return r, err
}

// OpenCheck is Check, and also returns the file opened in salvage mode
// when its structures allow reading it (nil otherwise); the caller closes
// it.
func OpenCheck(path string) (*File, *Report, error) {
	osf, size, err := OpenReadOnly(path, ErrNotVHDX)
	if err != nil {
		return nil, nil, err
	}
	f, r := CheckReader(osf, size, path)
	if f == nil {
		osf.Close()
		return nil, r, nil
	}
	f.osFile = osf
	return f, r, nil
}

// CheckReader is OpenCheck for a file read through r, of size bytes. name
// is used in messages.
func CheckReader(r io.ReaderAt, size int64, name string) (*File, *Report) {
	f := parse(r, size, name, parseCheck)
	rep := &Report{Path: name, Format: "VHDX", FileSize: size, Log: f.logState}
	c := f.col
	if f.dataBlocks > 0 {
		rep.Known, rep.Type, rep.VirtualSize = true, f.Type(), f.VirtualSize()
	}
	rep.Notes = append(rep.Notes, f.notes...)
	if rep.Known {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s file, virtual size %d, block size %d, logical sector size %d, %d payload blocks",
			f.Type(), f.VirtualSize(), f.BlockSize(), f.SectorSize(), f.dataBlocks))
	}
	c.Report(rep)
	if c.Fatal() != nil || !c.Salvageable() {
		return nil, rep
	}
	rep.Usable = true
	f.salvage = true
	return f, rep
}
