// Command genvm writes an example Hyper-V VM folder (two disks, a branched
// checkpoint tree, binary configurations) into the folder given.
package main

import (
	"fmt"
	"os"

	"github.com/ckptfs/ckptfs/checkpoint/vmtest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genvm DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fx, err := vmtest.Build(os.Args[1], 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(fx.Root)
}
