package vmconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Well-known keys and GUIDs of Hyper-V VM configurations.
const (
	// KeyName is the VM's name; in a checkpoint's configuration it holds
	// the checkpoint's name.
	KeyName = "/configuration/properties/name"
	// KeyCreationTime is an 8-byte little-endian FILETIME (bytes).
	KeyCreationTime = "/configuration/properties/creation_time"
	// KeyGlobalID is the VM's GUID as a string.
	KeyGlobalID = "/configuration/properties/global_id"
	// KeyTypeID is "Virtual Machines" in VM configurations (2012 R2 XML).
	KeyTypeID = "/configuration/properties/type_id"
	// KeyManifest lists the VM's devices as vdevNNN nodes with "device"
	// (device class GUID) and "instance" (instance GUID) strings.
	KeyManifest = "/configuration/manifest"

	// GUIDEmulatedIDE is the device class of the emulated IDE controller
	// (its settings live under /configuration/_<instance>_).
	GUIDEmulatedIDE = "83f8638b-8dca-4152-9eda-2ca8b33039b4"
	// GUIDSyntheticSCSI is the device class of a synthetic SCSI controller.
	GUIDSyntheticSCSI = "d422512d-2bf2-4752-809d-7b82b5fcb1b4"
)

// DiskRef is one virtual hard disk attached to the VM or checkpoint.
type DiskRef struct {
	// Controller names the controller as Hyper-V Manager does: "IDE 0",
	// "IDE 1", "SCSI 0", ...; "unknown <instance GUID> <N>" if the device
	// class could not be determined.
	Controller string
	// Location is the drive's position on the controller ("0", "1", ...),
	// Hyper-V's ControllerLocation.
	Location string
	// Path is the disk file path exactly as stored (a Windows path).
	Path string

	// ControllerType is "IDE", "SCSI" or "" if unknown.
	ControllerType string
	// ControllerNumber is the N of controller<N> for IDE, and the ordinal
	// of the SCSI controller (in manifest vdev order) for SCSI.
	ControllerNumber int
	// ControllerInstance is the controller's instance GUID (lower case).
	ControllerInstance string
	// Key is the tree path of the drive node, for diagnostics.
	Key string
}

// VMConfig is what ckptfs needs from one configuration file: identity,
// names, time and disk mapping. Fields that cannot be found are left zero
// and explained in Warnings.
type VMConfig struct {
	// ID is the GUID the file describes, upper case without braces: the
	// file name's GUID when it is one (Hyper-V names VM configurations
	// after the VM and checkpoint configurations after the checkpoint),
	// else the global_id property.
	ID string
	// GlobalID is /configuration/properties/global_id (upper case, no
	// braces) if present and a GUID. For a checkpoint it is not known
	// publicly whether it names the VM or the checkpoint.
	GlobalID string
	// Name is /configuration/properties/name.
	Name string
	// IsCheckpoint reports whether the file is a checkpoint's configuration
	// (see CheckpointReason).
	IsCheckpoint bool
	// CheckpointReason says what IsCheckpoint was decided from.
	CheckpointReason string
	// CheckpointName is the checkpoint's name: for checkpoint
	// configurations Hyper-V stores it in the name property, so it equals
	// Name; empty for VM configurations.
	CheckpointName string
	// CreationTime is /configuration/properties/creation_time in UTC.
	CreationTime time.Time
	// ParentCheckpointID is the parent checkpoint's GUID if the file names
	// one in a recognizable key. The key is not publicly documented, so
	// this is usually empty: derive the checkpoint tree from the disks'
	// parent links instead.
	ParentCheckpointID string
	// Disks are the attached virtual hard disks (drives of type "VHD"),
	// ordered IDE before SCSI, then by controller and location.
	Disks []DiskRef
	// Source is the path the configuration was loaded from.
	Source string
	// Format is the on-disk format.
	Format Format
	// Warnings lists missing fields and parser warnings.
	Warnings []string
}

// Load reads a VM or checkpoint configuration file, deciding from its
// content whether it is a binary storage file (.vmcx, .vmrs) or XML
// (2012 R2 .xml), and extracts a VMConfig. Missing fields are not errors;
// an unreadable or corrupt file is.
func Load(path string) (*VMConfig, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var t *Tree
	switch sniff(f, st.Size(), path) {
	case FormatBinary:
		t, err = (&binParser{r: f, size: st.Size(), file: path}).parse()
	case FormatXML:
		var data []byte
		data, err = io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, st.Size()), MaxXMLSize+1))
		if err == nil {
			t, err = parseXMLBytes(data, path)
		}
	default:
		return nil, formatErr(path, "file", 0, ErrUnknownFormat, "neither a Hyper-V storage file nor XML")
	}
	if err != nil {
		return nil, err
	}
	return FromTree(t, path), nil
}

