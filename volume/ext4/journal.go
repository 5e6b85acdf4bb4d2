package ext4

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/ckptfs/ckptfs/volume"
	"github.com/ckptfs/ckptfs/volume/internal/lru"
)

// jbd2 constants. The journal is big-endian.
const (
	jbdMagic      = 0xC03B3998
	jbdDescriptor = 1
	jbdCommit     = 2
	jbdSuperV1    = 3
	jbdSuperV2    = 4
	jbdRevoke     = 5

	jbdIncompatRevoke = 0x1
	jbdIncompat64Bit  = 0x2
	jbdIncompatCsumV2 = 0x8
	jbdIncompatCsumV3 = 0x10

	jbdFlagEscape   = 0x1
	jbdFlagSameUUID = 0x2
	jbdFlagLastTag  = 0x8
)

// overlay maps file-system blocks to their newest committed copy in the
// journal. It is immutable after replay.
type overlay struct {
	fs     *FS
	blocks map[uint64]jblock
	sorted []uint64 // keys of blocks, ascending
}

type jblock struct {
	phys   uint64 // physical block holding the copy
	escape bool   // the copy's first four bytes were the jbd2 magic
}

// get returns the journalled copy of block blk, if there is one.
func (o *overlay) get(blk uint64) ([]byte, bool) {
	jb, ok := o.blocks[blk]
	if !ok {
		return nil, false
	}
	b := make([]byte, o.fs.bs)
	if err := volume.ReadFull(o.fs.r, b, int64(jb.phys)*o.fs.bs); err != nil {
		return nil, false
	}
	if jb.escape {
		binary.BigEndian.PutUint32(b, jbdMagic)
	}
	return b, true
}

// patch overwrites the parts of p (read from byte offset off) that lie in
// journalled blocks.
func (o *overlay) patch(p []byte, off int64, bs int64) {
	if len(p) == 0 {
		return
	}
	first := uint64(off / bs)
	last := uint64((off + int64(len(p)) - 1) / bs)
	i := sort.Search(len(o.sorted), func(i int) bool { return o.sorted[i] >= first })
	for ; i < len(o.sorted) && o.sorted[i] <= last; i++ {
		blk := o.sorted[i]
		b, ok := o.get(blk)
		if !ok {
			continue
		}
		bstart := int64(blk) * bs
		lo := max(bstart, off)
		hi := min(bstart+bs, off+int64(len(p)))
		copy(p[lo-off:hi-off], b[lo-bstart:hi-bstart])
	}
}

