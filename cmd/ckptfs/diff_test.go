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

	"github.com/ckptfs/ckptfs/checkpoint/diff"
	"github.com/ckptfs/ckptfs/internal/testutil"
	"golang.org/x/sys/unix"
)

// runDiffJSON runs ckptfs diff --json.
func runDiffJSON(t *testing.T, f *fixture, a, b string, extra ...string) (int, diffOutput, string) {
	t.Helper()
	code, out, errs := cli(append(append([]string{"diff", "--json"}, extra...), f.dir, a, b)...)
	var d diffOutput
	if code == 0 || code == 1 {
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("diff %s %s: %v\n%s\n%s", a, b, err, out, errs)
		}
	}
	return code, d, errs
}

// byKind splits changes by file system, paths relative to it, in the form
// modelChanges gives.
func byKind(t *testing.T, f *fixture, cs []diff.Change) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, k := range fsKinds {
		out[k] = map[string]string{}
	}
	for _, c := range cs {
		kind := ""
		for k, p := range f.fsPath {
			if strings.HasPrefix(c.Path, p+"/") {
				kind = k
			}
		}
		if kind == "" {
			t.Errorf("change outside the file systems: %+v", c)
			continue
		}
		rel := strings.TrimPrefix(c.Path, f.fsPath[kind]+"/")
		switch c.Status {
		case diff.Modified:
			out[kind][rel] = "M " + strings.Join(c.Reasons, ",")
		case diff.Error:
			out[kind][rel] = "E"
		default:
			out[kind][rel] = fmt.Sprintf("%s %s", c.Status, c.Type)
		}
	}
	return out
}

func compareMaps(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	n := 0
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			if n++; n <= 15 {
				t.Errorf("%s: %s: got %q, want %q", what, k, got[k], want[k])
			}
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			if n++; n <= 15 {
				t.Errorf("%s: %s: got %q, want nothing", what, k, got[k])
			}
		}
	}
}

