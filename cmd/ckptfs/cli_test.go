package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
	"github.com/ckptfs/ckptfs/internal/testutil"
)

// cli runs ckptfs in-process and returns its exit status and output.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// smallChain writes base + child (child dirty-logged) into dir: a 24 MiB
// disk, three of export's 8 MiB steps, mostly holes.
func smallChain(t *testing.T, dir string) (leaf string, want []byte, paths []string) {
	t.Helper()
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 24 * disk.MiB, BlockSize: disk.MiB})
	base.Write(3*disk.MiB, bytes.Repeat([]byte("base"), 4096))
	bp := filepath.Join(dir, "Disk.vhdx")
	if err := base.Save(bp); err != nil {
		t.Fatal(err)
	}
	child := vhdxtest.New(vhdxtest.Options{Parent: base, ParentPath: bp, BlockSize: disk.MiB, DirtyLog: true})
	child.Write(3*disk.MiB+512, bytes.Repeat([]byte("kid!"), 256))
	cp := filepath.Join(dir, "Disk_9F2A0C4E-1B7D-4E39-8A0B-2C6D5E4F3A21.avhdx")
	if err := child.Save(cp); err != nil {
		t.Fatal(err)
	}
	return cp, child.ChainContents(), []string{bp, cp}
}

func TestInfoChainExport(t *testing.T) {
	dir := t.TempDir()
	leaf, want, paths := smallChain(t, dir)
	testutil.Unchanged(t, paths...)

	code, out, errs := cli("info", "--json", leaf)
	if code != 0 {
		t.Fatalf("info: %d %s", code, errs)
	}
	var fi fileInfo
	if err := json.Unmarshal([]byte(out), &fi); err != nil {
		t.Fatal(err)
	}
	if fi.Type != "differencing" || !fi.Log.Replayed || fi.ParentLocator["relative_path"] != "Disk.vhdx" || fi.Blocks["PARTIALLY_PRESENT"] != 1 {
		t.Errorf("info: %+v", fi)
	}
	if code, out, _ := cli("info", leaf); code != 0 || !strings.Contains(out, "replayed in memory") {
		t.Errorf("info text does not say the log was replayed:\n%s", out)
	}

	code, out, errs = cli("chain", "--json", leaf)
	if code != 0 {
		t.Fatalf("chain: %d %s", code, errs)
	}
	var ch struct {
		Depth int        `json:"depth"`
		Links []linkJSON `json:"links"`
	}
	if err := json.Unmarshal([]byte(out), &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Depth != 2 || ch.Links[1].LocatorKey != "relative_path" || !ch.Links[1].Linkage.OK {
		t.Errorf("chain: %s", out)
	}

	raw := filepath.Join(dir, "out.raw")
	if code, _, errs := cli("export", leaf, raw); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	got, _ := testutil.MapFile(t, raw)
	if !bytes.Equal(got, want) {
		t.Fatal("exported image differs from the chain")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 8*disk.MiB {
		t.Errorf("export is not sparse: %d bytes allocated of %d", st.Blocks*512, len(got))
	}
	if code, _, errs := cli("export", leaf, raw); code == 0 || !strings.Contains(errs, "--force") {
		t.Errorf("export over an existing file: %d %s", code, errs)
	}
	if code, _, errs := cli("export", leaf, paths[0], "--force"); code == 0 || !strings.Contains(errs, "refusing") {
		t.Errorf("export over a chain file: %d %s", code, errs)
	}
}

func TestExportStdout(t *testing.T) {
	leaf, want, _ := smallChain(t, t.TempDir())
	code, out, errs := cli("export", leaf, "-")
	if code != 0 || out != string(want) {
		t.Fatalf("export to stdout: %d %s (got %d bytes)", code, errs, len(out))
	}
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	leaf, _, paths := smallChain(t, dir)
	notVHDX := filepath.Join(dir, "notes.txt")
	os.WriteFile(notVHDX, []byte("hello"), 0o644)
	os.Rename(paths[0], filepath.Join(dir, "elsewhere.bin"))
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"info"}, 2, []string{"usage"}},
		{[]string{"nope"}, 2, []string{"unknown command"}},
		{[]string{"info", notVHDX}, 1, []string{notVHDX, "Signature", "not a VHDX"}},
		{[]string{"chain", leaf}, 1, []string{leaf, "parent not found", "--search-path"}},
		{[]string{"export", leaf, "-"}, 1, []string{"parent not found"}},
		{[]string{"info", filepath.Join(dir, "missing.vhdx")}, 1, []string{"no such file"}},
	}
	for _, c := range cases {
		code, _, errs := cli(c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: error %q lacks %q", c.args, errs, w)
			}
		}
	}
}

