// Command pincache keeps files in the page cache while a benchmark runs:
// it maps each file read-only, locks the mapping in memory (mlock(2), which
// also reads every page in), creates the -ready file, and holds the pages
// until it gets SIGINT or SIGTERM, or its parent exits. (It does not watch
// its standard input: scripts start it with </dev/null, whose end of file
// would release the pages at once.)
//
// scripts/bench uses it so that "sources in the page cache" stays true
// during a measurement: the VMs this project runs on reclaim page cache in
// the background (tens of MB/s), which turned some first reads into disk
// reads. The files are opened O_RDONLY and mapped PROT_READ; nothing is
// written to them.
//
//	pincache -ready /tmp/pinned FILE...
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	ready := flag.String("ready", "", "file to create once every file is locked in memory")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: pincache [-ready FILE] FILE...")
		os.Exit(2)
	}
	// Ask for SIGTERM when the parent dies, so that a killed benchmark
	// does not leave gigabytes locked; then see whether it already has.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	parent := os.Getppid()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "pincache: prctl:", err)
		os.Exit(1)
	}
	if os.Getppid() != parent {
		os.Exit(1)
	}
	var total int64
	for _, name := range flag.Args() {
		n, err := pin(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pincache:", err)
			os.Exit(1)
		}
		total += n
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, fmt.Appendf(nil, "%d\n", total), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "pincache:", err)
			os.Exit(1)
		}
	}
	<-sigs
}

// pin maps name and locks the mapping; the mapping stays until exit.
func pin(name string) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() == 0 {
		return 0, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("%s: mmap: %w", name, err)
	}
	if err := unix.Mlock(m); err != nil {
		return 0, fmt.Errorf("%s: mlock %d bytes: %w", name, len(m), err)
	}
	return st.Size(), nil
}
