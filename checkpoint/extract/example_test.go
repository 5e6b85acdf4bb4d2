package extract_test

import (
	"fmt"
	"log"
	"os"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/checkpoint/extract"
	"github.com/ckptfs/ckptfs/checkpoint/nav"
	"github.com/ckptfs/ckptfs/volume/probe"
)

// Copy one file out of the disk Disk.vhdx (one FAT partition) from Go: open the tree a mount would show, find the
// file as "POINT:PATH" and copy it.
func Example() {
	view, err := checkpoint.OpenView("Disk.vhdx", chain.Options{},
		checkpoint.FileTreeOptions{FileSystems: probe.Open})
	if err != nil {
		log.Fatal(err)
	}
	defer view.Close()

	// "Disk" is the point (the file's name); "/hello.txt" is a path in its
	// only file system.
	src, err := nav.Resolve(view.Root, "Disk:/HELLO.TXT")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := extract.Copy(src, "hello.txt", extract.Options{})
	if err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile("hello.txt")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d file, %d bytes: %s", src, sum.Files, sum.Bytes, b)
	// Output: Disk:/hello.txt: 1 file, 26 bytes: hello from the checkpoint
}
