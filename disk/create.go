package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CreatorName is the creator string ckptfs writes into the file identifier
// of every VHDX file it creates. OpenWriter only writes files that carry it.
const CreatorName = "ckptfs"

// Default block sizes, as Hyper-V chooses them.
const (
	DefaultDifferencingBlockSize = 2 * MiB
	DefaultDynamicBlockSize      = 32 * MiB
)

// Layout of the files this package creates (the same as QEMU's and close to
// Hyper-V's): header section, a 1 MiB log at 1 MiB, the 1 MiB metadata
// region at 2 MiB, the BAT at 3 MiB, then payload and sector-bitmap blocks
// appended in 1 MiB-aligned allocations.
const (
	createLogOffset      = 1 * MiB
	createLogLength      = 1 * MiB
	createMetadataOffset = 2 * MiB
	createMetadataLength = 1 * MiB
	createBATOffset      = 3 * MiB
)

// MetadataItem is a metadata item copied verbatim from a parent into a new
// differencing file.
type MetadataItem struct {
	// Entry gives the ItemID and flags; Offset and Length are recomputed.
	Entry MetadataEntry
	Data  []byte
}

// ParentInfo is what a new differencing file needs to know about its
// parent.
type ParentInfo struct {
	// Path locates the parent file. It must exist when the child is
	// created; it is made absolute and recorded in the parent locator.
	Path string
	// DataWriteGUID is the parent header's DataWriteGuid, recorded as the
	// child's parent_linkage.
	DataWriteGUID GUID
	// VirtualSize, LogicalSectorSize, PhysicalSectorSize and VirtualDiskID
	// are the parent's virtual-disk metadata; the child copies them
	// ([MS-VHDX] §2.6.1.2: items with IsVirtualDisk set are copied when a
	// differencing file is forked, and the logical sector sizes of parent
	// and child must be equal, §2.6.2.4).
	VirtualSize        int64
	LogicalSectorSize  uint32
	PhysicalSectorSize uint32
	VirtualDiskID      GUID
	// ExtraItems are further IsVirtualDisk metadata items of the parent
	// (beyond the four known ones above); they are copied to the child too.
	ExtraItems []MetadataItem

	err error // set by ParentInfoOf when an extra item could not be read
}

// ParentInfoOf describes f as the parent of a new differencing file. If one
// of f's extra IsVirtualDisk metadata items cannot be read, the error is
// kept and reported by CreateDifferencing.
func ParentInfoOf(f *File) ParentInfo {
	p := ParentInfo{
		Path:               f.Name(),
		DataWriteGUID:      f.Header.DataWriteGUID,
		VirtualSize:        f.VirtualSize(),
		LogicalSectorSize:  f.Metadata.LogicalSectorSize,
		PhysicalSectorSize: f.Metadata.PhysicalSectorSize,
		VirtualDiskID:      f.Metadata.VirtualDiskID,
	}
	base := int64(f.region(RegionMetadata).FileOffset)
	for _, e := range f.Metadata.Entries {
		if !e.IsVirtualDisk || (!e.IsUser && isKnownVirtualDiskItem(e.ItemID)) {
			continue
		}
		var data []byte
		if e.Length > 0 {
			b, err := f.readFull(f.r, fmt.Sprintf("metadata item %s", e.ItemID), base+int64(e.Offset), int64(e.Length))
			if err != nil {
				p.err = err
				continue
			}
			data = b
		}
		p.ExtraItems = append(p.ExtraItems, MetadataItem{Entry: e, Data: data})
	}
	return p
}

func isKnownVirtualDiskItem(g GUID) bool {
	return g == MetaVirtualDiskSize || g == MetaVirtualDiskID || g == MetaLogicalSectorSize || g == MetaPhysicalSectorSize
}

