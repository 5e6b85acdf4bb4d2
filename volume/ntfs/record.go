package ntfs

import (
	"fmt"
	"math"
	"math/bits"
)

// Attribute types.
const (
	atStandardInformation = 0x10
	atAttributeList       = 0x20
	atFileName            = 0x30
	atVolumeName          = 0x60
	atData                = 0x80
	atIndexRoot           = 0x90
	atIndexAllocation     = 0xA0
	atBitmap              = 0xB0
	atReparsePoint        = 0xC0
	atEnd                 = 0xFFFFFFFF
)

// Attribute header flags.
const (
	attrFlagCompressionMask = 0x00FF
	attrFlagEncrypted       = 0x4000
	attrFlagSparse          = 0x8000
)

// MFT record header flags.
const (
	recInUse     = 0x0001
	recDirectory = 0x0002
)

// File attribute flags ($STANDARD_INFORMATION, $FILE_NAME).
const (
	faSystem       = 0x00000004
	faReparsePoint = 0x00000400
	faCompressed   = 0x00000800
	faEncrypted    = 0x00004000
	faDirIndex     = 0x10000000 // $FILE_NAME only: has a $I30 index
)

// refMask extracts the record number from a file reference.
const refMask = 0x0000FFFFFFFFFFFF

// applyFixups checks the magic and undoes the update sequence protection of
// a multi-sector structure (MFT record or index block) in place. The
// protected stride is 512 bytes, or the sector size on volumes that use it.
func applyFixups(buf []byte, magic string, sectorSize int) error {
	if len(buf) < 0x30 || string(buf[:4]) != magic {
		if len(buf) >= 4 && string(buf[:4]) == "BAAD" {
			return badf("%s structure marked BAAD", magic)
		}
		return badf("bad %s magic %q", magic, safePrefix(buf, 4))
	}
	usaOfs := int(le16(buf[4:]))
	usaCount := int(le16(buf[6:]))
	if usaCount < 2 {
		return badf("%s update sequence count %d", magic, usaCount)
	}
	stride := 512
	if (usaCount-1)*stride != len(buf) {
		if sectorSize > 0 && (usaCount-1)*sectorSize == len(buf) {
			stride = sectorSize
		} else {
			return badf("%s update sequence count %d does not match size %d", magic, usaCount, len(buf))
		}
	}
	if usaOfs < 8 || usaOfs&1 != 0 || usaOfs+2*usaCount > len(buf) || usaOfs+2*usaCount > stride-2 {
		return badf("%s update sequence array offset %d out of range", magic, usaOfs)
	}
	usn0, usn1 := buf[usaOfs], buf[usaOfs+1]
	for i := 1; i < usaCount; i++ {
		p := i*stride - 2
		if buf[p] != usn0 || buf[p+1] != usn1 {
			return badf("%s update sequence mismatch in sector %d (torn write)", magic, i-1)
		}
		buf[p], buf[p+1] = buf[usaOfs+2*i], buf[usaOfs+2*i+1]
	}
	return nil
}

func safePrefix(b []byte, n int) []byte {
	if len(b) < n {
		return b
	}
	return b[:n]
}

// record is one parsed MFT record.
type record struct {
	num   uint64
	seq   uint16
	links uint16
	flags uint16
	base  uint64 // base record reference (0 for a base record)
	attrs []*attr
}

// attr is one attribute (or one extent of a non-resident attribute).
type attr struct {
	typ      uint32
	name     string
	flags    uint16
	id       uint16
	recNum   uint64 // record holding it
	resident bool
	value    []byte // resident value

	// Non-resident fields.
	startVCN, lastVCN int64
	runs              []run
	compUnit          uint8
	allocSize         int64
	dataSize          int64
	initSize          int64
	compSize          int64 // only meaningful when sparse or compressed
}

// parseRecord fixes up and parses the MFT record buf, which must be the
// record numbered num. buf is kept by the returned record.
func parseRecord(buf []byte, num uint64, sectorSize int) (*record, error) {
	if err := applyFixups(buf, "FILE", sectorSize); err != nil {
		return nil, errWithRecord(num, err)
	}
	r := &record{
		num:   num,
		seq:   le16(buf[0x10:]),
		links: le16(buf[0x12:]),
		flags: le16(buf[0x16:]),
		base:  le64(buf[0x20:]),
	}
	firstAttr := int(le16(buf[0x14:]))
	used := int(le32(buf[0x18:]))
	usaOfs := int(le16(buf[4:]))
	if used > len(buf) || used < 0x18 {
		return nil, corruptf("MFT record %d: bytes in use %d out of range", num, used)
	}
	if firstAttr < 0x18 || firstAttr > used-4 || firstAttr&7 != 0 {
		return nil, corruptf("MFT record %d: first attribute offset %d out of range", num, firstAttr)
	}
	if usaOfs >= 0x30 && firstAttr >= 0x30 {
		if stored := le32(buf[0x2C:]); uint64(stored) != num&0xFFFFFFFF {
			return nil, corruptf("MFT record %d: header says it is record %d", num, stored)
		}
	}
	if r.flags&recInUse == 0 {
		return r, nil // attributes of free records are not interesting
	}
	for off := firstAttr; ; {
		if off+4 > used {
			return nil, corruptf("MFT record %d: attribute list not terminated", num)
		}
		typ := le32(buf[off:])
		if typ == atEnd {
			break
		}
		if off+0x18 > used {
			return nil, corruptf("MFT record %d: attribute at %d truncated", num, off)
		}
		length := int(le32(buf[off+4:]))
		if length < 0x18 || length&7 != 0 || length > used-off {
			return nil, corruptf("MFT record %d: attribute at %d has length %d", num, off, length)
		}
		a, err := parseAttr(buf[off:off+length], num)
		if err != nil {
			return nil, err
		}
		r.attrs = append(r.attrs, a)
		off += length
	}
	return r, nil
}

