package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/sirupsen/logrus"
)

// openWritable opens the chain ending at source and creates a new
// differencing layer on top of it, named as Hyper-V names checkpoint disks
// (<disk>_<GUID>.avhdx), in --layer-dir or source's folder. The tree shows
// every point read-only plus the new layer's point, writable. closeLayer
// closes the layer cleanly (or deletes it with --discard, or when the mount
// failed: failed is true).
func openWritable(source string, opts chain.Options, trees checkpoint.FileTreeOptions, mf mountFlags) (layer string, closeLayer func(failed bool) error, root *checkpoint.Node, err error) {
	if st, err := os.Stat(source); err == nil && st.IsDir() {
		return "", nil, nil, fmt.Errorf("%s is a folder; --rw needs the .vhdx/.avhdx file of the point to write on", source)
	}
	src, err := checkpoint.OpenSource(source, opts)
	if err != nil {
		return "", nil, nil, sourceError(source, err)
	}
	fail := func(err error) (string, func(bool) error, *checkpoint.Node, error) {
		src.Close()
		return "", nil, nil, err
	}
	c := src.Chains[0]
	leaf, ok := c.Leaf().(*disk.File)
	if !ok {
		return fail(fmt.Errorf("%s is a %s file: --rw writes only on VHDX chains; convert the chain first with `ckptfs export --format vhdx %s OUT.vhdx` and mount OUT.vhdx --rw (or mount without --rw)",
			source, c.Leaf().Format(), source))
	}
	points, err := src.FileTree(trees)
	if err != nil {
		return fail(err)
	}
	dir := mf.layerDir
	if dir == "" {
		dir = filepath.Dir(c.Links[0].Path)
	}
	diskName := stemOf(c.Base().Name())
	layer = filepath.Join(dir, diskName+"_"+strings.ToUpper(disk.NewGUID().String())+".avhdx")
	for _, l := range c.Links {
		if l.Path == layer {
			return fail(fmt.Errorf("%s: the new layer would replace a source file", layer))
		}
	}
	w, err := disk.CreateDifferencing(layer, disk.ParentInfoOf(leaf), disk.CreateOptions{Parent: c})
	if err != nil {
		hint := ""
		if errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "read-only") || strings.Contains(err.Error(), "not a directory") {
			hint = "; choose a writable folder with --layer-dir DIR"
		}
		return fail(fmt.Errorf("cannot create the writable layer: %w%s", err, hint))
	}
	wd := &checkpoint.WritableDisk{Chain: c.WithTop(w), W: w}
	top := checkpoint.WritablePointNode(stemOf(layer), diskName, wd, time.Now())
	root = checkpoint.Dir("", append(points, top)...)
	closeLayer = func(failed bool) error {
		err := w.Close()
		src.Close()
		if failed || mf.discard {
			if rerr := os.Remove(layer); rerr != nil && err == nil {
				err = rerr
			}
			logrus.Infof("removed the layer %s", layer)
			return err
		}
		if err != nil {
			return fmt.Errorf("closing the layer %s: %w", layer, err)
		}
		logrus.Infof("closed the layer %s cleanly", layer)
		return nil
	}
	return layer, closeLayer, root, nil
}

func stemOf(p string) string {
	b := filepath.Base(p)
	return strings.TrimSuffix(b, filepath.Ext(b))
}
