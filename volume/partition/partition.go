// Package partition reads the partition table of a disk image through an
// io.ReaderAt.
//
// GPT headers and entry arrays are parsed by github.com/diskfs/go-diskfs
// (CRC checks and the fall-back to the backup GPT come from there), driven
// through a small read-only adapter from io.ReaderAt to its backend.File.
// The four primary MBR entries are parsed by go-diskfs too. Two things are
// done here because go-diskfs does not do them, or not safely:
//
//   - Extended partitions: go-diskfs does not follow EBR chains, so logical
//     partitions are read here, numbered from 5 in chain order as Linux does.
//   - Untrusted headers: go-diskfs allocates the partition entry array from
//     the header's entry count and size before checking anything, so a
//     corrupt header could demand gigabytes. Both GPT headers are
//     screened here before go-diskfs sees the disk, and any panic inside it
//     is turned into an error.
//
// The decision which table to read follows Linux: a GPT is read only when
// the MBR carries a 0xEE (protective) entry; otherwise the MBR is read. A
// first sector that is a FAT, exFAT or NTFS boot sector is a whole-disk
// ("superfloppy") file system and yields no partitions.
package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/ckptfs/ckptfs/volume"
)

// Partition is one partition of a disk.
type Partition struct {
	// Number is the partition number as Linux assigns it: the 1-based GPT
	// entry index, the MBR slot 1-4, or 5 and up for logical partitions in
	// EBR chain order.
	Number int
	// Start and Size are in bytes from the start of the disk.
	Start, Size int64
	// Type is the GPT partition type name ("EFI System", "Microsoft basic
	// data", "Linux filesystem", ...) or its GUID when unknown; for MBR the
	// type byte as "0x07".
	Type string
	// Name is the GPT partition name ("" for MBR).
	Name string
	// GUID is the GPT unique partition GUID (upper case), or for MBR the
	// Linux PARTUUID form "<disk signature>-<number>", e.g. "1a2b3c4d-05".
	GUID string
}

// Label returns a name for the partition that is safe as a single file-name
// component: the GPT name if it has one, else the type name. Slashes,
// backslashes and control characters become '_'.
func (p Partition) Label() string {
	if s := sanitize(p.Name); s != "" {
		return s
	}
	if s := sanitize(p.Type); s != "" {
		return s
	}
	return fmt.Sprintf("partition%d", p.Number)
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '_'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if s == "." || s == ".." {
		s = strings.ReplaceAll(s, ".", "_")
	}
	return s
}

// Limits that keep corrupt tables from costing much.
const (
	maxGPTArrayBytes = 1 << 20 // entry array size accepted before go-diskfs allocates it
	maxEBRs          = 256     // logical partitions followed in one EBR chain
)

