// Command rawlayer writes a differencing AVHDX holding the sectors where
// two raw images differ: the layer a checkpoint would have recorded if a
// guest had turned old into new. old and new are images of the same region
// of the disk (a whole disk, or a partition at -offset).
//
//	rawlayer -parent Disk.vhdx -old p0.img -new p1.img -offset 1048576 -out Disk_<GUID>.avhdx
//
// The parent may be any VHDX/AVHDX (made by qemu-img, Hyper-V or
// vhdxtest); it is only read for its identity and geometry. Used by
// scripts/bench-files.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhdxtest"
)

func main() {
	parent := flag.String("parent", "", "the parent VHDX/AVHDX")
	oldP := flag.String("old", "", "raw image before")
	newP := flag.String("new", "", "raw image after")
	offset := flag.Int64("offset", 0, "where the images lie on the virtual disk (bytes)")
	out := flag.String("out", "", "the AVHDX to write (must not exist)")
	flag.Parse()
	if *parent == "" || *oldP == "" || *newP == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*parent, *oldP, *newP, *offset, *out); err != nil {
		fmt.Fprintln(os.Stderr, "rawlayer:", err)
		os.Exit(1)
	}
}

func run(parentPath, oldPath, newPath string, offset int64, out string) error {
	pf, err := disk.Open(parentPath)
	if err != nil {
		return err
	}
	stub := vhdxtest.New(vhdxtest.Options{VirtualSize: pf.VirtualSize(), SectorSize: uint32(pf.SectorSize())})
	stub.DataWriteGUID = pf.Header.DataWriteGUID
	stub.VirtualDiskID = pf.Metadata.VirtualDiskID
	ss := int(pf.SectorSize())
	pf.Close()
	im := vhdxtest.New(vhdxtest.Options{Parent: stub, ParentPath: parentPath})
	a, err := os.Open(oldPath)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := os.Open(newPath)
	if err != nil {
		return err
	}
	defer b.Close()
	const chunk = 4 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	changed := int64(0)
	for pos := int64(0); ; pos += chunk {
		na, errA := io.ReadFull(a, ba)
		nb, errB := io.ReadFull(b, bb)
		if nb == 0 {
			break
		}
		if na < nb {
			clear(ba[na:nb])
		}
		for s := 0; s < nb; {
			if bytes.Equal(ba[s:min(s+ss, nb)], bb[s:min(s+ss, nb)]) {
				s += ss
				continue
			}
			e := s + ss
			for e < nb && !bytes.Equal(ba[e:min(e+ss, nb)], bb[e:min(e+ss, nb)]) {
				e += ss
			}
			data := bb[s:min(e, nb)]
			if len(data)%ss != 0 {
				data = append(append([]byte(nil), data...), make([]byte, ss-len(data)%ss)...)
			}
			im.Write(offset+pos+int64(s), data)
			changed += int64(len(data))
			s = e
		}
		if errB != nil || errA != nil && errA != io.ErrUnexpectedEOF && errA != io.EOF {
			break
		}
	}
	if err := im.Save(out); err != nil {
		return err
	}
	fmt.Printf("%s: %d changed bytes\n", out, changed)
	return nil
}
