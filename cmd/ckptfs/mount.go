package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/fusefs"
	"github.com/ckptfs/ckptfs/volume/probe"
)

func init() {
	register("mount", command{
		summary: "mount every point of a chain, a folder of disks or a VM folder as raw disks, partitions and files; --rw writes through a new layer",
		usage:   "SOURCE MOUNTPOINT [-f] [--rw [--layer-dir DIR] [--discard]] [--allow-other] [--direct-io] [--no-splice] [--debug] [--log-file FILE] [--search-path DIR]... [--ignore-linkage]",
		run:     runMount,
	})
}

// mountFlags are the flags of `ckptfs mount`.
type mountFlags struct {
	chainFlags
	foreground bool
	allowOther bool
	debug      bool
	directIO   bool
	noSplice   bool
	logFile    string
	rw         bool
	layerDir   string
	discard    bool
}

func runMount(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("mount", stderr)
	var mf mountFlags
	mf.add(fl)
	fl.BoolVarP(&mf.foreground, "foreground", "f", false, "stay in the foreground, logging to stderr, until unmounted or interrupted")
	fl.BoolVar(&mf.allowOther, "allow-other", false, "let other users see the mount (non-root needs user_allow_other in /etc/fuse.conf)")
	fl.BoolVar(&mf.debug, "debug", false, "log every FUSE operation (use with -f or --log-file)")
	fl.BoolVar(&mf.noSplice, "no-splice", false, "copy file data through the daemon instead of splicing it to the kernel (slower; for comparisons)")
	fl.BoolVar(&mf.directIO, "direct-io", false, "bypass the page cache: faster for one pass over a disk, much slower for repeated or small reads")
	fl.StringVar(&mf.logFile, "log-file", "", "append the daemon's log to `FILE` (default: stderr with -f, discarded otherwise)")
	fl.BoolVar(&mf.rw, "rw", false, "make SOURCE's point writable through a new differencing layer (SOURCE must be a .vhdx/.avhdx file)")
	fl.StringVar(&mf.layerDir, "layer-dir", "", "create the --rw layer in `DIR` (default: SOURCE's folder)")
	fl.BoolVar(&mf.discard, "discard", false, "with --rw: delete the new layer on unmount instead of keeping it")
	if err := parse(fl, args, 2, 2); err != nil {
		return err
	}
	source, mnt := fl.Arg(0), fl.Arg(1)
	// The daemon runs in "/": resolve every path against the caller's folder.
	if (mf.layerDir != "" || mf.discard) && !mf.rw {
		return fmt.Errorf("%w: --layer-dir and --discard need --rw", errUsage)
	}
	for _, p := range append([]*string{&source, &mnt, &mf.layerDir}, stringPtrs(mf.searchPaths)...) {
		if *p == "" {
			continue
		}
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	if mf.debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	if mf.logFile != "" {
		f, err := os.OpenFile(mf.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		defer f.Close()
		logrus.SetOutput(f)
		logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	if isDaemonChild() {
		return daemonChild(func(ready func(error) error) error { return serveMount(source, mnt, mf, ready) })
	}
	if mf.foreground {
		return serveMount(source, mnt, mf, func(error) error { return nil })
	}
	return startDaemon(args, mf.logFile)
}

func stringPtrs(s []string) []*string {
	out := make([]*string, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}

// serveMount opens source, mounts it on mnt and serves until unmounted.
// ready is called once: with nil when the mount is usable, or with the
// error that prevented it (then serveMount returns that error too). If
// ready fails (the waiting parent went away), the mount is undone.
func serveMount(source, mnt string, mf mountFlags, ready func(error) error) (err error) {
	defer func() {
		if err != nil {
			ready(err)
		}
	}()
	absMnt, err := checkMountpoint(mnt)
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(serveProcs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)))
	startProfiles()
	start := time.Now()
	opts := chain.Options{SearchPaths: mf.searchPaths, IgnoreLinkage: mf.ignoreLinkage}
	trees := checkpoint.FileTreeOptions{FileSystems: probe.Open, Log: logrus.StandardLogger()}
	var root *checkpoint.Node
	if mf.rw {
		var w *checkpoint.Writable
		// err is serveMount's: the deferred close sees how the mount ended.
		w, err = checkpoint.OpenWritable(source, checkpoint.WritableOptions{Chain: opts, Tree: trees, LayerDir: mf.layerDir})
		if err != nil {
			return writableError(source, err)
		}
		defer func() {
			if cerr := closeWritable(w, err != nil || mf.discard); cerr != nil && err == nil {
				err = cerr
			}
		}()
		root = w.Root
		logrus.Infof("writable layer %s", w.Layer)
	} else {
		view, err := checkpoint.OpenView(source, opts, trees)
		if err != nil {
			return sourceError(source, err)
		}
		defer view.Close()
		root = view.Root
	}
	points := root.Children
	// Signals from now on unmount instead of killing a mounted daemon.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGHUP)
	defer signal.Stop(sigs)
	srv, err := fusefs.Mount(absMnt, root, fusefs.Options{
		AllowOther:  mf.allowOther,
		Debug:       mf.debug,
		FsName:      source,
		Writable:    mf.rw,
		ReadAheadKB: fusefs.ReadAhead >> 10,
		DirectIO:    mf.directIO,
		NoSplice:    mf.noSplice,
		Log:         logrus.StandardLogger(),
		ReaddirPlus: readdirPlusMode(os.Getenv("CKPTFS_READDIRPLUS")),
		NoMap:       os.Getenv("CKPTFS_NO_MMAP") != "",
		Readers:     envInt("CKPTFS_READERS"),
	})
	if err != nil {
		return mountError(absMnt, mf, err)
	}
	logrus.Infof("mounted %s on %s: %d folder(s), in %v", source, absMnt, len(points), time.Since(start).Round(time.Millisecond))
	if err := ready(nil); err != nil {
		logrus.Errorf("nobody is waiting for the mount (%v): unmounting", err)
		unmountServer(srv)
		srv.Wait()
		return nil
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	for {
		select {
		case <-done:
			st := srv.ReadStats()
			logrus.Infof("%s unmounted; READs of disk data: %d from mappings, %d spliced from one file, %d assembled from several, %d small ones read with pread, %d copied", absMnt, st.Mapped, st.FromFile, st.Assembled, st.Pread, st.Copied)
			writeProfiles()
			return nil
		case s := <-sigs:
			logrus.Infof("%v: unmounting %s", s, absMnt)
			go unmountServer(srv)
		}
	}
}

// minServeProcs is the least GOMAXPROCS a mount daemon runs with: two
// more than the goroutines that wait for requests on /dev/fuse
// (fusefs.DefaultReaders), so that a reader blocked in read keeps its P
// and the Go runtime neither takes it away nor wakes threads to find
// another (measured with tracepoints on the daemon: context switches per
// request fall by a third; see docs/mount.md).
const minServeProcs = fusefs.DefaultReaders + 2

// serveProcs is the GOMAXPROCS a mount daemon runs with: at least
// minServeProcs, unless the user set GOMAXPROCS (env) explicitly.
func serveProcs(env string, cur int) int {
	if env != "" {
		return cur
	}
	return max(cur, minServeProcs)
}

// unmountServer unmounts srv; when files are still open it detaches the mount
// lazily so the daemon can exit once they are closed.
func unmountServer(srv *fusefs.Server) {
	if err := srv.Unmount(); err != nil {
		logrus.Warnf("%v; detaching lazily (the mount goes away when its last file is closed)", err)
		if out, err := execCommand("fusermount3", "-u", "-z", srv.Dir); err != nil {
			logrus.Errorf("fusermount3 -u -z %s: %v: %s", srv.Dir, err, strings.TrimSpace(out))
		}
	}
}

// checkMountpoint returns the absolute mount point or an error saying what
// to do about it.
func checkMountpoint(mnt string) (string, error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("mount point %s does not exist; create it first (mkdir -p %s)", abs, abs)
	case errors.Is(err, syscall.ENOTCONN):
		return "", fmt.Errorf("mount point %s is a dead FUSE mount (%w); clean it up with fusermount3 -u %s", abs, err, abs)
	case err != nil:
		return "", fmt.Errorf("mount point: %w", err)
	case !st.IsDir():
		return "", fmt.Errorf("mount point %s is not a folder; give an empty folder", abs)
	}
	real := abs
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		real = r
	}
	if isMountpoint(real) {
		return "", fmt.Errorf("mount point %s is busy: something is already mounted there; unmount it first (fusermount3 -u %s) or use another folder", abs, abs)
	}
	return abs, nil
}

// isMountpoint reports whether dir is the mount point of a mount.
func isMountpoint(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// closeWritable closes the writable layer of a mount: keeps it, or deletes
// it when the mount failed or --discard asks so.
func closeWritable(w *checkpoint.Writable, discard bool) error {
	if discard {
		err := w.Discard()
		logrus.Infof("removed the layer %s", w.Layer)
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	logrus.Infof("closed the layer %s cleanly", w.Layer)
	return nil
}

// writableError adds to an error opening SOURCE with --rw what the user
// can do.
func writableError(source string, err error) error {
	switch {
	case errors.Is(err, checkpoint.ErrFolderSource):
		return fmt.Errorf("%s is a folder; --rw needs the .vhdx/.avhdx file of the point to write on", source)
	case errors.Is(err, checkpoint.ErrNotVHDXChain):
		return fmt.Errorf("%w; convert the chain first with `ckptfs export --format vhdx %s OUT.vhdx` and mount OUT.vhdx --rw (or mount without --rw)", err, source)
	case errors.Is(err, checkpoint.ErrCreateLayer) && (errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOTDIR)):
		return fmt.Errorf("%w; choose a writable folder with --layer-dir DIR", err)
	}
	return sourceError(source, err)
}

// sourceError adds to an error opening SOURCE what the user can do.
func sourceError(source string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe) && errors.Is(pe, fs.ErrNotExist) && sameName(pe.Path, source):
		return fmt.Errorf("%w; SOURCE must be a .vhdx/.avhdx file (or .vhd/.avhd) or a folder holding such files", err)
	case errors.Is(err, disk.ErrNotVHDX):
		return fmt.Errorf("%w; SOURCE must be a .vhdx/.avhdx file (or .vhd/.avhd) or a folder holding only such disk files", err)
	case errors.Is(err, checkpoint.ErrNoDisks):
		return fmt.Errorf("%w; give a folder holding the .vhdx and .avhdx (or .vhd and .avhd) files, or one such file", err)
	}
	// The daemon sends its error to the waiting parent as text: advise
	// here.
	return advise(err)
}

