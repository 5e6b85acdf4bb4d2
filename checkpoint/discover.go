package checkpoint

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint/vmconfig"
	"github.com/ckptfs/ckptfs/disk"
)

// Layer is one disk file found in a folder.
type Layer struct {
	Path  string // absolute
	Name  string // file name
	Mtime time.Time
	File  disk.Image   // nil if it could not be opened
	Chain *chain.Chain // the chain ending here; nil if it could not be built
	Err   error        // why File or Chain is nil
	// OwnBytes is the payload this file holds itself (allocated blocks).
	OwnBytes int64
	Parent   *Layer
	Children []*Layer
	Disk     *DiskTree
}

// DiskTree is a base disk and every layer that descends from it.
type DiskTree struct {
	Name   string // the base file's name without extension
	Base   *Layer
	Layers []*Layer // base first, then by path
}

// Point is a state of a VM that can be shown: a checkpoint, the running
// state ("Now"), or a layer no configuration names.
type Point struct {
	Name string // as Hyper-V Manager shows it
	// Dir is the folder name in a mount: Name made safe for file names,
	// unique within its VM, stable across mounts.
	Dir    string
	ID     string // checkpoint GUID, if known
	Time   time.Time
	IsNow  bool
	Config string // the configuration file it came from, if any
	Disks  []PointDisk
	Parent *Point
	// Children are sorted by time.
	Children []*Point
	// Notes explain fallbacks (no configuration, missing fields...).
	Notes []string
}

// PointDisk is the layer one disk of a VM is at in a point.
type PointDisk struct {
	Disk       *DiskTree
	Layer      *Layer
	Controller string // e.g. "SCSI 0:1", if known
}

// VM groups the points of one virtual machine.
type VM struct {
	Name   string
	ID     string
	Config string // its configuration file, or "" when derived from disks
	Disks  []*DiskTree
	Roots  []*Point // points without a parent
	Points []*Point // all, oldest first
	Notes  []string
}

// Inventory is everything found under a folder.
type Inventory struct {
	Root     string
	VMs      []*VM
	Layers   []*Layer
	Warnings []string
	files    *chain.FileSet
}

// Close closes every opened disk file.
func (inv *Inventory) Close() error { return inv.files.Close() }

