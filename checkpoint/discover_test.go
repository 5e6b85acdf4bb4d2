package checkpoint_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

func TestDiscoverVMFolder(t *testing.T) {
	fx, err := vmtest.Build(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(fx.Root, "*", "*"))
	testutil.Unchanged(t, files...)
	inv, err := checkpoint.Discover(fx.Root, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if len(inv.Warnings) > 0 {
		t.Errorf("warnings: %v", inv.Warnings)
	}
	if len(inv.VMs) != 1 {
		t.Fatalf("%d VMs, want 1", len(inv.VMs))
	}
	vm := inv.VMs[0]
	if vm.Name != fx.VMName || vm.ID != fx.VMID {
		t.Errorf("VM %q %s, want %q %s", vm.Name, vm.ID, fx.VMName, fx.VMID)
	}
	if len(vm.Disks) != 2 {
		t.Fatalf("%d disks, want 2", len(vm.Disks))
	}
	byName := map[string]*checkpoint.Point{}
	for _, p := range vm.Points {
		byName[p.Name] = p
	}
	want := append(fx.Checkpoints, fx.Now)
	for _, c := range want {
		p := byName[c.Name]
		if p == nil {
			t.Fatalf("checkpoint %q missing; have %v", c.Name, names(vm.Points))
		}
		parent := ""
		if p.Parent != nil {
			parent = p.Parent.Name
		}
		if parent != c.Parent {
			t.Errorf("%q: parent %q, want %q", c.Name, parent, c.Parent)
		}
		if !c.Time.IsZero() && !p.Time.Equal(c.Time) {
			t.Errorf("%q: time %v, want %v", c.Name, p.Time, c.Time)
		}
		if len(p.Disks) != len(fx.Disks) {
			t.Fatalf("%q: %d disks", c.Name, len(p.Disks))
		}
		for _, pd := range p.Disks {
			if got, want := pd.Layer.Name, c.Layers[pd.Disk.Name]; got != want {
				t.Errorf("%q disk %s: layer %s, want %s", c.Name, pd.Disk.Name, got, want)
			}
			got := make([]byte, pd.Layer.Chain.Size())
			if _, err := pd.Layer.Chain.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if string(got) != string(c.Contents[pd.Disk.Name]) {
				t.Errorf("%q disk %s: contents differ", c.Name, pd.Disk.Name)
			}
		}
	}
	// The discarded layers appear as points of their own, one per disk.
	for d, f := range fx.DiscardedLayers() {
		stem := f[:len(f)-len(filepath.Ext(f))]
		p := byName[stem]
		if p == nil || len(p.Notes) == 0 || p.Disks[0].Disk.Name != d {
			t.Fatalf("discarded layer %s: point %+v", f, p)
		}
		// Its file descends from the layer "After upgrade" froze.
		if p.Parent == nil || p.Parent.Name != fx.Checkpoints[1].Name {
			t.Errorf("discarded layer %s: parent %v", f, p.Parent)
		}
	}
	if got := names(vm.Roots); len(got) != 1 || got[0] != "Before upgrade" {
		t.Errorf("roots %v, want [Before upgrade]", got)
	}
	// Folder names are unique and stable.
	seen := map[string]bool{}
	for _, p := range vm.Points {
		if seen[p.Dir] || p.Dir == "" {
			t.Errorf("folder name %q repeated or empty", p.Dir)
		}
		seen[p.Dir] = true
	}
	if byName["After upgrade: ✓ done"].Dir != "After upgrade: ✓ done" {
		t.Errorf("folder name %q", byName["After upgrade: ✓ done"].Dir)
	}
}

func names(ps []*checkpoint.Point) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// TestDiscoverHostFolder: a host folder with two VMs whose disks and names
// are the same (copies of one template) gives two VMs, each with its own
// disks and checkpoints, in separate, uniquely named folders.
func TestDiscoverHostFolder(t *testing.T) {
	root := t.TempDir()
	a, err := vmtest.Build(filepath.Join(root, "VM A"), 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := vmtest.Build(filepath.Join(root, "VM B"), 2)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := checkpoint.Discover(root, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if len(inv.VMs) != 2 {
		t.Fatalf("%d VMs, want 2", len(inv.VMs))
	}
	for _, vm := range inv.VMs {
		fx := a
		if strings.HasPrefix(vm.Config, b.Root) {
			fx = b
		}
		for _, p := range vm.Points {
			for _, pd := range p.Disks {
				if !strings.HasPrefix(pd.Layer.Path, fx.Root) {
					t.Errorf("VM of %s: point %q uses %s from the other VM", fx.Root, p.Name, pd.Layer.Path)
				}
			}
		}
		if len(vm.Points) != len(a.Checkpoints)+1+2 {
			t.Errorf("VM of %s: %d points", fx.Root, len(vm.Points))
		}
	}
	nodes := checkpoint.BuildVMTree(inv, checkpoint.FileTreeOptions{})
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if len(names) != 3 || names[0] == names[1] {
		t.Errorf("top folders %q: want two distinct VM folders and by-file", names)
	}
}
