package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
)

func init() {
	register("ls", command{
		summary: "show the checkpoints of a VM folder (or folder of disks) as a tree, like Hyper-V Manager",
		usage:   "SOURCE [--search-path DIR]... [--ignore-linkage] [--json]",
		run:     runLs,
	})
}

type lsPoint struct {
	Name     string     `json:"name"`
	Folder   string     `json:"folder"`
	ID       string     `json:"id,omitempty"`
	Time     *time.Time `json:"time,omitempty"`
	Now      bool       `json:"now,omitempty"`
	Config   string     `json:"config,omitempty"`
	Disks    []lsDisk   `json:"disks"`
	Notes    []string   `json:"notes,omitempty"`
	Children []*lsPoint `json:"children,omitempty"`
}

type lsDisk struct {
	Disk       string `json:"disk"`
	File       string `json:"file"`
	Controller string `json:"controller,omitempty"`
	OwnBytes   int64  `json:"own_bytes"`
}

type lsLayer struct {
	File     string `json:"file"`
	Parent   string `json:"parent,omitempty"`
	OwnBytes int64  `json:"own_bytes"`
	Error    string `json:"error,omitempty"`
}

type lsVM struct {
	Name        string     `json:"name"`
	ID          string     `json:"id,omitempty"`
	Config      string     `json:"config,omitempty"`
	Disks       []string   `json:"disks"`
	Checkpoints []*lsPoint `json:"checkpoints"`
	Notes       []string   `json:"notes,omitempty"`
}

type lsOutput struct {
	Root     string    `json:"root"`
	VMs      []lsVM    `json:"vms"`
	Layers   []lsLayer `json:"layers"`
	Warnings []string  `json:"warnings,omitempty"`
}

func toLs(inv *checkpoint.Inventory) lsOutput {
	// The warnings about layers whose chain cannot be built are their
	// errors' texts: give them the advice the errors get.
	advised := map[string]string{}
	for _, l := range inv.Layers {
		if l.Err != nil {
			advised[l.Err.Error()] = advise(l.Err).Error()
		}
	}
	out := lsOutput{Root: inv.Root}
	for _, w := range inv.Warnings {
		if a, ok := advised[w]; ok {
			w = a
		}
		out.Warnings = append(out.Warnings, w)
	}
	var conv func(p *checkpoint.Point) *lsPoint
	conv = func(p *checkpoint.Point) *lsPoint {
		lp := &lsPoint{Name: p.Name, Folder: p.Dir, ID: p.ID, Now: p.IsNow, Config: p.Config, Notes: p.Notes}
		if !p.Time.IsZero() {
			t := p.Time
			lp.Time = &t
		}
		for _, pd := range p.Disks {
			lp.Disks = append(lp.Disks, lsDisk{Disk: pd.Disk.Name, File: pd.Layer.Path, Controller: pd.Controller, OwnBytes: pd.Layer.OwnBytes})
		}
		for _, c := range p.Children {
			lp.Children = append(lp.Children, conv(c))
		}
		return lp
	}
	for _, vm := range inv.VMs {
		v := lsVM{Name: vm.Name, ID: vm.ID, Config: vm.Config, Notes: vm.Notes}
		for _, d := range vm.Disks {
			v.Disks = append(v.Disks, d.Name)
		}
		for _, r := range vm.Roots {
			v.Checkpoints = append(v.Checkpoints, conv(r))
		}
		out.VMs = append(out.VMs, v)
	}
	for _, l := range inv.Layers {
		x := lsLayer{File: l.Path, OwnBytes: l.OwnBytes}
		if l.Parent != nil {
			x.Parent = l.Parent.Path
		}
		if l.Err != nil {
			x.Error = advise(l.Err).Error()
		}
		out.Layers = append(out.Layers, x)
	}
	return out
}

func runLs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ls", stderr)
	var cf chainFlags
	cf.add(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 1, 1); err != nil {
		return err
	}
	src := fs.Arg(0)
	if st, err := os.Stat(src); err == nil && !st.IsDir() {
		return fmt.Errorf("%s is a file; ls takes a folder (use `ckptfs chain %s` for one file)", src, src)
	}
	inv, err := checkpoint.Discover(src, chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage})
	if err != nil {
		return err
	}
	defer inv.Close()
	out := toLs(inv)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for i, vm := range out.VMs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s", vm.Name)
		if vm.ID != "" {
			fmt.Fprintf(stdout, "  {%s}", vm.ID)
		}
		fmt.Fprintf(stdout, "  disks: %s\n", strings.Join(vm.Disks, ", "))
		for _, n := range vm.Notes {
			fmt.Fprintf(stdout, "  (%s)\n", n)
		}
		for j, p := range vm.Checkpoints {
			printPoint(stdout, p, "", j == len(vm.Checkpoints)-1)
		}
	}
	for _, w := range out.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	return nil
}

func printPoint(w io.Writer, p *lsPoint, indent string, last bool) {
	branch, next := "├─ ", "│  "
	if last {
		branch, next = "└─ ", "   "
	}
	when := ""
	if p.Time != nil && !p.Now {
		when = "  " + p.Time.Local().Format("02.01.2006 15:04:05")
	}
	var files []string
	for _, d := range p.Disks {
		files = append(files, fmt.Sprintf("%s (%s)", baseName(d.File), human(d.OwnBytes)))
	}
	fmt.Fprintf(w, "%s%s%s%s  [%s]\n", indent, branch, p.Name, when, strings.Join(files, ", "))
	for _, n := range p.Notes {
		fmt.Fprintf(w, "%s%s  (%s)\n", indent, next, n)
	}
	for i, c := range p.Children {
		printPoint(w, c, indent+next, i == len(p.Children)-1)
	}
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
