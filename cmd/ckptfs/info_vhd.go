package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/disk/vhd"
)

// vhdInfo is the JSON form of `ckptfs info` for a VHD file. The fields it
// shares with fileInfo (VHDX) have the same names.
type vhdInfo struct {
	File              string            `json:"file"`
	Format            string            `json:"format"`
	Type              string            `json:"type"`
	FileSize          int64             `json:"file_size"`
	VirtualSize       int64             `json:"virtual_size"`
	BlockSize         int64             `json:"block_size"`
	LogicalSectorSize int64             `json:"logical_sector_size"`
	Creator           string            `json:"creator"`
	FooterCopy        string            `json:"footer_copy"` // "end" or "offset 0"
	Footer            vhdFooterInfo     `json:"footer"`
	DynamicHeader     *vhdHeaderInfo    `json:"dynamic_header,omitempty"`
	ParentLocator     map[string]string `json:"parent_locator,omitempty"`
	Blocks            map[string]int64  `json:"blocks"`
	Warnings          []string          `json:"warnings,omitempty"`
}

type vhdFooterInfo struct {
	Features       uint32 `json:"features"`
	FormatVersion  string `json:"format_version"`
	DataOffset     uint64 `json:"data_offset"`
	TimeStamp      uint32 `json:"time_stamp"`
	Time           string `json:"time"`
	CreatorApp     string `json:"creator_application"`
	CreatorVersion string `json:"creator_version"`
	CreatorHostOS  string `json:"creator_host_os"`
	OriginalSize   uint64 `json:"original_size"`
	CurrentSize    uint64 `json:"current_size"`
	Cylinders      uint16 `json:"cylinders"`
	Heads          uint8  `json:"heads"`
	SectorsPerTrk  uint8  `json:"sectors_per_track"`
	CHSCapacity    int64  `json:"chs_capacity"`
	DiskType       string `json:"disk_type"`
	Checksum       string `json:"checksum"`
	UniqueID       string `json:"unique_id"`
	SavedState     bool   `json:"saved_state"`
}

type vhdHeaderInfo struct {
	Offset          uint64           `json:"offset"`
	TableOffset     uint64           `json:"table_offset"`
	HeaderVersion   string           `json:"header_version"`
	MaxTableEntries uint32           `json:"max_table_entries"`
	BlockSize       uint32           `json:"block_size"`
	BitmapSize      int64            `json:"bitmap_size"`
	Checksum        string           `json:"checksum"`
	ParentUniqueID  string           `json:"parent_unique_id,omitempty"`
	ParentTimeStamp uint32           `json:"parent_time_stamp,omitempty"`
	ParentTime      string           `json:"parent_time,omitempty"`
	ParentName      string           `json:"parent_name,omitempty"`
	Locators        []vhdLocatorInfo `json:"parent_locators,omitempty"`
}

type vhdLocatorInfo struct {
	Entry      int    `json:"entry"`
	Code       string `json:"platform_code"`
	DataSpace  uint32 `json:"data_space"`
	DataLength uint32 `json:"data_length"`
	DataOffset uint64 `json:"data_offset"`
	Path       string `json:"path,omitempty"`
}

func vhdVersion(v uint32) string { return fmt.Sprintf("%d.%d", v>>16, v&0xffff) }

func describeVHD(f *vhd.File) (vhdInfo, error) {
	ft := f.Footer
	fi := vhdInfo{
		File: f.Name(), Format: f.Format(), Type: f.Type().String(), FileSize: f.FileSize(), VirtualSize: f.VirtualSize(),
		BlockSize: f.BlockSize(), LogicalSectorSize: f.SectorSize(),
		Creator:    fmt.Sprintf("%q %s on %q", ft.CreatorApp, vhdVersion(ft.CreatorVersion), ft.CreatorHostOS),
		FooterCopy: "end",
		Footer: vhdFooterInfo{
			Features: ft.Features, FormatVersion: vhdVersion(ft.FormatVersion), DataOffset: ft.DataOffset,
			TimeStamp: ft.TimeStamp, Time: vhd.Time(ft.TimeStamp).Format("2006-01-02 15:04:05 UTC"),
			CreatorApp: ft.CreatorApp, CreatorVersion: vhdVersion(ft.CreatorVersion), CreatorHostOS: ft.CreatorHostOS,
			OriginalSize: ft.OriginalSize, CurrentSize: ft.CurrentSize,
			Cylinders: ft.Geometry.Cylinders, Heads: ft.Geometry.Heads, SectorsPerTrk: ft.Geometry.SectorsPerTrack, CHSCapacity: ft.Geometry.Capacity(),
			DiskType: ft.DiskType.String(), Checksum: fmt.Sprintf("0x%08x", ft.Checksum), UniqueID: ft.UniqueID.String(), SavedState: ft.SavedState != 0,
		},
		Warnings: f.Warnings,
	}
	if f.FooterFromHead {
		fi.FooterCopy = "offset 0"
	}
	if h := f.Header; h != nil {
		hi := &vhdHeaderInfo{
			Offset: ft.DataOffset, TableOffset: h.TableOffset, HeaderVersion: vhdVersion(h.HeaderVersion), MaxTableEntries: h.MaxTableEntries,
			BlockSize: h.BlockSize, BitmapSize: f.BitmapSize(), Checksum: fmt.Sprintf("0x%08x", h.Checksum),
		}
		if ft.DiskType == vhd.TypeDifferencing {
			hi.ParentUniqueID, hi.ParentTimeStamp = h.ParentUniqueID.String(), h.ParentTimeStamp
			hi.ParentTime, hi.ParentName = vhd.Time(h.ParentTimeStamp).Format("2006-01-02 15:04:05 UTC"), h.ParentName
		}
		for i, l := range h.Locators {
			if l.Code != vhd.PlatformNone {
				hi.Locators = append(hi.Locators, vhdLocatorInfo{Entry: i + 1, Code: l.Code.String(), DataSpace: l.DataSpace, DataLength: l.DataLength, DataOffset: l.DataOffset, Path: l.Path})
			}
		}
		fi.DynamicHeader = hi
	}
	if ref, err := f.Parent(); err == nil && ref != nil {
		fi.ParentLocator = map[string]string{}
		for _, e := range ref.Entries {
			fi.ParentLocator[e.Key] = e.Value
		}
	}
	blocks, err := f.BlockStates()
	if err != nil {
		return fi, err
	}
	fi.Blocks = blocks
	return fi, nil
}

