// Command testsum turns the `go test -json` stream on stdin into one line
// per package, as each package finishes:
//
//	ok    github.com/ckptfs/ckptfs/chain      102.9s   cpu   74.4s   peak  1773 MiB
//	FAIL  github.com/ckptfs/ckptfs/disk        12.0s   cpu   20.1s   peak   301 MiB
//
// followed, for a failed package, by the output of its failed tests (or
// of the whole package when it failed outside a test). While packages run
// it prints a line every minute, so CI never goes quiet for long.
//
// Peak memory and CPU time come from the file named by -rss, where the
// go test -exec wrapper scripts/testexec appends one line per test binary:
// "<import path> <binary> <max RSS KiB> <user s> <sys s>". A package whose
// binary (or a program it ran) peaks above -max-rss MiB fails the run.
//
// It exits 1 when a package or test failed, or a build failed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// event is one line of test2json output.
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string // build-output events
}

// pkg is what is kept of one package.
type pkg struct {
	out     []string            // output outside tests
	tests   map[string][]string // output by test
	failed  []string            // failed tests, in order
	started time.Time
}

// usage is what the -exec wrapper recorded for one test binary.
type usage struct {
	rssKiB    int64
	user, sys float64
}

func main() {
	rssFile := flag.String("rss", "", "file the go test -exec wrapper appends peak RSS and CPU time to")
	maxRSS := flag.Int64("max-rss", 2048, "fail a package whose test binary peaks above this many MiB (0: no limit)")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, *rssFile, *maxRSS))
}

func run(in io.Reader, w io.Writer, rssFile string, maxRSS int64) int {
	var mu sync.Mutex
	pkgs := map[string]*pkg{}
	start := time.Now()
	done := 0
	bad := false
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				fmt.Fprintf(w, "…     %d package(s) done, %s\n", done, time.Since(start).Round(time.Second))
				mu.Unlock()
			}
		}
	}()
	get := func(name string) *pkg {
		p := pkgs[name]
		if p == nil {
			p = &pkg{tests: map[string][]string{}, started: time.Now()}
			pkgs[name] = p
		}
		return p
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			// Not an event (a build error printed by go test itself).
			mu.Lock()
			fmt.Fprintln(w, string(line))
			if strings.HasPrefix(string(line), "FAIL") {
				bad = true
			}
			mu.Unlock()
			continue
		}
		mu.Lock()
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Action == "build-fail":
			bad = true
		case e.Package == "":
		case e.Action == "output" && e.Test != "":
			p := get(e.Package)
			p.tests[e.Test] = append(p.tests[e.Test], e.Output)
		case e.Action == "output":
			p := get(e.Package)
			p.out = append(p.out, e.Output)
		case e.Action == "fail" && e.Test != "":
			p := get(e.Package)
			p.failed = append(p.failed, e.Test)
		case e.Action == "pass" && e.Test != "", e.Action == "skip" && e.Test != "":
			delete(get(e.Package).tests, e.Test)
		case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
			done++
			p := get(e.Package)
			u := readUsage(rssFile, e.Package)
			status := map[string]string{"pass": "ok", "fail": "FAIL", "skip": "?"}[e.Action]
			over := maxRSS > 0 && u.rssKiB > maxRSS<<10
			if over && status == "ok" {
				status = "FAIL"
			}
			line := fmt.Sprintf("%-5s %-54s %6.1fs", status, e.Package, e.Elapsed)
			if u.rssKiB > 0 {
				line += fmt.Sprintf("   cpu %6.1fs   peak %5d MiB", u.user+u.sys, u.rssKiB>>10)
			}
			if e.Action == "skip" {
				line = fmt.Sprintf("%-5s %-54s [no test files]", status, e.Package)
			}
			fmt.Fprintln(w, line)
			if over {
				fmt.Fprintf(w, "      peak memory %d MiB is above the limit of %d MiB per process\n", u.rssKiB>>10, maxRSS)
				bad = true
			}
			if e.Action == "fail" {
				bad = true
				printFailure(w, p)
			}
			delete(pkgs, e.Package)
		}
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsum: reading go test output: %v\n", err)
		bad = true
	}
	fmt.Fprintf(w, "%d package(s) in %s\n", done, time.Since(start).Round(time.Second))
	if bad {
		return 1
	}
	return 0
}

// printFailure prints the output of a failed package's failed tests, or
// all its output when no test failed (a panic, a timeout, TestMain).
func printFailure(w io.Writer, p *pkg) {
	if len(p.failed) == 0 {
		for _, o := range p.out {
			fmt.Fprint(w, "      "+o)
		}
		return
	}
	// Subtests fail with their parents: print the deepest ones' output
	// under their own names, and a parent's own output too.
	sort.Strings(p.failed)
	for _, t := range p.failed {
		for _, o := range p.tests[t] {
			fmt.Fprint(w, "      "+o)
		}
	}
	for _, o := range p.out {
		if strings.HasPrefix(o, "panic") || strings.Contains(o, "timed out") {
			fmt.Fprint(w, "      "+o)
		}
	}
}

// readUsage finds the usage the -exec wrapper recorded for package
// importPath's test binary.
func readUsage(file, importPath string) usage {
	if file == "" {
		return usage{}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return usage{}
	}
	var u usage
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != importPath {
			continue
		}
		u.rssKiB, _ = strconv.ParseInt(f[2], 10, 64)
		u.user, _ = strconv.ParseFloat(f[3], 64)
		u.sys, _ = strconv.ParseFloat(f[4], 64)
	}
	return u
}
