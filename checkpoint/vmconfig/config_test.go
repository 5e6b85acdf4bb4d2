package vmconfig_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint/vmconfig"
	"github.com/ckptfs/ckptfs/checkpoint/vmconfig/vmcxtest"
)

func hasConfigWarning(c *vmconfig.VMConfig, substr string) bool {
	for _, w := range c.Warnings {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}

func TestLoadXMLTestdata(t *testing.T) {
	cases := []struct {
		path       string
		id         string
		name       string
		checkpoint bool
		created    time.Time
		disks      []vmconfig.DiskRef
	}{
		{
			path: vmXML, id: "5E3A9C1B-7D24-4F0E-A6B8-2C91D0E4F713", name: "WEB01 – Contoso Büro",
			created: time.Date(2014, 3, 15, 10, 20, 30, 123456700, time.UTC),
			disks: []vmconfig.DiskRef{
				{Controller: "IDE 0", Location: "0", Path: `D:\Hyper-V\WEB01\Virtual Hard Disks\WEB01_A1C4E7F2-3B56-4D89-9E0A-B2C3D4E5F607.avhdx`,
					ControllerType: "IDE", ControllerNumber: 0, ControllerInstance: "83f8638b-8dca-4152-9eda-2ca8b33039b4",
					Key: "/configuration/_83f8638b-8dca-4152-9eda-2ca8b33039b4_/controller0/drive0"},
				{Controller: "SCSI 0", Location: "0", Path: `E:\Data\WEB01-data & logs_A1C4E7F2-3B56-4D89-9E0A-B2C3D4E5F607.avhdx`,
					ControllerType: "SCSI", ControllerNumber: 0, ControllerInstance: "3f1e9a62-c5d8-4b17-8e2a-91d4c6b0f358",
					Key: "/configuration/_3f1e9a62-c5d8-4b17-8e2a-91d4c6b0f358_/controller0/drive0"},
			},
		},
		{
			path: snapXML, id: "A1C4E7F2-3B56-4D89-9E0A-B2C3D4E5F607", name: "WEB01 – Contoso Büro - (02.04.2014 - 10:00:05)",
			checkpoint: true, created: time.Date(2014, 4, 2, 8, 0, 5, 0, time.UTC),
			disks: []vmconfig.DiskRef{
				{Controller: "IDE 0", Location: "0", Path: `D:\Hyper-V\WEB01\Virtual Hard Disks\WEB01.vhdx`,
					ControllerType: "IDE", ControllerNumber: 0, ControllerInstance: "83f8638b-8dca-4152-9eda-2ca8b33039b4",
					Key: "/configuration/_83f8638b-8dca-4152-9eda-2ca8b33039b4_/controller0/drive0"},
				{Controller: "SCSI 0", Location: "0", Path: `E:\Data\WEB01-data & logs.vhdx`,
					ControllerType: "SCSI", ControllerNumber: 0, ControllerInstance: "3f1e9a62-c5d8-4b17-8e2a-91d4c6b0f358",
					Key: "/configuration/_3f1e9a62-c5d8-4b17-8e2a-91d4c6b0f358_/controller0/drive0"},
			},
		},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			cfg, err := vmconfig.Load(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ID != c.id || cfg.GlobalID != "5E3A9C1B-7D24-4F0E-A6B8-2C91D0E4F713" || cfg.Name != c.name ||
				cfg.IsCheckpoint != c.checkpoint || !cfg.CreationTime.Equal(c.created) || cfg.Format != vmconfig.FormatXML || cfg.Source != c.path {
				t.Errorf("got %+v", cfg)
			}
			if c.checkpoint && cfg.CheckpointName != c.name {
				t.Errorf("CheckpointName = %q", cfg.CheckpointName)
			}
			if !c.checkpoint && cfg.CheckpointName != "" {
				t.Errorf("VM has CheckpointName %q", cfg.CheckpointName)
			}
			if len(cfg.Disks) != len(c.disks) {
				t.Fatalf("disks = %+v", cfg.Disks)
			}
			for i := range c.disks {
				if cfg.Disks[i] != c.disks[i] {
					t.Errorf("disk %d\n got %+v\nwant %+v", i, cfg.Disks[i], c.disks[i])
				}
			}
			wantWarnings := 0
			if c.checkpoint {
				wantWarnings = 1 // parent checkpoint unknown
			}
			if len(cfg.Warnings) != wantWarnings {
				t.Errorf("warnings %q", cfg.Warnings)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadDispatchesOnContent(t *testing.T) {
	tree := vmcxtest.ConfigTree(vmcxtest.Config{Name: "vm", Created: time.Unix(1700000000, 0)})
	bin := vmcxtest.Build(tree, nil)
	xml, err := vmcxtest.BuildXML(tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	damagedCopy0 := append([]byte(nil), bin...)
	clear(damagedCopy0[:4096])
	bothBad := append([]byte(nil), bin...)
	bothBad[20] ^= 1
	bothBad[4096+20] ^= 1

	dir := t.TempDir()
	cases := []struct {
		name   string
		data   []byte
		format vmconfig.Format
		err    error
	}{
		{"binary.xml", bin, vmconfig.FormatBinary, nil},
		{"xml.vmcx", xml, vmconfig.FormatXML, nil},
		{"binary-no-ext", bin, vmconfig.FormatBinary, nil},
		{"copy0-zeroed.dat", damagedCopy0, vmconfig.FormatBinary, nil},
		{"both-bad.vmcx", bothBad, 0, vmconfig.ErrBadChecksum},
		{"junk.vmcx", bytes.Repeat([]byte("junk"), 3000), 0, vmconfig.ErrBadSignature},
		{"short.vmcx", []byte("junk"), 0, vmconfig.ErrTruncated},
		{"junk.xml", []byte("\x01\x02\x03"), 0, vmconfig.ErrCorrupt},
		{"junk.bin", []byte("\x01\x02\x03"), 0, vmconfig.ErrUnknownFormat},
		{"empty", nil, 0, vmconfig.ErrUnknownFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, c.name, c.data)
			cfg, err := vmconfig.Load(path)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				checkErr(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Format != c.format || cfg.Name != "vm" {
				t.Errorf("format %v name %q", cfg.Format, cfg.Name)
			}
		})
	}
	if _, err := vmconfig.Load(filepath.Join(dir, "missing.vmcx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestFromTree(t *testing.T) {
	const vmID = "11111111-2222-3333-4444-555555555555"
	created := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	props := func(extra ...vmcxtest.Item) vmcxtest.Node {
		return append(vmcxtest.Node{{Name: "name", Value: "n"}, {Name: "creation_time", Value: vmcxtest.FileTimeBytes(created)}}, extra...)
	}
	cfgTree := func(items ...vmcxtest.Item) vmcxtest.Node {
		return vmcxtest.Node{{Name: "configuration", Value: vmcxtest.Node(items)}}
	}
	disk := func(path, typ string) vmcxtest.Node {
		n := vmcxtest.Node{{Name: "pathname", Value: path}}
		if typ != "" {
			n = append(n, vmcxtest.Item{Name: "type", Value: typ})
		}
		return n
	}
	cases := []struct {
		name    string
		tree    vmcxtest.Node
		source  string
		check   func(t *testing.T, c *vmconfig.VMConfig)
		warning string
	}{
		{
			name: "ID from file name, upper-cased", tree: cfgTree(vmcxtest.Item{Name: "properties", Value: props()}),
			source: "/vms/Virtual Machines/{" + strings.ToLower(vmID) + "}.vmcx",
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if c.ID != vmID || c.IsCheckpoint || !c.CreationTime.Equal(created) {
					t.Errorf("%+v", c)
				}
			},
			warning: "no virtual hard disks",
		},
		{
			name:   "ID from global_id when the file name is not a GUID",
			tree:   cfgTree(vmcxtest.Item{Name: "properties", Value: props(vmcxtest.Item{Name: "global_id", Value: "{" + vmID + "}"})}),
			source: "/tmp/config.vmcx",
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if c.ID != vmID || c.GlobalID != vmID {
					t.Errorf("ID %q GlobalID %q", c.ID, c.GlobalID)
				}
			},
		},
		{
			name: "no ID", tree: cfgTree(vmcxtest.Item{Name: "properties", Value: props()}), source: "/tmp/config.vmcx",
			warning: "no ID",
		},
		{
			name: "bad global_id", tree: cfgTree(vmcxtest.Item{Name: "properties", Value: props(vmcxtest.Item{Name: "global_id", Value: "nope"})}),
			warning: "not a GUID",
		},
		{
			name: "missing name and creation time", tree: cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{}}),
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if c.Name != "" || !c.CreationTime.IsZero() {
					t.Errorf("%+v", c)
				}
			},
			warning: "/configuration/properties/name is missing",
		},
		{
			name: "name of the wrong type", tree: cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{{Name: "name", Value: 5}}}),
			warning: "is a int, not a string",
		},
		{
			name: "creation time as integer FILETIME",
			tree: cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{{Name: "creation_time", Value: vmcxtest.FileTime(created)}}}),
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if !c.CreationTime.Equal(created) {
					t.Errorf("CreationTime %v", c.CreationTime)
				}
			},
		},
		{
			name: "creation time as base64 string",
			tree: cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{{Name: "creation_time", Value: "gDCojklOzwE="}}}),
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if !c.CreationTime.Equal(time.Date(2014, 4, 2, 8, 0, 5, 0, time.UTC)) {
					t.Errorf("CreationTime %v", c.CreationTime)
				}
			},
		},
		{
			name:    "creation time too short",
			tree:    cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{{Name: "creation_time", Value: []byte{1, 2}}}}),
			warning: "2 bytes, want 8",
		},
		{
			name:    "creation time zero",
			tree:    cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{{Name: "creation_time", Value: make([]byte, 8)}}}),
			warning: "FILETIME is zero",
		},
		{
			name:    "creation time negative",
			tree:    cfgTree(vmcxtest.Item{Name: "properties", Value: vmcxtest.Node{{Name: "creation_time", Value: int64(-5)}}}),
			warning: "negative FILETIME",
		},
		{
			name: "checkpoint by folder", tree: cfgTree(vmcxtest.Item{Name: "properties", Value: props()}),
			source: "/vm/Snapshots/" + vmID + ".vmcx",
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if !c.IsCheckpoint || c.CheckpointName != "n" || c.CheckpointReason == "" || c.ParentCheckpointID != "" {
					t.Errorf("%+v", c)
				}
			},
			warning: "parent checkpoint not recorded",
		},
		{
			name: "checkpoint by type_id with parent heuristic",
			tree: cfgTree(vmcxtest.Item{Name: "properties", Value: props(
				vmcxtest.Item{Name: "type_id", Value: "Snapshots"},
				vmcxtest.Item{Name: "parent_snapshot_id", Value: strings.ToLower(vmID)},
			)}),
			source: "/elsewhere/x.vmcx",
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				if !c.IsCheckpoint || c.ParentCheckpointID != vmID {
					t.Errorf("%+v", c)
				}
			},
			warning: "heuristic",
		},
		{
			name: "disks: ordering, types, numbering",
			tree: cfgTree(
				vmcxtest.Item{Name: "properties", Value: props()},
				vmcxtest.Item{Name: "manifest", Value: vmcxtest.Node{
					{Name: "vdev001", Value: vmcxtest.Node{{Name: "device", Value: vmcxtest.SyntheticSCSI}, {Name: "instance", Value: "aaaaaaaa-0000-0000-0000-000000000002"}}},
					{Name: "vdev000", Value: vmcxtest.Node{{Name: "device", Value: strings.ToUpper(vmcxtest.SyntheticSCSI)}, {Name: "instance", Value: "{AAAAAAAA-0000-0000-0000-000000000001}"}}},
					{Name: "vdev002", Value: vmcxtest.Node{{Name: "device", Value: "bbbbbbbb-0000-0000-0000-000000000000"}, {Name: "instance", Value: "cccccccc-0000-0000-0000-000000000000"}}},
				}},
				// Listed before the first SCSI controller in the tree, but vdev001.
				vmcxtest.Item{Name: "_aaaaaaaa-0000-0000-0000-000000000002_", Value: vmcxtest.Node{
					{Name: "controller0", Value: vmcxtest.Node{
						{Name: "drive10", Value: disk(`C:\s1-10.vhdx`, "VHD")},
						{Name: "drive2", Value: disk(`C:\s1-2.vhdx`, "vhd")},
					}},
				}},
				vmcxtest.Item{Name: "_AAAAAAAA-0000-0000-0000-000000000001_", Value: vmcxtest.Node{
					{Name: "controller0", Value: vmcxtest.Node{
						{Name: "drive0", Value: disk(`C:\s0-0.vhdx`, "VHD")},
						{Name: "drive1", Value: disk(`C:\dvd.iso`, "ISO")},
						{Name: "drive3", Value: disk("", "VHD")},
						{Name: "drive4", Value: disk(`C:\notype.avhdx`, "")},
						{Name: "drive5", Value: disk(`C:\notype.txt`, "")},
						{Name: "junk", Value: disk(`C:\junk.vhdx`, "VHD")},
					}},
				}},
				vmcxtest.Item{Name: "_" + vmcxtest.EmulatedIDE + "_", Value: vmcxtest.Node{
					{Name: "controller1", Value: vmcxtest.Node{{Name: "drive0", Value: disk(`C:\ide1.vhd`, "VHD")}}},
					{Name: "controller0", Value: vmcxtest.Node{{Name: "drive1", Value: disk(`C:\ide0.vhd`, "VHD")}}},
				}},
				vmcxtest.Item{Name: "_cccccccc-0000-0000-0000-000000000000_", Value: vmcxtest.Node{
					{Name: "controller0", Value: vmcxtest.Node{{Name: "drive0", Value: disk(`C:\other.vhdx`, "VHD")}}},
				}},
				vmcxtest.Item{Name: "_dddddddd-0000-0000-0000-000000000000_", Value: vmcxtest.Node{
					{Name: "ChannelInstanceGuid", Value: "{x}"},
					{Name: "controller0", Value: vmcxtest.Node{{Name: "drive0", Value: disk(`C:\nomanifest.vhdx`, "VHD")}}},
				}},
				vmcxtest.Item{Name: "_not-a-guid_", Value: vmcxtest.Node{
					{Name: "controller0", Value: vmcxtest.Node{{Name: "drive0", Value: disk(`C:\ignored.vhdx`, "VHD")}}},
				}},
			),
			check: func(t *testing.T, c *vmconfig.VMConfig) {
				var got []string
				for _, d := range c.Disks {
					got = append(got, d.Controller+":"+d.Location+"="+d.Path)
				}
				want := []string{
					`IDE 0:1=C:\ide0.vhd`,
					`IDE 1:0=C:\ide1.vhd`,
					`SCSI 0:0=C:\s0-0.vhdx`,
					`SCSI 0:4=C:\notype.avhdx`,
					`SCSI 1:2=C:\s1-2.vhdx`,
					`SCSI 1:10=C:\s1-10.vhdx`,
					`SCSI 2:0=C:\nomanifest.vhdx`,
					`unknown cccccccc-0000-0000-0000-000000000000 0:0=C:\other.vhdx`,
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("disks\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
				}
			},
			warning: "has no type; taken as a disk",
		},
		{
			name: "no configuration node", tree: vmcxtest.Node{{Name: "other", Value: 1}},
			warning: "/configuration is missing",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := mustParse(t, vmcxtest.Build(c.tree, nil))
			cfg := vmconfig.FromTree(tr, c.source)
			if c.check != nil {
				c.check(t, cfg)
			}
			if c.warning != "" && !hasConfigWarning(cfg, c.warning) {
				t.Errorf("warnings %q lack %q", cfg.Warnings, c.warning)
			}
			if cfg.Source != c.source || cfg.Format != vmconfig.FormatBinary {
				t.Errorf("Source %q Format %v", cfg.Source, cfg.Format)
			}
		})
	}
}

func TestParserWarningsReachVMConfig(t *testing.T) {
	data := vmcxtest.Build(vmcxtest.ConfigTree(vmcxtest.Config{Name: "x"}), &vmcxtest.Options{ReplayLogEntries: 1})
	path := writeFile(t, t.TempDir(), "x.vmcx", data)
	cfg, err := vmconfig.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !hasConfigWarning(cfg, "uncommitted") {
		t.Errorf("warnings %q", cfg.Warnings)
	}
}

func TestFileTime(t *testing.T) {
	cases := []struct {
		ft   uint64
		want time.Time
	}{
		{116444736000000000, time.Unix(0, 0).UTC()},
		{116444736000000001, time.Unix(0, 100).UTC()},
		{0, time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)},
		{130393524301234567, time.Date(2014, 3, 15, 10, 20, 30, 123456700, time.UTC)},
	}
	for _, c := range cases {
		if got := vmconfig.FileTime(c.ft); !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("FileTime(%d) = %v, want %v", c.ft, got, c.want)
		}
		if c.ft != 0 && vmcxtest.FileTime(c.want) != c.ft {
			t.Errorf("vmcxtest.FileTime(%v) = %d, want %d", c.want, vmcxtest.FileTime(c.want), c.ft)
		}
	}
}
