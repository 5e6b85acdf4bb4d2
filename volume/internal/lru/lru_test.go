package lru

import "testing"

// TestLRU checks eviction order, updates and the cost bound (the NTFS
// reader's caches use a cost of 1 per entry: a count bound).
func TestLRU(t *testing.T) {
	c := New[int, string](2)
	c.Add(1, "a", 1)
	c.Add(2, "b", 1)
	c.Get(1)
	c.Add(3, "c", 1) // evicts 2
	if _, ok := c.Get(2); ok {
		t.Error("2 not evicted")
	}
	if v, ok := c.Get(1); !ok || v != "a" {
		t.Error("1 evicted")
	}
	c.Add(1, "z", 1)
	if v, _ := c.Get(1); v != "z" {
		t.Error("update lost")
	}
	c.Add(4, "too big", 3) // costs more than the bound: not kept
	if _, ok := c.Get(4); ok {
		t.Error("an entry costing more than the bound was kept")
	}
}