// CreateOptions tunes CreateDifferencing and CreateDynamic.
type CreateOptions struct {
	// BlockSize is the payload block size: a power of two from 1 MiB to
	// 256 MiB. Zero means DefaultDifferencingBlockSize (2 MiB) for
	// differencing files and DefaultDynamicBlockSize (32 MiB) for dynamic
	// ones, as Hyper-V does.
	BlockSize uint32

	// Parent reads the parent's virtual disk (the whole chain below the new
	// file, virtual offsets). A differencing Writer needs it only to fill in
	// the rest of a logical sector that a write covers partly; without it
	// such writes fail. Ignored by CreateDynamic.
	Parent io.ReaderAt

	// ParentAbsoluteWin32Path replaces the default absolute_win32_path of
	// the parent locator. The default maps the parent's absolute Linux path
	// to drive Z: as Wine does: /srv/vm/base.vhdx becomes
	// \\?\Z:\srv\vm\base.vhdx.
	ParentAbsoluteWin32Path string
	// ParentVolumePath, if set, is written as volume_path (it must have the
	// form \\?\Volume{GUID}\path). By default no volume_path is written:
	// Linux has no Windows volume GUIDs and an invented one would only
	// mislead; relative_path and absolute_win32_path locate the parent.
	ParentVolumePath string

	// LogicalSectorSize and PhysicalSectorSize (512 or 4096) apply to
	// CreateDynamic only; zero means 512 and 4096. A differencing file
	// always takes its parent's.
	LogicalSectorSize  uint32
	PhysicalSectorSize uint32
	// VirtualDiskID applies to CreateDynamic only; zero means a new random
	// GUID.
	VirtualDiskID GUID

	// Perm is the permission of the new file before the umask; zero means
	// 0644.
	Perm os.FileMode
}

// CreateDifferencing creates a new differencing VHDX file at path whose
// parent is the VHDX file described by parent, and returns a Writer for it.
// The file must not exist (it is created with O_EXCL); the parent file is
// only checked for existence and never opened for writing.
//
// The file is valid per [MS-VHDX]: identifier with creator "ckptfs", two
// headers, two identical region tables, a 1 MiB log, a 1 MiB metadata
// region (File Parameters with HasParent, the parent's Virtual Disk Size,
// Virtual Disk ID and sector sizes, and a VHDX parent locator) and a BAT
// with every entry zero (NOT_PRESENT: all data comes from the parent).
//
// The parent locator holds parent_linkage (the parent's DataWriteGuid, lower
// case with braces, as Hyper-V writes it), relative_path (from the child's
// folder to the parent, with \ separators), absolute_win32_path (see
// CreateOptions.ParentAbsoluteWin32Path) and, only if given, volume_path.
//
// The file identifier is written last: if creation fails or is interrupted
// the file is removed, and a file left behind by a crash has no signature,
// so it is never taken for a valid VHDX file.
func CreateDifferencing(path string, parent ParentInfo, opts CreateOptions) (*Writer, error) {
	fail := func(err error) (*Writer, error) {
		return nil, fmt.Errorf("create differencing VHDX %s: %w", path, err)
	}
	if parent.err != nil {
		return fail(fmt.Errorf("reading the parent's metadata: %w", parent.err))
	}
	if parent.Path == "" {
		return fail(errors.New("parent path is empty"))
	}
	parentAbs, err := filepath.Abs(parent.Path)
	if err != nil {
		return fail(fmt.Errorf("parent %s: %w", parent.Path, err))
	}
	st, err := os.Stat(parentAbs)
	if err != nil {
		return fail(fmt.Errorf("parent: %w", err))
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("parent %s is not a regular file", parentAbs))
	}
	if parent.DataWriteGUID.IsZero() {
		return fail(fmt.Errorf("parent %s: DataWriteGuid is zero", parentAbs))
	}
	childAbs, err := filepath.Abs(path)
	if err != nil {
		return fail(err)
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultDifferencingBlockSize
	}
	spec := createSpec{
		path:        path,
		blockSize:   bs,
		lss:         parent.LogicalSectorSize,
		pss:         parent.PhysicalSectorSize,
		virtualSize: parent.VirtualSize,
		diskID:      parent.VirtualDiskID,
		hasParent:   true,
		extra:       parent.ExtraItems,
		perm:        opts.Perm,
	}
	loc, err := createParentLocator(parentAbs, childAbs, parent.DataWriteGUID, opts)
	if err != nil {
		return fail(err)
	}
	spec.locator = &loc
	if err := spec.validate(); err != nil {
		return fail(err)
	}
	osf, err := spec.create()
	if err != nil {
		return fail(err)
	}
	w, err := newWriterFromCreated(osf, path, opts.Parent)
	if err != nil {
		osf.Close()
		os.Remove(path)
		return fail(err)
	}
	return w, nil
}

