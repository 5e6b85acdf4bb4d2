package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
)

// Probe reports whether r looks like a FAT boot sector.
func Probe(r io.ReaderAt) bool {
	b := make([]byte, 512)
	if n, _ := r.ReadAt(b, 0); n != len(b) {
		return false
	}
	_, err := parseBoot(b, -1)
	return err == nil
}

// bpb holds the decoded boot sector fields.
type bpb struct {
	bps, spc, rsvd, nfats, rootEnt uint32
	totSec, fatSz                  uint32
	rootClus                       uint32
	activeFAT                      uint32
	clusters                       uint32
	bits                           int
	label                          string
}

// parseBoot decodes and checks a boot sector. size < 0 skips checks that
// need the volume size.
func parseBoot(b []byte, size int64) (*bpb, error) {
	bad := func(field string, v any) error {
		return fmt.Errorf("fat: boot sector: invalid %s %v: %w", field, v, volume.ErrCorrupt)
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return nil, bad("jump instruction", fmt.Sprintf("%#02x", b[0]))
	}
	if oem := string(b[3:11]); oem == "NTFS    " || oem == "EXFAT   " {
		return nil, bad("OEM name", oem)
	}
	p := &bpb{
		bps:     uint32(binary.LittleEndian.Uint16(b[11:])),
		spc:     uint32(b[13]),
		rsvd:    uint32(binary.LittleEndian.Uint16(b[14:])),
		nfats:   uint32(b[16]),
		rootEnt: uint32(binary.LittleEndian.Uint16(b[17:])),
		totSec:  uint32(binary.LittleEndian.Uint16(b[19:])),
		fatSz:   uint32(binary.LittleEndian.Uint16(b[22:])),
	}
	if p.bps < 512 || p.bps > 4096 || p.bps&(p.bps-1) != 0 {
		return nil, bad("bytes per sector", p.bps)
	}
	if p.spc == 0 || p.spc&(p.spc-1) != 0 || int64(p.spc)*int64(p.bps) > maxClusterSize {
		return nil, bad("sectors per cluster", p.spc)
	}
	if p.rsvd == 0 {
		return nil, bad("reserved sector count", p.rsvd)
	}
	if p.nfats == 0 || p.nfats > 4 {
		return nil, bad("number of FATs", p.nfats)
	}
	if media := b[21]; media != 0xF0 && media < 0xF8 {
		return nil, bad("media descriptor", fmt.Sprintf("%#02x", media))
	}
	if p.totSec == 0 {
		p.totSec = binary.LittleEndian.Uint32(b[32:])
	}
	if p.totSec == 0 {
		return nil, bad("total sector count", 0)
	}
	fat32 := p.fatSz == 0
	if fat32 {
		p.fatSz = binary.LittleEndian.Uint32(b[36:])
		if p.fatSz == 0 {
			return nil, bad("FAT size", 0)
		}
	}
	rootSecs := (p.rootEnt*32 + p.bps - 1) / p.bps
	meta := uint64(p.rsvd) + uint64(p.nfats)*uint64(p.fatSz) + uint64(rootSecs)
	if meta >= uint64(p.totSec) {
		return nil, bad("total sector count", fmt.Sprintf("%d (metadata needs %d)", p.totSec, meta))
	}
	p.clusters = (p.totSec - uint32(meta)) / p.spc
	switch {
	case p.clusters < 4085:
		p.bits = 12
	case p.clusters < 65525:
		p.bits = 16
	default:
		p.bits = 32
	}
	if (p.bits == 32) != fat32 {
		return nil, bad("FAT size/cluster count combination", fmt.Sprintf("FATSz16=%d clusters=%d", binary.LittleEndian.Uint16(b[22:]), p.clusters))
	}
	if p.bits == 32 && p.clusters > 0x0FFFFFF5 {
		return nil, bad("cluster count", p.clusters)
	}
	need := (uint64(p.clusters) + 2) * uint64(p.bits) / 8
	if uint64(p.fatSz)*uint64(p.bps) < need {
		return nil, bad("FAT size", fmt.Sprintf("%d sectors for %d clusters", p.fatSz, p.clusters))
	}
	labelOff := 43
	if p.bits == 32 {
		if p.rootEnt != 0 {
			return nil, bad("root entry count for FAT32", p.rootEnt)
		}
		p.rootClus = binary.LittleEndian.Uint32(b[44:])
		if p.rootClus < 2 || p.rootClus > p.clusters+1 {
			return nil, bad("root cluster", p.rootClus)
		}
		if ext := binary.LittleEndian.Uint16(b[40:]); ext&0x80 != 0 {
			p.activeFAT = uint32(ext & 0x0F)
			if p.activeFAT >= p.nfats {
				return nil, bad("active FAT", p.activeFAT)
			}
		}
		labelOff = 71
	} else if p.rootEnt == 0 {
		return nil, bad("root entry count", 0)
	}
	if sig := b[labelOff-5]; sig == 0x29 {
		l := strings.TrimRight(decodeOEM(b[labelOff:labelOff+11]), " ")
		if l != "NO NAME" {
			p.label = l
		}
	}
	if size >= 0 && int64(p.rsvd)*int64(p.bps) >= size {
		return nil, bad("reserved sector count", fmt.Sprintf("%d beyond volume of %d bytes", p.rsvd, size))
	}
	return p, nil
}
