package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
	"github.com/ckptfs/ckptfs/disk/vhd"
)

func init() {
	register("info", command{
		summary: "describe one VHDX/AVHDX (or VHD/AVHD) file: type, sizes, GUIDs, parent locator, log, block states",
		usage:   "FILE [--json]",
		run:     runInfo,
	})
}

// fileInfo is the JSON form of `ckptfs info`.
type fileInfo struct {
	File               string            `json:"file"`
	Format             string            `json:"format"`
	Type               string            `json:"type"`
	FileSize           int64             `json:"file_size"`
	VirtualSize        int64             `json:"virtual_size"`
	BlockSize          int64             `json:"block_size"`
	LogicalSectorSize  int64             `json:"logical_sector_size"`
	PhysicalSectorSize uint32            `json:"physical_sector_size"`
	Creator            string            `json:"creator"`
	VirtualDiskID      string            `json:"virtual_disk_id"`
	FileWriteGUID      string            `json:"file_write_guid"`
	DataWriteGUID      string            `json:"data_write_guid"`
	CurrentHeader      int               `json:"current_header"`
	HeaderSequence     uint64            `json:"header_sequence"`
	ParentLocator      map[string]string `json:"parent_locator,omitempty"`
	Log                logInfo           `json:"log"`
	Blocks             map[string]int64  `json:"blocks"`
	Warnings           []string          `json:"warnings,omitempty"`
}

type logInfo struct {
	GUID         string `json:"guid,omitempty"`
	Offset       uint64 `json:"offset"`
	Length       uint32 `json:"length"`
	Replayed     bool   `json:"replayed"`
	Entries      int    `json:"entries,omitempty"`
	Descriptors  int    `json:"descriptors,omitempty"`
	HeadSequence uint64 `json:"head_sequence,omitempty"`
	Note         string `json:"note,omitempty"`
}

func describe(f *disk.File) fileInfo {
	m := f.Metadata
	fi := fileInfo{
		File: f.Name(), Format: f.Format(), Type: f.Type().String(), FileSize: f.FileSize(), VirtualSize: f.VirtualSize(),
		BlockSize: f.BlockSize(), LogicalSectorSize: f.SectorSize(), PhysicalSectorSize: m.PhysicalSectorSize,
		Creator: f.Identifier.Creator, VirtualDiskID: m.VirtualDiskID.String(),
		FileWriteGUID: f.Header.FileWriteGUID.String(), DataWriteGUID: f.Header.DataWriteGUID.String(),
		CurrentHeader: f.CurrentHeader, HeaderSequence: f.Header.SequenceNumber,
		Log: logInfo{Offset: f.Log.Offset, Length: f.Log.Length, Replayed: f.Log.Replayed,
			Entries: f.Log.Entries, Descriptors: f.Log.Descriptors, HeadSequence: f.Log.HeadSequence, Note: f.Log.Note},
		Blocks:   map[string]int64{},
		Warnings: f.Warnings,
	}
	if !f.Log.GUID.IsZero() {
		fi.Log.GUID = f.Log.GUID.String()
	}
	if pl := m.ParentLocator; pl != nil {
		fi.ParentLocator = map[string]string{}
		for _, e := range pl.Entries {
			fi.ParentLocator[e.Key] = e.Value
		}
	}
	for st, n := range f.StateCounts() {
		fi.Blocks[st.String()] = n
	}
	return fi
}

func runInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("info", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 1, 1); err != nil {
		return err
	}
	img, err := chain.OpenImage(fs.Arg(0))
	if err != nil {
		return err
	}
	defer img.Close()
	if v, ok := img.(*vhd.File); ok {
		return infoVHD(v, *asJSON, stdout)
	}
	f := img.(*disk.File)
	fi := describe(f)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(fi)
	}
	w := stdout
	fmt.Fprintf(w, "File:                 %s\n", fi.File)
	fmt.Fprintf(w, "Format:               VHDX\n")
	fmt.Fprintf(w, "Type:                 %s\n", fi.Type)
	fmt.Fprintf(w, "Virtual size:         %s (%d bytes)\n", human(fi.VirtualSize), fi.VirtualSize)
	fmt.Fprintf(w, "File size:            %s (%d bytes)\n", human(fi.FileSize), fi.FileSize)
	fmt.Fprintf(w, "Block size:           %s\n", human(fi.BlockSize))
	fmt.Fprintf(w, "Sector size:          %d logical, %d physical\n", fi.LogicalSectorSize, fi.PhysicalSectorSize)
	fmt.Fprintf(w, "Creator:              %s\n", fi.Creator)
	fmt.Fprintf(w, "Virtual disk ID:      %s\n", fi.VirtualDiskID)
	fmt.Fprintf(w, "FileWriteGuid:        %s\n", fi.FileWriteGUID)
	fmt.Fprintf(w, "DataWriteGuid:        %s\n", fi.DataWriteGUID)
	fmt.Fprintf(w, "Current header:       %d (sequence %d)\n", fi.CurrentHeader, fi.HeaderSequence)
	if fi.ParentLocator != nil {
		fmt.Fprintln(w, "Parent locator:")
		keys := make([]string, 0, len(fi.ParentLocator))
		for k := range fi.ParentLocator {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-20s %s\n", k+":", fi.ParentLocator[k])
		}
	}
	switch {
	case f.Log.Replayed:
		fmt.Fprintf(w, "Log:                  dirty; replayed in memory (%d entries, %d descriptors, head sequence %d); the file was not modified\n",
			fi.Log.Entries, fi.Log.Descriptors, fi.Log.HeadSequence)
	case fi.Log.Note != "":
		fmt.Fprintf(w, "Log:                  %s\n", fi.Log.Note)
	default:
		fmt.Fprintf(w, "Log:                  clean (%s at offset %d)\n", human(int64(fi.Log.Length)), fi.Log.Offset)
	}
	fmt.Fprintln(w, "Payload blocks:")
	for _, st := range []disk.BlockState{disk.BlockFullyPresent, disk.BlockPartiallyPresent, disk.BlockNotPresent, disk.BlockZero, disk.BlockUnmapped, disk.BlockUndefined} {
		if n := fi.Blocks[st.String()]; n > 0 {
			fmt.Fprintf(w, "  %-20s %d\n", st.String()+":", n)
		}
	}
	for _, warn := range fi.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warn)
	}
	return nil
}

// human formats a byte count with binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