// CreateDynamic creates a new standalone dynamic VHDX file of virtualSize
// bytes at path (which must not exist) and returns a Writer for it. Every
// block starts NOT_PRESENT (reads as zeros); writes allocate FULLY_PRESENT
// blocks, except writes of zeros to unallocated blocks, which allocate
// nothing.
func CreateDynamic(path string, virtualSize int64, opts CreateOptions) (*Writer, error) {
	fail := func(err error) (*Writer, error) {
		return nil, fmt.Errorf("create dynamic VHDX %s: %w", path, err)
	}
	spec := createSpec{
		path:        path,
		blockSize:   opts.BlockSize,
		lss:         opts.LogicalSectorSize,
		pss:         opts.PhysicalSectorSize,
		virtualSize: virtualSize,
		diskID:      opts.VirtualDiskID,
		perm:        opts.Perm,
	}
	if spec.blockSize == 0 {
		spec.blockSize = DefaultDynamicBlockSize
	}
	if spec.lss == 0 {
		spec.lss = 512
	}
	if spec.pss == 0 {
		spec.pss = 4096
	}
	if spec.diskID.IsZero() {
		spec.diskID = NewGUID()
	}
	if err := spec.validate(); err != nil {
		return fail(err)
	}
	osf, err := spec.create()
	if err != nil {
		return fail(err)
	}
	w, err := newWriterFromCreated(osf, path, nil)
	if err != nil {
		osf.Close()
		os.Remove(path)
		return fail(err)
	}
	return w, nil
}

