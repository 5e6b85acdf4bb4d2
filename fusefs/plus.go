package fusefs

import "sync"

// Which listings carry their files' attributes.
//
// A READDIRPLUS reply can give each entry's attributes, so that the
// kernel makes its inode at once and a program that stats what it lists
// (tar, diff -r, ls -l, du, cp -r, rsync) needs no LOOKUP round trip per
// file. For a program that only wants the names (find -name, find -type,
// ls), the same reply costs a stat of every file here and an inode in the
// kernel — several times what the listing itself costs. Nothing in a
// READDIRPLUS request says which kind of program asks, but the requests
// that follow do, and each request names the process (thread) it is for.
//
// So, with ReaddirPlusAdaptive (the default): a listing gives attributes
// for its folders always (they are few, and walking into them would
// otherwise cost a LOOKUP each), and for its files only once the process
// asking has shown that it stats files it listed — learnFiles LOOKUPs of
// files in folders it listed without them. Until then file entries go
// without (node ID 0: the kernel skips them). The first folder a tar
// lists thus costs a LOOKUP per file; every later one, none; a find never
// pays for attributes.

// learnFiles is how many files a process must look up, in folders listed
// to it without their files' attributes, before its listings carry them.
const learnFiles = 4

// maxLearners bounds the processes remembered; past it, all are
// forgotten (they learn again).
const maxLearners = 1024

// plusLearner remembers, per process, whether its listings carry the
// attributes of files.
type plusLearner struct {
	mu    sync.Mutex
	procs map[uint32]*learner
}

// learner is what is known of one process.
type learner struct {
	full    bool
	lookups int
	// bare are folders listed to the process without their files'
	// attributes (the last few).
	bare [8]uint64
	next int
}

// fullFiles reports whether listings for process pid carry the attributes
// of files.
func (p *plusLearner) fullFiles(pid uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.procs[pid]
	return l != nil && l.full
}

// listedBare records that folder dir was listed to pid without its files'
// attributes.
func (p *plusLearner) listedBare(pid uint32, dir uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procs == nil || len(p.procs) >= maxLearners {
		p.procs = map[uint32]*learner{}
	}
	l := p.procs[pid]
	if l == nil {
		l = &learner{}
		p.procs[pid] = l
	}
	for _, d := range l.bare {
		if d == dir {
			return
		}
	}
	l.bare[l.next] = dir
	l.next = (l.next + 1) % len(l.bare)
}

// lookedUpFile records that pid looked up a file in folder dir.
func (p *plusLearner) lookedUpFile(pid uint32, dir uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.procs[pid]
	if l == nil || l.full {
		return
	}
	for _, d := range l.bare {
		if d == dir && d != 0 {
			if l.lookups++; l.lookups >= learnFiles {
				l.full = true
			}
			return
		}
	}
}
