package lvm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	sectorSize    = 512 // lvm2's SECTOR_SIZE: labels and headers use 512-byte units on every disk
	labelSectors  = 4   // the label is searched in sectors 0..3 (LABEL_SCAN_SECTORS)
	labelHdrSize  = 32  // struct label_header
	pvHeaderFixed = 40  // pv_uuid[32] + device_size_xl
	diskLocnSize  = 16  // struct disk_locn
	idLen         = 32  // ID_LEN
)

var (
	labelID   = []byte("LABELONE")
	labelType = []byte("LVM2 001")
)

// DiskArea is one entry of a PV header's area lists: a byte range of the
// PV. A data area's Size of 0 means "to the end of the device".
type DiskArea struct {
	Offset, Size uint64
}

// PV is one LVM2 physical volume, as read by ReadPV.
type PV struct {
	// UUID is the PV's identifier as the tools print it
	// ("Qqvzq5-FojN-buD7-wxAP-QSPC-dOIj-D8cBOJ").
	UUID string
	// LabelSector is the 512-byte sector holding the label (0..3).
	LabelSector int
	// DeviceSize is the PV header's device_size_xl in bytes.
	DeviceSize uint64
	// DataAreas are the data areas (normally one, at the first extent).
	DataAreas []DiskArea
	// MetadataAreas are the metadata areas (0, 1 or 2).
	MetadataAreas []*MetadataArea
	// ExtensionVersion and ExtensionFlags are the PV header extension's
	// fields (0 when the header has no extension).
	ExtensionVersion, ExtensionFlags uint32
	// BootloaderAreas are the extension's bootloader areas.
	BootloaderAreas []DiskArea
	// Size is the size of the reader the PV was read from, in bytes.
	Size int64
	// Metadata is the newest valid VG metadata found in the metadata
	// areas, or nil: an orphan PV (in no VG), a PV without metadata areas
	// (pvcreate --metadatacopies 0), or every copy damaged (MetadataErr).
	Metadata *Metadata
	// MetadataErr says why no metadata was found although the PV has
	// metadata areas that are not empty; nil otherwise.
	MetadataErr error
	// Warnings describe damage that was worked around (a damaged area, a
	// fall-back to an older metadata copy).
	Warnings []string

	r io.ReaderAt
}

// ReaderAt returns the reader the PV was read from.
func (pv *PV) ReaderAt() io.ReaderAt { return pv.r }

