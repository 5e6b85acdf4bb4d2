package checkpoint

import (
	"encoding/json"
	"os"
	"time"

	"github.com/ckptfs/ckptfs/chain"
)

// View is what a mount of a source shows, as plain data.
type View struct {
	Root  *Node
	close func() error
}

// Close releases the source's files.
func (v *View) Close() error { return v.close() }

// OpenView computes the tree a mount of path shows:
//   - a disk file, or a folder of disks without Hyper-V
//     configurations: one folder per chain point (BuildFileTree);
//   - a folder with configurations (an exported VM, a host's VM folder):
//     one folder per checkpoint named as Hyper-V names it (BuildVMTree),
//     plus by-file/.
func OpenView(path string, opts chain.Options, tree FileTreeOptions) (*View, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		inv, err := Discover(path, opts)
		if err != nil {
			return nil, err
		}
		hasConfig := false
		for _, vm := range inv.VMs {
			hasConfig = hasConfig || vm.Config != "" || len(vm.Points) > 0 && vm.Points[0].Config != ""
		}
		if hasConfig {
			for _, l := range inv.Layers {
				if l.Err != nil {
					inv.Close()
					return nil, l.Err
				}
			}
			var chains []*chain.Chain
			for _, l := range inv.Layers {
				chains = append(chains, l.Chain)
			}
			logWarnings(tree.log(), chains)
			return &View{Root: Root(BuildVMTree(inv, tree)...), close: inv.Close}, nil
		}
		inv.Close()
	}
	src, err := OpenSource(path, opts)
	if err != nil {
		return nil, err
	}
	logWarnings(tree.log(), src.Chains)
	nodes, err := src.FileTree(tree)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &View{Root: Root(nodes...), close: src.Close}, nil
}

// logWarnings logs, once each, what is wrong with the chains' files but
// does not stop reading them (chain.Link.Warnings: a VHD footer read from
// its mirror, a parent time stamp that differs...).
func logWarnings(log Logger, chains []*chain.Chain) {
	seen := map[string]bool{}
	for _, c := range chains {
		if c == nil {
			continue
		}
		for _, l := range c.Links {
			for _, w := range l.Warnings {
				if !seen[w] {
					seen[w] = true
					log.Warnf("%s", w)
				}
			}
		}
	}
}

// pointInfo is the content of a point folder's .checkpoint.json.
type pointInfo struct {
	Name         string      `json:"name"`
	ID           string      `json:"id,omitempty"`
	Time         *time.Time  `json:"time,omitempty"`
	Now          bool        `json:"now,omitempty"`
	VM           string      `json:"vm"`
	VMID         string      `json:"vm_id,omitempty"`
	Config       string      `json:"config,omitempty"`
	Parent       string      `json:"parent,omitempty"`
	ParentFolder string      `json:"parent_folder,omitempty"`
	Disks        []pointDisk `json:"disks"`
	Notes        []string    `json:"notes,omitempty"`
}

type pointDisk struct {
	Disk       string `json:"disk"`
	File       string `json:"file"`
	Controller string `json:"controller,omitempty"`
}

// BuildVMTree computes the folders of a VM-folder mount:
//
//	<checkpoint>/                one per point (checkpoints, "Now", layers no
//	  .checkpoint.json           configuration names): name, time, VM, disks, parent
//	  <disk>.raw                 every disk of the VM at that point
//	  <disk>.partitions/...
//	by-file/<layer file stem>/   one per disk file, as for a single-file mount
//
// With several VMs each gets a folder of its own (by its name) holding its
// points; by-file/ stays at the top.
func BuildVMTree(inv *Inventory, opts FileTreeOptions) []*Node {
	var out []*Node
	vmFolders := len(inv.VMs) > 1
	usedVM := map[string]bool{"by-file": true}
	for _, vm := range inv.VMs {
		var points []*Node
		for _, p := range vm.Points {
			points = append(points, vmPointNode(vm, p, opts))
		}
		if vmFolders {
			out = append(out, Dir(unique(usedVM, SafeName(vm.Name)), points...))
		} else {
			out = append(out, points...)
		}
	}
	byFile := Dir("by-file")
	used := map[string]bool{}
	for _, l := range inv.Layers {
		if l.Chain == nil || l.Disk == nil {
			continue
		}
		byFile.Children = append(byFile.Children, pointNode(unique(used, stem(l.Path)), l.Disk.Name, l.Path, l.Chain, opts))
	}
	return append(out, byFile)
}

func vmPointNode(vm *VM, p *Point, opts FileTreeOptions) *Node {
	info := pointInfo{Name: p.Name, ID: p.ID, Now: p.IsNow, VM: vm.Name, VMID: vm.ID, Config: p.Config, Notes: p.Notes}
	if !p.Time.IsZero() {
		t := p.Time
		info.Time = &t
	}
	if p.Parent != nil {
		info.Parent, info.ParentFolder = p.Parent.Name, p.Parent.Dir
	}
	d := Dir(p.Dir)
	d.Mtime = p.Time
	for _, pd := range p.Disks {
		info.Disks = append(info.Disks, pointDisk{Disk: pd.Disk.Name, File: pd.Layer.Path, Controller: pd.Controller})
		n := pointNode("", pd.Disk.Name, pd.Layer.Path, pd.Layer.Chain, opts)
		d.Children = append(d.Children, n.Children...)
	}
	js, _ := json.MarshalIndent(info, "", "  ")
	meta := Bytes(".checkpoint.json", append(js, '\n'))
	meta.Mtime = p.Time
	d.Children = append([]*Node{meta}, d.Children...)
	return d
}
