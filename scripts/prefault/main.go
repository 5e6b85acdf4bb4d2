// Command prefault writes to MIB mebibytes of fresh anonymous memory and
// gives them back, so that the page-cache pages the next read allocates
// are pages the host is already backing.
//
// scripts/bench runs it right before each timed read of a fresh mount.
// The VMs this project runs on hand freed memory back to the host (virtio
// free page reporting), and the first write to such a page afterwards is
// slow: 0.2 to 2 s per GiB, varying from run to run. Every FUSE first
// read writes that much into fresh page-cache pages, so without this the
// run-to-run noise of the machine's memory swamps what is being measured.
// Pages freed moments ago are taken first by the allocator and are not
// reported for a few seconds, which is what makes this work. It costs the
// same to every tool measured.
//
//	prefault 1536
package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: prefault MIB")
		os.Exit(2)
	}
	mib, err := strconv.Atoi(os.Args[1])
	if err != nil || mib < 0 || mib > 1<<20 {
		fmt.Fprintf(os.Stderr, "prefault: %q is not a size in MiB\n", os.Args[1])
		os.Exit(2)
	}
	if mib == 0 {
		return
	}
	m, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prefault: mmap:", err)
		os.Exit(1)
	}
	page := os.Getpagesize()
	for i := 0; i < len(m); i += page {
		m[i] = 1
	}
	if err := unix.Munmap(m); err != nil {
		fmt.Fprintln(os.Stderr, "prefault: munmap:", err)
		os.Exit(1)
	}
}