// sameName reports whether paths a and b name the same place.
func sameName(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == ab
}

// mountError explains a failed FUSE mount.
func mountError(mnt string, mf mountFlags, err error) error {
	msg := err.Error()
	switch {
	case mf.allowOther && strings.Contains(msg, "allow_other"):
		return fmt.Errorf("%w; add user_allow_other to /etc/fuse.conf or drop --allow-other", err)
	case strings.Contains(msg, "fusermount") && strings.Contains(msg, "not found"):
		return fmt.Errorf("%w; install fuse3 (fusermount3)", err)
	case strings.Contains(msg, "/dev/fuse"):
		return fmt.Errorf("%w; FUSE is not available here (modprobe fuse, or give the container /dev/fuse)", err)
	}
	return err
}

// readdirPlusMode reads the READDIRPLUS policy from CKPTFS_READDIRPLUS
// (adaptive, always, auto or off; for measurements).
func readdirPlusMode(s string) fusefs.ReaddirPlusMode {
	switch s {
	case "always":
		return fusefs.ReaddirPlusAlways
	case "auto":
		return fusefs.ReaddirPlusAuto
	case "off":
		return fusefs.ReaddirPlusOff
	}
	return fusefs.ReaddirPlusAdaptive
}

// envInt reads a whole number from the environment (0 when unset or not a
// number); for measurements.
func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}
