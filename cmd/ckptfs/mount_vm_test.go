package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// TestMountVMFolder mounts a generated VM folder (two disks, a branched
// checkpoint tree, names with spaces and non-ASCII characters): one folder
// per checkpoint named as Hyper-V names it, each with every disk of the VM
// byte-exact, a .checkpoint.json, and by-file/.
func TestMountVMFolder(t *testing.T) {
	testutil.NeedFUSE(t)
	bin := sharedBinary(t)
	fx, err := vmtest.Build(t.TempDir(), 7)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(fx.Root, "*", "*"))
	testutil.Unchanged(t, files...)
	mnt := mountDir(t)
	ckptfsMount(t, bin, fx.Root, mnt)
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := []string{"by-file", "Now"}
	for _, c := range fx.Checkpoints {
		want = append(want, c.Name)
	}
	for _, f := range fx.DiscardedLayers() {
		want = append(want, mtStem(f))
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("mount shows %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("mount shows %q, want %q", got, want)
		}
	}
	for _, c := range append(fx.Checkpoints, fx.Now) {
		var info struct {
			Name   string `json:"name"`
			Parent string `json:"parent"`
		}
		b, err := os.ReadFile(filepath.Join(mnt, c.Name, ".checkpoint.json"))
		if err != nil || json.Unmarshal(b, &info) != nil || info.Name != c.Name || info.Parent != c.Parent {
			t.Errorf("%s/.checkpoint.json: %s %v", c.Name, b, err)
		}
		for _, d := range fx.Disks {
			raw, err := os.ReadFile(filepath.Join(mnt, c.Name, d+".raw"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, c.Contents[d]) {
				t.Errorf("%s/%s.raw differs from the expected disk", c.Name, d)
			}
		}
	}
	for _, c := range fx.Checkpoints {
		for _, d := range fx.Disks {
			raw, err := os.ReadFile(filepath.Join(mnt, "by-file", mtStem(c.Layers[d]), d+".raw"))
			if err != nil || !bytes.Equal(raw, c.Contents[d]) {
				t.Errorf("by-file/%s/%s.raw: %v", mtStem(c.Layers[d]), d, err)
			}
		}
	}
}
