package ntfs

import (
	"fmt"
	iofs "io/fs"
	"slices"
	"strings"

	"github.com/ckptfs/ckptfs/volume"
)

// $FILE_NAME namespaces.
const (
	nsPOSIX    = 0
	nsWin32    = 1
	nsDOS      = 2
	nsWin32DOS = 3
)

// Index entry flags.
const (
	ieSubnode = 0x01
	ieLast    = 0x02
)

// maxIndexDepth bounds B-tree descent (real trees are a few levels deep).
const maxIndexDepth = 32

// maxLookupVisits bounds the index nodes one Lookup reads.
const maxLookupVisits = 1024

type blockKey struct {
	ino uint64
	vcn int64
}

// dirIndex is the $I30 index of a directory.
type dirIndex struct {
	fs        *FS
	ino       uint64
	root      []byte // $INDEX_ROOT value
	blockSize int64
	vcnShift  uint
	alloc     *stream // $INDEX_ALLOCATION, nil for small directories
}

// ientry is one index entry.
type ientry struct {
	ref   uint64
	flags uint16
	key   []byte
	child int64 // VCN of the sub-node, or -1
}

// fileNameKey is the part of a $FILE_NAME index key the reader uses.
type fileNameKey struct {
	raw   []byte // the name as little-endian UTF-16
	ns    byte
	attrs uint32
	tag   uint32
}

func parseFileNameKey(k []byte) (fileNameKey, bool) {
	if len(k) < 0x42 {
		return fileNameKey{}, false
	}
	n := int(k[0x40])
	if 0x42+2*n > len(k) {
		return fileNameKey{}, false
	}
	return fileNameKey{
		raw:   k[0x42 : 0x42+2*n],
		ns:    k[0x41],
		attrs: le32(k[0x38:]),
		tag:   le32(k[0x3C:]),
	}, true
}

// name returns the name as UTF-16 code units.
func (k fileNameKey) name() []uint16 { return utf16le(k.raw) }

// startsWithDollar reports whether the name begins with '$'.
func (k fileNameKey) startsWithDollar() bool {
	return len(k.raw) >= 2 && k.raw[0] == '$' && k.raw[1] == 0
}

// openIndex returns the $I30 index of directory inode n (kept with n once
// loaded; errors are not remembered).
func (fs *FS) openIndex(n *inode) (*dirIndex, error) {
	n.idxMu.Lock()
	defer n.idxMu.Unlock()
	if n.idx == nil {
		idx, err := fs.loadIndex(n)
		if err != nil {
			return nil, err
		}
		n.idx = idx
	}
	return n.idx, nil
}

func (fs *FS) loadIndex(n *inode) (*dirIndex, error) {
	if n.flags&recDirectory == 0 {
		return nil, fmt.Errorf("ntfs: inode %d: %w", n.num, volume.ErrNotDir)
	}
	roots := n.find(atIndexRoot, "$I30")
	if len(roots) == 0 {
		return nil, fmt.Errorf("ntfs: inode %d has no $I30 index: %w", n.num, volume.ErrNotDir)
	}
	r := roots[0]
	if !r.resident || len(r.value) < 0x20 {
		return nil, corruptf("inode %d: bad $INDEX_ROOT", n.num)
	}
	if t := le32(r.value); t != atFileName {
		return nil, corruptf("inode %d: $I30 indexes attribute 0x%x", n.num, t)
	}
	idx := &dirIndex{fs: fs, ino: n.num, root: r.value, blockSize: int64(le32(r.value[8:]))}
	if idx.blockSize < 512 || idx.blockSize > 64<<10 || log2(idx.blockSize) < 0 {
		return nil, corruptf("inode %d: index block size %d", n.num, idx.blockSize)
	}
	if idx.blockSize >= fs.clusterSize {
		idx.vcnShift = fs.clusterShift
	} else {
		idx.vcnShift = 9
	}
	if ext := n.find(atIndexAllocation, "$I30"); len(ext) > 0 {
		s, err := fs.buildStream(n.num, ext)
		if err != nil {
			return nil, err
		}
		if s.resident || s.compressed() {
			return nil, corruptf("inode %d: $INDEX_ALLOCATION resident or compressed", n.num)
		}
		idx.alloc = s
	}
	return idx, nil
}