// infoVHD prints `ckptfs info` of a VHD file.
func infoVHD(f *vhd.File, asJSON bool, w io.Writer) error {
	fi, err := describeVHD(f)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(fi)
	}
	ft := fi.Footer
	fmt.Fprintf(w, "File:                 %s\n", fi.File)
	fmt.Fprintf(w, "Format:               VHD (Virtual PC / Hyper-V 2008 R2), version %s\n", ft.FormatVersion)
	fmt.Fprintf(w, "Type:                 %s\n", fi.Type)
	fmt.Fprintf(w, "Virtual size:         %s (%d bytes, the footer's Current Size)\n", human(fi.VirtualSize), fi.VirtualSize)
	fmt.Fprintf(w, "Original size:        %s (%d bytes)\n", human(int64(ft.OriginalSize)), ft.OriginalSize)
	fmt.Fprintf(w, "File size:            %s (%d bytes)\n", human(fi.FileSize), fi.FileSize)
	fmt.Fprintf(w, "Geometry (C/H/S):     %d/%d/%d (%d bytes)\n", ft.Cylinders, ft.Heads, ft.SectorsPerTrk, ft.CHSCapacity)
	fmt.Fprintf(w, "Sector size:          512\n")
	fmt.Fprintf(w, "Creator:              %s\n", fi.Creator)
	fmt.Fprintf(w, "Time stamp:           %s (%d)\n", ft.Time, ft.TimeStamp)
	fmt.Fprintf(w, "Unique ID:            %s\n", ft.UniqueID)
	fmt.Fprintf(w, "Footer:               copy at the %s used; features 0x%08x, checksum %s, saved state %v\n", map[string]string{"end": "end of the file", "offset 0": "offset 0 (the end copy is damaged)"}[fi.FooterCopy], ft.Features, ft.Checksum, ft.SavedState)
	if h := fi.DynamicHeader; h != nil {
		fmt.Fprintf(w, "Dynamic header:       at %d, version %s, checksum %s\n", h.Offset, h.HeaderVersion, h.Checksum)
		fmt.Fprintf(w, "Block size:           %s (sector bitmap %d bytes)\n", human(int64(h.BlockSize)), h.BitmapSize)
		fmt.Fprintf(w, "BAT:                  %d entries at %d\n", h.MaxTableEntries, h.TableOffset)
		if h.ParentUniqueID != "" {
			fmt.Fprintf(w, "Parent unique ID:     %s\n", h.ParentUniqueID)
			fmt.Fprintf(w, "Parent time stamp:    %s (%d)\n", h.ParentTime, h.ParentTimeStamp)
			fmt.Fprintf(w, "Parent name:          %s\n", h.ParentName)
		}
		if len(h.Locators) > 0 {
			fmt.Fprintln(w, "Parent locators:")
			for _, l := range h.Locators {
				fmt.Fprintf(w, "  %d %-4s  %s  (%d bytes at %d, space %d)\n", l.Entry, l.Code, l.Path, l.DataLength, l.DataOffset, l.DataSpace)
			}
		}
	} else {
		fmt.Fprintf(w, "Block size:           %s (fixed disk: no BAT; the data is the file minus its footer)\n", human(fi.BlockSize))
	}
	fmt.Fprintln(w, "Blocks:")
	keys := make([]string, 0, len(fi.Blocks))
	for k := range fi.Blocks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-27s %d\n", k+":", fi.Blocks[k])
	}
	for _, warn := range fi.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", strings.TrimSpace(warn))
	}
	return nil
}
