//go:build race

package testutil

// Race reports whether the race detector is on. It makes every byte a
// test copies or compares some ten times dearer: tests that move many
// bytes without concurrency scale down under it (Scale), and run at full
// size without it (CKPTFS_LONG=1 go test ./..., see Long).
const Race = true
