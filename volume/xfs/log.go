package xfs

// Log constants.
const (
	logMagic          = 0xFEEDBABE // xlog_rec_header magic
	logUnmountTrans   = 0x20       // xlog_op_header flag of an unmount record
	logHeaderCycle    = 32 << 10   // bytes of record data one header block describes
	logVersion2       = 0x2
	logBackScanChunk  = 128  // basic blocks read at a time when scanning back
	logBackScanBlocks = 4096 // how far back from the head a record header is sought
)

// logDirty reports whether the internal log needs recovery: it finds the
// head (where the cycle stamped into each 512-byte basic block drops) and
// checks that the record just before it is a lone unmount record that
// ends exactly at the head. Anything it cannot read or decide counts as
// dirty. An external log (sb_logstart 0) is not checked.
func (f *FS) logDirty() bool {
	if f.logStart == 0 {
		return false
	}
	start, _ := f.fsbToBlock(f.logStart)
	base := int64(start) * f.bs
	n := int64(f.logBlocks) * f.bs / 512
	if n < 2 {
		return true
	}
	readBBs := func(i, count int64) ([]byte, bool) {
		b := make([]byte, count*512)
		return b, readFull(f.r, b, base+i*512) == nil
	}
	cycle := func(i int64) (uint32, bool) {
		b, ok := readBBs(i, 1)
		if !ok {
			return 0, false
		}
		if be32(b) == logMagic {
			return be32(b[4:]), true
		}
		return be32(b), true
	}
	first, ok1 := cycle(0)
	last, ok2 := cycle(n - 1)
	if !ok1 || !ok2 {
		return true
	}
	head := int64(0) // the whole log has one cycle: the head is at its end
	if first != last {
		// Blocks before the head carry cycle first, those after it last.
		lo, hi := int64(0), n-1
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			c, ok := cycle(mid)
			if !ok {
				return true
			}
			if c == first {
				lo = mid
			} else {
				hi = mid
			}
		}
		head = hi
	}
	// Find the last record header before the head, scanning back one
	// basic block at a time (with wrap-around).
	rec := int64(-1)
	var hdr []byte
	for back := int64(1); back <= min(n, logBackScanBlocks); back++ {
		i := ((head-back)%n + n) % n
		b, ok := readBBs(i, 1)
		if !ok {
			return true
		}
		if be32(b) == logMagic {
			rec, hdr = i, b
			break
		}
	}
	if rec < 0 {
		return true
	}
	hlen := int64(be32(hdr[12:]))
	version := be32(hdr[8:])
	hblks := int64(1)
	if version&logVersion2 != 0 {
		if size := int64(be32(hdr[320:])); size > logHeaderCycle {
			hblks = (size + logHeaderCycle - 1) / logHeaderCycle
		}
	}
	end := (rec + hblks + (hlen+511)/512) % n
	if end != head%n || be32(hdr[40:]) != 1 {
		return true
	}
	op, ok := readBBs((rec+hblks)%n, 1)
	if !ok {
		return true
	}
	return op[9]&logUnmountTrans == 0
}