// Discover finds every disk and configuration under root (a VM export, a
// host folder of several VMs, or a folder of disks), builds every chain
// with its branches and groups disks and checkpoints by VM. Broken files
// are reported in Layer.Err and Warnings, not as an error: the rest is
// still shown. opts.Files is ignored.
func Discover(root string, opts chain.Options) (*Inventory, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a folder", abs)
	}
	inv := &Inventory{Root: abs, files: chain.NewFileSet()}
	opts.Files = inv.files
	var diskPaths, configPaths []string
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			inv.Warnings = append(inv.Warnings, err.Error())
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		n := strings.ToLower(d.Name())
		switch {
		case IsDiskName(n):
			diskPaths = append(diskPaths, p)
		case strings.HasSuffix(n, ".vmcx"):
			configPaths = append(configPaths, p)
		case strings.HasSuffix(n, ".xml") && isConfigFolder(p):
			configPaths = append(configPaths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(diskPaths) == 0 {
		return nil, fmt.Errorf("%s: %w", abs, ErrNoDisks)
	}
	// Parents are looked for in every folder holding disks too: Hyper-V
	// 2008 R2 keeps a VM's .avhd files in its Snapshots folder, apart
	// from the .vhd, and a copied VM folder leaves absolute locators stale.
	opts.SearchPaths = append(slices.Clone(opts.SearchPaths), diskFolders(diskPaths)...)
	if err := inv.buildLayers(diskPaths, opts); err != nil {
		return nil, err
	}
	inv.buildVMs(configPaths)
	return inv, nil
}

// diskFolders lists the folders holding paths, once each, in order.
func diskFolders(paths []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		if d := filepath.Dir(p); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// isConfigFolder reports whether an .xml file sits where Hyper-V 2012 R2
// keeps configurations.
func isConfigFolder(p string) bool {
	d := strings.ToLower(filepath.Base(filepath.Dir(p)))
	return d == "virtual machines" || d == "snapshots"
}

func (inv *Inventory) buildLayers(paths []string, opts chain.Options) error {
	byPath := map[string]*Layer{}
	warned := map[string]bool{}
	for _, p := range paths {
		l := &Layer{Path: p, Name: filepath.Base(p)}
		if st, err := os.Stat(p); err == nil {
			l.Mtime = st.ModTime()
		}
		byPath[p] = l
		inv.Layers = append(inv.Layers, l)
	}
	for _, l := range inv.Layers {
		c, err := chain.Open(l.Path, opts)
		if err != nil {
			l.Err = err
			if f, ferr := inv.files.Open(l.Path); ferr == nil {
				l.File = f
			}
			inv.Warnings = append(inv.Warnings, err.Error())
			continue
		}
		l.Chain, l.File = c, c.Leaf()
		l.OwnBytes = l.File.OwnBytes()
		for _, k := range c.Links {
			for _, w := range k.Warnings {
				if !warned[w] {
					warned[w] = true
					inv.Warnings = append(inv.Warnings, w)
				}
			}
		}
		if len(c.Links) > 1 {
			parent := byPath[c.Links[1].Path]
			if parent == nil {
				// A parent outside the folder (found through a search
				// path): show it too.
				parent = &Layer{Path: c.Links[1].Path, Name: filepath.Base(c.Links[1].Path), File: c.Links[1].File, Chain: c.Point(1)}
				byPath[parent.Path] = parent
				inv.Layers = append(inv.Layers, parent)
			}
			l.Parent = parent
		}
	}
	for _, l := range inv.Layers {
		if l.Parent != nil {
			l.Parent.Children = append(l.Parent.Children, l)
		}
	}
	for _, l := range inv.Layers {
		if l.Parent != nil || l.Chain == nil {
			continue
		}
		d := &DiskTree{Name: stem(l.Path), Base: l}
		var walk func(*Layer)
		walk = func(x *Layer) {
			x.Disk = d
			d.Layers = append(d.Layers, x)
			slices.SortFunc(x.Children, func(a, b *Layer) int { return cmp.Compare(a.Path, b.Path) })
			for _, c := range x.Children {
				walk(c)
			}
		}
		walk(l)
	}
	return nil
}

// nearest picks, among disk files of one name, the one closest to the
// configuration file cfg in the folder tree: on a host folder several VMs
// can have disks of the same name, each beside its own configuration.
func nearest(ls []*Layer, cfg string) *Layer {
	var best *Layer
	bestLen := -1
	for _, l := range ls {
		n := commonPrefix(filepath.Dir(l.Path), filepath.Dir(cfg))
		if n > bestLen {
			best, bestLen = l, n
		}
	}
	return best
}

// commonPrefix is the number of leading path components a and b share.
func commonPrefix(a, b string) int {
	as, bs := strings.Split(a, string(filepath.Separator)), strings.Split(b, string(filepath.Separator))
	n := 0
	for n < len(as) && n < len(bs) && as[n] == bs[n] {
		n++
	}
	return n
}

// ancestorOf reports whether a is b or one of b's ancestors.
func ancestorOf(a, b *Layer) bool {
	for x := b; x != nil; x = x.Parent {
		if x == a {
			return true
		}
	}
	return false
}

type loadedConfig struct {
	cfg    *vmconfig.VMConfig
	layers []PointDisk
}

func (inv *Inventory) buildVMs(configPaths []string) {
	byName := map[string][]*Layer{}
	for _, l := range inv.Layers {
		k := strings.ToLower(l.Name)
		byName[k] = append(byName[k], l)
	}
	var vms, snaps []loadedConfig
	for _, p := range configPaths {
		cfg, err := vmconfig.Load(p)
		if err != nil {
			inv.Warnings = append(inv.Warnings, err.Error())
			continue
		}
		lc := loadedConfig{cfg: cfg}
		for _, d := range cfg.Disks {
			name := strings.ToLower(winBase(d.Path))
			l := nearest(byName[name], p)
			if l == nil || l.Disk == nil {
				inv.Warnings = append(inv.Warnings, fmt.Sprintf("%s: disk %s (%s) not found under %s", p, d.Path, d.Controller, inv.Root))
				continue
			}
			lc.layers = append(lc.layers, PointDisk{Disk: l.Disk, Layer: l, Controller: d.Controller + ":" + d.Location})
		}
		if cfg.IsCheckpoint {
			snaps = append(snaps, lc)
		} else {
			vms = append(vms, lc)
		}
	}
	claimed := map[*Layer]bool{}
	diskOwner := map[*DiskTree]*VM{}
	for _, lc := range vms {
		vm := &VM{Name: lc.cfg.Name, ID: lc.cfg.ID, Config: lc.cfg.Source}
		if vm.Name == "" {
			vm.Name = strings.TrimSuffix(filepath.Base(lc.cfg.Source), filepath.Ext(lc.cfg.Source))
			vm.Notes = append(vm.Notes, "configuration has no name")
		}
		for _, pd := range lc.layers {
			if diskOwner[pd.Disk] == nil {
				diskOwner[pd.Disk] = vm
				vm.Disks = append(vm.Disks, pd.Disk)
			}
		}
		now := &Point{Name: "Now", IsNow: true, Config: lc.cfg.Source, Time: latest(lc.layers), Disks: lc.layers}
		if len(lc.layers) > 0 {
			vm.Points = append(vm.Points, now)
		}
		inv.VMs = append(inv.VMs, vm)
	}
	for _, lc := range snaps {
		var vm *VM
		for _, pd := range lc.layers {
			if vm = diskOwner[pd.Disk]; vm != nil {
				break
			}
		}
		if vm == nil && len(lc.layers) > 0 {
			// A checkpoint whose VM configuration is missing.
			vm = &VM{Name: diskNameOf(lc.layers), Notes: []string{"no VM configuration found; grouped by disk"}}
			for _, pd := range lc.layers {
				diskOwner[pd.Disk] = vm
				vm.Disks = append(vm.Disks, pd.Disk)
			}
			inv.VMs = append(inv.VMs, vm)
		}
		if vm == nil {
			continue
		}
		p := &Point{Name: lc.cfg.CheckpointName, ID: lc.cfg.ID, Time: lc.cfg.CreationTime, Config: lc.cfg.Source, Disks: lc.layers}
		if p.Name == "" {
			p.Name = lc.cfg.ID
			p.Notes = append(p.Notes, "configuration has no name; using its ID")
		}
		if p.Time.IsZero() {
			p.Time = latest(lc.layers)
			p.Notes = append(p.Notes, "configuration has no creation time; using the disk file's modification time")
		}
		for _, pd := range lc.layers {
			claimed[pd.Layer] = true
		}
		vm.Points = append(vm.Points, p)
	}
	// Disks no configuration names: one VM per disk tree, a point per layer.
	for _, l := range inv.Layers {
		if l.Disk == nil || l != l.Disk.Base || diskOwner[l.Disk] != nil {
			continue
		}
		vm := &VM{Name: l.Disk.Name, Disks: []*DiskTree{l.Disk}, Notes: []string{"no configuration found: points are the disk files, named by file name, timed by modification time"}}
		diskOwner[l.Disk] = vm
		inv.VMs = append(inv.VMs, vm)
	}
	// Layers of a VM's disks that no checkpoint names get a point each.
	for _, vm := range inv.VMs {
		now := map[*Layer]bool{}
		for _, p := range vm.Points {
			if p.IsNow {
				for _, pd := range p.Disks {
					now[pd.Layer] = true
				}
			}
		}
		for _, d := range vm.Disks {
			for _, l := range d.Layers {
				if claimed[l] || now[l] {
					continue
				}
				p := &Point{Name: stem(l.Path), Time: l.Mtime, Disks: []PointDisk{{Disk: d, Layer: l}}}
				if vm.Config != "" {
					p.Notes = append(p.Notes, "no checkpoint configuration names this disk file")
				}
				vm.Points = append(vm.Points, p)
			}
		}
		linkPoints(vm)
	}
	slices.SortFunc(inv.VMs, func(a, b *VM) int { return cmp.Compare(a.Name, b.Name) })
}

// linkPoints builds the point tree from the disks' parent links: a point's
// parent is the point whose layer (of a shared disk) is the nearest strict
// ancestor of its own. It also assigns stable, unique folder names.
func linkPoints(vm *VM) {
	slices.SortStableFunc(vm.Points, func(a, b *Point) int {
		if a.IsNow != b.IsNow { // Now last
			if a.IsNow {
				return 1
			}
			return -1
		}
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name+a.ID, b.Name+b.ID)
	})
	for _, p := range vm.Points {
		best, bestDepth := (*Point)(nil), -1
		for _, q := range vm.Points {
			if q == p || q.IsNow {
				continue
			}
			for _, pd := range p.Disks {
				for _, qd := range q.Disks {
					if pd.Disk != qd.Disk || pd.Layer == qd.Layer || !ancestorOf(qd.Layer, pd.Layer) {
						continue
					}
					if d := depth(qd.Layer); d > bestDepth {
						best, bestDepth = q, d
					}
				}
			}
		}
		p.Parent = best
		if best != nil {
			best.Children = append(best.Children, p)
		} else {
			vm.Roots = append(vm.Roots, p)
		}
	}
	used := map[string]bool{"by-file": true}
	for _, p := range vm.Points {
		p.Dir = unique(used, SafeName(p.Name))
	}
}

func depth(l *Layer) int {
	n := 0
	for x := l; x.Parent != nil; x = x.Parent {
		n++
	}
	return n
}

func latest(pds []PointDisk) time.Time {
	var t time.Time
	for _, pd := range pds {
		if pd.Layer.Mtime.After(t) {
			t = pd.Layer.Mtime
		}
	}
	return t
}

func diskNameOf(pds []PointDisk) string {
	if len(pds) == 0 {
		return "unknown"
	}
	return pds[0].Disk.Name
}

// winBase is the last component of a Windows or POSIX path.
func winBase(p string) string {
	if i := strings.LastIndexAny(p, `\/`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// SafeName makes a checkpoint name usable as a file name: "/" and NUL
// become "∕" and "_", a leading "." is kept visible, and over-long names
// are cut at a rune boundary.
func SafeName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '∕'
		case 0:
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		s = "_" + s
	}
	for len(s) > 200 {
		_, size := lastRune(s)
		s = s[:len(s)-size]
	}
	return s
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xC0 != 0x80 {
			return []rune(s[i:])[0], len(s) - i
		}
	}
	return 0, 1
}

var _ = errors.New
