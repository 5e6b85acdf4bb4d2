package vmtest

import (
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint/vmconfig/vmcxtest"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd/vhdtest"
)

// Build2008R2 writes a VM folder as Hyper-V on Windows Server 2008 R2
// exports one: XML configurations (UTF-16LE) in "Virtual Machines" and
// "Snapshots" (each with its saved-state folder), base disks as .vhd in
// "Virtual Hard Disks", and the checkpoints' differencing disks as
// <disk>_<GUID>.avhd in "Snapshots" (2008 R2 keeps them with the
// snapshot files, not beside the base). The checkpoint tree is Build's:
//
//	base      frozen by "Before upgrade"
//	├─ A      frozen by "After upgrade: ✓ done"
//	│  └─ C   discarded (no configuration names it)
//	└─ B      frozen by "Test branch – Grüße"
//	   └─ D   running ("Now")
//
// Disk "SRV01" (IDE 0:0) has the locators Hyper-V writes (W2ku and W2ru),
// "Data Disk" (SCSI 0:0) only a stale absolute W2ku path, as after the
// folder was copied elsewhere, so its parents are found by file name in
// the folders holding disks. "Test branch" has no creation_time, as real
// configurations sometimes lack it. Writes are 4 KiB aligned (libvhdi
// reads such chains right).
func Build2008R2(root string, seed int64) (*Fixture, error) {
	rng := rand.New(rand.NewSource(seed))
	fill := randv2.NewChaCha8([32]byte{byte(seed)}) // fast even under -race
	fx := &Fixture{Root: root, VMName: "W2K8R2 Web (Grüße)", VMID: "0C7D5E32-64A1-4B8E-9F17-3D2A6B5C4E81", Disks: []string{"SRV01", "Data Disk"}}
	vhdDir, snapDir := filepath.Join(root, "Virtual Hard Disks"), filepath.Join(root, "Snapshots")
	for _, d := range []string{vhdDir, snapDir, filepath.Join(root, "Virtual Machines", fx.VMID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	type layerSpec struct{ key, parent string }
	specs := []layerSpec{{"base", ""}, {"A", "base"}, {"C", "A"}, {"B", "base"}, {"D", "B"}}
	files := map[string]map[string]string{}    // disk → key → path
	contents := map[string]map[string][]byte{} // disk → key → contents
	const winVHD = `C:\Users\Public\Documents\Hyper-V\Virtual hard disks\`
	const winSnap = `C:\ProgramData\Microsoft\Windows\Hyper-V\Snapshots\`
	winPath := map[string]map[string]string{}
	for di, dname := range fx.Disks {
		files[dname], contents[dname], winPath[dname] = map[string]string{}, map[string][]byte{}, map[string]string{}
		images := map[string]*vhdtest.Image{}
		size := int64(4+2*di) << 20
		for _, s := range specs {
			o := vhdtest.Options{VirtualSize: size}
			path := filepath.Join(vhdDir, dname+".vhd")
			win := winVHD + dname + ".vhd"
			if s.parent != "" {
				name := fmt.Sprintf("%s_%s.avhd", dname, strings.ToUpper(disk.NewGUID().String()))
				path, win = filepath.Join(snapDir, name), winSnap+name
				o.Parent, o.ParentPath = images[s.parent], files[dname][s.parent]
				o.BlockSize = 512 << 10
				if di == 1 {
					o.Locators = []vhdtest.Locator{{Code: vhdtest.W2ku, Path: winPath[dname][s.parent]}}
				} else {
					o.Locators = append(vhdtest.DefaultLocators(path, o.ParentPath)[1:], vhdtest.Locator{Code: vhdtest.W2ku, Path: winPath[dname][s.parent]})
				}
			}
			im := vhdtest.New(o)
			for w := 0; w < 6; w++ {
				n := (1 + rng.Int63n(128)) * 4096
				off := rng.Int63n((size-n)/4096) * 4096
				b := make([]byte, n)
				fill.Read(b)
				im.Write(off, b)
			}
			if err := im.Save(path); err != nil {
				return nil, err
			}
			var parent []byte
			if s.parent != "" {
				parent = contents[dname][s.parent]
			}
			images[s.key], files[dname][s.key], winPath[dname][s.key] = im, path, win
			contents[dname][s.key] = im.Contents(parent)
		}
	}
	t0 := time.Date(2011, 4, 2, 9, 30, 0, 0, time.UTC)
	cps := []struct {
		name, key, parent string
		at                time.Duration
		noTime            bool
	}{
		{"Before upgrade", "base", "", 0, false},
		{"After upgrade: ✓ done", "A", "Before upgrade", time.Hour, false},
		{"Test branch – Grüße", "B", "Before upgrade", 3 * time.Hour, true},
	}
	cp := func(name, key, parent string, at time.Time, id string) Checkpoint {
		c := Checkpoint{Name: name, ID: id, Time: at, Parent: parent, Layers: map[string]string{}, Contents: map[string][]byte{}}
		for _, d := range fx.Disks {
			c.Layers[d], c.Contents[d] = filepath.Base(files[d][key]), contents[d][key]
		}
		return c
	}
	write := func(path string, tree vmcxtest.Node) error {
		b, err := vmcxtest.BuildXML(tree, nil)
		if err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o644)
	}
	var snapIDs []string
	for _, c := range cps {
		id := strings.ToUpper(disk.NewGUID().String())
		snapIDs = append(snapIDs, id)
		at := t0.Add(c.at)
		if err := os.MkdirAll(filepath.Join(snapDir, id), 0o755); err != nil {
			return nil, err
		}
		created := at
		if c.noTime {
			created = time.Time{}
		}
		if err := write(filepath.Join(snapDir, id+".xml"), config2008(c.name, "", created, winPath["SRV01"][c.key], winPath["Data Disk"][c.key], nil)); err != nil {
			return nil, err
		}
		x := cp(c.name, c.key, c.parent, at, id)
		if c.noTime {
			x.Time = time.Time{}
		}
		fx.Checkpoints = append(fx.Checkpoints, x)
	}
	if err := write(filepath.Join(root, "Virtual Machines", fx.VMID+".xml"), config2008(fx.VMName, fx.VMID, t0.Add(-24*time.Hour), winPath["SRV01"]["D"], winPath["Data Disk"]["D"], snapIDs)); err != nil {
		return nil, err
	}
	fx.Now = cp("Now", "D", "Test branch – Grüße", time.Time{}, "")
	return fx, nil
}

// config2008 is a configuration shaped as Windows Server 2008 R2 writes
// it: the emulated IDE controller's drives, a synthetic SCSI controller
// (known by its ChannelInstanceGuid; no manifest), global_settings with
// the snapshot list, and properties. Empty created leaves creation_time
// out.
func config2008(name, id string, created time.Time, ideDisk, scsiDisk string, snapshots []string) vmcxtest.Node {
	drive := func(path, typ string) vmcxtest.Node {
		return vmcxtest.Node{{Name: "pathname", Value: path}, {Name: "type", Value: typ}}
	}
	props := vmcxtest.Node{}
	if !created.IsZero() {
		props = append(props, vmcxtest.Item{Name: "creation_time", Value: vmcxtest.FileTimeBytes(created)})
	}
	if id != "" {
		props = append(props, vmcxtest.Item{Name: "global_id", Value: id})
	}
	props = append(props,
		vmcxtest.Item{Name: "highly_available", Value: false},
		vmcxtest.Item{Name: "name", Value: name},
		vmcxtest.Item{Name: "notes", Value: ""},
		vmcxtest.Item{Name: "subtype", Value: 65536},
		vmcxtest.Item{Name: "type_id", Value: "Virtual Machines"},
		vmcxtest.Item{Name: "version", Value: 512},
	)
	list := vmcxtest.Node{}
	for i, s := range snapshots {
		list = append(list, vmcxtest.Item{Name: fmt.Sprintf("guid%d", i), Value: s})
	}
	return vmcxtest.Node{{Name: "configuration", Value: vmcxtest.Node{
		{Name: "_" + vmcxtest.EmulatedIDE + "_", Value: vmcxtest.Node{
			{Name: "controller0", Value: vmcxtest.Node{{Name: "drive0", Value: drive(ideDisk, "VHD")}, {Name: "drive1", Value: drive("", "NONE")}}},
			{Name: "controller1", Value: vmcxtest.Node{{Name: "drive0", Value: drive("", "ISO")}}},
		}},
		{Name: "_8f4c1a2b-6d3e-4f50-a719-2b8c9d0e1f23_", Value: vmcxtest.Node{
			{Name: "ChannelInstanceGuid", Value: "{5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d}"},
			{Name: "controller0", Value: vmcxtest.Node{{Name: "drive0", Value: drive(scsiDisk, "VHD")}}},
		}},
		{Name: "global_settings", Value: vmcxtest.Node{
			{Name: "snapshots", Value: vmcxtest.Node{{Name: "list", Value: list}, {Name: "size", Value: len(snapshots)}}},
		}},
		{Name: "properties", Value: props},
	}}}
}
