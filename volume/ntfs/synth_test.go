package ntfs

import (
	"bytes"
	"encoding/binary"
	"unicode/utf16"
)

// This file builds small NTFS images in memory, without external tools:
// seeds for FuzzOpen and tests of structures ntfs-3g cannot produce.

const (
	synClusterSize = 512
	synRecordSize  = 1024
	synMFTLCN      = 8
	synRecords     = 16
	synDataLCN     = synMFTLCN + synRecords*synRecordSize/synClusterSize
	synTotal       = 192 // clusters
)

type synAttr struct {
	typ   uint32
	name  string
	flags uint16
	// resident value, or non-resident runs
	value    []byte
	nonRes   bool
	runs     []run
	compUnit uint8
	dataSize int64
	initSize int64
	compSize int64
}

func u16s(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func rawU16(u []uint16) []byte {
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// encodeRunlist is the inverse of decodeRunlist (for runs starting at any
// VCN; LCN deltas start from 0).
func encodeRunlist(runs []run) []byte {
	var out []byte
	prev := int64(0)
	for _, r := range runs {
		lb := minBytesUnsigned(uint64(r.n))
		var ob []byte
		if r.lcn >= 0 {
			ob = minBytesSigned(r.lcn - prev)
			prev = r.lcn
		}
		out = append(out, byte(len(ob)<<4|len(lb)))
		out = append(out, lb...)
		out = append(out, ob...)
	}
	return append(out, 0)
}

func minBytesUnsigned(v uint64) []byte {
	var b []byte
	for {
		b = append(b, byte(v))
		v >>= 8
		if v == 0 && b[len(b)-1]&0x80 == 0 {
			return b
		}
		if v == 0 {
			return append(b, 0)
		}
	}
}

func minBytesSigned(v int64) []byte {
	var b []byte
	for {
		b = append(b, byte(v))
		last := byte(v)
		v >>= 8
		if (v == 0 && last&0x80 == 0) || (v == -1 && last&0x80 != 0) {
			return b
		}
	}
}

func (a synAttr) encode(id uint16) []byte {
	name := u16s(a.name)
	var h []byte
	if !a.nonRes {
		h = make([]byte, 0x18)
		nameOff := 0x18
		valOff := (nameOff + len(name) + 7) &^ 7
		h = append(h, name...)
		for len(h) < valOff {
			h = append(h, 0)
		}
		binary.LittleEndian.PutUint32(h[0x10:], uint32(len(a.value)))
		binary.LittleEndian.PutUint16(h[0x14:], uint16(valOff))
		binary.LittleEndian.PutUint16(h[0x0A:], uint16(nameOff))
		h = append(h, a.value...)
	} else {
		hdr := 0x40
		if a.flags&(attrFlagCompressionMask|attrFlagSparse) != 0 {
			hdr = 0x48
		}
		h = make([]byte, hdr)
		h[8] = 1
		binary.LittleEndian.PutUint16(h[0x0A:], uint16(hdr))
		h = append(h, name...)
		for len(h)%8 != 0 {
			h = append(h, 0)
		}
		binary.LittleEndian.PutUint16(h[0x20:], uint16(len(h)))
		h = append(h, encodeRunlist(a.runs)...)
		var clusters int64
		for _, r := range a.runs {
			clusters += r.n
		}
		start := int64(0)
		if len(a.runs) > 0 {
			start = a.runs[0].vcn
		}
		binary.LittleEndian.PutUint64(h[0x10:], uint64(start))
		binary.LittleEndian.PutUint64(h[0x18:], uint64(start+clusters-1))
		h[0x22] = a.compUnit
		binary.LittleEndian.PutUint64(h[0x28:], uint64(clusters*synClusterSize))
		binary.LittleEndian.PutUint64(h[0x30:], uint64(a.dataSize))
		binary.LittleEndian.PutUint64(h[0x38:], uint64(a.initSize))
		if hdr == 0x48 {
			binary.LittleEndian.PutUint64(h[0x40:], uint64(a.compSize))
		}
	}
	for len(h)%8 != 0 {
		h = append(h, 0)
	}
	binary.LittleEndian.PutUint32(h[0:], a.typ)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(h)))
	h[9] = byte(len(name) / 2)
	binary.LittleEndian.PutUint16(h[0x0C:], a.flags)
	binary.LittleEndian.PutUint16(h[0x0E:], id)
	return h
}

