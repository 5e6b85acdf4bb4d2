package chain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
)

// problemsOf lists the structures of a report's problems of severity s:
// the chain's, then each link's own and its file's, as "link i: ...".
func problemsOf(r *ChainReport, s disk.Severity) []string {
	var out []string
	for _, p := range r.Problems {
		if p.Severity == s {
			out = append(out, "chain: "+p.Structure)
		}
	}
	for i, l := range r.Links {
		for _, p := range l.Problems {
			if p.Severity == s {
				out = append(out, filepath.Base(l.Path)+": "+p.Structure)
			}
		}
		for _, p := range l.Report.Problems {
			if p.Severity == s {
				out = append(out, filepath.Base(l.Path)+": file: "+p.Structure)
			}
		}
		_ = i
	}
	return out
}

// TestCheckChain checks chains with each kind of link problem: all are
// reported (never a Go error), and the walk goes as far as it can.
func TestCheckChain(t *testing.T) {
	type result struct {
		links  []string // base names of the links, leaf first
		errs   []string // see problemsOf
		warns  []string
		errIs  error // the first problem's error matches it
		ignore bool  // IgnoreLinkage
	}
	// Built once, copied for each case: a 4 MiB base of 1 MiB blocks and
	// two children with a few sectors in every block (all PARTIALLY_PRESENT).
	orig := checkFixture(t, t.TempDir())
	mk := func(t *testing.T, dir string) built {
		b := orig
		b.paths = nil
		for _, p := range orig.paths {
			q := filepath.Join(dir, filepath.Base(p))
			copyFile(t, p, q)
			b.paths = append(b.paths, q)
		}
		return b
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, b built) string // returns the leaf
		want   result
	}{
		{"clean", func(t *testing.T, b built) string { return b.leaf() },
			result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx", "Disk.vhdx"}}},
		{"parent missing", func(t *testing.T, b built) string { os.Remove(b.paths[0]); return b.leaf() },
			result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx"}, errs: []string{"Disk_1.avhdx: parent"},
				warns: []string{"Disk_1.avhdx: parent locator relative_path"}, errIs: ErrParentNotFound}},
		{"parent replaced (linkage mismatch)", func(t *testing.T, b built) string { return replaceBase(t, b, 4*disk.MiB, disk.NewGUID()) }, result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx", "Disk.vhdx"}, errs: []string{"Disk_1.avhdx: parent linkage"}, errIs: ErrLinkageMismatch}},
		{"parent replaced, --ignore-linkage", func(t *testing.T, b built) string { return replaceBase(t, b, 4*disk.MiB, disk.NewGUID()) }, result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx", "Disk.vhdx"}, warns: []string{"Disk_1.avhdx: parent linkage"}, ignore: true}},
		{"parent of another size", func(t *testing.T, b built) string { return replaceBase(t, b, 2*disk.MiB, b.images[0].DataWriteGUID) }, result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx", "Disk.vhdx"}, errs: []string{"Disk_1.avhdx: geometry"}, errIs: ErrGeometryMismatch}},
		{"damaged parent", func(t *testing.T, b built) string {
			os.Truncate(b.paths[1], 3*disk.MiB+4096) // in Disk_1's BAT
			return b.leaf()
		}, result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx", "Disk.vhdx"}, errs: []string{
			"Disk_1.avhdx: file: region BAT", "Disk_1.avhdx: file: BAT", // entries 512 on, with the bitmap entry
			"Disk_1.avhdx: file: BAT entry 0", "Disk_1.avhdx: file: BAT entry 1", "Disk_1.avhdx: file: BAT entry 2", "Disk_1.avhdx: file: BAT entry 3",
			"Disk_1.avhdx: file: sector bitmap of chunk 0"}}},
		{"unreadable parent", func(t *testing.T, b built) string {
			os.Truncate(b.paths[1], 2*disk.MiB+4096) // in Disk_1's metadata
			return b.leaf()
		}, result{links: []string{"Disk_2.avhdx", "Disk_1.avhdx"}, errs: []string{
			"Disk_2.avhdx: parent", "Disk_1.avhdx: file: region BAT", "Disk_1.avhdx: file: region metadata", "Disk_1.avhdx: file: metadata table"}, errIs: disk.ErrTruncated}},
		{"not a disk", func(t *testing.T, b built) string {
			p := filepath.Join(filepath.Dir(b.leaf()), "notes.txt")
			os.WriteFile(p, []byte("hello"), 0o644)
			return p
		}, result{links: []string{"notes.txt"}, errs: []string{"notes.txt: file: file type identifier"}, errIs: disk.ErrNotVHDX}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := mk(t, t.TempDir())
			leaf := c.damage(t, b)
			rep, err := Check(leaf, Options{IgnoreLinkage: c.want.ignore})
			if err != nil {
				t.Fatal(err)
			}
			var links []string
			for _, l := range rep.Links {
				links = append(links, filepath.Base(l.Path))
			}
			if !slices.Equal(links, c.want.links) {
				t.Errorf("links %q, want %q", links, c.want.links)
			}
			if got := problemsOf(rep, disk.SeverityError); !slices.Equal(got, c.want.errs) {
				t.Errorf("errors %q, want %q\n%s", got, c.want.errs, reportText(rep))
			}
			if got := problemsOf(rep, disk.SeverityWarning); !slices.Equal(got, c.want.warns) {
				t.Errorf("warnings %q, want %q\n%s", got, c.want.warns, reportText(rep))
			}
			if rep.Clean() != (len(c.want.errs)+len(c.want.warns) == 0) {
				t.Errorf("Clean() = %v", rep.Clean())
			}
			if c.want.errIs != nil {
				var first error
				for _, l := range rep.Links {
					for _, p := range append(slices.Clone(l.Problems), l.Report.Problems...) {
						if first == nil && p.Severity == disk.SeverityError && !strings.HasPrefix(p.Structure, "parent locator") {
							first = p.Err
						}
					}
				}
				if !errors.Is(first, c.want.errIs) {
					t.Errorf("first error %v, want %v", first, c.want.errIs)
				}
			}
			// Linkage mismatches name both identities.
			for _, l := range rep.Links {
				for _, p := range l.Problems {
					if p.Structure == "parent linkage" && strings.Count(p.Err.Error(), "{") < 2 {
						t.Errorf("linkage problem does not name both GUIDs: %v", p.Err)
					}
				}
			}
			if c.name == "clean" {
				for _, l := range rep.Links[:2] {
					if len(l.Locators) == 0 || !l.Locators[0].Parent || l.Locators[0].Key != disk.KeyRelativePath {
						t.Errorf("%s: locator findings %+v", l.Path, l.Locators)
					}
				}
				for _, l := range rep.Links[1:] {
					if l.Linkage == nil || !l.Linkage.OK {
						t.Errorf("%s: linkage %+v", l.Path, l.Linkage)
					}
				}
			}
		})
	}
	t.Run("leaf missing", func(t *testing.T) {
		if _, err := Check(filepath.Join(t.TempDir(), "none.vhdx"), Options{}); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		pa := cycleFixture(t, t.TempDir())
		rep, err := Check(pa, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := problemsOf(rep, disk.SeverityError); !slices.Equal(got, []string{"chain: chain"}) || !errors.Is(rep.Problems[0].Err, ErrCycle) || len(rep.Links) != 2 {
			t.Errorf("cycle: %q, %d links", got, len(rep.Links))
		}
	})
	t.Run("too deep", func(t *testing.T) {
		b := mk(t, t.TempDir())
		rep, err := Check(b.leaf(), Options{MaxDepth: 2})
		if err != nil || len(rep.Problems) != 1 || !errors.Is(rep.Problems[0].Err, ErrTooDeep) || len(rep.Links) != 2 {
			t.Errorf("got %+v %v", rep, err)
		}
	})
}