func errWithRecord(num uint64, err error) error {
	return fmt.Errorf("ntfs: MFT record %d: %w", num, err)
}

// parseAttr parses one attribute record b (exactly its length).
func parseAttr(b []byte, num uint64) (*attr, error) {
	a := &attr{
		typ:      le32(b),
		resident: b[8] == 0,
		flags:    le16(b[0x0C:]),
		id:       le16(b[0x0E:]),
		recNum:   num,
	}
	if nameLen := int(b[9]); nameLen > 0 {
		nameOff := int(le16(b[0x0A:]))
		if nameOff+2*nameLen > len(b) {
			return nil, corruptf("MFT record %d: attribute 0x%x name out of bounds", num, a.typ)
		}
		a.name = utf16ToString(utf16le(b[nameOff : nameOff+2*nameLen]))
	}
	if a.resident {
		vlen := int(le32(b[0x10:]))
		voff := int(le16(b[0x14:]))
		if voff > len(b) || vlen > len(b)-voff {
			return nil, corruptf("MFT record %d: resident attribute 0x%x value out of bounds", num, a.typ)
		}
		a.value = b[voff : voff+vlen]
		return a, nil
	}
	if len(b) < 0x40 {
		return nil, corruptf("MFT record %d: non-resident attribute 0x%x header truncated", num, a.typ)
	}
	a.startVCN = int64(le64(b[0x10:]))
	a.lastVCN = int64(le64(b[0x18:]))
	runOff := int(le16(b[0x20:]))
	a.compUnit = b[0x22]
	a.allocSize = int64(le64(b[0x28:]))
	a.dataSize = int64(le64(b[0x30:]))
	a.initSize = int64(le64(b[0x38:]))
	if a.startVCN < 0 || a.lastVCN < a.startVCN-1 {
		return nil, corruptf("MFT record %d: attribute 0x%x VCN range %d..%d", num, a.typ, a.startVCN, a.lastVCN)
	}
	if a.startVCN == 0 && (a.allocSize < 0 || a.dataSize < 0 || a.initSize < 0) {
		return nil, corruptf("MFT record %d: attribute 0x%x sizes alloc=%d data=%d init=%d", num, a.typ, a.allocSize, a.dataSize, a.initSize)
	}
	if a.flags&(attrFlagCompressionMask|attrFlagSparse) != 0 && len(b) >= 0x48 {
		a.compSize = int64(le64(b[0x40:]))
	} else {
		a.compSize = a.allocSize
	}
	if runOff < 0x40 || runOff > len(b) {
		return nil, corruptf("MFT record %d: attribute 0x%x runlist offset %d", num, a.typ, runOff)
	}
	runs, err := decodeRunlist(b[runOff:], a.startVCN)
	if err != nil {
		return nil, errWithRecord(num, err)
	}
	var n int64
	for _, r := range runs {
		n += r.n
	}
	if n != a.lastVCN-a.startVCN+1 {
		return nil, corruptf("MFT record %d: attribute 0x%x runlist maps %d clusters, header says %d", num, a.typ, n, a.lastVCN-a.startVCN+1)
	}
	a.runs = runs
	return a, nil
}

// run maps n clusters starting at vcn to lcn; lcn < 0 marks a sparse run.
type run struct {
	vcn, lcn, n int64
}

// maxClusters bounds VCNs and LCNs so that cluster arithmetic in bytes can
// never overflow (2^48 clusters of up to 2 MiB still fit in an int64).
const maxClusters = 1 << 48

// decodeRunlist decodes a mapping-pairs array starting at VCN vcn. The array
// ends at a zero header byte or at the end of b.
func decodeRunlist(b []byte, vcn int64) ([]run, error) {
	var runs []run
	lcn := int64(0)
	for i := 0; i < len(b); {
		h := b[i]
		if h == 0 {
			break
		}
		ls, os := int(h&0x0F), int(h>>4)
		if ls == 0 || ls > 8 || os > 8 {
			return nil, badf("runlist header byte 0x%02x at %d", h, i)
		}
		if i+1+ls+os > len(b) {
			return nil, badf("runlist entry at %d truncated", i)
		}
		var length uint64
		for k := ls - 1; k >= 0; k-- {
			length = length<<8 | uint64(b[i+1+k])
		}
		if length == 0 || length > maxClusters || vcn+int64(length) > maxClusters {
			return nil, badf("runlist run length %d at VCN %d", length, vcn)
		}
		r := run{vcn: vcn, lcn: -1, n: int64(length)}
		if os > 0 {
			var delta uint64
			for k := os - 1; k >= 0; k-- {
				delta = delta<<8 | uint64(b[i+1+ls+k])
			}
			// Sign-extend from os bytes.
			shift := uint(64 - 8*os)
			d := int64(delta<<shift) >> shift
			var overflow bool
			lcn, overflow = addOverflows(lcn, d)
			if overflow || lcn < 0 || lcn > maxClusters {
				return nil, badf("runlist LCN out of range at VCN %d", vcn)
			}
			r.lcn = lcn
		}
		runs = append(runs, r)
		vcn += r.n
		i += 1 + ls + os
	}
	return runs, nil
}

func addOverflows(a, b int64) (int64, bool) {
	s := a + b
	return s, (b > 0 && s < a) || (b < 0 && s > a)
}

// log2 returns the base-2 logarithm of a power of two, or -1.
func log2(v int64) int {
	if v <= 0 || v&(v-1) != 0 || v > math.MaxInt32 {
		return -1
	}
	return bits.TrailingZeros64(uint64(v))
}