// protect applies update sequence protection to a multi-sector structure
// whose USA lives at usaOfs.
func protect(b []byte, usaOfs int, usn uint16) {
	n := len(b)/512 + 1
	binary.LittleEndian.PutUint16(b[4:], uint16(usaOfs))
	binary.LittleEndian.PutUint16(b[6:], uint16(n))
	binary.LittleEndian.PutUint16(b[usaOfs:], usn)
	for i := 1; i < n; i++ {
		copy(b[usaOfs+2*i:], b[i*512-2:i*512])
		binary.LittleEndian.PutUint16(b[i*512-2:], usn)
	}
}

func synRecord(num uint32, flags uint16, base uint64, attrs ...synAttr) []byte {
	b := make([]byte, synRecordSize)
	copy(b, "FILE")
	binary.LittleEndian.PutUint16(b[0x10:], 1) // sequence
	binary.LittleEndian.PutUint16(b[0x12:], 1) // links
	binary.LittleEndian.PutUint16(b[0x14:], 0x38)
	binary.LittleEndian.PutUint16(b[0x16:], flags|recInUse)
	binary.LittleEndian.PutUint64(b[0x20:], base)
	binary.LittleEndian.PutUint32(b[0x2C:], num)
	off := 0x38
	for i, a := range attrs {
		e := a.encode(uint16(i))
		if off+len(e)+8 > len(b) {
			panic("synthetic record overflow")
		}
		off += copy(b[off:], e)
	}
	binary.LittleEndian.PutUint32(b[off:], atEnd)
	off += 8
	binary.LittleEndian.PutUint32(b[0x18:], uint32(off))
	binary.LittleEndian.PutUint32(b[0x1C:], synRecordSize)
	protect(b, 0x30, 0x0101+uint16(num))
	return b
}

func stdInfo(t uint64, attrs uint32) synAttr {
	v := make([]byte, 0x48)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(v[8*i:], t+uint64(i)*10_000_000)
	}
	binary.LittleEndian.PutUint32(v[0x20:], attrs)
	return synAttr{typ: atStandardInformation, value: v}
}

func fileNameValue(parent uint64, name []byte, ns byte, attrs uint32, size int64, tag uint32) []byte {
	v := make([]byte, 0x42+len(name))
	binary.LittleEndian.PutUint64(v[0:], parent|1<<48)
	binary.LittleEndian.PutUint64(v[0x28:], uint64(size))
	binary.LittleEndian.PutUint64(v[0x30:], uint64(size))
	binary.LittleEndian.PutUint32(v[0x38:], attrs)
	binary.LittleEndian.PutUint32(v[0x3C:], tag)
	v[0x40] = byte(len(name) / 2)
	v[0x41] = ns
	copy(v[0x42:], name)
	return v
}

// synEntry is one name in a synthetic directory.
type synEntry struct {
	ref   uint64
	key   []byte // $FILE_NAME value
	child int64  // -1: none
}

func indexEntries(ents []synEntry, lastChild int64) []byte {
	var out []byte
	for _, e := range ents {
		l := (16 + len(e.key) + 7) &^ 7
		flags := uint16(0)
		if e.child >= 0 {
			l += 8
			flags |= ieSubnode
		}
		b := make([]byte, l)
		binary.LittleEndian.PutUint64(b, e.ref|1<<48)
		binary.LittleEndian.PutUint16(b[8:], uint16(l))
		binary.LittleEndian.PutUint16(b[10:], uint16(len(e.key)))
		binary.LittleEndian.PutUint16(b[12:], flags)
		copy(b[16:], e.key)
		if e.child >= 0 {
			binary.LittleEndian.PutUint64(b[l-8:], uint64(e.child))
		}
		out = append(out, b...)
	}
	l, flags := 16, uint16(ieLast)
	if lastChild >= 0 {
		l, flags = 24, ieLast|ieSubnode
	}
	b := make([]byte, l)
	binary.LittleEndian.PutUint16(b[8:], uint16(l))
	binary.LittleEndian.PutUint16(b[12:], flags)
	if lastChild >= 0 {
		binary.LittleEndian.PutUint64(b[16:], uint64(lastChild))
	}
	return append(out, b...)
}

