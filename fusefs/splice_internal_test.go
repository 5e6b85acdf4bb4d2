package fusefs

import (
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
)

// TestPipeSlots checks the pipe capacity arithmetic that keeps a spliced
// READ reply from being sent short.
func TestPipeSlots(t *testing.T) {
	f := new(os.File) // never read: only its presence matters
	pieces := []struct {
		name  string
		ps    []chain.Piece
		slots int
	}{
		{"aligned page of file", []chain.Piece{{File: f, Offset: 8192, Length: pageSize}}, 2},
		{"unaligned 2 bytes across a page boundary", []chain.Piece{{File: f, Offset: pageSize - 1, Length: 2}}, 3},
		{"zeros", []chain.Piece{{Length: 3 * pageSize}}, 4},
		{"file then zeros", []chain.Piece{{File: f, Offset: 512, Length: 512}, {Length: 512}}, 2 + 2},
	}
	for _, c := range pieces {
		if got := slotsFor(c.ps); got != c.slots {
			t.Errorf("%s: slotsFor = %d, want %d", c.name, got, c.slots)
		}
	}
	// A whole MaxRead READ of page-aligned pieces fits beside the reply
	// header; 256 sector-sized pieces do not (they are copied instead).
	slots := pipeBytes / pageSize
	aligned := []chain.Piece{{File: f, Offset: 0, Length: MaxRead / 2}, {File: f, Offset: 1 << 20, Length: MaxRead / 2}}
	if 1+slotsFor(aligned) > slots {
		t.Errorf("two aligned %d KiB pieces (%d slots) do not fit %d slots", MaxRead>>11, slotsFor(aligned), slots)
	}
	var tiny []chain.Piece
	for i := 0; i < 256; i++ {
		tiny = append(tiny, chain.Piece{File: f, Offset: int64(i) * 1024, Length: 512})
	}
	if 1+slotsFor(tiny) <= slots {
		t.Errorf("256 pieces of 512 bytes (%d slots) fit the pipe", slotsFor(tiny))
	}
}
