//go:build linux

package disk

import (
	"fmt"
	"os"
	"syscall"
)

// writerDataSync makes the file's data durable, and its size with it
// (fdatasync(2) flushes the metadata needed to read the data back).
func writerDataSync(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// writerLock takes an exclusive advisory lock on the file so that two
// processes never write the same layer.
func writerLock(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := sc.Control(func(fd uintptr) {
		lerr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
	}); err != nil {
		return err
	}
	if lerr == syscall.EWOULDBLOCK {
		return fmt.Errorf("%s is already open for writing by another process", f.Name())
	}
	if lerr != nil {
		return &os.PathError{Op: "flock", Path: f.Name(), Err: lerr}
	}
	return nil
}
