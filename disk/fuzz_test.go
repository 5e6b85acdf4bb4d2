package disk

import (
	"bytes"
	"testing"
)

// The fuzz targets feed each parser arbitrary bytes: it must return a
// value or an error, never panic, and never allocate without bound. Seeds
// are valid structures (below) plus the corpus in testdata/fuzz.

func FuzzHeader(f *testing.F) {
	f.Add(Header{SequenceNumber: 7, LogGUID: NewGUID(), Version: 1, LogLength: MiB, LogOffset: MiB}.Marshal())
	f.Add(make([]byte, HeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := unmarshalHeader(b)
		if err == nil && !bytes.Equal(h.Marshal(), b[:HeaderSize]) && len(b) >= HeaderSize {
			// A valid header re-encodes to the same bytes except the
			// reserved area, which Marshal zeroes.
			if !bytes.Equal(h.Marshal()[:80], b[:80]) {
				t.Fatalf("round trip changed the header")
			}
		}
	})
}

func FuzzRegionTable(f *testing.F) {
	f.Add(MarshalRegionTable([]RegionEntry{{GUID: RegionBAT, FileOffset: 3 * MiB, Length: MiB, Required: true}, {GUID: RegionMetadata, FileOffset: 2 * MiB, Length: MiB, Required: true}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Make the checksum right often enough to reach the entries.
		if len(b) >= RegionTableSize && len(b)%2 == 0 {
			le.PutUint32(b[4:], Checksum(b[:RegionTableSize], 4))
		}
		entries, err := unmarshalRegionTable(b)
		if err == nil && len(entries) > maxRegionEntries {
			t.Fatalf("%d entries accepted", len(entries))
		}
	})
}

func FuzzMetadataTable(f *testing.F) {
	f.Add(MarshalMetadataTable([]MetadataEntry{{ItemID: MetaFileParameters, Offset: 64 * KiB, Length: 8, IsRequired: true}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := unmarshalMetadataTable(b)
		if err == nil && len(entries) > maxMetadataEntries {
			t.Fatalf("%d entries accepted", len(entries))
		}
	})
}

func FuzzParentLocator(f *testing.F) {
	f.Add(ParentLocator{Type: LocatorTypeVHDX, Entries: []LocatorEntry{{KeyParentLinkage, NewGUID().Braced()}, {KeyRelativePath, `..\a\b.vhdx`}}}.Marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := unmarshalParentLocator(b)
		if err != nil {
			return
		}
		// Whatever parses must re-encode and parse to the same entries.
		q, err := unmarshalParentLocator(p.Marshal())
		if err != nil || len(q.Entries) != len(p.Entries) {
			t.Fatalf("round trip failed: %v", err)
		}
		for i := range p.Entries {
			if p.Entries[i] != q.Entries[i] && !invalidUTF16(p.Entries[i]) {
				t.Fatalf("entry %d: %q became %q", i, p.Entries[i], q.Entries[i])
			}
		}
	})
}

// invalidUTF16 reports entries whose text came from unpaired surrogates,
// which cannot round-trip through UTF-8.
func invalidUTF16(e LocatorEntry) bool {
	return bytes.ContainsRune([]byte(e.Key+e.Value), '\uFFFD')
}

func FuzzLogReplay(f *testing.F) {
	g := NewGUID()
	entry := MarshalLogEntry(LogEntryHeader{SequenceNumber: 5, LogGUID: g, FlushedFileOffset: 4 * MiB, LastFileOffset: 4 * MiB},
		[]LogWrite{{FileOffset: 3 * MiB, Data: bytes.Repeat([]byte{1}, 4096)}, {FileOffset: 2 * MiB, ZeroLength: 8192}})
	ring := make([]byte, 64*KiB)
	copy(ring, entry)
	f.Add(ring, g[:])
	f.Fuzz(func(t *testing.T, ring []byte, guid []byte) {
		if len(ring) == 0 || len(ring)%LogSectorSize != 0 || len(ring) > 1<<20 || len(guid) != 16 {
			return
		}
		var lg GUID
		copy(lg[:], guid)
		seq := findActiveSequence(ring, lg)
		for i := 1; i < len(seq); i++ {
			if seq[i].hdr.SequenceNumber != seq[i-1].hdr.SequenceNumber+1 {
				t.Fatalf("active sequence not consecutive")
			}
		}
	})
}