// sniff decides the format from content: the storage signature in either
// header copy, or XML text. Failing both, the extension decides, so that a
// damaged .vmcx reports why it is damaged.
func sniff(r io.ReaderAt, size int64, path string) Format {
	var sig [4]byte
	for _, off := range []int64{0, headerCopy1Offset} {
		if off+4 <= size {
			if n, _ := r.ReadAt(sig[:], off); n == 4 && binary.LittleEndian.Uint32(sig[:]) == headerSignature {
				return FormatBinary
			}
		}
	}
	head := make([]byte, min(size, 512))
	n, _ := r.ReadAt(head, 0)
	if looksLikeXML(head[:n]) {
		return FormatXML
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".vmcx", ".vmrs", ".vsv":
		return FormatBinary
	case ".xml":
		return FormatXML
	}
	return 0
}

func looksLikeXML(head []byte) bool {
	text := decodeXMLText(head)
	text = bytes.TrimLeft(text, " \t\r\n\uFEFF")
	return len(text) > 1 && text[0] == '<'
}

// FromTree extracts a VMConfig from a parsed tree. source is the file's
// path; it is used for the ID (file name) and checkpoint detection (parent
// folder) and may be empty.
func FromTree(t *Tree, source string) *VMConfig {
	c := &VMConfig{Source: source, Format: t.Format()}
	warn := func(format string, args ...any) { c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...)) }

	if v, ok := t.Lookup(KeyGlobalID); ok {
		if g, ok := normalizeGUID(v.String()); ok {
			c.GlobalID = g
		} else {
			warn("%s is not a GUID: %q", KeyGlobalID, truncateForMessage(v.String()))
		}
	}
	if source != "" {
		base := filepath.Base(source)
		if g, ok := normalizeGUID(strings.TrimSuffix(base, filepath.Ext(base))); ok {
			c.ID = g
		}
	}
	if c.ID == "" {
		c.ID = c.GlobalID
	}
	if c.ID == "" {
		warn("no ID: the file name is not a GUID and %s is missing", KeyGlobalID)
	}

	if v, ok := t.Lookup(KeyName); ok && v.Kind() == KindString {
		c.Name, _ = v.Text()
	} else if ok {
		warn("%s is a %s, not a string", KeyName, v.Kind())
	} else {
		warn("%s is missing", KeyName)
	}

	c.IsCheckpoint, c.CheckpointReason = detectCheckpoint(t, source)
	if c.IsCheckpoint {
		c.CheckpointName = c.Name
		c.ParentCheckpointID = findParentCheckpoint(t, warn)
		if c.ParentCheckpointID == "" {
			warn("parent checkpoint not recorded in a known key; derive it from the disks' parent links")
		}
	}

	if v, ok := t.Lookup(KeyCreationTime); ok {
		ct, err := valueTime(v)
		if err != nil {
			warn("%s: %v", KeyCreationTime, err)
		} else {
			c.CreationTime = ct
		}
	} else {
		warn("%s is missing", KeyCreationTime)
	}

	c.Disks = findDisks(t, warn)
	if len(c.Disks) == 0 {
		warn("no virtual hard disks found")
	}
	c.Warnings = append(c.Warnings, t.Warnings()...)
	return c
}

// detectCheckpoint decides whether the file is a checkpoint configuration.
// Hyper-V keeps checkpoint configurations in a folder named "Snapshots"
// (VM configurations in "Virtual Machines"); that is the reliable signal.
// The type_id property is also consulted: 2012 R2 writes "Virtual Machines"
// for VMs, and a value mentioning "snapshot" is taken to mean a checkpoint
// (an assumption: no public sample of a checkpoint's type_id was found).
func detectCheckpoint(t *Tree, source string) (bool, string) {
	if source != "" {
		dir := filepath.Base(filepath.Dir(source))
		if strings.EqualFold(dir, "Snapshots") {
			return true, "file is in a Snapshots folder"
		}
	}
	if v, ok := t.Lookup(KeyTypeID); ok {
		if s, ok := v.Text(); ok && strings.Contains(strings.ToLower(s), "snapshot") {
			return true, fmt.Sprintf("%s is %q", KeyTypeID, s)
		}
	}
	return false, ""
}

