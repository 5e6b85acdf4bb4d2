package ntfs

import (
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/ckptfs/ckptfs/volume"
)

// stream is the value of one attribute (all its extents merged). It is the
// volume.File returned by Open and OpenStream and is also used internally to
// read $MFT, $UpCase, attribute lists and directory indexes.
type stream struct {
	fs        *FS
	ino       uint64
	name      string // stream name, for the decompression cache key
	typ       uint32
	flags     uint16
	resident  bool
	data      []byte // resident value
	runs      []run  // sorted by VCN, contiguous from VCN 0
	size      int64
	initSize  int64
	allocSize int64
	compSize  int64
	cuShift   uint  // log2 of clusters per compression unit; 0 = not compressed
	mapped    int64 // clusters mapped by the runlist
}

// buildStream merges the extents of one attribute into a readable stream.
func (fs *FS) buildStream(ino uint64, extents []*attr) (*stream, error) {
	if len(extents) == 0 {
		return nil, fmt.Errorf("ntfs: inode %d: attribute not found: %w", ino, volume.ErrNotFound)
	}
	first := extents[0]
	s := &stream{fs: fs, ino: ino, name: first.name, typ: first.typ, flags: first.flags}
	if first.resident {
		if len(extents) > 1 {
			return nil, corruptf("inode %d: attribute 0x%x is both resident and split", ino, first.typ)
		}
		s.resident = true
		s.data = first.value
		s.size = int64(len(first.value))
		s.initSize = s.size
		s.allocSize = s.size
		return s, nil
	}
	ext := slices.Clone(extents)
	slices.SortFunc(ext, func(a, b *attr) int {
		switch {
		case a.startVCN < b.startVCN:
			return -1
		case a.startVCN > b.startVCN:
			return 1
		}
		return 0
	})
	if ext[0].startVCN != 0 {
		return nil, corruptf("inode %d: attribute 0x%x has no extent at VCN 0", ino, first.typ)
	}
	next := int64(0)
	nruns := 0
	for _, e := range ext {
		if e.resident {
			return nil, corruptf("inode %d: attribute 0x%x mixes resident and non-resident extents", ino, first.typ)
		}
		if e.startVCN != next {
			return nil, corruptf("inode %d: attribute 0x%x extents not contiguous at VCN %d", ino, first.typ, next)
		}
		next = e.lastVCN + 1
		nruns += len(e.runs)
	}
	s.runs = make([]run, 0, nruns)
	for _, e := range ext {
		for _, r := range e.runs {
			if r.lcn >= 0 && r.lcn+r.n > fs.totalClusters {
				return nil, corruptf("inode %d: attribute 0x%x run at LCN %d+%d beyond end of volume", ino, first.typ, r.lcn, r.n)
			}
			s.runs = append(s.runs, r)
		}
	}
	h := ext[0]
	s.flags = h.flags
	s.size = h.dataSize
	s.initSize = min(h.initSize, h.dataSize)
	s.allocSize = h.allocSize
	s.compSize = h.compSize
	if next > (int64(1)<<62)>>fs.clusterShift {
		return nil, corruptf("inode %d: attribute 0x%x too large", ino, first.typ)
	}
	s.mapped = next
	if c := h.flags & attrFlagCompressionMask; c != 0 {
		if c != 1 {
			return nil, fmt.Errorf("ntfs: inode %d: compression method %d: %w", ino, c, volume.ErrUnsupported)
		}
		if h.compUnit == 0 || h.compUnit > 16 || fs.clusterSize<<h.compUnit > maxCompressionUnit {
			return nil, fmt.Errorf("ntfs: inode %d: compression unit of 2^%d clusters: %w", ino, h.compUnit, volume.ErrUnsupported)
		}
		s.cuShift = uint(h.compUnit)
	}
	return s, nil
}

// maxCompressionUnit bounds the size of one decompressed compression unit.
const maxCompressionUnit = 1 << 20

// Size returns the logical size of the stream in bytes.
func (s *stream) Size() int64 { return s.size }

// compressed reports whether the stream is LZNT1-compressed.
func (s *stream) compressed() bool { return s.cuShift != 0 }