// nodeHeader builds an index node header followed, entOff bytes after its
// start, by the entries.
func nodeHeader(entries []byte, entOff, alloc int, large bool) []byte {
	h := make([]byte, entOff)
	binary.LittleEndian.PutUint32(h[0:], uint32(entOff))
	binary.LittleEndian.PutUint32(h[4:], uint32(entOff+len(entries)))
	binary.LittleEndian.PutUint32(h[8:], uint32(max(alloc, entOff+len(entries))))
	if large {
		h[12] = 1
	}
	return append(h, entries...)
}

func indexRoot(entries []byte, large bool) synAttr {
	v := make([]byte, 16)
	binary.LittleEndian.PutUint32(v[0:], atFileName)
	binary.LittleEndian.PutUint32(v[4:], 1)    // COLLATION_FILE_NAME
	binary.LittleEndian.PutUint32(v[8:], 4096) // index block size
	v[12] = 8                                  // 512-byte units per block
	v = append(v, nodeHeader(entries, 16, 0, large)...)
	return synAttr{typ: atIndexRoot, name: "$I30", value: v}
}

func indxBlock(vcn int64, entries []byte) []byte {
	b := make([]byte, 4096)
	copy(b, "INDX")
	binary.LittleEndian.PutUint64(b[0x10:], uint64(vcn))
	// The entries start at 0x40, after the update sequence array at 0x28.
	copy(b[0x18:], nodeHeader(entries, 0x28, 4096-0x18, false))
	protect(b, 0x28, 0x0202)
	return b
}

// lonelySurrogateName is a name with an unpaired surrogate (legal in NTFS).
var lonelySurrogateName = []uint16{'b', 'a', 'd', 0xD800, '!'}