// findParentCheckpoint looks, under /configuration/properties, for a string
// key whose name mentions "parent" and whose value is a GUID. This is a
// heuristic: the key Hyper-V uses is not publicly documented.
func findParentCheckpoint(t *Tree, warn func(string, ...any)) string {
	props, ok := t.Lookup("/configuration/properties")
	if !ok {
		return ""
	}
	for _, c := range props.Children() {
		if !strings.Contains(strings.ToLower(c.Name()), "parent") {
			continue
		}
		if s, ok := c.Text(); ok {
			if g, ok := normalizeGUID(s); ok {
				warn("parent checkpoint taken from %s (heuristic: key not documented)", c.Path())
				return g
			}
		}
	}
	return ""
}

// filetimeEpochDelta is the number of 100 ns intervals between 1601-01-01
// and 1970-01-01.
const filetimeEpochDelta = 116444736000000000

// FileTime converts a Windows FILETIME (100 ns intervals since 1601-01-01
// UTC) to a time.Time in UTC.
func FileTime(ft uint64) time.Time {
	secs := int64(ft/10_000_000) - filetimeEpochDelta/10_000_000
	nsec := int64(ft%10_000_000) * 100
	return time.Unix(secs, nsec).UTC()
}

// valueTime interprets a creation_time value: 8 bytes of little-endian
// FILETIME (the documented form), an integer FILETIME, or a string holding
// base64 of the 8 bytes.
func valueTime(v *Value) (time.Time, error) {
	var ft uint64
	switch v.Kind() {
	case KindBytes:
		b, ok := v.Bytes()
		if !ok {
			return time.Time{}, errors.New("value not loaded")
		}
		if len(b) < 8 {
			return time.Time{}, fmt.Errorf("%d bytes, want 8", len(b))
		}
		ft = binary.LittleEndian.Uint64(b)
	case KindInt, KindUint:
		u, ok := v.Uint()
		if !ok {
			return time.Time{}, fmt.Errorf("negative FILETIME %s", v.String())
		}
		ft = u
	case KindString:
		s, _ := v.Text()
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(b) < 8 {
			return time.Time{}, fmt.Errorf("string %q is not a base64 FILETIME", truncateForMessage(s))
		}
		ft = binary.LittleEndian.Uint64(b)
	default:
		return time.Time{}, fmt.Errorf("unexpected %s value", v.Kind())
	}
	if ft == 0 {
		return time.Time{}, errors.New("FILETIME is zero")
	}
	// FILETIMEs past year 30828 are invalid in Windows.
	if ft > 0x7FFFFFFFFFFFFFFF {
		return time.Time{}, fmt.Errorf("FILETIME 0x%x out of range", ft)
	}
	return FileTime(ft), nil
}

// normalizeGUID returns s as an upper-case GUID without braces, if it is one.
func normalizeGUID(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 38 && s[0] == '{' && s[37] == '}' {
		s = s[1:37]
	}
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !isHex(c) {
				return "", false
			}
		}
	}
	return strings.ToUpper(s), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// numberedName parses names like "controller0" or "vdev012".
func numberedName(name, prefix string) (int, bool) {
	if len(name) <= len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
		return 0, false
	}
	digits := name[len(prefix):]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > 1<<20 {
		return 0, false
	}
	return n, true
}

var diskExtensions = []string{".vhd", ".vhdx", ".avhd", ".avhdx", ".vhds"}

