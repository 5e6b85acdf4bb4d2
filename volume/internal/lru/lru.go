// Package lru is a small cost-bounded least-recently-used cache shared by the
// file-system readers.
package lru

import (
	"container/list"
	"sync"
)

// Cache is a small cost-bounded least-recently-used cache, safe for
// concurrent use. Values must not be modified after they are added.
type Cache[K comparable, V any] struct {
	mu      sync.Mutex
	maxCost int
	cost    int
	ll      *list.List
	m       map[K]*list.Element
}

type lruItem[K comparable, V any] struct {
	k    K
	v    V
	cost int
}

func New[K comparable, V any](maxCost int) *Cache[K, V] {
	return &Cache[K, V]{maxCost: maxCost, ll: list.New(), m: map[K]*list.Element{}}
}

func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).v, true
	}
	var zero V
	return zero, false
}

func (c *Cache[K, V]) Add(k K, v V, cost int) {
	if cost < 1 {
		cost = 1
	}
	if cost > c.maxCost {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		it := e.Value.(*lruItem[K, V])
		c.cost += cost - it.cost
		it.v, it.cost = v, cost
		c.ll.MoveToFront(e)
	} else {
		c.m[k] = c.ll.PushFront(&lruItem[K, V]{k, v, cost})
		c.cost += cost
	}
	for c.cost > c.maxCost {
		e := c.ll.Back()
		it := e.Value.(*lruItem[K, V])
		c.ll.Remove(e)
		delete(c.m, it.k)
		c.cost -= it.cost
	}
}

// MaxCost is the cost bound the cache was made with.
func (c *Cache[K, V]) MaxCost() int { return c.maxCost }
