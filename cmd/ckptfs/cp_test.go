package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/testutil"
)

// testCp copies every file system of every point out with `ckptfs cp` and
// checks the copies against the models: every file's bytes (sha256),
// times, modes, symlinks, hard links and streams; a damaged record gives
// an I/O error naming its path and the rest is still copied.
func testCp(t *testing.T, f *fixture) {
	out := t.TempDir()
	for pi, p := range f.points {
		for _, kind := range fsKinds {
			dst := filepath.Join(out, p.name, kind)
			must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
			code, _, errs := cli("cp", f.dir, p.name+":"+f.fsPath[kind], dst)
			m := p.models[kind]
			broken := ""
			for rel, e := range m {
				if e.broken {
					broken = rel
				}
			}
			switch {
			case broken != "":
				want := p.name + ":" + f.fsPath[kind] + "/" + broken + ": input/output error"
				if code != 1 || !strings.Contains(errs, want) {
					t.Errorf("cp %s %s: exit %d, want 1 and %q in:\n%s", p.name, kind, code, want, errs)
				}
			case code != 0:
				t.Errorf("cp %s %s: exit %d\n%s", p.name, kind, code, errs)
				continue
			}
			if kind == "ntfs" && !strings.Contains(errs, `stream "huge" (71680 bytes) is larger than an extended attribute`) {
				t.Errorf("cp %s %s: no warning about the 70 KiB stream:\n%s", p.name, kind, errs)
			}
			checkCopy(t, p.name+"/"+kind, dst, m, kind)
		}
		if pi == 0 {
			testCpSingle(t, f, p)
		}
	}
	// The damaged file alone.
	last := f.points[len(f.points)-1]
	spec := last.name + ":" + f.fsPath["ntfs"] + "/" + f.broken
	dst := filepath.Join(out, "broken")
	code, _, errs := cli("cp", f.dir, spec, dst)
	if code != 1 || !strings.Contains(errs, spec+": input/output error") || !strings.Contains(errs, "corrupt") {
		t.Errorf("cp of the damaged file: exit %d\n%s", code, errs)
	}
	if _, err := os.Lstat(dst); err == nil {
		t.Errorf("cp of the damaged file left %s", dst)
	}
}

// testCpSingle checks single-file copies, path forms and error messages.
func testCpSingle(t *testing.T, f *fixture, p *fxPoint) {
	dir := t.TempDir()
	ntfsDir := p.name + ":" + f.fsPath["ntfs"]
	// Case-insensitive NTFS lookup; a folder as DEST keeps the stored name.
	code, _, errs := cli("cp", f.dir, ntfsDir+"/GRÜßE — 日本/ファイル 1.TXT", dir)
	if code != 0 {
		t.Fatalf("cp case-insensitive: %s", errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ファイル 1.txt")); err != nil || !bytes.Equal(b, p.models["ntfs"]["Grüße — 日本/ファイル 1.txt"].data) {
		t.Errorf("cp case-insensitive: %v", err)
	}
	// ext4 is case-sensitive: the error names the path.
	code, _, errs = cli("cp", f.dir, p.name+":"+f.fsPath["ext4"]+"/ETC/hosts", dir)
	if code != 1 || !strings.Contains(errs, p.name+":"+f.fsPath["ext4"]+"/ETC: ") || !strings.Contains(errs, "file does not exist") {
		t.Errorf("cp of a missing path: exit %d %s", code, errs)
	}
	// POINT:/PATH needs a point with one file system.
	code, _, errs = cli("cp", f.dir, p.name+":/hello.txt", dir)
	if code != 1 || !strings.Contains(errs, "the point has 3 file systems") {
		t.Errorf("cp POINT:/ with 3 file systems: exit %d %s", code, errs)
	}
	code, _, errs = cli("cp", f.dir, f.data+":/INETPUB/web.config", filepath.Join(dir, "w.config"))
	if b, err := os.ReadFile(filepath.Join(dir, "w.config")); code != 0 || err != nil || string(b) != "<data/>\n" {
		t.Errorf("cp POINT:/PATH: exit %d %s %v", code, errs, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "w.config")); err != nil || !st.ModTime().Equal(tm(9)) {
		t.Errorf("cp POINT:/PATH: mtime %v", st.ModTime())
	}
	// Unknown point.
	code, _, errs = cli("cp", f.dir, "Nope:/x", dir)
	if code != 1 || !strings.Contains(errs, `Nope: no such point (points: "Data", "Disk"`) {
		t.Errorf("cp from an unknown point: exit %d %s", code, errs)
	}
	code, _, errs = cli("cp", f.dir, "no-colon", dir)
	if code != 2 {
		t.Errorf("cp without POINT:PATH: exit %d %s", code, errs)
	}
	// --streams skip.
	code, _, errs = cli("cp", "--streams", "skip", f.dir, ntfsDir+"/ads.txt", filepath.Join(dir, "ads.txt"))
	if code != 0 || strings.Contains(errs, "warning") {
		t.Errorf("cp --streams skip: exit %d %s", code, errs)
	}
	if n, _ := unix.Listxattr(filepath.Join(dir, "ads.txt"), make([]byte, 1024)); n != 0 {
		t.Errorf("cp --streams skip copied %d bytes of xattr names", n)
	}
	// DEST "-": standard output.
	code, out, errs := cli("cp", f.dir, ntfsDir+"/hello.txt", "-")
	if code != 0 || out != "Hello, NTFS!\n" {
		t.Errorf("cp to -: exit %d %q %s", code, out, errs)
	}
	// An existing FIFO (or device) is written to, never replaced.
	fifo := filepath.Join(dir, "fifo")
	must(t, unix.Mkfifo(fifo, 0o644))
	got := make(chan []byte)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- b
	}()
	code, _, errs = cli("cp", f.dir, ntfsDir+"/big.bin", fifo)
	if b := <-got; code != 0 || !bytes.Equal(b, p.models["ntfs"]["big.bin"].data) {
		t.Errorf("cp to a FIFO: exit %d, %d bytes %s", code, len(b), errs)
	}
	code, _, _ = cli("cp", f.dir, ntfsDir+"/ln_rel", fifo)
	if st, err := os.Lstat(fifo); code != 1 || err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("cp of a symlink onto a FIFO: exit %d, FIFO now %v %v", code, st.Mode(), err)
	}
	// A whole point folder (raw images included) is not needed here, but a
	// folder of the tree is: the file-system folder into an existing folder.
	sub := filepath.Join(dir, "into")
	must(t, os.Mkdir(sub, 0o755))
	code, _, errs = cli("cp", f.dir, p.name+":"+f.fsPath["fat"], sub)
	if code != 0 {
		t.Errorf("cp of a file-system folder into a folder: %s", errs)
	}
	checkCopy(t, "fat into folder", filepath.Join(sub, filepath.Base(f.fsPath["fat"])), p.models["fat"], "fat")
}

