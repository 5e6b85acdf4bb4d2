package chain

import (
	"sync"
	"sync/atomic"
)

// cacheUnits bounds the resolution cache to about 64 K units (a few MiB of
// memory, 128 GiB of disk at 2 MiB units).
func cacheUnits(unit int64) int { return 64 << 10 }

const cacheShards = 16

// runCache maps resolution units to their runs. It is sharded to keep
// parallel readers from contending, and bounded: a full shard drops a
// random eighth of its entries.
type runCache struct {
	perShard int
	// gen counts invalidations; a resolution that started before one must
	// not be stored, or it could bring back what was invalidated.
	gen    atomic.Uint64
	shards [cacheShards]struct {
		mu sync.RWMutex
		m  map[int64][]Run
	}
}

func newRunCache(limit int) *runCache {
	c := &runCache{perShard: max(limit/cacheShards, 8)}
	for i := range c.shards {
		c.shards[i].m = map[int64][]Run{}
	}
	return c
}

func (c *runCache) get(u int64) ([]Run, bool) {
	s := &c.shards[u%cacheShards]
	s.mu.RLock()
	r, ok := s.m[u]
	s.mu.RUnlock()
	return r, ok
}

func (c *runCache) put(u int64, r []Run, gen uint64) {
	s := &c.shards[u%cacheShards]
	s.mu.Lock()
	if c.gen.Load() != gen {
		s.mu.Unlock()
		return
	}
	if len(s.m) >= c.perShard {
		n := len(s.m) / 8
		for k := range s.m { // map iteration order is random
			if n == 0 {
				break
			}
			delete(s.m, k)
			n--
		}
	}
	s.m[u] = r
	s.mu.Unlock()
}

func (c *runCache) drop(u int64) {
	s := &c.shards[u%cacheShards]
	s.mu.Lock()
	c.gen.Add(1)
	delete(s.m, u)
	s.mu.Unlock()
}