func TestLsJSON(t *testing.T) {
	fx, err := vmtest.Build(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli("ls", "--json", fx.Root)
	if code != 0 {
		t.Fatalf("ls: %s", errs)
	}
	var ls lsOutput
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.VMs) != 1 || ls.VMs[0].Name != fx.VMName || len(ls.VMs[0].Checkpoints) != 1 {
		t.Fatalf("ls: %s", out)
	}
	// Expected tree: name → parent name.
	want := map[string]string{}
	for _, c := range fx.Checkpoints {
		want[c.Name] = c.Parent
	}
	want["Now"] = fx.Now.Parent
	got := map[string]string{}
	var walk func(p *lsPoint, parent string)
	walk = func(p *lsPoint, parent string) {
		got[p.Name] = parent
		for _, c := range p.Children {
			walk(c, p.Name)
		}
	}
	walk(ls.VMs[0].Checkpoints[0], "")
	for n, p := range want {
		if gp, ok := got[n]; !ok || gp != p {
			t.Errorf("%q: parent %q (present %v), want %q", n, gp, ok, p)
		}
	}
	if len(got) != len(want)+2 { // + one discarded layer per disk
		t.Errorf("%d points, want %d: %v", len(got), len(want)+2, got)
	}
	if code, out, _ := cli("ls", fx.Root); code != 0 || !strings.Contains(out, "└─ Now") {
		t.Errorf("ls text:\n%s", out)
	}
}

// TestExportVHDX flattens a chain into a standalone dynamic VHDX and reads
// it back with qemu-img, an independent reader.
func TestExportVHDX(t *testing.T) {
	testutil.Need(t, "qemu-img")
	dir := t.TempDir()
	leaf, want, paths := smallChain(t, dir)
	testutil.Unchanged(t, paths...)
	out := filepath.Join(dir, "flat.vhdx")
	if code, _, errs := cli("export", "--format", "vhdx", "--block-size", "2M", leaf, out); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	back := filepath.Join(dir, "back.raw")
	testutil.Run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", out, back)
	if got, _ := testutil.MapFile(t, back); !bytes.Equal(got, want) {
		t.Fatal("qemu-img reads different bytes from the exported VHDX")
	}
	// Only the one block holding data is allocated.
	code, js, _ := cli("info", "--json", out)
	var fi fileInfo
	if code != 0 || json.Unmarshal([]byte(js), &fi) != nil {
		t.Fatalf("info of export: %s", js)
	}
	if fi.Type != "dynamic" || fi.Blocks["FULLY_PRESENT"] != 1 {
		t.Errorf("exported VHDX blocks: %v", fi.Blocks)
	}
	testutil.Run(t, "qemu-img", "check", out)
	if code, _, errs := cli("export", "--format", "vhdx", leaf, out); code == 0 || !strings.Contains(errs, "--force") {
		t.Errorf("export over an existing file: %d %s", code, errs)
	}
}

// TestAdvise checks that chain errors get the advice about flags, found
// by type (errors.Is), once.
func TestAdvise(t *testing.T) {
	nf := fmt.Errorf("opening: %w", &chain.ParentNotFoundError{Child: "/x/child.avhdx", Tried: []string{"/x/base.vhdx"}})
	le := &chain.LinkageError{Child: "/x/child.avhdx", Parent: "/x/base.vhdx", Key: "parent_linkage"}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nf, "; copy the parent beside it or add --search-path DIR"},
		{advise(nf), "; copy the parent beside it or add --search-path DIR"},
		{le, "; use --ignore-linkage to open it anyway"},
		{errors.New("other"), "other"},
	} {
		got := advise(c.err).Error()
		if !strings.HasSuffix(got, c.want) || strings.Count(got, "--") > 1 {
			t.Errorf("advise(%v) = %q, want it to end in %q once", c.err, got, c.want)
		}
		if !errors.Is(advise(c.err), c.err) {
			t.Errorf("advise(%v) does not wrap it", c.err)
		}
	}
}