// Read returns the partitions of a disk of size bytes whose logical sector
// size is sectorSize (512 or 4096; 0 means 512). A disk without a partition
// table yields an empty slice and a nil error. Partitions are sorted by
// Number; an MBR extended container itself is not returned. Partitions that
// start beyond the end of the disk are dropped and those that run past it
// are truncated, as Linux does.
//
// If the MBR is protective but no GPT is found with sectorSize, the other
// common sector size (512 or 4096) is tried, since a disk's GPT is the best
// witness of the sector size it was partitioned with.
func Read(r io.ReaderAt, size int64, sectorSize int) ([]Partition, error) {
	if sectorSize == 0 {
		sectorSize = 512
	}
	if sectorSize < 512 || sectorSize > 65536 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("partition: invalid logical sector size %d", sectorSize)
	}
	if size < 512 {
		return []Partition{}, nil
	}
	sec0 := make([]byte, 512)
	if _, err := readFull(r, sec0, 0, size); err != nil {
		return nil, fmt.Errorf("partition: reading sector 0: %w", err)
	}
	if sec0[510] != 0x55 || sec0[511] != 0xAA {
		return []Partition{}, nil
	}
	if isBootSector(sec0) {
		return []Partition{}, nil
	}
	if hasProtectiveEntry(sec0) {
		var firstErr error
		for _, ss := range sectorSizeCandidates(sectorSize) {
			parts, err := readGPT(r, size, ss)
			if err == nil {
				return parts, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		return nil, firstErr
	}
	return readMBR(r, size, sectorSize, sec0)
}

func sectorSizeCandidates(ss int) []int {
	switch ss {
	case 512:
		return []int{512, 4096}
	case 4096:
		return []int{4096, 512}
	}
	return []int{ss}
}

// readFull reads len(p) bytes at off, treating reads past size as errors.
func readFull(r io.ReaderAt, p []byte, off, size int64) (int, error) {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return 0, fmt.Errorf("read of %d bytes at %d beyond end of disk (%d bytes): %w", len(p), off, size, io.ErrUnexpectedEOF)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// isBootSector reports whether sec0 is the boot sector of a whole-disk FAT,
// exFAT or NTFS file system rather than an MBR.
func isBootSector(b []byte) bool {
	if string(b[3:11]) == "NTFS    " || string(b[3:11]) == "EXFAT   " {
		return true
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return false
	}
	bps := binary.LittleEndian.Uint16(b[11:])
	spc := b[13]
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 {
		return false
	}
	if binary.LittleEndian.Uint16(b[14:]) == 0 || b[16] == 0 {
		return false
	}
	return string(b[54:59]) == "FAT12" || string(b[54:59]) == "FAT16" ||
		string(b[82:87]) == "FAT32" || string(b[54:59]) == "FAT  "
}

func hasProtectiveEntry(sec0 []byte) bool {
	for i := 0; i < 4; i++ {
		if sec0[446+16*i+4] == 0xEE {
			return true
		}
	}
	return false
}

// readGPT reads a GPT with go-diskfs after screening both headers.
func readGPT(r io.ReaderAt, size int64, ss int) (parts []Partition, err error) {
	sectors := size / int64(ss)
	if sectors < 3 {
		return nil, fmt.Errorf("partition: disk of %d bytes too small for a GPT with %d-byte sectors: %w", size, ss, volume.ErrCorrupt)
	}
	for _, lba := range []int64{1, sectors - 1} {
		if err := screenGPTHeader(r, size, ss, lba); err != nil {
			return nil, err
		}
	}
	defer func() {
		if p := recover(); p != nil {
			parts, err = nil, fmt.Errorf("partition: GPT parser failed: %v: %w", p, volume.ErrCorrupt)
		}
	}()
	tbl, err := gpt.Read(&readerFile{r: r, size: size}, ss, ss)
	if err != nil {
		return nil, fmt.Errorf("partition: GPT with %d-byte sectors: %v: %w", ss, err, volume.ErrCorrupt)
	}
	parts = []Partition{}
	for _, p := range tbl.Partitions {
		if p == nil || p.Type == gpt.Unused {
			continue
		}
		if p.End < p.Start || p.Start >= uint64(sectors) {
			continue
		}
		end := p.End
		if end >= uint64(sectors) {
			end = uint64(sectors) - 1
		}
		parts = append(parts, Partition{
			Number: p.Index,
			Start:  int64(p.Start) * int64(ss),
			Size:   int64(end-p.Start+1) * int64(ss),
			Type:   gptTypeName(p.Type),
			Name:   p.Name,
			GUID:   strings.ToUpper(p.GUID),
		})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

// screenGPTHeader rejects a GPT header that is valid (signature and CRC) but
// whose entry array go-diskfs could not allocate safely.
func screenGPTHeader(r io.ReaderAt, size int64, ss int, lba int64) error {
	h := make([]byte, ss)
	if _, err := readFull(r, h, lba*int64(ss), size); err != nil {
		return fmt.Errorf("partition: reading GPT header at LBA %d: %w", lba, err)
	}
	if string(h[:8]) != "EFI PART" {
		return nil
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < 92 || int(hsize) > ss {
		return nil // go-diskfs rejects it before allocating
	}
	want := binary.LittleEndian.Uint32(h[16:])
	hc := append([]byte(nil), h[:hsize]...)
	copy(hc[16:20], []byte{0, 0, 0, 0})
	if crc32.ChecksumIEEE(hc) != want {
		return nil
	}
	count := uint64(binary.LittleEndian.Uint32(h[80:]))
	esize := uint64(binary.LittleEndian.Uint32(h[84:]))
	if esize != 128 {
		return fmt.Errorf("partition: GPT header at LBA %d: entry size %d (want 128): %w", lba, esize, volume.ErrCorrupt)
	}
	if count*esize > maxGPTArrayBytes {
		return fmt.Errorf("partition: GPT header at LBA %d: %d partition entries is too many: %w", lba, count, volume.ErrCorrupt)
	}
	first := binary.LittleEndian.Uint64(h[72:])
	if first > uint64(size)/uint64(ss) {
		return fmt.Errorf("partition: GPT header at LBA %d: entry array LBA %d beyond end of disk: %w", lba, first, volume.ErrCorrupt)
	}
	return nil
}

// readMBR reads the four primary entries with go-diskfs and follows EBR
// chains itself.
func readMBR(r io.ReaderAt, size int64, ss int, sec0 []byte) ([]Partition, error) {
	tbl, err := mbr.Read(&readerFile{r: r, size: size}, ss, ss)
	if err != nil {
		// An invalid boot indicator means this is not a partition table
		// (Linux reasons the same way).
		return []Partition{}, nil
	}
	sig := binary.LittleEndian.Uint32(sec0[440:])
	sectors := uint64(size) / uint64(ss)
	parts := []Partition{}
	add := func(num int, typ byte, startLBA, n uint64) {
		if n == 0 || startLBA == 0 || startLBA >= sectors {
			return
		}
		if startLBA+n > sectors {
			n = sectors - startLBA
		}
		parts = append(parts, Partition{
			Number: num,
			Start:  int64(startLBA) * int64(ss),
			Size:   int64(n) * int64(ss),
			Type:   fmt.Sprintf("0x%02x", typ),
			GUID:   fmt.Sprintf("%08x-%02x", sig, num),
		})
	}
	next := 5
	for _, p := range tbl.Partitions {
		if p == nil || p.Type == mbr.Empty {
			continue
		}
		if isExtended(byte(p.Type)) {
			if p.Size == 0 || p.Start == 0 {
				continue
			}
			logicals, err := readEBRChain(r, size, ss, uint64(p.Start), uint64(p.Size))
			if err != nil {
				return nil, err
			}
			for _, l := range logicals {
				add(next, l.typ, l.start, l.size)
				next++
			}
			continue
		}
		add(p.Index, byte(p.Type), uint64(p.Start), uint64(p.Size))
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

type logical struct {
	typ         byte
	start, size uint64
}

// readEBRChain follows the chain of extended boot records of an extended
// partition at extStart (in sectors). Data entries are relative to their
// own EBR, link entries to the start of the extended partition.
func readEBRChain(r io.ReaderAt, size int64, ss int, extStart, extSize uint64) ([]logical, error) {
	sectors := uint64(size) / uint64(ss)
	var out []logical
	seen := map[uint64]bool{}
	ebr := extStart
	buf := make([]byte, 512)
	for i := 0; i < maxEBRs; i++ {
		if ebr >= sectors || seen[ebr] {
			break
		}
		seen[ebr] = true
		if _, err := readFull(r, buf, int64(ebr)*int64(ss), size); err != nil {
			return nil, fmt.Errorf("partition: reading EBR at LBA %d: %w", ebr, err)
		}
		if buf[510] != 0x55 || buf[511] != 0xAA {
			break
		}
		var link uint64
		for j := 0; j < 4; j++ {
			e := buf[446+16*j : 446+16*(j+1)]
			typ := e[4]
			start := uint64(binary.LittleEndian.Uint32(e[8:]))
			n := uint64(binary.LittleEndian.Uint32(e[12:]))
			if typ == 0 || n == 0 {
				continue
			}
			if isExtended(typ) {
				if link == 0 && start != 0 {
					link = extStart + start
				}
				continue
			}
			if e[0] != 0 && e[0] != 0x80 {
				continue
			}
			abs := ebr + start
			// Entries 3 and 4 of an EBR sometimes hold garbage; accept
			// them only when they lie inside the extended partition.
			if j >= 2 && (abs < extStart || abs+n > extStart+extSize) {
				continue
			}
			out = append(out, logical{typ: typ, start: abs, size: n})
		}
		if link == 0 {
			break
		}
		ebr = link
	}
	return out, nil
}

// readerFile adapts an io.ReaderAt of known size to go-diskfs's read-only
// backend.File. go-diskfs uses ReadAt, and Seek to find the disk size for
// the backup GPT.
type readerFile struct {
	r    io.ReaderAt
	size int64
	pos  int64
}

func (f *readerFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("partition: negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > f.size-off {
		p = p[:f.size-off]
		short = true
	}
	n, err := f.r.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (f *readerFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *readerFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		off += f.size
	default:
		return 0, errors.New("partition: bad whence")
	}
	if off < 0 {
		return 0, errors.New("partition: negative position")
	}
	f.pos = off
	return off, nil
}

func (f *readerFile) Close() error               { return nil }
func (f *readerFile) Stat() (fs.FileInfo, error) { return fileInfo{size: f.size}, nil }

type fileInfo struct{ size int64 }

func (i fileInfo) Name() string       { return "disk" }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return 0o444 }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }
