//go:build !linux

package disk

import "os"

// writerDataSync makes the file's data and size durable.
func writerDataSync(f *os.File) error { return f.Sync() }

// writerLock is a no-op where flock(2) is not used.
func writerLock(f *os.File) error { return nil }
