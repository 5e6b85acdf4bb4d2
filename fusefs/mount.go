package fusefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Logger receives the mount's diagnostics. logrus's loggers implement it.
type Logger interface {
	Debugf(format string, args ...any)
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Options control a mount.
type Options struct {
	// AllowOther lets other users see the mount (needs user_allow_other
	// in /etc/fuse.conf when not root).
	AllowOther bool
	// Debug logs every FUSE operation at debug level to Log.
	Debug bool
	// Log receives diagnostics (a folder that cannot be listed, a read
	// error) and, with Debug, the operation log. Nil discards them.
	Log Logger
	// FsName is shown as the mount's source in /proc/mounts and df.
	FsName string
	// Timeout is the kernel's entry and attribute cache timeout; 0 means
	// one hour (the tree never changes while mounted).
	Timeout time.Duration
	// ReadAheadKB, when positive, is written to the mount's bdi
	// read_ahead_kb after mounting, so that sequential reads arrive as
	// 1 MiB requests instead of 128 KiB ones. It needs root; failure is
	// only logged.
	ReadAheadKB int
	// UID and GID own every node not from a volume.FS; 0 means the
	// mounting process's IDs.
	UID, GID uint32
	// DirectIO reads files with direct I/O: each read goes to the daemon
	// straight into the reader's buffer, nothing is cached. A single pass
	// over a disk is faster this way; repeated and small reads are much
	// slower. By default files are read through the page cache, kept
	// across opens.
	DirectIO bool
	// NoSplice copies every read through the daemon's memory instead of
	// splicing file data to the kernel (see splice.go); for comparisons
	// and troubleshooting.
	NoSplice bool
	// NoMap answers READs of disk data by splicing instead of writing
	// them from mappings of the layer files (mapped.go); for comparisons.
	NoMap bool
	// Writable mounts read-write, so that nodes with a Writer accept
	// writes; every other node still refuses them with EROFS.
	Writable bool
	// SelfAccess says the mounting program will itself open files in the
	// mount (tests do). Mount then first makes the kernel stop sending
	// POLL, which would otherwise deadlock it (see pollhack.go). A mount
	// daemon must not set it: the probe is a request to its own mount,
	// and a daemon killed during one cannot exit.
	SelfAccess bool
	// Readers is how many goroutines read and answer requests
	// (DefaultReaders when 0).
	Readers int
	// ReaddirPlus chooses how folders are listed: ReaddirPlusAdaptive
	// (the default) gives the attributes of files to the processes that
	// stat what they list (plus.go), ReaddirPlusAlways answers every
	// listing with the attributes of its entries, ReaddirPlusAuto lets the
	// kernel ask for them only while a program also looks names up,
	// ReaddirPlusOff never sends them.
	ReaddirPlus ReaddirPlusMode
}

// ReaddirPlusMode is the READDIRPLUS policy of a mount.
type ReaddirPlusMode int

// READDIRPLUS policies (see Options.ReaddirPlus).
const (
	ReaddirPlusAdaptive ReaddirPlusMode = iota
	ReaddirPlusAlways
	ReaddirPlusAuto
	ReaddirPlusOff
)

// MaxRead is the largest READ (and WRITE) request asked of the kernel:
// 512 KiB, the largest that can be spliced through a default-sized pipe.
const MaxRead = 512 << 10

// ReadAhead is the read-ahead a mount asks for (Options.ReadAheadKB, as
// root): four READs of MaxRead in flight keep the daemon busy while the
// reader copies (measured: 512 KiB of read-ahead is ~10% slower).
const ReadAhead = 4 * MaxRead

// Server is a mounted tree.
type Server struct {
	sess *session
	fs   *rawFS
	// Dir is the absolute mount point.
	Dir string
}

// Unmount unmounts the tree. It fails with EBUSY while files are open.
func (s *Server) Unmount() error {
	s.sess.closed.Store(true)
	if err := unmount(s.Dir); err != nil {
		s.sess.closed.Store(false)
		return fmt.Errorf("unmounting %s: %w", s.Dir, err)
	}
	return nil
}

// ReadStats tells how READs of disk data were answered so far.
func (s *Server) ReadStats() ReadStats { return s.fs.splicer.stats() }

// Inodes is the number of inodes the kernel holds references to: it grows
// as the tree is walked and shrinks when the kernel forgets them.
func (s *Server) Inodes() int { return s.fs.inodes.len() }

// Lookups is the number of LOOKUP requests answered so far: what walking
// the tree cost beyond its listings.
func (s *Server) Lookups() int64 { return s.fs.lookups.Load() }

// Wait returns when the file system is unmounted (by Unmount or by
// `fusermount3 -u`).
func (s *Server) Wait() {
	s.sess.readers.Wait()
	s.sess.closeOnce.Do(func() {
		syscall.Close(s.sess.fd)
		if m := s.fs.splicer.maps; m != nil {
			m.close()
		}
	})
}

// DefaultReaders is how many goroutines read requests when
// Options.Readers is 0.
const DefaultReaders = 4

// Mount mounts root on dir (which must be an existing folder) and serves
// it until unmounted. root must be a folder.
func Mount(dir string, root *checkpoint.Node, opts Options) (*Server, error) {
	if root == nil || kindOf(root) != syscall.S_IFDIR || root.FS != nil {
		return nil, errors.New("fusefs: the root must be a plain folder")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	rfs := newRawFS(root, opts)
	fsName := opts.FsName
	if fsName == "" {
		fsName = "ckptfs"
	}
	fd, err := mountFD(abs, fsName, !opts.Writable, opts.AllowOther)
	if err != nil {
		return nil, fmt.Errorf("mounting on %s: %w", abs, err)
	}
	sess := &session{fd: fd, fs: rfs, log: rfs.log, debug: opts.Debug, maxWrite: MaxRead, readAhead: MaxRead}
	switch opts.ReaddirPlus {
	case ReaddirPlusAdaptive, ReaddirPlusAlways:
		sess.capsMask = fuse.CAP_READDIRPLUS
	case ReaddirPlusAuto:
		sess.capsMask = fuse.CAP_READDIRPLUS | fuse.CAP_READDIRPLUS_AUTO
	}
	readers := opts.Readers
	if readers <= 0 {
		readers = DefaultReaders
	}
	sess.serve(readers)
	<-sess.initDone
	s := &Server{sess: sess, fs: rfs, Dir: abs}
	if sess.initErr != nil {
		s.Unmount()
		s.Wait()
		return nil, fmt.Errorf("mounting on %s: %w", abs, sess.initErr)
	}
	if opts.SelfAccess {
		if err := pollProbe(abs); err != nil {
			rfs.log.Debugf("poll probe: %v", err)
		}
	}
	if opts.ReadAheadKB > 0 {
		if err := setReadAhead(abs, opts.ReadAheadKB); err != nil {
			rfs.log.Debugf("read_ahead_kb not raised: %v", err)
		}
	}
	return s, nil
}

// setReadAhead writes kb to the bdi read_ahead_kb of the file system
// mounted at dir.
func setReadAhead(dir string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// nopLogger discards everything.
type nopLogger struct{}

func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}