// ReadAt implements io.ReaderAt. It is safe for concurrent use.
func (s *stream) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ntfs: negative offset %d", off)
	}
	if off >= s.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > s.size-off {
		n = int(s.size - off)
	}
	if err := s.fill(p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readAll returns the whole stream; limit bounds its size.
func (s *stream) readAll(limit int64) ([]byte, error) {
	if s.size > limit {
		return nil, corruptf("inode %d: attribute 0x%x of %d bytes is implausibly large", s.ino, s.typ, s.size)
	}
	b := make([]byte, s.size)
	if err := s.fill(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// fill reads exactly len(p) bytes at off, which lie within the stream.
func (s *stream) fill(p []byte, off int64) error {
	if s.resident {
		copy(p, s.data[off:])
		return nil
	}
	// Bytes past the initialized size read as zeros.
	if end := off + int64(len(p)); end > s.initSize {
		z := p
		if off < s.initSize {
			z = p[s.initSize-off:]
		}
		clear(z)
		p = p[:len(p)-len(z)]
	}
	if len(p) == 0 {
		return nil
	}
	if s.cuShift != 0 {
		return s.fillCompressed(p, off)
	}
	return s.fillRuns(p, off)
}

// findRun returns the index of the first run ending after vcn.
func (s *stream) findRun(vcn int64) int {
	return sort.Search(len(s.runs), func(i int) bool { return s.runs[i].vcn+s.runs[i].n > vcn })
}

// fillRuns reads uncompressed data through the runlist, one device read per
// run touched.
func (s *stream) fillRuns(p []byte, off int64) error {
	shift := s.fs.clusterShift
	i := s.findRun(off >> shift)
	for len(p) > 0 {
		if i >= len(s.runs) || s.runs[i].vcn > off>>shift {
			return corruptf("inode %d: attribute 0x%x: offset %d not mapped by runlist", s.ino, s.typ, off)
		}
		r := s.runs[i]
		runStart := r.vcn << shift
		runEnd := (r.vcn + r.n) << shift
		chunk := int64(len(p))
		if chunk > runEnd-off {
			chunk = runEnd - off
		}
		if r.lcn < 0 {
			clear(p[:chunk])
		} else if err := s.fs.dev.readFull(p[:chunk], r.lcn<<shift+(off-runStart)); err != nil {
			return fmt.Errorf("ntfs: inode %d: %w", s.ino, err)
		}
		p = p[chunk:]
		off += chunk
		i++
	}
	return nil
}

// cuKey identifies a decompressed compression unit in the cache.
type cuKey struct {
	ino  uint64
	typ  uint32
	name string
	cu   int64
}

// fillCompressed reads LZNT1-compressed data, one compression unit at a time.
func (s *stream) fillCompressed(p []byte, off int64) error {
	cuBytes := s.fs.clusterSize << s.cuShift
	for len(p) > 0 {
		cu := off / cuBytes
		in := off - cu*cuBytes
		chunk := int64(len(p))
		if chunk > cuBytes-in {
			chunk = cuBytes - in
		}
		segs, allocated, err := s.cuLayout(cu)
		if err != nil {
			return err
		}
		switch {
		case allocated == 1<<s.cuShift:
			// Stored uncompressed.
			if err := s.fillRuns(p[:chunk], off); err != nil {
				return err
			}
		case allocated == 0:
			clear(p[:chunk])
		default:
			data, err := s.cuData(cu, segs, allocated)
			if err != nil {
				return err
			}
			copy(p[:chunk], data[in:])
		}
		p = p[chunk:]
		off += chunk
	}
	return nil
}

// cuLayout returns the allocated cluster segments of compression unit cu in
// VCN order and their total. Unmapped clusters count as sparse.
func (s *stream) cuLayout(cu int64) ([]run, int64, error) {
	n := int64(1) << s.cuShift
	start := cu * n
	end := start + n
	if start >= s.mapped {
		return nil, 0, corruptf("inode %d: attribute 0x%x: compression unit %d not mapped by runlist", s.ino, s.typ, cu)
	}
	var segs []run
	var allocated int64
	for i := s.findRun(start); i < len(s.runs) && s.runs[i].vcn < end; i++ {
		r := s.runs[i]
		if r.lcn < 0 {
			continue
		}
		lo, hi := max(r.vcn, start), min(r.vcn+r.n, end)
		segs = append(segs, run{vcn: lo, lcn: r.lcn + (lo - r.vcn), n: hi - lo})
		allocated += hi - lo
	}
	return segs, allocated, nil
}

// cuData returns compression unit cu decompressed, from the cache if possible.
func (s *stream) cuData(cu int64, segs []run, allocated int64) ([]byte, error) {
	key := cuKey{s.ino, s.typ, s.name, cu}
	if b, ok := s.fs.cus.Get(key); ok {
		return b, nil
	}
	shift := s.fs.clusterShift
	src := make([]byte, allocated<<shift)
	pos := int64(0)
	for _, g := range segs {
		if err := s.fs.dev.readFull(src[pos:pos+g.n<<shift], g.lcn<<shift); err != nil {
			return nil, fmt.Errorf("ntfs: inode %d: compression unit %d: %w", s.ino, cu, err)
		}
		pos += g.n << shift
	}
	dst := make([]byte, s.fs.clusterSize<<s.cuShift)
	if _, err := decompressLZNT1(dst, src); err != nil {
		return nil, fmt.Errorf("ntfs: inode %d: compression unit %d: %w", s.ino, cu, err)
	}
	s.fs.cus.Add(key, dst, 1)
	return dst, nil
}

// decompressLZNT1 decompresses one compression unit src into dst. Every
// chunk expands to a 4096-byte block; short blocks and the space after the
// last chunk are zero-filled. It returns the number of bytes produced before
// zero-filling the tail.
func decompressLZNT1(dst, src []byte) (int, error) {
	const block = 4096
	d, sp := 0, 0
	for d < len(dst) && sp+2 <= len(src) {
		h := le16(src[sp:])
		if h == 0 {
			break
		}
		sp += 2
		size := int(h&0x0FFF) + 1
		if size > len(src)-sp {
			return d, badf("LZNT1 chunk of %d bytes at %d overruns input of %d", size, sp-2, len(src))
		}
		chunk := src[sp : sp+size]
		sp += size
		end := min(d+block, len(dst))
		if h&0x8000 == 0 {
			if size > end-d {
				return d, badf("LZNT1 stored chunk of %d bytes too large", size)
			}
			d += copy(dst[d:end], chunk)
		} else {
			n, err := lznt1Chunk(dst[d:end], chunk)
			if err != nil {
				return d, err
			}
			d += n
		}
		clear(dst[d:end])
		d = end
	}
	produced := d
	clear(dst[d:])
	return produced, nil
}

// lznt1Chunk decompresses one compressed chunk into dst (at most one block).
func lznt1Chunk(dst, src []byte) (int, error) {
	o := 0
	for i := 0; i < len(src); {
		flags := src[i]
		i++
		for bit := 0; bit < 8 && i < len(src); bit++ {
			if flags&(1<<bit) == 0 {
				if o >= len(dst) {
					return o, badf("LZNT1 literal past end of block")
				}
				dst[o] = src[i]
				o++
				i++
				continue
			}
			if i+2 > len(src) {
				return o, badf("LZNT1 truncated back-reference")
			}
			tok := int(le16(src[i:]))
			i += 2
			if o == 0 {
				return o, badf("LZNT1 back-reference at start of block")
			}
			lenBits := 12
			for p := o - 1; p >= 0x10; p >>= 1 {
				lenBits--
			}
			disp := tok>>lenBits + 1
			length := tok&(1<<lenBits-1) + 3
			if disp > o {
				return o, badf("LZNT1 back-reference %d before start of block at %d", disp, o)
			}
			if length > len(dst)-o {
				return o, badf("LZNT1 back-reference past end of block")
			}
			if disp >= length {
				copy(dst[o:o+length], dst[o-disp:])
				o += length
			} else {
				for k := 0; k < length; k++ {
					dst[o] = dst[o-disp]
					o++
				}
			}
		}
	}
	return o, nil
}
