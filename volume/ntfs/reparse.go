package ntfs

import (
	"fmt"
	iofs "io/fs"
	"strings"
	"unicode/utf8"
)

// Reparse tags.
const (
	tagMountPoint = 0xA0000003
	tagSymlink    = 0xA000000C
	tagLXSymlink  = 0xA000001D
	tagDedup      = 0x80000013
	tagWOF        = 0x80000017
)

// symlinkFlagRelative marks a relative SYMLINK reparse point.
const symlinkFlagRelative = 1

// interixMagic starts the data of an Interix symbolic link.
const interixMagic = "IntxLNK\x01"

// maxReparseSize is the largest reparse point NTFS stores.
const maxReparseSize = 16 << 10

type fileKind int

const (
	kindFile fileKind = iota
	kindDir
	kindSymlink
)

// isLinkTag reports whether a reparse tag is presented as a symbolic link.
func isLinkTag(tag uint32) bool {
	return tag == tagSymlink || tag == tagMountPoint || tag == tagLXSymlink
}

// reparseData returns the raw $REPARSE_POINT value of n, if any.
func (fs *FS) reparseData(n *inode) ([]byte, bool, error) {
	ext := n.find(atReparsePoint, "")
	if len(ext) == 0 {
		return nil, false, nil
	}
	s, err := fs.buildStream(n.num, ext)
	if err != nil {
		return nil, true, err
	}
	if s.compressed() {
		return nil, true, corruptf("inode %d: compressed reparse point", n.num)
	}
	b, err := s.readAll(maxReparseSize)
	if err != nil {
		return nil, true, err
	}
	if len(b) < 8 {
		return nil, true, corruptf("inode %d: reparse point of %d bytes", n.num, len(b))
	}
	return b, true, nil
}

// reparseTag returns the reparse tag of n, if it has a reparse point.
func (fs *FS) reparseTag(n *inode) (uint32, bool, error) {
	b, ok, err := fs.reparseData(n)
	if !ok || err != nil {
		return 0, ok, err
	}
	return le32(b), true, nil
}

// classify decides whether n is a directory, a regular file or a symbolic
// link; for links it also returns the target.
func (fs *FS) classify(n *inode) (fileKind, string, error) {
	b, ok, err := fs.reparseData(n)
	if err != nil {
		return 0, "", err
	}
	if ok && isLinkTag(le32(b)) {
		t, err := reparseTarget(n.num, b)
		if err != nil {
			return 0, "", err
		}
		return kindSymlink, t, nil
	}
	if n.flags&recDirectory != 0 {
		return kindDir, "", nil
	}
	if !ok && n.fileAttributes()&faSystem != 0 {
		if t, ok := fs.interixTarget(n); ok {
			return kindSymlink, t, nil
		}
	}
	return kindFile, "", nil
}

// interixTarget returns the target of an Interix symbolic link: a system
// file whose data is "IntxLNK\1" followed by the UTF-16LE target.
func (fs *FS) interixTarget(n *inode) (string, bool) {
	d := n.dataHeader("")
	if d == nil {
		return "", false
	}
	size := d.dataSize
	if d.resident {
		size = int64(len(d.value))
	}
	if size < int64(len(interixMagic))+2 || size > int64(len(interixMagic))+2*4096 || size%2 != 0 {
		return "", false
	}
	s, err := fs.openData(n, "")
	if err != nil {
		return "", false
	}
	b, err := s.readAll(size)
	if err != nil || string(b[:len(interixMagic)]) != interixMagic {
		return "", false
	}
	u := utf16le(b[len(interixMagic):])
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	if len(u) == 0 {
		return "", false
	}
	return utf16ToString(u), true
}

// reparseTarget converts a symbolic-link reparse point into a Linux path.
func reparseTarget(ino uint64, b []byte) (string, error) {
	tag := le32(b)
	dlen := int(le16(b[4:]))
	if dlen > len(b)-8 {
		return "", corruptf("inode %d: reparse data length %d exceeds %d", ino, dlen, len(b)-8)
	}
	d := b[8 : 8+dlen]
	if tag == tagLXSymlink {
		if len(d) < 4 || !utf8.Valid(d[4:]) {
			return "", corruptf("inode %d: bad LX symlink reparse point", ino)
		}
		return string(d[4:]), nil
	}
	hdr := 8
	if tag == tagSymlink {
		hdr = 12
	}
	if len(d) < hdr {
		return "", corruptf("inode %d: reparse point 0x%08x too short", ino, tag)
	}
	subOff, subLen := int(le16(d[0:])), int(le16(d[2:]))
	prOff, prLen := int(le16(d[4:])), int(le16(d[6:]))
	relative := tag == tagSymlink && le32(d[8:])&symlinkFlagRelative != 0
	buf := d[hdr:]
	name := func(off, n int) (string, bool) {
		if off%2 != 0 || n%2 != 0 || off > len(buf) || n > len(buf)-off {
			return "", false
		}
		return utf16ToString(utf16le(buf[off : off+n])), true
	}
	sub, okSub := name(subOff, subLen)
	pr, okPr := name(prOff, prLen)
	if !okSub && !okPr {
		return "", corruptf("inode %d: reparse point names out of bounds", ino)
	}
	t := sub
	if t == "" {
		t = pr
	}
	if t == "" {
		return "", corruptf("inode %d: reparse point with empty target", ino)
	}
	if !relative {
		switch {
		case strings.HasPrefix(t, `\??\UNC\`):
			t = `\\` + t[len(`\??\UNC\`):]
		case strings.HasPrefix(t, `\??\`), strings.HasPrefix(t, `\\?\`):
			t = t[4:]
		}
	}
	return strings.ReplaceAll(t, `\`, "/"), nil
}

// Readlink returns the target of a symbolic link or junction. Absolute
// Windows targets keep their drive letter with '/' separators
// (C:\Users → C:/Users, \??\UNC\srv\share → //srv/share); relative targets
// become relative Linux paths (..\x → ../x).
func (fs *FS) Readlink(ino uint64) (string, error) {
	n, err := fs.inode(ino)
	if err != nil {
		return "", err
	}
	k, t, err := fs.classify(n)
	if err != nil {
		return "", err
	}
	if k != kindSymlink {
		return "", fmt.Errorf("ntfs: inode %d is not a symbolic link: %w", ino, iofs.ErrInvalid)
	}
	return t, nil
}
