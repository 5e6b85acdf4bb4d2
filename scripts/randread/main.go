// Command randread measures random reads of a file: -threads goroutines
// each pread -bs bytes at random -bs-aligned offsets for -time, then it
// prints the throughput in MB/s (10^6 bytes per second) and the IOPS.
//
//	randread -threads 4 -bs 4096 -time 3s FILE
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	threads := flag.Int("threads", 4, "concurrent readers")
	bs := flag.Int("bs", 4096, "bytes per read")
	dur := flag.Duration("time", 3*time.Second, "how long to read")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: randread [-threads N] [-bs BYTES] [-time D] FILE")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "randread:", err)
		os.Exit(1)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fmt.Fprintln(os.Stderr, "randread:", err)
		os.Exit(1)
	}
	blocks := st.Size() / int64(*bs)
	if blocks < 1 {
		fmt.Fprintln(os.Stderr, "randread: file smaller than one read")
		os.Exit(1)
	}
	var ops atomic.Int64
	var failed atomic.Value
	stop := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for t := 0; t < *threads; t++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			buf := make([]byte, *bs)
			for n := 0; ; n++ {
				if n%64 == 0 && time.Now().After(stop) {
					return
				}
				if _, err := f.ReadAt(buf, rng.Int63n(blocks)*int64(*bs)); err != nil {
					failed.Store(err)
					return
				}
				ops.Add(1)
			}
		}(int64(t) + 1)
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, "randread:", err)
		os.Exit(1)
	}
	el := time.Since(start).Seconds()
	n := ops.Load()
	fmt.Printf("%.1f MB/s %.0f IOPS\n", float64(n)*float64(*bs)/el/1e6, float64(n)/el)
}
