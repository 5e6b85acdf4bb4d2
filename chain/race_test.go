//go:build race

package chain

// raceEnabled is true under -race, where tests check fewer points of the
// deepest chains: depth is exercised without the race detector, and the
// race detector's interest is concurrency, not depth.
const raceEnabled = true