// forEachEntry calls fn for each entry of the index node whose header
// starts at buf[hdr:], in order, until fn returns false or an error.
func forEachEntry(buf []byte, hdr int, ino uint64, fn func(e ientry) (bool, error)) error {
	if hdr+16 > len(buf) {
		return corruptf("inode %d: index node header truncated", ino)
	}
	entOff, used := int64(le32(buf[hdr:])), int64(le32(buf[hdr+4:]))
	start, end := int64(hdr)+entOff, int64(hdr)+used
	if entOff < 16 || end > int64(len(buf)) || start > end {
		return corruptf("inode %d: index node bounds %d..%d", ino, start, end)
	}
	for p := int(start); ; {
		if int64(p)+16 > end {
			return corruptf("inode %d: index node not terminated", ino)
		}
		length, keyLen, flags := int(le16(buf[p+8:])), int(le16(buf[p+10:])), le16(buf[p+12:])
		if length < 16 || int64(length) > end-int64(p) {
			return corruptf("inode %d: index entry length %d", ino, length)
		}
		e := ientry{ref: le64(buf[p:]), flags: flags, child: -1}
		room := length - 16
		if flags&ieSubnode != 0 {
			if length < 24 {
				return corruptf("inode %d: index entry too short for sub-node", ino)
			}
			e.child = int64(le64(buf[p+length-8:]))
			room -= 8
		}
		if flags&ieLast == 0 {
			if keyLen > room {
				return corruptf("inode %d: index key of %d bytes in entry of %d", ino, keyLen, length)
			}
			e.key = buf[p+16 : p+16+keyLen]
		}
		more, err := fn(e)
		if err != nil || !more || flags&ieLast != 0 {
			return err
		}
		p += length
	}
}

// node returns the buffer and header offset of the index root (vcn < 0)
// or of index block vcn.
func (idx *dirIndex) node(vcn int64) ([]byte, int, error) {
	if vcn < 0 {
		return idx.root, 0x10, nil
	}
	if idx.alloc == nil {
		return nil, 0, corruptf("inode %d: index sub-node %d without $INDEX_ALLOCATION", idx.ino, vcn)
	}
	if vcn > idx.alloc.size>>idx.vcnShift {
		return nil, 0, corruptf("inode %d: index sub-node VCN %d out of range", idx.ino, vcn)
	}
	off := vcn << idx.vcnShift
	if off+idx.blockSize > idx.alloc.size {
		return nil, 0, corruptf("inode %d: index block at %d beyond $INDEX_ALLOCATION", idx.ino, off)
	}
	fs := idx.fs
	key := blockKey{idx.ino, vcn}
	if buf, ok := fs.blocks.Get(key); ok {
		return buf, 0x18, nil
	}
	idx.readAround(off)
	if buf, ok := fs.blocks.Get(key); ok {
		return buf, 0x18, nil
	}
	// Not read ahead (or not valid): read it alone, to say what is wrong.
	buf := make([]byte, idx.blockSize)
	if err := idx.alloc.fill(buf, off); err != nil {
		return nil, 0, err
	}
	if err := idx.checkBlock(buf, vcn); err != nil {
		return nil, 0, err
	}
	fs.blocks.Add(key, buf, 1)
	return buf, 0x18, nil
}

// indexReadAhead is how many bytes of $INDEX_ALLOCATION are read at once
// when a block is not cached: a folder's blocks are listed or searched
// together, and one read of 64 KiB costs less than sixteen of 4 KiB.
const indexReadAhead = 64 << 10

// readAround reads the aligned indexReadAhead bytes of the index
// allocation around offset off and caches every valid block in them (a
// block that is not in use, or damaged, is left out).
func (idx *dirIndex) readAround(off int64) {
	chunk := max(indexReadAhead, idx.blockSize)
	start := off / chunk * chunk
	end := min(start+chunk, idx.alloc.size)
	data := make([]byte, end-start)
	if idx.alloc.fill(data, start) != nil {
		return
	}
	for o := start; o+idx.blockSize <= end; o += idx.blockSize {
		vcn := o >> idx.vcnShift
		key := blockKey{idx.ino, vcn}
		if _, ok := idx.fs.blocks.Get(key); ok {
			continue
		}
		buf := make([]byte, idx.blockSize)
		copy(buf, data[o-start:])
		if idx.checkBlock(buf, vcn) == nil {
			idx.fs.blocks.Add(key, buf, 1)
		}
	}
}

// checkBlock applies the fixups of index block vcn, read into buf, and
// checks it is the block it should be.
func (idx *dirIndex) checkBlock(buf []byte, vcn int64) error {
	if err := applyFixups(buf, "INDX", idx.fs.sectorSize); err != nil {
		return fmt.Errorf("ntfs: inode %d: index block %d: %w", idx.ino, vcn, err)
	}
	if got := int64(le64(buf[0x10:])); got != vcn {
		return corruptf("inode %d: index block at VCN %d says it is VCN %d", idx.ino, vcn, got)
	}
	return nil
}

// forEach calls fn for every entry of node vcn (-1: the root).
func (idx *dirIndex) forEach(vcn int64, fn func(e ientry) (bool, error)) error {
	buf, hdr, err := idx.node(vcn)
	if err != nil {
		return err
	}
	return forEachEntry(buf, hdr, idx.ino, fn)
}