// findDisks collects the VHD drives of all storage controllers.
//
// Controller settings live under /configuration/_<instance GUID>_ with
// controller<N>/drive<M> nodes holding "pathname" and "type" strings. The
// device class of each instance comes from the manifest (vdevNNN/device and
// vdevNNN/instance); an instance whose own GUID is a known class GUID (the
// emulated IDE controller) or that has a ChannelInstanceGuid key (SCSI) is
// classified without it.
func findDisks(t *Tree, warn func(string, ...any)) []DiskRef {
	cfg, ok := t.Lookup("/configuration")
	if !ok {
		warn("/configuration is missing")
		return nil
	}
	classOf := map[string]string{} // instance GUID (lower) -> class GUID (lower)
	vdevOrder := map[string]int{}  // instance GUID (lower) -> vdev number
	if man, ok := t.Lookup(KeyManifest); ok {
		for _, vd := range man.Children() {
			n, ok := numberedName(vd.Name(), "vdev")
			if !ok {
				continue
			}
			dev, ok1 := vd.Child("device")
			inst, ok2 := vd.Child("instance")
			if !ok1 || !ok2 {
				continue
			}
			d, okd := normalizeGUID(dev.String())
			i, oki := normalizeGUID(inst.String())
			if !okd || !oki {
				continue
			}
			classOf[strings.ToLower(i)] = strings.ToLower(d)
			vdevOrder[strings.ToLower(i)] = n
		}
	}

	type ctrl struct {
		node     *Value
		instance string
		kind     string
		order    int
		pos      int
	}
	var ctrls []ctrl
	for pos, dev := range cfg.Children() {
		name := dev.Name()
		if len(name) < 3 || name[0] != '_' || name[len(name)-1] != '_' {
			continue
		}
		g, ok := normalizeGUID(name[1 : len(name)-1])
		if !ok || !hasControllers(dev) {
			continue
		}
		inst := strings.ToLower(g)
		kind := ""
		switch class := classOf[inst]; {
		case class == GUIDEmulatedIDE || (class == "" && inst == GUIDEmulatedIDE):
			kind = "IDE"
		case class == GUIDSyntheticSCSI || (class == "" && inst == GUIDSyntheticSCSI):
			kind = "SCSI"
		case class == "":
			if _, ok := dev.Child("ChannelInstanceGuid"); ok {
				kind = "SCSI"
			}
		}
		order, ok := vdevOrder[inst]
		if !ok {
			order = 1 << 30
		}
		ctrls = append(ctrls, ctrl{node: dev, instance: inst, kind: kind, order: order, pos: pos})
	}
	// SCSI controllers are numbered in manifest order (then tree order).
	sort.SliceStable(ctrls, func(a, b int) bool {
		if ctrls[a].order != ctrls[b].order {
			return ctrls[a].order < ctrls[b].order
		}
		return ctrls[a].pos < ctrls[b].pos
	})

	var disks []DiskRef
	scsiIndex := 0
	for _, c := range ctrls {
		thisSCSI := scsiIndex
		if c.kind == "SCSI" {
			scsiIndex++
		}
		for _, cn := range c.node.Children() {
			n, ok := numberedName(cn.Name(), "controller")
			if !ok {
				continue
			}
			for _, dr := range cn.Children() {
				m, ok := numberedName(dr.Name(), "drive")
				if !ok {
					continue
				}
				pv, ok := dr.Child("pathname")
				if !ok {
					continue
				}
				path, _ := pv.Text()
				if strings.TrimSpace(path) == "" {
					continue
				}
				if tv, ok := dr.Child("type"); ok {
					if typ, _ := tv.Text(); !strings.EqualFold(strings.TrimSpace(typ), "VHD") {
						continue // ISO, NONE, pass-through...
					}
				} else if !hasDiskExtension(path) {
					continue
				} else {
					warn("%s has no type; taken as a disk from its extension", dr.Path())
				}
				d := DiskRef{
					Location:           strconv.Itoa(m),
					Path:               path,
					ControllerType:     c.kind,
					ControllerInstance: c.instance,
					Key:                dr.Path(),
				}
				switch c.kind {
				case "IDE":
					d.ControllerNumber = n
					d.Controller = fmt.Sprintf("IDE %d", n)
				case "SCSI":
					d.ControllerNumber = thisSCSI
					if n != 0 {
						warn("%s: SCSI device with controller%d; numbered as SCSI %d", dr.Path(), n, thisSCSI)
					}
					d.Controller = fmt.Sprintf("SCSI %d", thisSCSI)
				default:
					d.ControllerNumber = n
					d.Controller = fmt.Sprintf("unknown %s %d", c.instance, n)
					warn("%s: controller device class unknown", dr.Path())
				}
				disks = append(disks, d)
			}
		}
	}
	rank := func(k string) int {
		switch k {
		case "IDE":
			return 0
		case "SCSI":
			return 1
		}
		return 2
	}
	sort.SliceStable(disks, func(a, b int) bool {
		da, db := disks[a], disks[b]
		if rank(da.ControllerType) != rank(db.ControllerType) {
			return rank(da.ControllerType) < rank(db.ControllerType)
		}
		if da.ControllerNumber != db.ControllerNumber {
			return da.ControllerNumber < db.ControllerNumber
		}
		la, _ := strconv.Atoi(da.Location)
		lb, _ := strconv.Atoi(db.Location)
		return la < lb
	})
	return disks
}

func hasControllers(dev *Value) bool {
	for _, c := range dev.Children() {
		if _, ok := numberedName(c.Name(), "controller"); ok && c.IsNode() {
			return true
		}
	}
	return false
}

func hasDiskExtension(path string) bool {
	// Windows paths: take the part after the last separator of either kind.
	if i := strings.LastIndexAny(path, `\/`); i >= 0 {
		path = path[i+1:]
	}
	ext := strings.ToLower(filepath.Ext(path))
	for _, e := range diskExtensions {
		if ext == e {
			return true
		}
	}
	return false
}
