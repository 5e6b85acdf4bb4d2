package fat

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/ckptfs/ckptfs/volume"
)

// dirent is a parsed directory entry.
type dirent struct {
	name    string // long name, or the 8.3 name
	short   string // the 8.3 name
	ino     uint64
	attr    byte
	cluster uint32
	size    uint32
	raw     [32]byte
}

type dir struct {
	entries []dirent // sorted by name
	byName  map[string]int
	label   string // volume label entry (root directory only)
}

// readDir parses directory ino, using the cache.
func (f *FS) readDir(ino uint64) (*dir, error) {
	if d, ok := f.dirs.Get(ino); ok {
		return d, nil
	}
	var data []byte
	var base []clusterRun
	if ino == RootIno && f.bits != 32 {
		data = make([]byte, f.rootBytes)
		if err := volume.ReadFull(f.r, data, f.rootOff); err != nil {
			return nil, fmt.Errorf("fat: reading root directory: %w", err)
		}
	} else {
		first := f.rootClus
		if ino != RootIno {
			e, err := f.entryAt(ino)
			if err != nil {
				return nil, err
			}
			if e.attr&attrDir == 0 {
				return nil, fmt.Errorf("fat: inode %d: %w", ino, volume.ErrNotDir)
			}
			first = e.cluster
			if first == 0 {
				return nil, fmt.Errorf("fat: directory inode %d has no clusters: %w", ino, volume.ErrCorrupt)
			}
		}
		runs, err := f.chain(first, uint32(maxDirBytes/f.cluster), false)
		if err != nil {
			return nil, fmt.Errorf("fat: directory inode %d: %w", ino, err)
		}
		base = runs
		data, err = f.readRuns(runs)
		if err != nil {
			return nil, err
		}
	}
	// offset maps a position in data to a volume byte offset (the inode).
	offset := func(pos int) uint64 {
		if base == nil {
			return uint64(f.rootOff) + uint64(pos)
		}
		p := int64(pos)
		for _, r := range base {
			n := int64(r.n) * f.cluster
			if p < n {
				return uint64(f.clusterOff(r.first) + p)
			}
			p -= n
		}
		return 0
	}
	d := &dir{byName: map[string]int{}}
	var lfn []uint16
	var lfnSum byte
	var lfnNext int // sequence number expected next; 0 = none in progress
	for pos := 0; pos+32 <= len(data); pos += 32 {
		e := data[pos : pos+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			lfnNext = 0
			continue
		}
		if e[11]&0x3F == attrLFN {
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				if seq == 0 || seq > 20 {
					lfnNext = 0
					continue
				}
				lfn = make([]uint16, seq*13)
				lfnSum = e[13]
			} else if lfnNext == 0 || seq != lfnNext || e[13] != lfnSum {
				lfnNext = 0
				continue
			}
			o := (seq - 1) * 13
			for i, at := range lfnCharOffsets {
				lfn[o+i] = binary.LittleEndian.Uint16(e[at:])
			}
			lfnNext = seq - 1
			if lfnNext == 0 {
				lfnNext = -1 // complete; the short entry follows
			}
			continue
		}
		long := ""
		if lfnNext == -1 && checksum(e) == lfnSum {
			long = decodeLFN(lfn)
		}
		lfnNext = 0
		if e[11]&attrVolumeID != 0 {
			if d.label == "" {
				d.label = strings.TrimRight(decodeOEM(e[:11]), " ")
			}
			continue
		}
		short := shortName(e)
		if short == "." || short == ".." {
			continue
		}
		de := dirent{short: short, name: short, ino: offset(pos), attr: e[11]}
		if long != "" {
			de.name = long
		}
		de.cluster = uint32(binary.LittleEndian.Uint16(e[26:]))
		if f.bits == 32 {
			de.cluster |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
		}
		de.size = binary.LittleEndian.Uint32(e[28:])
		d.entries = append(d.entries, de)
	}
	sort.SliceStable(d.entries, func(i, j int) bool { return d.entries[i].name < d.entries[j].name })
	for i := len(d.entries) - 1; i >= 0; i-- {
		d.byName[strings.ToLower(d.entries[i].short)] = i
	}
	for i := len(d.entries) - 1; i >= 0; i-- {
		d.byName[strings.ToLower(d.entries[i].name)] = i
	}
	f.dirs.Add(ino, d, len(d.entries)+1)
	return d, nil
}

var lfnCharOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

// checksum is the VFAT checksum of an 11-byte short name.
func checksum(name []byte) byte {
	var s byte
	for i := 0; i < 11; i++ {
		s = (s&1)<<7 + s>>1 + name[i]
	}
	return s
}

// decodeLFN converts the UTF-16 characters of a long name, up to the NUL
// terminator. Names that Linux cannot represent yield "".
func decodeLFN(u []uint16) string {
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	s := string(utf16.Decode(u))
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return ""
	}
	return s
}

// shortName formats an 8.3 name, applying the NT lower-case flags.
func shortName(e []byte) string {
	n := make([]byte, 11)
	copy(n, e[:11])
	if n[0] == 0x05 {
		n[0] = 0xE5
	}
	base := strings.TrimRight(decodeOEM(n[:8]), " ")
	ext := strings.TrimRight(decodeOEM(n[8:11]), " ")
	if e[12]&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if e[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	s := base
	if ext != "" {
		s += "." + ext
	}
	return strings.ReplaceAll(s, "/", "_")
}

// cp437 holds code page 437 characters 0x80-0xFF.
var cp437 = []rune("ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0")

func decodeOEM(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c >= 0x80:
			sb.WriteRune(cp437[c-0x80])
		case c < 0x20:
			sb.WriteByte('_')
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func entryMode(attr byte) fs.FileMode {
	if attr&attrDir != 0 {
		return fs.ModeDir
	}
	return 0
}

// ReadDir lists directory ino sorted by name.
func (f *FS) ReadDir(ino uint64) ([]volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return nil, err
	}
	out := make([]volume.Entry, len(d.entries))
	for i, e := range d.entries {
		out[i] = volume.Entry{Name: e.name, Ino: e.ino, Mode: entryMode(e.attr)}
	}
	return out, nil
}

// Lookup finds name in directory ino, ignoring case; the 8.3 alias of a
// long name matches too.
func (f *FS) Lookup(ino uint64, name string) (volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return volume.Entry{}, err
	}
	i, ok := d.byName[strings.ToLower(name)]
	if !ok {
		for j, e := range d.entries {
			if strings.EqualFold(e.name, name) || strings.EqualFold(e.short, name) {
				i, ok = j, true
				break
			}
		}
		if !ok {
			return volume.Entry{}, fmt.Errorf("fat: %q in directory %d: %w", name, ino, volume.ErrNotFound)
		}
	}
	e := d.entries[i]
	return volume.Entry{Name: e.name, Ino: e.ino, Mode: entryMode(e.attr)}, nil
}