// testDiff checks ckptfs diff between points against the models, against
// itself without the layer maps (--full), and the models against diff -rq
// over the trees the tools themselves show.
func testDiff(t *testing.T, f *fixture) {
	pairs := [][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 2}, {1, 0}}
	for _, pr := range pairs {
		pa, pb := f.points[pr[0]], f.points[pr[1]]
		t.Run(fmt.Sprintf("%d-%d", pr[0], pr[1]), func(t *testing.T) {
			code, d, errs := runDiffJSON(t, f, pa.name, pb.name)
			wantCode := 0
			if pr[1] == 3 {
				wantCode = 1
			}
			if code != wantCode {
				t.Errorf("exit %d, want %d\n%s", code, wantCode, errs)
			}
			got := byKind(t, f, d.Changes)
			for _, k := range fsKinds {
				compareMaps(t, k, got[k], modelChanges(pa.models[k], pb.models[k]))
			}
			// The layer maps are used: untouched volumes are not read, NTFS
			// goes through its MFT, and few files are read.
			for _, v := range d.Volumes {
				switch {
				case v.Type == "ntfs" && v.Method != "mft":
					t.Errorf("NTFS compared by %s (%s)", v.Method, v.Note)
				case v.Method == "walk" && v.ChangedBytes <= 0:
					t.Errorf("%s walked without changes: %+v", v.Path, v)
				case v.Type == "ntfs" && v.ContentReads > 3:
					t.Errorf("NTFS: %d files read", v.ContentReads)
				}
			}
			if pr == [2]int{2, 3} {
				for _, v := range d.Volumes {
					if v.Type != "ntfs" && v.Method != "unchanged" {
						t.Errorf("%s: method %s, want unchanged", v.Path, v.Method)
					}
				}
			}
			// Without the maps: the same answer.
			codeF, full, errs := runDiffJSON(t, f, pa.name, pb.name, "--full")
			if codeF != wantCode {
				t.Errorf("--full: exit %d\n%s", codeF, errs)
			}
			fg := byKind(t, f, full.Changes)
			for _, k := range fsKinds {
				compareMaps(t, k+" --full", fg[k], got[k])
			}
			// The models agree with diff -rq over the tools' own views of
			// the two partitions (ntfs-3g -o ro, mcopy, debugfs rdump); the
			// "mount" subtest below does the same over ckptfs mount.
			if pr[1] == 3 || pr[0] == 3 {
				return
			}
			for _, k := range fsKinds {
				rq := diffRQ(t, f.extract(t, pa, k), f.extract(t, pb, k))
				compareMaps(t, k+" (diff -rq)", rq, contentChanges(pa.models[k], pb.models[k]))
			}
		})
	}
	// diff -rq over the point folders of `ckptfs mount` agrees too.
	t.Run("mount", func(t *testing.T) {
		testutil.NeedFUSE(t)
		mnt := mountDir(t)
		ckptfsMount(t, sharedBinary(t), f.dir, mnt)
		if _, err := os.Stat(filepath.Join(mnt, f.points[0].name, f.fsPath["ntfs"])); err != nil {
			t.Skipf("the mount shows no file systems: %v", err)
		}
		// Every file of every point reads right through <disk>.files/, and
		// NTFS streams up to 64 KiB are user.<stream> attributes.
		for _, p := range f.points[:3] {
			for _, k := range fsKinds {
				for rel, e := range p.models[k] {
					if e.typ != "file" || e.broken {
						continue
					}
					path := filepath.Join(mnt, p.name, f.fsPath[k], filepath.FromSlash(rel))
					got, err := os.ReadFile(path)
					if err != nil || !bytes.Equal(got, e.data) {
						t.Errorf("%s: read through the mount: %d bytes, err %v; want %d bytes", path, len(got), err, len(e.data))
					}
					for name, data := range e.streams {
						buf := make([]byte, 64<<10)
						n, err := unix.Getxattr(path, "user."+name, buf)
						switch {
						case len(data) > 64<<10:
							if err == nil {
								t.Errorf("%s: stream %s larger than an xattr was shown", path, name)
							}
						case err != nil || !bytes.Equal(buf[:n], data):
							t.Errorf("%s: stream %s as xattr: %d bytes, %v", path, name, n, err)
						}
					}
				}
			}
		}
		// A damaged MFT record: that file gives EIO through the mount, its
		// folder still lists, the other files of the point still read.
		last := f.points[len(f.points)-1]
		root := filepath.Join(mnt, last.name, f.fsPath["ntfs"])
		if _, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f.broken))); !errors.Is(err, syscall.EIO) {
			t.Errorf("reading the damaged file through the mount: %v, want EIO", err)
		}
		if _, err := os.ReadDir(filepath.Dir(filepath.Join(root, filepath.FromSlash(f.broken)))); err != nil {
			t.Errorf("listing the damaged file's folder: %v", err)
		}
		for rel, e := range last.models["ntfs"] {
			if e.typ == "file" && !e.broken {
				if got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel))); err != nil || !bytes.Equal(got, e.data) {
					t.Errorf("%s beside the damaged file: %v", rel, err)
				}
			}
		}
		for _, pr := range [][2]int{{0, 1}, {1, 2}} {
			pa, pb := f.points[pr[0]], f.points[pr[1]]
			for _, k := range fsKinds {
				rq := diffRQ(t, filepath.Join(mnt, pa.name, f.fsPath[k]), filepath.Join(mnt, pb.name, f.fsPath[k]))
				compareMaps(t, fmt.Sprintf("%d-%d %s (diff -rq over ckptfs mount)", pr[0], pr[1], k), rq, contentChanges(pa.models[k], pb.models[k]))
			}
		}
	})
	t.Run("text", func(t *testing.T) {
		code, out, errs := cli("diff", f.dir, f.points[0].name, f.points[1].name)
		if code != 0 {
			t.Fatalf("exit %d %s", code, errs)
		}
		n := f.fsPath["ntfs"]
		for _, want := range []string{
			"D\t" + n + "/olddir/\n",
			"A\t" + n + "/newdir/f1.txt\n",
			"M\t" + n + "/hello.txt\t(size,mtime)\n",
			"M\t" + n + "/inetpub/web.config\t(streams)\n",
			"A\t" + n + "/new/dir with space/ñ ü.txt\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = cli("diff", f.dir, f.points[2].name, f.points[3].name)
		if want := "E\t" + n + "/" + f.broken + "\t"; code != 1 || !strings.Contains(out, want) {
			t.Errorf("damaged record: exit %d, output lacks %q:\n%s", code, want, out)
		}
		if code, _, errs := cli("diff", f.dir, "Disk", "Nope"); code != 1 || !strings.Contains(errs, "Nope: no such point") {
			t.Errorf("unknown point: %d %s", code, errs)
		}
		if code, out, _ := cli("diff", f.dir, f.points[1].name, f.points[1].name); code != 0 || out != "" {
			t.Errorf("a point against itself: %d %q", code, out)
		}
	})
}
