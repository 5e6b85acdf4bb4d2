package checkpoint

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestKind(t *testing.T) {
	lazy := &Node{Name: "lazy", List: func() ([]*Node, error) { return nil, nil }}
	for _, c := range []struct {
		n    *Node
		want Kind
	}{
		{Dir("d"), KindFolder},
		{&Node{Name: "kids", Children: []*Node{}}, KindFolder},
		{lazy, KindFolder},
		{File("f", nil, 0), KindFile},
		{Bytes("b", []byte("x")), KindFile},
		{&Node{Name: "empty"}, KindFile},
		{&Node{Name: "l", Target: "x"}, KindSymlink},
		{&Node{Name: "fs", IsDir: true, FS: ftFakeFS{}}, KindFileSystem},
	} {
		if got := c.n.Kind(); got != c.want {
			t.Errorf("%s: Kind() = %v, want %v", c.n.Name, got, c.want)
		}
	}
}

func TestEntriesOnce(t *testing.T) {
	var calls atomic.Int32
	kid := Bytes("k", nil)
	n := &Node{Name: "lazy", IsDir: true, List: func() ([]*Node, error) {
		calls.Add(1)
		return []*Node{kid}, errors.New("partly listed")
	}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kids, err := n.Entries()
			if len(kids) != 1 || kids[0] != kid || err == nil || err.Error() != "partly listed" {
				t.Errorf("Entries() = %v, %v", kids, err)
			}
		}()
	}
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Errorf("List ran %d times, want 1", c)
	}
	plain := Dir("d", kid)
	if kids, err := plain.Entries(); err != nil || len(kids) != 1 {
		t.Errorf("Entries of a plain folder = %v, %v", kids, err)
	}
}
