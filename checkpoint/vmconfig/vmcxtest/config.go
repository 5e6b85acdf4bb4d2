package vmcxtest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Device class GUIDs of Hyper-V storage controllers (as dissect.target's
// Hyper-V loader lists them).
const (
	EmulatedIDE   = "83f8638b-8dca-4152-9eda-2ca8b33039b4"
	SyntheticSCSI = "d422512d-2bf2-4752-809d-7b82b5fcb1b4"
)

// Disk is one drive for ConfigTree.
type Disk struct {
	// Controller is "IDE" or "SCSI".
	Controller string
	// ControllerNumber is 0 or 1 for IDE; for SCSI, which SCSI controller
	// (each is its own device with its own instance GUID).
	ControllerNumber int
	// Location is the drive's position on the controller.
	Location int
	// Path is the disk's (Windows) path.
	Path string
	// Type is the drive type; default "VHD" ("ISO" for DVD drives).
	Type string
}

// Config describes a VM (or checkpoint) configuration for ConfigTree.
type Config struct {
	// Name is /configuration/properties/name (for a checkpoint, its name).
	Name string
	// GlobalID is /configuration/properties/global_id; omitted if empty.
	GlobalID string
	// Created is /configuration/properties/creation_time; omitted if zero.
	Created time.Time
	// Version is /configuration/properties/version; default 0x0900.
	Version int
	// Generation 1 writes subtype 0, otherwise subtype 1 (generation 2).
	Generation int
	// Disks are the attached drives.
	Disks []Disk
	// Extra keys appended under /configuration.
	Extra Node
}

// SCSIInstance returns the instance GUID ConfigTree gives SCSI controller n.
func SCSIInstance(n int) string {
	return fmt.Sprintf("6d1f0e42-3c1d-4f7e-9a2b-%012x", n)
}

// FileTimeBytes encodes t as 8 bytes of little-endian FILETIME, the form of
// creation_time.
func FileTimeBytes(t time.Time) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, FileTime(t))
	return b
}

// FileTime converts t to a Windows FILETIME (100 ns since 1601-01-01 UTC).
func FileTime(t time.Time) uint64 {
	const delta = 116444736000000000
	return uint64(t.UnixNano()/100 + delta)
}

// ConfigTree builds a VM configuration tree shaped like Hyper-V's:
// /configuration/properties (name, creation_time, global_id, subtype,
// type_id, version), a manifest listing the storage controllers as
// vdevNNN/{device,instance,name}, and the controllers' settings at
// /configuration/_<instance>_/controller<N>/drive<M>/{pathname,type}.
// Key names and shapes follow public readers (dissect.target, scripts for
// 2012 R2 XML); values such as vdev numbers are illustrative.
func ConfigTree(c Config) Node {
	props := Node{}
	if !c.Created.IsZero() {
		props = append(props, Item{"creation_time", FileTimeBytes(c.Created)})
	}
	if c.GlobalID != "" {
		props = append(props, Item{"global_id", c.GlobalID})
	}
	props = append(props, Item{"name", c.Name}, Item{"notes", ""})
	subtype := 1
	if c.Generation == 1 {
		subtype = 0
	}
	version := c.Version
	if version == 0 {
		version = 0x0900
	}
	props = append(props,
		Item{"subtype", subtype},
		Item{"type_id", "Virtual Machines"},
		Item{"version", version},
	)

	// Group drives by controller device.
	ide := map[int][]Disk{}
	scsi := map[int][]Disk{}
	for _, d := range c.Disks {
		if strings.EqualFold(d.Controller, "IDE") {
			ide[d.ControllerNumber] = append(ide[d.ControllerNumber], d)
		} else {
			scsi[d.ControllerNumber] = append(scsi[d.ControllerNumber], d)
		}
	}
	drives := func(ds []Disk) Node {
		sort.Slice(ds, func(a, b int) bool { return ds[a].Location < ds[b].Location })
		n := Node{}
		for _, d := range ds {
			typ := d.Type
			if typ == "" {
				typ = "VHD"
			}
			n = append(n, Item{"drive" + strconv.Itoa(d.Location), Node{
				{"pathname", d.Path},
				{"pool_id", ""},
				{"type", typ},
			}})
		}
		return n
	}

	manifest := Node{}
	cfg := Node{{"properties", props}}
	vdev := 0
	addManifest := func(class, instance, name string) {
		manifest = append(manifest, Item{fmt.Sprintf("vdev%03d", vdev), Node{
			{"device", class},
			{"flags", 0},
			{"instance", instance},
			{"name", name},
			{"version", 0x0100},
		}})
		vdev++
	}
	var devices Node
	if len(ide) > 0 {
		addManifest(EmulatedIDE, EmulatedIDE, "Microsoft Emulated IDE Controller")
		n := Node{}
		for _, k := range sortedKeys(ide) {
			n = append(n, Item{"controller" + strconv.Itoa(k), drives(ide[k])})
		}
		devices = append(devices, Item{"_" + EmulatedIDE + "_", n})
	}
	for _, k := range sortedKeys(scsi) {
		inst := SCSIInstance(k)
		addManifest(SyntheticSCSI, inst, "Microsoft Synthetic SCSI Controller")
		devices = append(devices, Item{"_" + inst + "_", Node{
			{"ChannelInstanceGuid", fmt.Sprintf("{%s}", SCSIInstance(100+k))},
			{"controller0", drives(scsi[k])},
		}})
	}
	manifest = append(Node{{"size", vdev}}, manifest...)
	cfg = append(cfg, Item{"manifest", manifest})
	cfg = append(cfg, devices...)
	cfg = append(cfg, c.Extra...)
	return Node{{"configuration", cfg}}
}

