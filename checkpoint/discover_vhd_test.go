package checkpoint_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// TestDiscover2008R2 reads a Windows Server 2008 R2 VM folder: XML
// configurations, .vhd bases and .avhd checkpoint disks in Snapshots,
// one disk whose locators hold only a stale absolute path.
func TestDiscover2008R2(t *testing.T) {
	fx, err := vmtest.Build2008R2(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.Walk(fx.Root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
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
	if vm.Name != fx.VMName || vm.ID != fx.VMID || len(vm.Disks) != 2 {
		t.Fatalf("VM %q %s with %d disks", vm.Name, vm.ID, len(vm.Disks))
	}
	byName := map[string]*checkpoint.Point{}
	for _, p := range vm.Points {
		byName[p.Name] = p
	}
	for _, c := range append(fx.Checkpoints, fx.Now) {
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
		switch {
		case !c.Time.IsZero() && !p.Time.Equal(c.Time):
			t.Errorf("%q: time %v, want %v", c.Name, p.Time, c.Time)
		case c.Time.IsZero() && c.Name != "Now" && !strings.Contains(strings.Join(p.Notes, " "), "no creation time"):
			t.Errorf("%q: no note about the missing creation time: %q", c.Name, p.Notes)
		}
		if len(p.Disks) != 2 {
			t.Fatalf("%q: %d disks", c.Name, len(p.Disks))
		}
		for _, pd := range p.Disks {
			if got, want := pd.Layer.Name, c.Layers[pd.Disk.Name]; got != want {
				t.Errorf("%q disk %s: layer %s, want %s", c.Name, pd.Disk.Name, got, want)
			}
			if pd.Layer.File.Format() != "VHD" || pd.Layer.OwnBytes <= 0 {
				t.Errorf("%q disk %s: format %s, own bytes %d", c.Name, pd.Disk.Name, pd.Layer.File.Format(), pd.Layer.OwnBytes)
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
	if got := names(vm.Roots); len(got) != 1 || got[0] != "Before upgrade" {
		t.Errorf("roots %v, want [Before upgrade]", got)
	}
	// The discarded layer of each disk is a point of its own.
	if len(vm.Points) != len(fx.Checkpoints)+1+2 {
		t.Errorf("%d points: %v", len(vm.Points), names(vm.Points))
	}
}