// checkFixture writes a 3-file chain (Disk.vhdx, Disk_1.avhdx,
// Disk_2.avhdx) into dir.
func checkFixture(t *testing.T, dir string) built {
	var b built
	for i := 0; i < 3; i++ {
		o := vhdxtest.Options{VirtualSize: 4 * disk.MiB, BlockSize: disk.MiB}
		name := fmt.Sprintf("Disk_%d.avhdx", i)
		if i == 0 {
			name = "Disk.vhdx"
		} else {
			o.Parent, o.ParentPath = b.images[i-1], b.paths[i-1]
		}
		im := vhdxtest.New(o)
		for blk := int64(0); blk < 4; blk++ {
			im.Write(blk*disk.MiB+int64(i)*4096, make([]byte, 4096))
		}
		p := filepath.Join(dir, name)
		if err := im.Save(p); err != nil {
			t.Fatal(err)
		}
		b.paths, b.images = append(b.paths, p), append(b.images, im)
	}
	return b
}

// replaceBase replaces the base of b by an empty file of size bytes whose
// DataWriteGuid is id, and returns b's leaf.
func replaceBase(t *testing.T, b built, size int64, id disk.GUID) string {
	other := vhdxtest.New(vhdxtest.Options{VirtualSize: size, BlockSize: disk.MiB})
	other.DataWriteGUID = id
	if err := other.Save(b.paths[0] + ".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b.paths[0]+".new", b.paths[0]); err != nil {
		t.Fatal(err)
	}
	return b.leaf()
}

// cycleFixture writes two differencing files that name each other as
// parent and returns one.
func cycleFixture(t *testing.T, dir string) string {
	base := vhdxtest.New(vhdxtest.Options{VirtualSize: 2 * disk.MiB, BlockSize: disk.MiB})
	a := vhdxtest.New(vhdxtest.Options{Parent: base, BlockSize: disk.MiB})
	bb := vhdxtest.New(vhdxtest.Options{Parent: base, BlockSize: disk.MiB})
	pa, pb := filepath.Join(dir, "a.avhdx"), filepath.Join(dir, "b.avhdx")
	a2 := vhdxtest.New(vhdxtest.Options{Parent: bb, BlockSize: disk.MiB, Locator: []disk.LocatorEntry{{Key: "parent_linkage", Value: bb.DataWriteGUID.Braced()}, {Key: "relative_path", Value: "b.avhdx"}}})
	a2.DataWriteGUID = a.DataWriteGUID
	b2 := vhdxtest.New(vhdxtest.Options{Parent: a, BlockSize: disk.MiB, Locator: []disk.LocatorEntry{{Key: "parent_linkage", Value: a.DataWriteGUID.Braced()}, {Key: "relative_path", Value: "a.avhdx"}}})
	b2.DataWriteGUID = bb.DataWriteGUID
	if err := a2.Save(pa); err != nil {
		t.Fatal(err)
	}
	if err := b2.Save(pb); err != nil {
		t.Fatal(err)
	}
	return pa
}
