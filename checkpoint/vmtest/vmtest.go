// Package vmtest builds Hyper-V-like VM folders for tests: two disks, a
// branched checkpoint tree, binary configurations, names with spaces and
// non-ASCII characters.
package vmtest

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint/vmconfig/vmcxtest"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
)

// Checkpoint describes one expected point of the fixture.
type Checkpoint struct {
	Name   string
	ID     string
	Time   time.Time
	Parent string            // parent checkpoint name ("" for a root)
	Layers map[string]string // disk name → layer file name
	// Contents maps disk name → the expected virtual disk bytes.
	Contents map[string][]byte
}

// Fixture is a generated VM folder.
type Fixture struct {
	Root        string
	VMName      string
	VMID        string
	Disks       []string // disk names (base file stems)
	Checkpoints []Checkpoint
	Now         Checkpoint // the running state
}

// Layout of the fixture, per disk (Hyper-V semantics: taking a checkpoint
// freezes the running file and continues in a new child):
//
//	base      frozen by "Before upgrade"
//	├─ A      frozen by "After upgrade: ✓ done"
//	│  └─ C   the state discarded when "Before upgrade" was applied (no config names it)
//	└─ B      frozen by "Test branch – Grüße"
//	   └─ D   running ("Now")
//
// so the tree is: Before upgrade → {After upgrade, Test branch → Now}.
func Build(root string, seed int64) (*Fixture, error) {
	rng := rand.New(rand.NewSource(seed))
	fx := &Fixture{Root: root, VMName: "SRV 01 (Grüße)", VMID: "BAA8A125-E1F5-4203-AE2F-B99A5AEEDF44", Disks: []string{"SRV01", "Data Disk"}}
	vhd := filepath.Join(root, "Virtual Hard Disks")
	if err := os.MkdirAll(vhd, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{"Virtual Machines", "Snapshots"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	type layerSpec struct{ key, parent string }
	specs := []layerSpec{{"base", ""}, {"A", "base"}, {"C", "A"}, {"B", "base"}, {"D", "B"}}
	files := map[string]map[string]string{}    // disk → key → file name
	contents := map[string]map[string][]byte{} // disk → key → contents
	for di, dname := range fx.Disks {
		files[dname], contents[dname] = map[string]string{}, map[string][]byte{}
		images := map[string]*vhdxtest.Image{}
		size := int64(8+4*di) * disk.MiB
		for _, s := range specs {
			o := vhdxtest.Options{VirtualSize: size, BlockSize: 2 * disk.MiB}
			name := dname + ".vhdx"
			if s.parent != "" {
				o.Parent, o.ParentPath = images[s.parent], filepath.Join(vhd, files[dname][s.parent])
				o.BlockSize = disk.MiB
				name = fmt.Sprintf("%s_%s.avhdx", dname, strings.ToUpper(disk.NewGUID().String()))
			}
			im := vhdxtest.New(o)
			for w := 0; w < 6; w++ {
				n := (1 + rng.Int63n(2048)) * 512
				off := rng.Int63n((size-n)/512) * 512
				b := make([]byte, n)
				rng.Read(b)
				im.Write(off, b)
			}
			if err := im.Save(filepath.Join(vhd, name)); err != nil {
				return nil, err
			}
			images[s.key], files[dname][s.key] = im, name
			// On top of the parent's contents, computed already (not
			// ChainContents: that recomputes the whole chain each time).
			contents[dname][s.key] = im.Contents(contents[dname][s.parent])
		}
	}
	t0 := time.Date(2026, 11, 20, 10, 2, 13, 0, time.UTC)
	cps := []struct {
		name, key, parent string
		at                time.Duration
	}{
		{"Before upgrade", "base", "", 0},
		{"After upgrade: ✓ done", "A", "Before upgrade", time.Hour},
		{"Test branch – Grüße", "B", "Before upgrade", 3 * time.Hour},
	}
	winDir := `C:\ProgramData\Microsoft\Windows\Hyper-V\SRV01\Virtual Hard Disks\`
	cfgDisks := func(key string) []vmcxtest.Disk {
		var ds []vmcxtest.Disk
		for i, d := range fx.Disks {
			ds = append(ds, vmcxtest.Disk{Controller: "SCSI", ControllerNumber: 0, Location: i, Path: winDir + files[d][key]})
		}
		return ds
	}
	cp := func(name, key, parent string, at time.Time, id string) Checkpoint {
		c := Checkpoint{Name: name, ID: id, Time: at, Parent: parent, Layers: map[string]string{}, Contents: map[string][]byte{}}
		for _, d := range fx.Disks {
			c.Layers[d], c.Contents[d] = files[d][key], contents[d][key]
		}
		return c
	}
	for _, c := range cps {
		id := strings.ToUpper(disk.NewGUID().String())
		at := t0.Add(c.at)
		b := vmcxtest.Build(vmcxtest.ConfigTree(vmcxtest.Config{Name: c.name, Created: at, Disks: cfgDisks(c.key)}), nil)
		if err := os.WriteFile(filepath.Join(root, "Snapshots", id+".vmcx"), b, 0o644); err != nil {
			return nil, err
		}
		fx.Checkpoints = append(fx.Checkpoints, cp(c.name, c.key, c.parent, at, id))
	}
	b := vmcxtest.Build(vmcxtest.ConfigTree(vmcxtest.Config{Name: fx.VMName, GlobalID: fx.VMID, Created: t0.Add(-24 * time.Hour), Disks: cfgDisks("D")}), nil)
	if err := os.WriteFile(filepath.Join(root, "Virtual Machines", fx.VMID+".vmcx"), b, 0o644); err != nil {
		return nil, err
	}
	fx.Now = cp("Now", "D", "Test branch – Grüße", time.Time{}, "")
	// The discarded state C appears as a point of its own, named by file.
	return fx, nil
}

// DiscardedLayers names, per disk, the file no configuration refers to.
func (fx *Fixture) DiscardedLayers() map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(fx.Root, "Virtual Hard Disks"))
	used := map[string]bool{}
	for _, c := range append(fx.Checkpoints, fx.Now) {
		for _, l := range c.Layers {
			used[l] = true
		}
	}
	for _, e := range ents {
		if !used[e.Name()] {
			for _, d := range fx.Disks {
				if strings.HasPrefix(e.Name(), d+"_") {
					out[d] = e.Name()
				}
			}
		}
	}
	return out
}
