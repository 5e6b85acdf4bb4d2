// Package vmconfig reads Hyper-V virtual machine and checkpoint
// configuration files.
//
// Two on-disk formats produce the same Tree of typed keys:
//
//   - The binary key-value storage of Windows Server 2016 and later
//     (.vmcx configurations, .vmrs runtime state, .vsv saved state): two
//     4 KiB header copies, an object table at offset 8192, key tables of
//     typed entries linked to their parent nodes, values of 2048 bytes or
//     more in separate file objects, and CRC-32 (IEEE) checksums. The layout
//     follows openvmm's support/hvs_file/FORMAT.md, cross-checked against
//     dissect.hypervisor; see Parse.
//   - The XML of Windows Server 2012 R2 and earlier, usually UTF-16LE, where
//     elements carry type="string|integer|bool|bytes"; see ParseXML.
//
// Load detects the format from the content and extracts a VMConfig: name,
// GUID, creation time, checkpoint status and the attached virtual disks.
//
// The reader is read-only and never trusts the input: every count, size and
// offset is bounded, corrupt input yields a *FormatError wrapping one of the
// sentinel errors (ErrBadChecksum, ErrTruncated, ErrBadSignature, ...), and
// damage that leaves the data usable is reported in Tree.Warnings. The
// replay log is checked but not replayed.
package vmconfig