// createParentLocator builds the VHDX parent locator of a child at
// childAbs whose parent is at parentAbs.
func createParentLocator(parentAbs, childAbs string, linkage GUID, opts CreateOptions) (ParentLocator, error) {
	rel, err := filepath.Rel(filepath.Dir(childAbs), parentAbs)
	if err != nil {
		return ParentLocator{}, fmt.Errorf("relative path to the parent %s: %w", parentAbs, err)
	}
	abs := opts.ParentAbsoluteWin32Path
	if abs == "" {
		abs = `\\?\Z:` + strings.ReplaceAll(filepath.ToSlash(parentAbs), "/", `\`)
	}
	if !strings.HasPrefix(abs, `\\?\`) {
		return ParentLocator{}, fmt.Errorf("absolute_win32_path %q does not begin with \\\\?\\", abs)
	}
	entries := []LocatorEntry{
		{Key: KeyParentLinkage, Value: linkage.Braced()},
		{Key: KeyRelativePath, Value: strings.ReplaceAll(filepath.ToSlash(rel), "/", `\`)},
	}
	if opts.ParentVolumePath != "" {
		if !strings.HasPrefix(strings.ToLower(opts.ParentVolumePath), `\\?\volume{`) {
			return ParentLocator{}, fmt.Errorf("volume_path %q does not have the form \\\\?\\Volume{GUID}\\path", opts.ParentVolumePath)
		}
		entries = append(entries, LocatorEntry{Key: KeyVolumePath, Value: opts.ParentVolumePath})
	}
	entries = append(entries, LocatorEntry{Key: KeyAbsoluteWin32Path, Value: abs})
	for _, e := range entries {
		if len(encodeUTF16(e.Value)) > 0xFFFF {
			return ParentLocator{}, fmt.Errorf("parent locator %s is too long", e.Key)
		}
	}
	return ParentLocator{Type: LocatorTypeVHDX, Entries: entries}, nil
}

// createSpec describes a file to create.
type createSpec struct {
	path        string
	blockSize   uint32
	lss, pss    uint32
	virtualSize int64
	diskID      GUID
	hasParent   bool
	locator     *ParentLocator
	extra       []MetadataItem
	perm        os.FileMode
}

func (s *createSpec) validate() error {
	bs := s.blockSize
	switch {
	case bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0:
		return fmt.Errorf("block size %d is not a power of two from 1 MiB to 256 MiB", bs)
	case s.lss != 512 && s.lss != 4096:
		return fmt.Errorf("logical sector size %d is neither 512 nor 4096", s.lss)
	case s.pss != 512 && s.pss != 4096:
		return fmt.Errorf("physical sector size %d is neither 512 nor 4096", s.pss)
	case s.virtualSize <= 0 || s.virtualSize > MaxVirtualSize || s.virtualSize%int64(s.lss) != 0:
		return fmt.Errorf("virtual size %d is not a positive multiple of the %d-byte sector up to 64 TiB", s.virtualSize, s.lss)
	}
	return nil
}

// batEntries is the number of BAT entries per [MS-VHDX] §2.5.
func (s *createSpec) batEntries() int64 {
	bs := int64(s.blockSize)
	cr := SectorsPerBitmap * int64(s.lss) / bs
	blocks := (s.virtualSize + bs - 1) / bs
	if s.hasParent {
		return (blocks + cr - 1) / cr * (cr + 1)
	}
	return blocks + (blocks-1)/cr
}

// metadataRegion encodes the metadata table and items (the rest of the
// 1 MiB region is zero).
func (s *createSpec) metadataRegion() ([]byte, error) {
	type item struct {
		e    MetadataEntry
		data []byte
	}
	u32 := func(v uint32) []byte { b := make([]byte, 4); le.PutUint32(b, v); return b }
	u64 := func(v uint64) []byte { b := make([]byte, 8); le.PutUint64(b, v); return b }
	items := []item{
		{MetadataEntry{ItemID: MetaFileParameters, IsRequired: true},
			FileParameters{BlockSize: s.blockSize, HasParent: s.hasParent}.Marshal()},
		{MetadataEntry{ItemID: MetaVirtualDiskSize, IsVirtualDisk: true, IsRequired: true}, u64(uint64(s.virtualSize))},
		{MetadataEntry{ItemID: MetaVirtualDiskID, IsVirtualDisk: true, IsRequired: true}, append([]byte(nil), s.diskID[:]...)},
		{MetadataEntry{ItemID: MetaLogicalSectorSize, IsVirtualDisk: true, IsRequired: true}, u32(s.lss)},
		{MetadataEntry{ItemID: MetaPhysicalSectorSize, IsVirtualDisk: true, IsRequired: true}, u32(s.pss)},
	}
	if s.locator != nil {
		items = append(items, item{MetadataEntry{ItemID: MetaParentLocator, IsRequired: true}, s.locator.Marshal()})
	}
	for _, x := range s.extra {
		e := x.Entry
		e.IsVirtualDisk = true
		items = append(items, item{e, x.Data})
	}
	if len(items) > maxMetadataEntries {
		return nil, fmt.Errorf("%d metadata items exceed the table's %d entries", len(items), maxMetadataEntries)
	}
	region := make([]byte, MetadataTableSize, 2*MetadataTableSize)
	var entries []MetadataEntry
	for _, it := range items {
		e := it.e
		e.Offset, e.Length = 0, uint32(len(it.data))
		if len(it.data) > 0 {
			if len(it.data) > metadataItemMaxSize || len(region)+len(it.data) > createMetadataLength {
				return nil, fmt.Errorf("metadata item %s (%d bytes) does not fit in the metadata region", e.ItemID, len(it.data))
			}
			e.Offset = uint32(len(region))
			region = append(region, it.data...)
			for len(region)%8 != 0 {
				region = append(region, 0)
			}
		}
		entries = append(entries, e)
	}
	copy(region, MarshalMetadataTable(entries))
	return region, nil
}

// create writes the new file and returns it open for reading and writing.
// On failure the file is removed.
func (s *createSpec) create() (_ *os.File, err error) {
	meta, err := s.metadataRegion()
	if err != nil {
		return nil, err
	}
	batLen := (s.batEntries()*8 + MiB - 1) / MiB * MiB
	if batLen > 1<<32-MiB {
		return nil, fmt.Errorf("BAT of %d bytes is too large for a region", batLen)
	}
	perm := s.perm
	if perm == 0 {
		perm = 0o644
	}
	osf, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			osf.Close()
			os.Remove(s.path)
		}
	}()
	regions := MarshalRegionTable([]RegionEntry{
		{GUID: RegionBAT, FileOffset: createBATOffset, Length: uint32(batLen), Required: true},
		{GUID: RegionMetadata, FileOffset: createMetadataOffset, Length: createMetadataLength, Required: true},
	})
	h := Header{
		FileWriteGUID: NewGUID(),
		DataWriteGUID: NewGUID(),
		Version:       1,
		LogLength:     createLogLength,
		LogOffset:     createLogOffset,
	}
	// Truncate first: the log region and the BAT are all zeros.
	if err := osf.Truncate(createBATOffset + batLen); err != nil {
		return nil, err
	}
	h.SequenceNumber = 1
	h1 := h.Marshal()
	h.SequenceNumber = 2
	h2 := h.Marshal()
	for _, w := range []struct {
		b   []byte
		off int64
	}{
		{h1, Header1Offset}, {h2, Header2Offset},
		{regions, RegionTable1Offset}, {regions, RegionTable2Offset},
		{meta, createMetadataOffset},
	} {
		if _, err := osf.WriteAt(w.b, w.off); err != nil {
			return nil, err
		}
	}
	if err := osf.Sync(); err != nil {
		return nil, err
	}
	writerCrashPoint("create")
	// The identifier last: until it is durable the file is not a VHDX file.
	if _, err := osf.WriteAt(FileIdentifier{Creator: CreatorName}.Marshal(), FileIdentifierOffset); err != nil {
		return nil, err
	}
	if err := osf.Sync(); err != nil {
		return nil, err
	}
	createSyncDir(filepath.Dir(s.path))
	return osf, nil
}

// createSyncDir makes a new directory entry durable (best effort).
func createSyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