// replayJournal scans the internal journal and returns the blocks that
// recovery would write, or nil if the journal is clean.
func (f *FS) replayJournal() (*overlay, error) {
	in, err := f.inode(uint64(f.journalIno))
	if err != nil {
		return nil, err
	}
	// phys maps a journal block number to a file-system block.
	phys := func(j uint64) (uint64, bool) {
		s, err := f.segment(in, j, 1)
		if err != nil || !s.mapped {
			return 0, false
		}
		return s.pblk, true
	}
	read := func(j uint64) ([]byte, error) {
		p, ok := phys(j)
		if !ok {
			return nil, corrupt("journal block %d is not mapped", j)
		}
		b := make([]byte, f.bs)
		if err := volume.ReadFull(f.r, b, int64(p)*f.bs); err != nil {
			return nil, fmt.Errorf("ext4: reading journal block %d: %w", j, err)
		}
		return b, nil
	}
	sb, err := read(0)
	if err != nil {
		return nil, err
	}
	be32 := binary.BigEndian.Uint32
	if be32(sb) != jbdMagic || (be32(sb[4:]) != jbdSuperV1 && be32(sb[4:]) != jbdSuperV2) {
		return nil, corrupt("journal superblock: bad magic or type")
	}
	if int64(be32(sb[0xC:])) != f.bs {
		return nil, fmt.Errorf("ext4: journal block size %d differs from file system's: %w", be32(sb[0xC:]), volume.ErrUnsupported)
	}
	maxLen := uint64(be32(sb[0x10:]))
	first := uint64(be32(sb[0x14:]))
	seq := be32(sb[0x18:])
	start := uint64(be32(sb[0x1C:]))
	if start == 0 {
		return nil, nil // clean
	}
	var incompat uint32
	if be32(sb[4:]) == jbdSuperV2 {
		incompat = be32(sb[0x28:])
	}
	if first == 0 || first >= maxLen || start < first || start >= maxLen {
		return nil, corrupt("journal superblock: first %d, start %d, length %d", first, start, maxLen)
	}
	is64 := incompat&jbdIncompat64Bit != 0
	csum3 := incompat&jbdIncompatCsumV3 != 0
	csum2 := incompat&jbdIncompatCsumV2 != 0
	tagBytes := 12
	if csum3 {
		tagBytes = 16
	} else {
		if csum2 {
			tagBytes += 2
		}
		if !is64 {
			tagBytes -= 4
		}
	}
	tailBytes := 0
	if csum2 || csum3 {
		tailBytes = 4
	}

	type write struct {
		blk uint64
		jb  jblock
		seq uint32
	}
	var committed []write
	revoked := map[uint64]uint32{}
	var pending []write
	pendingRevokes := map[uint64]uint32{}

	next := func(j uint64) uint64 {
		j++
		if j >= maxLen {
			j = first
		}
		return j
	}
	pos := start
	for steps := uint64(0); steps < maxLen; steps++ {
		b, err := read(pos)
		if err != nil {
			break
		}
		if be32(b) != jbdMagic || be32(b[8:]) != seq {
			break
		}
		typ := be32(b[4:])
		pos = next(pos)
		switch typ {
		case jbdDescriptor:
			end := len(b) - tailBytes
			for o := 12; o+tagBytes <= end; {
				t := b[o:]
				blk := uint64(be32(t))
				var flags uint32
				if csum3 {
					flags = be32(t[4:])
				} else {
					flags = uint32(binary.BigEndian.Uint16(t[6:]))
				}
				if is64 {
					blk |= uint64(be32(t[8:])) << 32
				}
				p, ok := phys(pos)
				if !ok {
					return nil, corrupt("journal block %d is not mapped", pos)
				}
				pending = append(pending, write{blk: blk, jb: jblock{phys: p, escape: flags&jbdFlagEscape != 0}, seq: seq})
				pos = next(pos)
				steps++
				o += tagBytes
				if flags&jbdFlagSameUUID == 0 {
					o += 16
				}
				if flags&jbdFlagLastTag != 0 {
					break
				}
			}
		case jbdRevoke:
			count := int(be32(b[12:]))
			if count > len(b)-tailBytes {
				count = len(b) - tailBytes
			}
			rs := 4
			if is64 {
				rs = 8
			}
			for o := 16; o+rs <= count; o += rs {
				var blk uint64
				if is64 {
					blk = binary.BigEndian.Uint64(b[o:])
				} else {
					blk = uint64(be32(b[o:]))
				}
				pendingRevokes[blk] = seq
			}
		case jbdCommit:
			committed = append(committed, pending...)
			for blk, s := range pendingRevokes {
				if old, ok := revoked[blk]; !ok || int32(s-old) > 0 {
					revoked[blk] = s
				}
			}
			pending = pending[:0]
			clear(pendingRevokes)
			seq++
		default:
			steps = maxLen // unknown block: end of log
		}
	}
	o := &overlay{fs: f, blocks: map[uint64]jblock{}}
	for _, w := range committed {
		if rs, ok := revoked[w.blk]; ok && int32(w.seq-rs) <= 0 {
			continue
		}
		if w.blk >= f.blocks {
			continue
		}
		o.blocks[w.blk] = w.jb
	}
	if len(o.blocks) == 0 {
		return nil, nil
	}
	for blk := range o.blocks {
		o.sorted = append(o.sorted, blk)
	}
	sort.Slice(o.sorted, func(i, j int) bool { return o.sorted[i] < o.sorted[j] })
	// Cached blocks were read before the journal was known.
	f.blockCache = lru.New[uint64, []byte](f.blockCache.MaxCost())
	return o, nil
}
