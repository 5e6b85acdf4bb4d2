package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The FUSE device protocol (Linux include/uapi/linux/fuse.h): what this
// package answers of it, and how a mount is made.

// Request opcodes.
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opSetattr     = 4
	opReadlink    = 5
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opStatfs      = 17
	opRelease     = 18
	opFsync       = 20
	opGetxattr    = 22
	opListxattr   = 23
	opFlush       = 25
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opInterrupt   = 36
	opDestroy     = 38
	opBatchForget = 42
	opReaddirplus = 44
)

// opNames names the opcodes for the debug log.
var opNames = map[uint32]string{
	opLookup: "LOOKUP", opForget: "FORGET", opGetattr: "GETATTR", opSetattr: "SETATTR",
	opReadlink: "READLINK", opOpen: "OPEN", opRead: "READ", opWrite: "WRITE", opStatfs: "STATFS",
	opRelease: "RELEASE", opFsync: "FSYNC", opGetxattr: "GETXATTR", opListxattr: "LISTXATTR",
	opFlush: "FLUSH", opInit: "INIT", opOpendir: "OPENDIR", opReaddir: "READDIR",
	opReleasedir: "RELEASEDIR", opInterrupt: "INTERRUPT", opDestroy: "DESTROY",
	opBatchForget: "BATCH_FORGET", opReaddirplus: "READDIRPLUS",
}

// opName names an opcode.
func opName(op uint32) string {
	if s, ok := opNames[op]; ok {
		return s
	}
	return "opcode " + strconv.FormatUint(uint64(op), 10)
}

// protoMinor is the protocol minor version answered when the kernel
// offers it or more: 7.31 has everything used here (READDIRPLUS 7.21,
// MAX_PAGES and CACHE_SYMLINKS 7.28, NO_OPENDIR_SUPPORT 7.29,
// EXPLICIT_INVAL_DATA 7.30). minProtoMinor is the least accepted (Linux
// 3.9): the reply structures used have had their current sizes since.
const (
	protoMajor    = 7
	protoMinor    = 31
	minProtoMinor = 21
)

// outHeaderSize is the size of struct fuse_out_header.
const outHeaderSize = 16

// mountFD mounts a FUSE file system on dir and returns the /dev/fuse
// descriptor that serves it: with mount(2) when running as root, else
// through fusermount3 (which must be installed, set-uid root). opts are
// the mount options besides those each way sets itself.
func mountFD(dir, fsName string, readOnly, allowOther bool) (int, error) {
	var opts []string
	if readOnly {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	opts = append(opts, "nosuid", "nodev", "default_permissions", "max_read="+itoa(MaxRead))
	if allowOther {
		opts = append(opts, "allow_other")
	}
	if os.Geteuid() == 0 {
		fd, err := mountDirect(dir, fsName, readOnly, allowOther)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, syscall.EPERM) {
			return -1, err
		}
	}
	opts = append(opts, "fsname="+escapeOption(fsName), "subtype=ckptfs")
	return fusermount(dir, strings.Join(opts, ","))
}

// mountDirect mounts with mount(2).
func mountDirect(dir, fsName string, readOnly, allowOther bool) (int, error) {
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=%o,user_id=%d,group_id=%d,default_permissions,max_read=%d", fd, syscall.S_IFDIR, os.Getuid(), os.Getgid(), MaxRead)
	if allowOther {
		data += ",allow_other"
	}
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount(fsName, dir, "fuse.ckptfs", flags, data); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("mount(2) on %s: %w", dir, err)
	}
	return fd, nil
}

// escapeOption escapes commas in a mount option's value, as fusermount3
// expects.
func escapeOption(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// fusermount mounts through fusermount3, which passes the descriptor back
// over a socket (the _FUSE_COMMFD protocol).
func fusermount(dir, opts string) (int, error) {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		return -1, fmt.Errorf("fusermount3 not found (install fuse3): %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socketpair: %w", err)
	}
	local, remote := os.NewFile(uintptr(fds[0]), "fusermount-local"), os.NewFile(uintptr(fds[1]), "fusermount-remote")
	defer local.Close()
	cmd := exec.Command(bin, "-o", opts, "--", dir)
	cmd.Env = append(os.Environ(), "_FUSE_COMMFD=3")
	cmd.ExtraFiles = []*os.File{remote}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	remote.Close()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return -1, &FusermountError{Msg: msg}
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(local.Fd()), buf, oob, 0)
	if err != nil {
		return -1, fmt.Errorf("receiving the /dev/fuse descriptor from fusermount3: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return -1, errors.New("fusermount3 sent no /dev/fuse descriptor")
	}
	rights, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) == 0 {
		return -1, errors.New("fusermount3 sent no /dev/fuse descriptor")
	}
	unix.CloseOnExec(rights[0])
	return rights[0], nil
}

// FusermountError is fusermount3's own account of why it could not mount
// (e.g. "option allow_other only allowed if 'user_allow_other' is set in
// /etc/fuse.conf").
type FusermountError struct{ Msg string }

func (e *FusermountError) Error() string { return "fusermount3: " + e.Msg }

// unmount unmounts dir: with umount(2) as root, else with fusermount3 -u.
func unmount(dir string) error {
	if os.Geteuid() == 0 {
		err := syscall.Unmount(dir, 0)
		if err == nil || !errors.Is(err, syscall.EPERM) {
			return err
		}
	}
	out, err := exec.Command("fusermount3", "-u", "--", dir).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return fmt.Errorf("%s: %w", msg, syscall.EBUSY)
		}
		return fmt.Errorf("fusermount3 -u: %s: %w", msg, err)
	}
	return nil
}

// errnoStatus is the negative errno a reply carries.
func errnoStatus(e syscall.Errno) int32 { return -int32(e) }

// itoa is strconv.Itoa, short.
func itoa(n int) string { return strconv.Itoa(n) }
