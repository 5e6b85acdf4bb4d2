package fusefs

import "testing"

// TestPlusLearner: a process's listings carry file attributes once it has
// looked up learnFiles files in folders listed to it without them, and
// only then; lookups elsewhere, or of other processes, do not count.
func TestPlusLearner(t *testing.T) {
	var p plusLearner
	if p.fullFiles(1) {
		t.Fatal("an unknown process gets full listings")
	}
	p.listedBare(1, 100)
	p.listedBare(2, 200)
	for i := 0; i < learnFiles-1; i++ {
		p.lookedUpFile(1, 100)
		p.lookedUpFile(1, 999) // a folder not listed to it
		p.lookedUpFile(3, 100) // another process
	}
	if p.fullFiles(1) {
		t.Fatalf("full after %d lookups, want %d", learnFiles-1, learnFiles)
	}
	p.lookedUpFile(1, 100)
	if !p.fullFiles(1) {
		t.Fatalf("not full after %d lookups in a folder listed bare", learnFiles)
	}
	if p.fullFiles(2) || p.fullFiles(3) {
		t.Fatal("other processes learned too")
	}
	// The table is bounded: past maxLearners processes it starts over.
	for pid := uint32(10); pid < 10+maxLearners; pid++ {
		p.listedBare(pid, 1)
	}
	if len(p.procs) > maxLearners {
		t.Fatalf("%d processes remembered, bound %d", len(p.procs), maxLearners)
	}
}