// hiddenInRoot reports whether an entry of the root directory is an NTFS
// metafile that is not shown.
func hiddenInRoot(dir, ref uint64, k fileNameKey) bool {
	return dir == recRoot && ref&refMask < recFirstUser && k.startsWithDollar()
}

// entryMode derives the type bits of a directory entry from the duplicated
// information in its index key, consulting the MFT record only for system
// files (which may be Interix symbolic links).
func (fs *FS) entryMode(ref uint64, k fileNameKey) iofs.FileMode {
	switch {
	case k.attrs&faReparsePoint != 0 && isLinkTag(k.tag):
		return iofs.ModeSymlink
	case k.attrs&faDirIndex != 0:
		return iofs.ModeDir
	case k.attrs&faSystem != 0 && k.attrs&faReparsePoint == 0:
		if n, err := fs.inode(ref & refMask); err == nil {
			if kind, _, err := fs.classify(n); err == nil && kind == kindSymlink {
				return iofs.ModeSymlink
			}
		}
	}
	return 0
}

// ReadDir lists directory ino, without "." and "..", sorted by name.
func (fs *FS) ReadDir(ino uint64) ([]volume.Entry, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	idx, err := fs.openIndex(n)
	if err != nil {
		return nil, err
	}
	var out []volume.Entry
	seen := make(map[string]bool)
	visited := make(map[int64]bool)
	queue := []int64{-1}
	visit := func(e ientry) (bool, error) {
		if e.child >= 0 {
			if visited[e.child] {
				return false, corruptf("inode %d: index sub-node %d referenced twice", ino, e.child)
			}
			visited[e.child] = true
			queue = append(queue, e.child)
		}
		if e.flags&ieLast != 0 {
			return true, nil
		}
		k, ok := parseFileNameKey(e.key)
		if !ok {
			return false, corruptf("inode %d: bad $FILE_NAME index key", ino)
		}
		if k.ns == nsDOS || hiddenInRoot(ino, e.ref, k) {
			return true, nil
		}
		name := utf16ToString(k.name())
		if name == "." || name == ".." || name == "" || seen[name] {
			return true, nil
		}
		seen[name] = true
		out = append(out, volume.Entry{Name: name, Ino: e.ref & refMask, Mode: fs.entryMode(e.ref, k)})
		return true, nil
	}
	for len(queue) > 0 {
		vcn := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if err := idx.forEach(vcn, visit); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b volume.Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Lookup finds name in directory dir, ignoring case as NTFS does (through
// the volume's $UpCase table). If several names differ only in case (POSIX
// namespace), the exact match wins. DOS 8.3 names are not matched.
func (fs *FS) Lookup(dir uint64, name string) (volume.Entry, error) {
	notFound := func() (volume.Entry, error) {
		return volume.Entry{}, fmt.Errorf("ntfs: %q in directory %d: %w", name, dir, volume.ErrNotFound)
	}
	n, err := fs.inode(dir)
	if err != nil {
		return volume.Entry{}, err
	}
	idx, err := fs.openIndex(n)
	if err != nil {
		return volume.Entry{}, err
	}
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return notFound()
	}
	want, ok := stringToUTF16(name)
	if !ok || len(want) > 255 {
		return notFound()
	}
	type match struct {
		ref uint64
		k   fileNameKey
	}
	var matches []match
	visits := 0
	// search walks node vcn in key order, descending only into sub-nodes
	// that can hold names equal to want.
	var search func(vcn int64, depth int) error
	search = func(vcn int64, depth int) error {
		if visits++; depth > maxIndexDepth || visits > maxLookupVisits {
			return corruptf("inode %d: index B-tree loops or is too deep at VCN %d", dir, vcn)
		}
		return idx.forEach(vcn, func(e ientry) (bool, error) {
			if e.flags&ieLast != 0 {
				if e.child >= 0 {
					return false, search(e.child, depth+1)
				}
				return false, nil
			}
			k, ok := parseFileNameKey(e.key)
			if !ok {
				return false, corruptf("inode %d: bad $FILE_NAME index key", dir)
			}
			c := fs.collateRaw(want, k.raw)
			if c <= 0 && e.child >= 0 {
				if err := search(e.child, depth+1); err != nil {
					return false, err
				}
			}
			if c < 0 {
				return false, nil
			}
			if c == 0 && k.ns != nsDOS && !hiddenInRoot(dir, e.ref, k) {
				matches = append(matches, match{e.ref, k})
			}
			return true, nil
		})
	}
	if err := search(-1, 0); err != nil {
		return volume.Entry{}, err
	}
	if len(matches) == 0 {
		return notFound()
	}
	best := matches[0]
	for _, m := range matches {
		if slices.Equal(m.k.name(), want) {
			best = m
			break
		}
	}
	return volume.Entry{Name: utf16ToString(best.k.name()), Ino: best.ref & refMask, Mode: fs.entryMode(best.ref, best.k)}, nil
}
