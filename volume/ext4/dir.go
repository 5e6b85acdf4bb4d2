package ext4

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
)

// dir is a parsed directory.
type dir struct {
	entries []volume.Entry // sorted by name
	byName  map[string]int
}

// readDir parses directory ino, using the cache. Hash-tree directories are
// read linearly: their index blocks look like empty directory blocks.
func (f *FS) readDir(ino uint64) (*dir, error) {
	if d, ok := f.dirCache.Get(ino); ok {
		return d, nil
	}
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, volume.ErrNotDir)
	}
	if in.flags&flagEncrypt != 0 {
		return nil, fmt.Errorf("ext4: directory %d is encrypted: %w", ino, volume.ErrUnsupported)
	}
	d := &dir{byName: map[string]int{}}
	if in.flags&flagInline != 0 {
		data, err := in.inlineData()
		if err != nil {
			return nil, err
		}
		data = data[:in.size]
		if len(data) < 4 {
			return nil, corrupt("directory %d: inline data too short", ino)
		}
		// i_block: parent inode, then entries; the xattr part holds more.
		head := data[4:min(len(data), 60)]
		if err := f.parseDirBlock(in, head, d); err != nil {
			return nil, err
		}
		if len(data) > 60 {
			if err := f.parseDirBlock(in, data[60:], d); err != nil {
				return nil, err
			}
		}
	} else {
		if in.size > maxDirBytes || in.size%f.bs != 0 {
			return nil, corrupt("directory %d: size %d", ino, in.size)
		}
		if _, err := f.openInode(in); err != nil {
			return nil, err
		}
		// Read runs of mapped blocks, up to 256 at a time; skip holes.
		nblocks := uint64(in.size / f.bs)
		buf := make([]byte, min(nblocks, 256)*uint64(f.bs))
		for lb := uint64(0); lb < nblocks; {
			s, err := f.segment(in, lb, min(nblocks-lb, 256))
			if err != nil {
				return nil, err
			}
			n := max(s.n, 1)
			if s.mapped {
				b := buf[:n*uint64(f.bs)]
				if err := f.readBlocks(b, s.pblk); err != nil {
					return nil, fmt.Errorf("ext4: directory %d: %w", ino, err)
				}
				for o := int64(0); o < int64(len(b)); o += f.bs {
					if err := f.parseDirBlock(in, b[o:o+f.bs], d); err != nil {
						return nil, err
					}
				}
			}
			lb += n
		}
	}
	if err := f.fillModes(d); err != nil {
		return nil, err
	}
	sort.Slice(d.entries, func(i, j int) bool { return d.entries[i].Name < d.entries[j].Name })
	for i, e := range d.entries {
		d.byName[e.Name] = i
	}
	f.dirCache.Add(ino, d, len(d.entries)+1)
	return d, nil
}

// recLen decodes a directory entry length (lengths of 64 KiB blocks are
// stored folded).
func recLen(v uint16, bs int64) int {
	if bs < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return 65536
	}
	return int(v&65532) | int(v&3)<<16
}

// modeOfType maps directory entry file types to fs.FileMode type bits.
var modeOfType = [8]fs.FileMode{
	1: 0,
	2: fs.ModeDir,
	3: fs.ModeDevice | fs.ModeCharDevice,
	4: fs.ModeDevice,
	5: fs.ModeNamedPipe,
	6: fs.ModeSocket,
	7: fs.ModeSymlink,
}

// unknownType marks entries whose type must be read from the inode.
const unknownType = fs.ModeIrregular

// parseDirBlock appends the entries of one directory block (or inline
// region) to d.
func (f *FS) parseDirBlock(in *inode, b []byte, d *dir) error {
	ftypes := f.incompat&incompatFiletype != 0
	for pos := 0; pos < len(b); {
		if pos+8 > len(b) {
			return corrupt("directory %d: truncated entry", in.ino)
		}
		e := b[pos:]
		ino := uint64(binary.LittleEndian.Uint32(e))
		rl := recLen(binary.LittleEndian.Uint16(e[4:]), f.bs)
		nameLen := int(e[6])
		if !ftypes {
			nameLen = int(binary.LittleEndian.Uint16(e[6:]))
		}
		if rl < 8 || rl%4 != 0 || pos+rl > len(b) || 8+nameLen > rl {
			return corrupt("directory %d: bad entry at offset %d", in.ino, pos)
		}
		pos += rl
		if ino == 0 || nameLen == 0 {
			continue
		}
		name := string(e[8 : 8+nameLen])
		if name == "." || name == ".." {
			continue
		}
		if ino > uint64(f.inodesCount) || strings.ContainsAny(name, "/\x00") {
			return corrupt("directory %d: bad entry %q", in.ino, name)
		}
		mode := unknownType
		if ftypes && e[7] >= 1 && e[7] <= 7 {
			mode = modeOfType[e[7]]
		}
		d.entries = append(d.entries, volume.Entry{Name: name, Ino: ino, Mode: mode})
	}
	return nil
}

// fillModes reads the inodes of entries whose type the directory does not
// record.
func (f *FS) fillModes(d *dir) error {
	for i := range d.entries {
		if d.entries[i].Mode != unknownType {
			continue
		}
		in, err := f.inode(d.entries[i].Ino)
		if err != nil {
			d.entries[i].Mode = 0
			continue
		}
		d.entries[i].Mode = fileMode(in.mode).Type()
	}
	return nil
}

// ReadDir lists directory ino sorted by name, without "." and "..".
func (f *FS) ReadDir(ino uint64) ([]volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return nil, err
	}
	return append([]volume.Entry(nil), d.entries...), nil
}

// Lookup finds name (case-sensitive) in directory ino.
func (f *FS) Lookup(ino uint64, name string) (volume.Entry, error) {
	d, err := f.readDir(ino)
	if err != nil {
		return volume.Entry{}, err
	}
	i, ok := d.byName[name]
	if !ok {
		return volume.Entry{}, fmt.Errorf("ext4: %q in directory %d: %w", name, ino, volume.ErrNotFound)
	}
	return d.entries[i], nil
}