func sortedKeys(m map[int][]Disk) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// XMLOptions adjust BuildXML.
type XMLOptions struct {
	// UTF8 writes UTF-8 without BOM instead of Hyper-V's UTF-16LE with BOM.
	UTF8 bool
}

// BuildXML writes tree as a Windows Server 2012 R2-style XML configuration:
// typed leaves as <name type="string|integer|bool|bytes">, booleans as
// True/False, bytes in base64, two-space indentation, CRLF line ends and
// (by default) UTF-16LE with a byte-order mark. float64 leaves are written
// with type="double" (not known from real files); Raw values are an error.
func BuildXML(tree any, opts *XMLOptions) ([]byte, error) {
	var b bytes.Buffer
	enc := "UTF-16"
	if opts != nil && opts.UTF8 {
		enc = "UTF-8"
	}
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"%s\" standalone=\"yes\"?>\r\n", enc)
	if err := writeXMLNode(&b, tree, 0); err != nil {
		return nil, err
	}
	if opts != nil && opts.UTF8 {
		return b.Bytes(), nil
	}
	u := utf16.Encode([]rune(b.String()))
	out := make([]byte, 2+2*len(u))
	out[0], out[1] = 0xFF, 0xFE
	for i, c := range u {
		binary.LittleEndian.PutUint16(out[2+2*i:], c)
	}
	return out, nil
}

func writeXMLNode(b *bytes.Buffer, tree any, depth int) error {
	var items []Item
	switch t := tree.(type) {
	case Node:
		items = t
	case map[string]any:
		names := make([]string, 0, len(t))
		for n := range t {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			items = append(items, Item{n, t[n]})
		}
	default:
		return fmt.Errorf("a node must be a Node or map[string]any, not %T", tree)
	}
	indent := strings.Repeat("  ", depth)
	for _, it := range items {
		v := it.Value
		if w, ok := v.(OutOfLine); ok {
			v = w.Value
		}
		var typ, text string
		switch x := v.(type) {
		case Node, map[string]any:
			fmt.Fprintf(b, "%s<%s>\r\n", indent, it.Name)
			if err := writeXMLNode(b, x, depth+1); err != nil {
				return err
			}
			fmt.Fprintf(b, "%s</%s>\r\n", indent, it.Name)
			continue
		case int:
			typ, text = "integer", strconv.FormatInt(int64(x), 10)
		case int32:
			typ, text = "integer", strconv.FormatInt(int64(x), 10)
		case int64:
			typ, text = "integer", strconv.FormatInt(x, 10)
		case uint:
			typ, text = "integer", strconv.FormatUint(uint64(x), 10)
		case uint32:
			typ, text = "integer", strconv.FormatUint(uint64(x), 10)
		case uint64:
			typ, text = "integer", strconv.FormatUint(x, 10)
		case float64:
			typ, text = "double", strconv.FormatFloat(x, 'g', -1, 64)
		case bool:
			typ, text = "bool", "False"
			if x {
				text = "True"
			}
		case string:
			typ, text = "string", x
		case []byte:
			typ, text = "bytes", base64.StdEncoding.EncodeToString(x)
		case time.Time:
			typ, text = "bytes", base64.StdEncoding.EncodeToString(FileTimeBytes(x))
		default:
			return fmt.Errorf("%s: value type %T cannot be written as XML", it.Name, v)
		}
		var esc bytes.Buffer
		if err := xml.EscapeText(&esc, []byte(text)); err != nil {
			return err
		}
		fmt.Fprintf(b, "%s<%s type=\"%s\">%s</%s>\r\n", indent, it.Name, typ, esc.String(), it.Name)
	}
	return nil
}