// Probe reports whether r starts with an LVM2 PV label: "LABELONE" at the
// start of one of the first four 512-byte sectors with type "LVM2 001".
// It does not check the checksum; ReadPV does.
func Probe(r io.ReaderAt) bool {
	buf := make([]byte, labelSectors*sectorSize)
	n, _ := r.ReadAt(buf, 0)
	for s := 0; (s+1)*sectorSize <= n; s++ {
		sec := buf[s*sectorSize:]
		if bytes.Equal(sec[:8], labelID) && bytes.Equal(sec[24:32], labelType) {
			return true
		}
	}
	return false
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ReadPV reads the label, the PV header and the metadata areas of the
// physical volume in r, whose size is size bytes, and selects the newest
// valid copy of its VG metadata. It fails (ErrNotPV, or an error wrapping
// ErrCorrupt) only when the label or PV header is unusable; damaged
// metadata areas are reported in the PV's MetadataErr and Warnings.
func ReadPV(r io.ReaderAt, size int64) (*PV, error) {
	if size < 2*sectorSize {
		return nil, fmt.Errorf("volume/lvm: device of %d bytes is too small for a PV label: %w", size, ErrNotPV)
	}
	n := int64(labelSectors * sectorSize)
	if n > size {
		n = size - size%sectorSize
	}
	buf := make([]byte, n)
	if err := readFull(r, buf, 0); err != nil {
		return nil, fmt.Errorf("volume/lvm: reading the label sectors: %w", err)
	}
	var firstErr error
	for s := 0; int64(s+1)*sectorSize <= n; s++ {
		sec := buf[s*sectorSize : (s+1)*sectorSize]
		if !bytes.Equal(sec[:8], labelID) {
			continue
		}
		pv, err := parseLabel(sec, s)
		if err == nil {
			pv.r, pv.Size = r, size
			pv.readMetadata()
			return pv, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, fmt.Errorf("volume/lvm: no LABELONE in sectors 0-%d: %w", labelSectors-1, ErrNotPV)
}

// parseLabel decodes the label header and the PV header in sector s.
func parseLabel(sec []byte, s int) (*PV, error) {
	le := binary.LittleEndian
	if got := le.Uint64(sec[8:]); got != uint64(s) {
		return nil, corrupt("PV label at sector %d: sector_xl is %d", s, got)
	}
	if want, got := le.Uint32(sec[16:]), lvmCRC(crcInitial, sec[20:sectorSize]); want != got {
		return nil, corrupt("PV label at sector %d: bad CRC (crc_xl 0x%08x, computed 0x%08x)", s, want, got)
	}
	if !bytes.Equal(sec[24:32], labelType) {
		return nil, corrupt("PV label at sector %d: type %q is not \"LVM2 001\"", s, sec[24:32])
	}
	off := int(le.Uint32(sec[20:]))
	if off < labelHdrSize || off > sectorSize-pvHeaderFixed-2*diskLocnSize {
		return nil, corrupt("PV label at sector %d: offset_xl %d outside the sector", s, off)
	}
	pv := &PV{LabelSector: s}
	id := sec[off : off+idLen]
	if err := checkID(id); err != nil {
		return nil, corrupt("PV header at sector %d: pv_uuid: %v", s, err)
	}
	pv.UUID = formatID(id)
	pv.DeviceSize = le.Uint64(sec[off+idLen:])
	pos := off + pvHeaderFixed
	var err error
	if pv.DataAreas, pos, err = diskLocns(sec, pos); err != nil {
		return nil, corrupt("PV header at sector %d: data area list: %v", s, err)
	}
	mdas, pos, err := diskLocns(sec, pos)
	if err != nil {
		return nil, corrupt("PV header at sector %d: metadata area list: %v", s, err)
	}
	for _, a := range mdas {
		pv.MetadataAreas = append(pv.MetadataAreas, &MetadataArea{Offset: a.Offset, Size: a.Size})
	}
	if pos+8 <= sectorSize {
		pv.ExtensionVersion = le.Uint32(sec[pos:])
		pv.ExtensionFlags = le.Uint32(sec[pos+4:])
		if pv.ExtensionVersion != 0 {
			if pv.BootloaderAreas, _, err = diskLocns(sec, pos+8); err != nil {
				return nil, corrupt("PV header extension at sector %d: bootloader area list: %v", s, err)
			}
		}
	}
	return pv, nil
}

// diskLocns reads a list of disk_locn ended by an entry with offset 0 and
// returns the position after that entry.
func diskLocns(sec []byte, pos int) ([]DiskArea, int, error) {
	var out []DiskArea
	for {
		if pos+diskLocnSize > len(sec) {
			return nil, 0, fmt.Errorf("no end-of-list entry before the end of the sector")
		}
		a := DiskArea{binary.LittleEndian.Uint64(sec[pos:]), binary.LittleEndian.Uint64(sec[pos+8:])}
		pos += diskLocnSize
		if a.Offset == 0 {
			return out, pos, nil
		}
		out = append(out, a)
	}
}

// idChars are the characters lvm2 uses in identifiers (lib/uuid/uuid.c).
const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#"

func checkID(id []byte) error {
	for _, c := range id {
		if !bytes.Contains([]byte(idChars), []byte{c}) {
			return fmt.Errorf("invalid character 0x%02x", c)
		}
	}
	return nil
}

// formatID writes a 32-character identifier as the tools print it:
// groups of 6-4-4-4-4-4-6 joined by dashes.
func formatID(id []byte) string {
	var b []byte
	for i, n := range []int{6, 4, 4, 4, 4, 4, 6} {
		if i > 0 {
			b = append(b, '-')
		}
		b = append(b, id[:n]...)
		id = id[n:]
	}
	return string(b)
}

// normID removes the dashes of an identifier as written in metadata text.
func normID(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("-"), nil))
}
