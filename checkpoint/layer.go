package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
)

// Errors of OpenWritable; test with errors.Is.
var (
	// ErrFolderSource means a folder was given where a writable layer
	// needs the .vhdx/.avhdx file of the point to write on.
	ErrFolderSource = errors.New("a writable layer needs the .vhdx/.avhdx file of the point to write on, not a folder")
	// ErrCreateLayer wraps why the new layer file could not be created
	// (test the error also for fs.ErrPermission, syscall.EROFS, ...).
	ErrCreateLayer = errors.New("cannot create the writable layer")
	// ErrNotVHDXChain means the point to write on is not a VHDX file
	// (a VHD chain): layers are written as VHDX only.
	ErrNotVHDXChain = errors.New("a writable layer goes only on a VHDX chain")
)

// WritableOptions tune OpenWritable.
type WritableOptions struct {
	// Chain says how parents are found.
	Chain chain.Options
	// Tree tunes the read-only points' folders.
	Tree FileTreeOptions
	// LayerDir is the folder of the new layer; "" is the folder of the
	// source file.
	LayerDir string
}

// Writable is the chain ending at a disk file, opened with a new
// differencing layer on top of it: the writable view `ckptfs mount --rw`
// shows. The source files are only read; writes go to the new layer
// (through its log, so a crash leaves a layer that opens).
type Writable struct {
	// Layer is the path of the new layer file, named as Hyper-V names
	// checkpoint disks: <disk>_<GUID>.avhdx.
	Layer string
	// Root is the tree to show (see Root): a folder per point of the
	// chain, read-only, plus the folder of the new layer's point (named
	// after the layer file), whose disk and partitions are writable (see
	// WritablePointNode).
	Root *Node

	w   *disk.Writer
	src *Source
}

// OpenWritable opens the chain ending at the disk file source and creates
// a new differencing layer on top of it, in opts.LayerDir. Close keeps the
// layer, closed cleanly; Discard deletes it.
func OpenWritable(source string, opts WritableOptions) (*Writable, error) {
	if st, err := os.Stat(source); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s: %w", source, ErrFolderSource)
	}
	src, err := OpenSource(source, opts.Chain)
	if err != nil {
		return nil, err
	}
	c := src.Chains[0]
	leaf, ok := c.Leaf().(*disk.File)
	if !ok {
		src.Close()
		return nil, fmt.Errorf("%s is a %s file: %w", source, c.Leaf().Format(), ErrNotVHDXChain)
	}
	points, err := src.FileTree(opts.Tree)
	if err != nil {
		src.Close()
		return nil, err
	}
	dir := opts.LayerDir
	if dir == "" {
		dir = filepath.Dir(c.Links[0].Path)
	}
	diskName := stem(c.Base().Name())
	layer := filepath.Join(dir, diskName+"_"+strings.ToUpper(disk.NewGUID().String())+".avhdx")
	for _, l := range c.Links {
		if l.Path == layer {
			src.Close()
			return nil, fmt.Errorf("%s: the new layer would replace a source file", layer)
		}
	}
	w, err := disk.CreateDifferencing(layer, disk.ParentInfoOf(leaf), disk.CreateOptions{Parent: c})
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("%w: %w", ErrCreateLayer, err)
	}
	wd := &WritableDisk{Chain: c.WithTop(w), W: w}
	top := WritablePointNode(stem(layer), diskName, wd, time.Now())
	return &Writable{Layer: layer, Root: Root(append(points, top)...), w: w, src: src}, nil
}

// Close closes the layer cleanly, keeping it, and the source files.
func (w *Writable) Close() error {
	err := w.w.Close()
	w.src.Close()
	if err != nil {
		return fmt.Errorf("closing the layer %s: %w", w.Layer, err)
	}
	return nil
}

// Discard closes the layer and the source files and deletes the layer.
func (w *Writable) Discard() error {
	err := w.w.Close()
	w.src.Close()
	if rerr := os.Remove(w.Layer); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
