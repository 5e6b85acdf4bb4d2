package main

import (
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/sirupsen/logrus"
)

// Profiles of a mount daemon, for tuning (docs/mount.md): with
// CKPTFS_CPUPROFILE=FILE the daemon profiles its CPU from mounting to
// unmounting, with CKPTFS_MEMPROFILE=FILE it writes an allocation profile
// at unmount.

var cpuProfile *os.File

func startProfiles() {
	p := os.Getenv("CKPTFS_CPUPROFILE")
	if p == "" {
		return
	}
	f, err := os.Create(p)
	if err != nil {
		logrus.Warnf("CKPTFS_CPUPROFILE: %v", err)
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		logrus.Warnf("CKPTFS_CPUPROFILE: %v", err)
		f.Close()
		return
	}
	cpuProfile = f
}

func writeProfiles() {
	if cpuProfile != nil {
		pprof.StopCPUProfile()
		cpuProfile.Close()
	}
	p := os.Getenv("CKPTFS_MEMPROFILE")
	if p == "" {
		return
	}
	f, err := os.Create(p)
	if err != nil {
		logrus.Warnf("CKPTFS_MEMPROFILE: %v", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		logrus.Warnf("CKPTFS_MEMPROFILE: %v", err)
	}
}
