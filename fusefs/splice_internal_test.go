package fusefs

import (
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/chain"
)

// TestPipeSlots checks the pipe capacity arithmetic that keeps an
// assembled READ from being sent short.
func TestPipeSlots(t *testing.T) {
	f := new(os.File) // never read: only its presence matters
	cases := []struct {
		name  string
		size  int // pipe size asked for
		slots int
	}{
		{"one byte", 1, 1},
		{"one page", pageSize, 1},
		{"a page and a byte", pageSize + 1, 2},
		{"512 KiB READ reply", 16 + 512<<10 + pageSize, 256},
		{"64 KiB READ reply", 16 + 64<<10 + pageSize, 32},
	}
	for _, c := range cases {
		if got := pipeSlots(c.size); got != c.slots {
			t.Errorf("%s: pipeSlots(%d) = %d, want %d", c.name, c.size, got, c.slots)
		}
	}
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
	// A whole 512 KiB READ of page-aligned pieces fits; 256 sector-sized
	// pieces do not (they are copied instead).
	aligned := []chain.Piece{{File: f, Offset: 0, Length: 256 << 10}, {File: f, Offset: 1 << 20, Length: 256 << 10}}
	if slotsFor(aligned) > pipeSlots(16+512<<10+pageSize)-2 {
		t.Errorf("two aligned 256 KiB pieces (%d slots) do not fit", slotsFor(aligned))
	}
	var tiny []chain.Piece
	for i := 0; i < 256; i++ {
		tiny = append(tiny, chain.Piece{File: f, Offset: int64(i) * 1024, Length: 512})
	}
	if slotsFor(tiny) <= pipeSlots(16+128<<10+pageSize)-2 {
		t.Errorf("256 pieces of 512 bytes (%d slots) fit a 128 KiB READ's pipe", slotsFor(tiny))
	}
}
