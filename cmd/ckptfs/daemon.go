package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// The daemon is the same binary run again with daemonEnv set: the parent
// waits on a pipe (the child's fd 3) for "ok" or "error: <reason>", so it
// returns only once the mount is usable, or fails with the reason it is
// not. The child runs in its own session with no terminal, in "/".
const (
	daemonEnv   = "CKPTFS_DAEMON"
	daemonReady = "ok"
	daemonErr   = "error: "
)

// isDaemonChild reports whether this process is the re-executed daemon.
func isDaemonChild() bool { return os.Getenv(daemonEnv) == "1" }

// startDaemon re-executes the binary as a daemon running `mount args` and
// waits until it reports the mount ready or failed.
func startDaemon(args []string, logFile string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to start the daemon: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, append([]string{"mount"}, args...)...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if logFile != "" {
		// Panics and anything else written to stderr land in the log.
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			w.Close()
			return fmt.Errorf("log file: %w", err)
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the daemon: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(r)
	s := strings.TrimSpace(string(msg))
	switch {
	case s == daemonReady:
		return cmd.Process.Release()
	case strings.HasPrefix(s, daemonErr):
		cmd.Wait()
		return errors.New(strings.TrimPrefix(s, daemonErr))
	}
	werr := cmd.Wait()
	if werr == nil {
		werr = errors.New("no reason given")
	}
	hint := ""
	if logFile != "" {
		hint = "; see " + logFile
	}
	return fmt.Errorf("the mount daemon exited before the mount was ready: %w%s", werr, hint)
}

// daemonChild runs serve in the daemon: serve calls ready once, with nil
// when the mount is usable or with the error that stops it; ready passes
// that to the waiting parent through fd 3. ready returns an error when the
// parent cannot be told (it went away), and serve then unmounts.
func daemonChild(serve func(ready func(error) error) error) error {
	os.Unsetenv(daemonEnv) // not for the programs the daemon runs
	var st syscall.Stat_t
	if err := syscall.Fstat(3, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return fmt.Errorf("%s is set but fd 3 is not the readiness pipe; unset %s", daemonEnv, daemonEnv)
	}
	pipe := os.NewFile(3, "ready")
	// Paths were made absolute before; do not keep any folder busy.
	_ = os.Chdir("/")
	var once sync.Once
	var werr error
	ready := func(err error) error {
		once.Do(func() {
			msg := daemonReady + "\n"
			if err != nil {
				// One line: the parent prints it as the command's error.
				msg = daemonErr + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
			}
			_, werr = pipe.Write([]byte(msg))
			if cerr := pipe.Close(); werr == nil {
				werr = cerr
			}
		})
		return werr
	}
	err := serve(ready)
	if err != nil {
		ready(err)
	}
	return err
}

// execCommand runs a command and returns its combined output.
func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