// checkCopy compares a copied tree with a model.
func checkCopy(t *testing.T, what, root string, m model, kind string) {
	t.Helper()
	seen := map[string]bool{}
	um := os.FileMode(unix.Umask(0))
	unix.Umask(int(um))
	bad := 0
	errorf := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf("%s: "+format, append([]any{what}, args...)...)
		}
	}
	// Access times first: reading a file (or a hard link of it) sets it.
	atimes := map[string]unix.Timespec{}
	must(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Lstat(p, &st) == nil {
			atimes[p] = st.Atim
		}
		return err
	}))
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		e := m[rel]
		if e == nil || e.broken {
			errorf("%s: not in the model", rel)
			return nil
		}
		switch e.typ {
		case "dir":
			if !fi.IsDir() {
				errorf("%s: not a folder", rel)
			}
			if kind == "ext4" && fi.Mode().Perm() != e.mode {
				errorf("%s: mode %v, want %v", rel, fi.Mode().Perm(), e.mode)
			}
		case "symlink":
			target, err := os.Readlink(p)
			if err != nil || target != e.target {
				errorf("%s: symlink to %q (%v), want %q", rel, target, err, e.target)
			}
		case "file":
			if !fi.Mode().IsRegular() {
				errorf("%s: not a regular file", rel)
				return nil
			}
			if !fi.ModTime().Equal(e.mtime) {
				errorf("%s: mtime %v, want %v", rel, fi.ModTime().UTC(), e.mtime)
			}
			if at := atimes[p]; kind != "fat" && !e.atime.IsZero() && (at.Sec != e.atime.Unix() || at.Nsec != int64(e.atime.Nanosecond())) {
				errorf("%s: atime %d.%09d, want %v", rel, at.Sec, at.Nsec, e.atime)
			}
			if sum := testutil.SHA256File(t, p); sum != e.sha() {
				errorf("%s: sha256 %s (%d bytes), manifest says %s (%d bytes)", rel, sum, fi.Size(), e.sha(), len(e.data))
			}
			want := 0o644 &^ um
			if kind == "ext4" {
				want = e.mode
			}
			if fi.Mode().Perm() != want {
				errorf("%s: mode %v, want %v", rel, fi.Mode().Perm(), want)
			}
			for name, v := range e.streams {
				buf := make([]byte, 128<<10)
				n, err := unix.Getxattr(p, "user."+name, buf)
				switch {
				case len(v) > xattrMax:
					if err == nil {
						errorf("%s: stream %s of %d bytes copied", rel, name, len(v))
					}
				case err != nil || !bytes.Equal(buf[:n], v):
					errorf("%s: stream %s: %v", rel, name, err)
				}
			}
		}
		return nil
	})
	must(t, err)
	for rel, e := range m {
		if !seen[rel] && !e.broken {
			errorf("%s: not copied", rel)
		}
	}
	// Hard links stay hard links.
	if a, b := m["links/a"], m["links/b"]; a != nil && a == b {
		x, err1 := os.Stat(filepath.Join(root, "links/a"))
		y, err2 := os.Stat(filepath.Join(root, "links/b"))
		if err1 != nil || err2 != nil || !os.SameFile(x, y) {
			errorf("links/a and links/b are not one file")
		}
	}
	// Sparse source data becomes holes.
	if e := m["sparse.bin"]; e != nil {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(root, "sparse.bin"), &st) == nil && st.Blocks*512 > 1<<20 {
			errorf("sparse.bin: %d bytes allocated", st.Blocks*512)
		}
	}
}

// xattrMax is the largest extended attribute value Linux accepts.
const xattrMax = 64 << 10
