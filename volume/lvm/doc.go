// Package lvm reads LVM2 logical volumes in-process from the disks that hold
// their physical volumes, without device-mapper and without the lvm tools.
// It is read-only: it never writes to a disk.
//
// # Use
//
// For every disk or partition, Probe tells whether it is an LVM2 physical
// volume (PV) and ReadPV decodes it. Assemble groups the PVs of one machine
// into volume groups (VGs); each VG lists its user-visible logical volumes
// (LVs). An LV of a supported type has a reader (LV.Open) of the LV's exact
// size; any other LV carries a human-readable Reason and an Err.
//
// # On-disk structures
//
// Everything below is little-endian. Sizes and offsets in the binary
// structures are in bytes; in the metadata text they are in 512-byte
// sectors. The layouts are those of lvm2's lib/label/label.h (label header)
// and lib/format_text/layout.h (PV header, metadata area header, raw
// locations); lib/misc/crc.c defines the checksum; the text syntax is
// lvm2's configuration syntax (device_mapper/libdm-config.c) and the VG
// description it carries is written by lib/format_text/export.c and read
// by lib/format_text/import_vsn1.c. "pvck --dump headers" and
// "pvck --dump metadata_all" print these structures as the tools see them
// (the tests compare against both).
//
// Label header. One of the first four 512-byte sectors of a PV (normally
// sector 1) starts with a 32-byte label header: id "LABELONE" (8 bytes),
// sector_xl (u64, the number of the sector it sits in), crc_xl (u32),
// offset_xl (u32, where the label's contents start inside the sector,
// normally 32) and type "LVM2 001" (8 bytes). crc_xl covers the sector from
// the byte after crc_xl (offset 20) to the end of the 512-byte sector.
//
// PV header. At offset_xl follows the PV header: pv_uuid (32 ASCII
// characters, shown by the tools in groups 6-4-4-4-4-4-6 joined by dashes),
// device_size_xl (u64), then two lists of disk locations (u64 offset, u64
// size), each ended by an entry whose offset is zero: first the data areas
// (one, at the first physical extent, normally with size 0 meaning "to the
// end of the device"), then the metadata areas (zero, one or two). Newer
// lvm2 versions append a PV header extension: version (u32, 2 today),
// flags (u32, bit 0 = PV in use by a VG) and a third list, the bootloader
// areas. An extension version of 0 means there is none.
//
// Metadata area header (mda_header). Each metadata area starts with a
// 512-byte header: checksum_xl (u32, over the remaining 508 bytes), magic
// "\x20LVM2 x[5A%r0N*>" (16 bytes), version (u32, 1), start (u64, the
// area's own byte offset on the PV) and size (u64, the area's size
// including the header), then a list of raw locations ended by an entry
// whose offset is zero.
//
// Raw location (raw_locn): offset (u64, from the start of the metadata
// area), size (u64, of the metadata text including its terminating NUL),
// checksum (u32, over the text) and flags (u32, bit 0 = the area is
// ignored, "pvchange --metadataignore"). Entry 0 locates the committed
// metadata; entry 1, when non-zero, a precommitted copy that was never
// committed (ignored here).
//
// Circular buffer. The bytes of a metadata area after its header form a
// ring. Each commit writes the whole VG description after the previous one
// (aligned to 512 bytes); a text that runs past the end of the area
// continues right after the header. The tools then rewrite the header to
// point at the new text, so older copies stay in the ring until
// overwritten. ReadPV reads the committed copy of every metadata area,
// checks its checksum and keeps the highest seqno; when no committed copy
// is valid it scans the ring for older complete copies that name this PV
// (those carry no checksum of their own) and says so in PV.Warnings.
//
// Checksum. All three checksums are lvm2's CRC-32: the reflected IEEE
// polynomial 0xEDB88320, initial value 0xf597a6cf, no final inversion.
//
// Metadata text. A sequence of "key = value" assignments and
// "name { ... }" sections; values are integers, floats, double-quoted
// strings with backslash escapes, or "[ ... ]" arrays of those separated by
// commas; "#" starts a comment. The top level has contents = "Text Format
// Volume Group", version = 1, a few descriptive keys and one section named
// after the VG, holding id, seqno, extent_size (sectors),
// physical_volumes { pvN { id, pe_start, pe_count, ... } } and
// logical_volumes { name { id, status, segmentN { start_extent,
// extent_count, type, ... } } }. A linear segment has type "striped" with
// stripe_count = 1; areas name a PV ("pv0") or another LV, each followed by
// its first extent.
//
// # Supported LVs
//
// Linear and striped segments, in any number and any order on disk, on any
// PVs; raid1 and mirror LVs are read from one complete leg (the first whose
// PVs are all present and that is not being rebuilt). Thin, thin-pool,
// snapshot, cache, writecache, vdo, integrity and the other raid levels are
// listed with a Reason and no reader. Hidden LVs (pool metadata, raid and
// mirror legs, ...) are not listed.
package lvm