// synImage builds a tiny NTFS volume with 512-byte clusters:
//
//	/hello.txt            resident, with ADS "ads" (resident) and "big" (non-resident)
//	/data.bin             non-resident: 2 clusters, 3 sparse, 1 cluster, init size < size
//	/comp.txt             LZNT1-compressed, 2 compression units (+ a sparse one)
//	/dir/                 index root pointing to one INDX block
//	/dir/inner.txt        hard link also in root as "Inner Link.txt"
//	/dir/LONGNA~1.TXT     DOS alias of /dir/long name.txt
//	/link                 relative symlink reparse point to "dir/inner.txt"
//	/lx                   WSL symlink to "/usr/bin"
//	/bad\uD800!           name with an unpaired surrogate
func synImage() ([]byte, map[string][]byte) {
	img := make([]byte, synTotal*synClusterSize)
	want := map[string][]byte{}
	bs := img[:512]
	bs[0], bs[1], bs[2] = 0xEB, 0x52, 0x90
	copy(bs[3:], "NTFS    ")
	binary.LittleEndian.PutUint16(bs[0x0B:], 512)
	bs[0x0D] = 1
	binary.LittleEndian.PutUint64(bs[0x28:], synTotal-1)
	binary.LittleEndian.PutUint64(bs[0x30:], synMFTLCN)
	binary.LittleEndian.PutUint64(bs[0x38:], 2)
	bs[0x40] = 0xF6 // 2^10 = 1024-byte records
	bs[0x44] = 8    // 8 clusters = 4096-byte index blocks
	binary.LittleEndian.PutUint64(bs[0x48:], 0x1234567890ABCDEF)
	bs[510], bs[511] = 0x55, 0xAA

	next := int64(synDataLCN)
	alloc := func(data []byte) int64 {
		lcn := next
		copy(img[lcn*synClusterSize:], data)
		next += int64((len(data) + synClusterSize - 1) / synClusterSize)
		return lcn
	}
	const t0 = 133000000000000000
	put := func(num int, rec []byte) {
		copy(img[synMFTLCN*synClusterSize+num*synRecordSize:], rec)
	}
	fnAttr := func(parent uint64, name string, ns byte, attrs uint32) synAttr {
		return synAttr{typ: atFileName, value: fileNameValue(parent, u16s(name), ns, attrs, 0, 0)}
	}
	key := func(parent uint64, name []byte, ns byte, attrs uint32, tag uint32) []byte {
		return fileNameValue(parent, name, ns, attrs, 0, tag)
	}

	// 0: $MFT
	mftClusters := int64(synRecords * synRecordSize / synClusterSize)
	put(0, synRecord(0, 0, 0,
		stdInfo(t0, faSystem),
		fnAttr(5, "$MFT", nsWin32DOS, faSystem),
		synAttr{typ: atData, nonRes: true, runs: []run{{0, synMFTLCN, mftClusters}},
			dataSize: mftClusters * synClusterSize, initSize: mftClusters * synClusterSize},
	))
	// 3: $Volume
	put(3, synRecord(3, 0, 0,
		stdInfo(t0, faSystem),
		fnAttr(5, "$Volume", nsWin32DOS, faSystem),
		synAttr{typ: atVolumeName, value: u16s("Synthetic")},
	))
	// 6: hello.txt with streams
	big := textPattern(42, 1500)
	bigLCN := alloc(big)
	want["hello.txt"] = []byte("Hello from a synthetic volume\n")
	want["hello.txt:ads"] = []byte("resident stream")
	want["hello.txt:big"] = big
	put(6, synRecord(6, 0, 0,
		stdInfo(t0+1, 0x20),
		fnAttr(5, "hello.txt", nsPOSIX, 0x20),
		synAttr{typ: atData, value: want["hello.txt"]},
		synAttr{typ: atData, name: "ads", value: want["hello.txt:ads"]},
		synAttr{typ: atData, name: "big", nonRes: true, runs: []run{{0, bigLCN, 3}}, dataSize: 1500, initSize: 1500},
	))
	// 7: data.bin: 2 clusters, 3 sparse, 1 cluster; initialized only to 2800.
	d1, d2 := pattern(7, 1024), pattern(8, 512)
	l1, l2 := alloc(d1), alloc(d2)
	data := make([]byte, 6*512-100)
	copy(data, d1)
	copy(data[5*512:], d2[:512-100])
	clear(data[2800:])
	want["data.bin"] = data
	put(7, synRecord(7, 0, 0,
		stdInfo(t0+2, 0x220),
		fnAttr(5, "data.bin", nsWin32, 0x220),
		synAttr{typ: atData, flags: attrFlagSparse, nonRes: true,
			runs:     []run{{0, l1, 2}, {2, -1, 3}, {5, l2, 1}},
			dataSize: int64(len(data)), initSize: 2800, compSize: 3 * 512},
	))
	// 8: comp.txt: CU 0 compressed, CU 1 stored raw, CU 2 sparse.
	cu := 16 * synClusterSize
	text := textPattern(9, cu)
	raw := textPattern(10, cu) // stored uncompressed all the same
	comp := lznt1Compress(text)
	compClusters := int64((len(comp) + 511) / 512)
	lc := alloc(comp)
	lr := alloc(raw)
	content := append(append(append([]byte{}, text...), raw...), make([]byte, cu-1000)...)
	want["comp.txt"] = content
	put(8, synRecord(8, 0, 0,
		stdInfo(t0+3, 0x820),
		fnAttr(5, "comp.txt", nsWin32, 0x820),
		synAttr{typ: atData, flags: 1, nonRes: true, compUnit: 4,
			runs: []run{{0, lc, compClusters}, {compClusters, -1, 16 - compClusters},
				{16, lr, 16}, {32, -1, 16}},
			dataSize: int64(len(content)), initSize: int64(len(content)), compSize: (compClusters + 16) * 512},
	))
	// 9: dir, with an index block holding its entries.
	innerKey := key(9, u16s("inner.txt"), nsWin32, 0x20, 0)
	longKey := key(9, u16s("long name.txt"), nsWin32, 0x20, 0)
	dosKey := key(9, u16s("LONGNA~1.TXT"), nsDOS, 0x20, 0)
	blk := indxBlock(0, indexEntries([]synEntry{{ref: 10, key: innerKey, child: -1}}, -1))
	blkLCN := alloc(blk)
	rootEntries := indexEntries([]synEntry{
		{ref: 11, key: longKey, child: 0},
		{ref: 11, key: dosKey, child: -1},
	}, -1)
	bitmap := synAttr{typ: atBitmap, name: "$I30", value: []byte{1, 0, 0, 0, 0, 0, 0, 0}}
	put(9, synRecord(9, recDirectory, 0,
		stdInfo(t0+4, 0x10000010),
		fnAttr(5, "dir", nsPOSIX, faDirIndex),
		indexRoot(rootEntries, true),
		synAttr{typ: atIndexAllocation, name: "$I30", nonRes: true, runs: []run{{0, blkLCN, 8}}, dataSize: 4096, initSize: 4096},
		bitmap,
	))
	// 10: dir/inner.txt = /Inner Link.txt
	want["dir/inner.txt"] = []byte("inner")
	want["Inner Link.txt"] = want["dir/inner.txt"]
	put(10, synRecord(10, 0, 0,
		stdInfo(t0+5, 0x20),
		fnAttr(9, "inner.txt", nsWin32, 0x20),
		fnAttr(5, "Inner Link.txt", nsWin32, 0x20),
		synAttr{typ: atData, value: want["dir/inner.txt"]},
	))
	// 11: dir/long name.txt with its DOS alias
	want["dir/long name.txt"] = []byte("long")
	put(11, synRecord(11, 0, 0,
		stdInfo(t0+6, 0x20),
		fnAttr(9, "long name.txt", nsWin32, 0x20),
		fnAttr(9, "LONGNA~1.TXT", nsDOS, 0x20),
		synAttr{typ: atData, value: want["dir/long name.txt"]},
	))
	// 12: link (relative symlink), 13: lx (WSL symlink), 14: bad name
	put(12, synRecord(12, 0, 0,
		stdInfo(t0+7, faReparsePoint|0x20),
		fnAttr(5, "link", nsWin32, faReparsePoint),
		synAttr{typ: atReparsePoint, value: reparseBuffer(tagSymlink, `dir\inner.txt`, `dir\inner.txt`, symlinkFlagRelative)},
	))
	lx := binary.LittleEndian.AppendUint32(nil, tagLXSymlink)
	lx = binary.LittleEndian.AppendUint16(lx, 4+8)
	lx = append(lx, 0, 0, 2, 0, 0, 0)
	lx = append(lx, "/usr/bin"...)
	put(13, synRecord(13, 0, 0,
		stdInfo(t0+8, faReparsePoint|0x20),
		fnAttr(5, "lx", nsPOSIX, faReparsePoint),
		synAttr{typ: atReparsePoint, value: lx},
	))
	badName := rawU16(lonelySurrogateName)
	want[utf16ToString(lonelySurrogateName)] = []byte("surrogate")
	put(14, synRecord(14, 0, 0,
		stdInfo(t0+9, 0x20),
		synAttr{typ: atFileName, value: fileNameValue(5, badName, nsPOSIX, 0x20, 0, 0)},
		synAttr{typ: atData, value: want[utf16ToString(lonelySurrogateName)]},
	))
	// 5: root, listing everything (sorted by upcased name).
	type named struct {
		name []byte
		ref  uint64
		ns   byte
		fa   uint32
		tag  uint32
	}
	items := []named{
		{u16s("$MFT"), 0, nsWin32DOS, faSystem, 0},
		{u16s("$Volume"), 3, nsWin32DOS, faSystem, 0},
		{u16s("."), 5, nsWin32DOS, faDirIndex, 0},
		{badName, 14, nsPOSIX, 0x20, 0},
		{u16s("comp.txt"), 8, nsWin32, 0x820, 0},
		{u16s("data.bin"), 7, nsWin32, 0x220, 0},
		{u16s("dir"), 9, nsPOSIX, faDirIndex, 0},
		{u16s("hello.txt"), 6, nsPOSIX, 0x20, 0},
		{u16s("Inner Link.txt"), 10, nsWin32, 0x20, 0},
		{u16s("link"), 12, nsWin32, faReparsePoint, tagSymlink},
		{u16s("lx"), 13, nsPOSIX, faReparsePoint, tagLXSymlink},
	}
	var ents []synEntry
	for _, it := range items {
		ents = append(ents, synEntry{ref: it.ref, key: key(5, it.name, it.ns, it.fa, it.tag), child: -1})
	}
	rootBlk := alloc(indxBlock(0, indexEntries(ents, -1)))
	put(5, synRecord(5, recDirectory, 0,
		stdInfo(t0, 0x10000016),
		fnAttr(5, ".", nsWin32DOS, faDirIndex),
		indexRoot(indexEntries(nil, 0), true),
		synAttr{typ: atIndexAllocation, name: "$I30", nonRes: true, runs: []run{{0, rootBlk, 8}}, dataSize: 4096, initSize: 4096},
		bitmap,
	))
	// The MFT mirror (cluster 2..3) holds records 0 and 1.
	copy(img[2*synClusterSize:], img[synMFTLCN*synClusterSize:synMFTLCN*synClusterSize+2*synRecordSize])
	if next > synTotal {
		panic("synthetic image overflow")
	}
	// Nothing is stored past the last allocated cluster; leave it out to
	// keep fuzz seeds small (reads there fail as beyond the volume's end).
	return img[:next*synClusterSize], want
}

