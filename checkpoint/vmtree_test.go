package checkpoint_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
)

func child(t *testing.T, n *checkpoint.Node, name string) *checkpoint.Node {
	t.Helper()
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	var names []string
	for _, c := range n.Children {
		names = append(names, c.Name)
	}
	t.Fatalf("%q has no %q; has %q", n.Name, name, names)
	return nil
}

func readNode(t *testing.T, n *checkpoint.Node) []byte {
	t.Helper()
	b := make([]byte, n.Size)
	if _, err := n.Data.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

func TestVMTree(t *testing.T) {
	fx, err := vmtest.Build(t.TempDir(), 4)
	if err != nil {
		t.Fatal(err)
	}
	v, err := checkpoint.OpenView(fx.Root, chain.Options{}, checkpoint.FileTreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, c := range append(fx.Checkpoints, fx.Now) {
		dir := child(t, v.Root, c.Name)
		var info struct {
			Name, Parent, VM string
			Disks            []struct{ Disk, File string }
		}
		if err := json.Unmarshal(readNode(t, child(t, dir, ".checkpoint.json")), &info); err != nil {
			t.Fatal(err)
		}
		if info.Name != c.Name || info.Parent != c.Parent || info.VM != fx.VMName || len(info.Disks) != 2 {
			t.Errorf("%s/.checkpoint.json: %+v", c.Name, info)
		}
		for _, d := range fx.Disks {
			raw := child(t, dir, d+".raw")
			if string(readNode(t, raw)) != string(c.Contents[d]) {
				t.Errorf("%s/%s.raw differs", c.Name, d)
			}
			child(t, dir, d+".partitions")
		}
	}
	// by-file has one folder per disk file, each with its disk.
	byFile := child(t, v.Root, "by-file")
	if len(byFile.Children) != 10 {
		t.Errorf("by-file has %d folders, want 10", len(byFile.Children))
	}
	for _, c := range fx.Checkpoints {
		for _, d := range fx.Disks {
			l := c.Layers[d]
			stem := strings.TrimSuffix(strings.TrimSuffix(l, ".avhdx"), ".vhdx")
			f := child(t, child(t, byFile, stem), d+".raw")
			if string(readNode(t, f)) != string(c.Contents[d]) {
				t.Errorf("by-file/%s/%s.raw differs", l, d)
			}
		}
	}
}
