package lvm

import "hash/crc32"

// crcInitial is lvm2's INITIAL_CRC.
const crcInitial = 0xf597a6cf

// lvmCRC is lvm2's calc_crc: the reflected IEEE CRC-32 started from
// initial, with no inversion on entry or exit. hash/crc32 inverts on both
// sides, so the inversions cancel out.
func lvmCRC(initial uint32, b []byte) uint32 {
	return ^crc32.Update(^initial, crc32.IEEETable, b)
}
