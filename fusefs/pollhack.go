package fusefs

import (
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The poll probe.
//
// Go registers every file it opens with its poller (epoll_ctl), and for a
// FUSE file the kernel then asks the daemon (POLL) while the opening
// thread holds one of the Go scheduler's Ps. A program that both serves a
// mount and opens files in it (the tests do) can so end up with every P
// waiting for an answer that none is left to give. Right after INIT, Mount
// therefore (with Options.SelfAccess) opens a hidden file of the root and
// polls it once: the POLL is answered ENOSYS, and the kernel never asks
// again. A separate mount daemon opens nothing in its own mount and needs
// no probe.

// pollName is the hidden name of the probe in the root; it is never
// listed.
const pollName = ".ckptfs-poll-probe"

// pollNode is the probe's node ID.
const pollNode = ^uint64(0)

// pollAttr fills the probe's attributes: an empty regular file.
func pollAttr(a *fuse.Attr) {
	*a = fuse.Attr{Ino: pollNode, Mode: syscall.S_IFREG | 0o444, Nlink: 1}
}

// pollProbe triggers the one POLL of the mount at dir.
func pollProbe(dir string) error {
	fd, err := syscall.Open(filepath.Join(dir, pollName), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	return err
}