// lznt1Compress is a simple greedy LZNT1 compressor for tests: each 4096-
// byte block becomes a compressed chunk, or a stored one if that is not
// smaller.
func lznt1Compress(in []byte) []byte {
	var out bytes.Buffer
	for off := 0; off < len(in); off += 4096 {
		blk := in[off:min(off+4096, len(in))]
		c := lznt1CompressChunk(blk)
		if len(c) >= len(blk) {
			binary.Write(&out, binary.LittleEndian, uint16(0x3000|(len(blk)-1)))
			out.Write(blk)
			continue
		}
		binary.Write(&out, binary.LittleEndian, uint16(0xB000|(len(c)-1)))
		out.Write(c)
	}
	return out.Bytes()
}

func lznt1CompressChunk(blk []byte) []byte {
	var out []byte
	for pos := 0; pos < len(blk); {
		flagAt := len(out)
		out = append(out, 0)
		for bit := 0; bit < 8 && pos < len(blk); bit++ {
			lenBits := 12
			for p := pos - 1; p >= 0x10; p >>= 1 {
				lenBits--
			}
			maxLen := 1<<lenBits - 1 + 3
			maxDisp := 1 << (16 - lenBits)
			bestLen, bestDisp := 0, 0
			for d := 1; d <= maxDisp && d <= pos; d++ {
				l := 0
				for l < maxLen && pos+l < len(blk) && blk[pos+l] == blk[pos+l-d] {
					l++
				}
				if l > bestLen {
					bestLen, bestDisp = l, d
				}
			}
			if bestLen >= 3 {
				tok := uint16((bestDisp-1)<<lenBits | (bestLen - 3))
				out = binary.LittleEndian.AppendUint16(out, tok)
				out[flagAt] |= 1 << bit
				pos += bestLen
			} else {
				out = append(out, blk[pos])
				pos++
			}
		}
	}
	return out
}
