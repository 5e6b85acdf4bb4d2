package fusefs

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The request loop.
//
// A few goroutines (Options.Readers) each read a request from /dev/fuse,
// answer it and write the reply, with no hand-off between goroutines: on
// these machines a system call or a context switch costs microseconds,
// and go-fuse's server spends several of each per request (a new reader
// goroutine per request, wake-ups of idle threads, and the Go scheduler's
// monitor polling readers blocked in read). Here a request costs one
// read, one write, and whatever reading the data costs. The daemon runs
// with more Ps than readers (see cmd/ckptfs), so that a reader blocked in
// read keeps its P and returns to work without waiting for one.

// yieldEvery is how often a reader passes through the scheduler; the
// runtime preempts a goroutine that has not for 10 ms.
const yieldEvery = 5 * time.Millisecond

// reqHeaderSize is the size of struct fuse_in_header.
const reqHeaderSize = int(unsafe.Sizeof(fuse.InHeader{}))

// readBufSize is the size of a reader's request buffer: the largest WRITE
// (MaxRead bytes of data after its header) plus room for any request.
const readBufSize = MaxRead + 64<<10

// session is the connection to the kernel of one mount.
type session struct {
	fd  int
	fs  *rawFS
	log Logger

	initOnce  sync.Once
	initDone  chan struct{} // closed when INIT is answered (or reading failed)
	initErr   error
	readers   sync.WaitGroup
	maxWrite  int
	readAhead uint32
	capsMask  uint64 // capabilities asked for, besides the fixed ones
	closed    atomic.Bool
	closeOnce sync.Once
	debug     bool
}

// serve starts n readers.
func (s *session) serve(n int) {
	s.initDone = make(chan struct{})
	for range n {
		s.readers.Add(1)
		go s.reader()
	}
}

// reader reads and answers requests until the mount goes away.
func (s *session) reader() {
	defer s.readers.Done()
	rd := &replier{s: s, in: make([]byte, readBufSize), out: make([]byte, MaxRead+4096), iov: make([][]byte, 1, maxPieces+1)}
	rd.iov[0] = make([]byte, outHeaderSize)
	defer rd.close()
	last := time.Now()
	for {
		// Pass through the scheduler every few milliseconds: a
		// goroutine that never does is taken for a long-running one,
		// and the runtime's monitor then takes its P away whenever it
		// is in a system call (and polls every 20 µs afterwards), each
		// costing context switches. Not on every request: a yield
		// wakes an idle thread.
		if now := time.Now(); now.Sub(last) > yieldEvery {
			runtime.Gosched()
			last = now
		}
		n, err := syscall.Read(s.fd, rd.in)
		switch {
		case err == nil:
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ENOENT):
			// Interrupted, or the request went away before we read it.
			continue
		default:
			// ENODEV: unmounted. Anything else: the connection is unusable.
			if !errors.Is(err, syscall.ENODEV) && !s.closed.Load() {
				s.log.Errorf("reading from /dev/fuse: %v", err)
			}
			s.initOnce.Do(func() {
				s.initErr = fmt.Errorf("the kernel closed the connection before it was set up: %w", err)
				close(s.initDone)
			})
			return
		}
		if n < reqHeaderSize {
			s.log.Errorf("short request from the kernel: %d bytes", n)
			continue
		}
		rd.handle(rd.in[:n])
	}
}

// replier answers the requests one reader reads; its buffers and pipe are
// its own.
type replier struct {
	s    *session
	in   []byte
	out  []byte
	pipe *pipe // for spliced READ replies; made on first use
	// iov holds a reply written from mappings: the header, then the
	// pieces.
	iov [][]byte
}

func (rd *replier) close() {
	if rd.pipe != nil {
		rd.pipe.close()
	}
}

// handle answers one request (req starts with its header).
func (rd *replier) handle(req []byte) {
	h := (*fuse.InHeader)(unsafe.Pointer(&req[0]))
	if int(h.Length) != len(req) {
		rd.s.log.Errorf("request %d: length %d, read %d bytes", h.Opcode, h.Length, len(req))
		rd.status(h, syscall.EIO)
		return
	}
	if rd.s.debug {
		rd.s.log.Debugf("request %d: %s node %d (%d bytes, pid %d)", h.Unique, opName(h.Opcode), h.NodeId, h.Length, h.Pid)
	}
	fs := rd.s.fs
	switch h.Opcode {
	case opInit:
		rd.init(h, req)
	case opLookup:
		name, ok := cstring(req[reqHeaderSize:])
		if !ok {
			rd.status(h, syscall.EINVAL)
			return
		}
		var out fuse.EntryOut
		rd.replyStruct(h, fs.Lookup(h, name, &out), unsafe.Pointer(&out), int(unsafe.Sizeof(out)))
	case opForget:
		if in, ok := inStruct[fuse.ForgetIn](req); ok {
			fs.Forget(h.NodeId, in.Nlookup)
		}
	case opBatchForget:
		rd.batchForget(req)
	case opGetattr:
		answer(rd, h, req, fs.GetAttr)
	case opSetattr:
		answer(rd, h, req, fs.SetAttr)
	case opReadlink:
		b, st := fs.Readlink(h)
		if !st.Ok() {
			rd.status(h, syscall.Errno(st))
			return
		}
		rd.reply(h, 0, b)
	case opOpen:
		answer(rd, h, req, fs.Open)
	case opRead:
		in, ok := inStruct[fuse.ReadIn](req)
		if !ok {
			rd.status(h, syscall.EINVAL)
			return
		}
		rd.read(in)
	case opWrite:
		in, ok := inStruct[fuse.WriteIn](req)
		size := int(unsafe.Sizeof(fuse.WriteIn{}))
		if !ok || len(req) < size+int(in.Size) {
			rd.status(h, syscall.EINVAL)
			return
		}
		n, st := fs.Write(in, req[size:size+int(in.Size)])
		out := fuse.WriteOut{Size: n}
		rd.replyStruct(h, st, unsafe.Pointer(&out), int(unsafe.Sizeof(out)))
	case opStatfs:
		var out fuse.StatfsOut
		rd.replyStruct(h, fs.StatFs(h, &out), unsafe.Pointer(&out), int(unsafe.Sizeof(out)))
	case opFsync:
		in, ok := inStruct[fuse.FsyncIn](req)
		if !ok {
			rd.status(h, syscall.EINVAL)
			return
		}
		rd.status(h, syscall.Errno(fs.Fsync(in)))
	case opGetxattr, opListxattr:
		rd.xattr(h, req)
	case opFlush:
		// See rawFS.Flush: the kernel stops asking.
		rd.status(h, syscall.ENOSYS)
	case opOpendir:
		answer(rd, h, req, fs.OpenDir)
	case opRelease, opReleasedir:
		rd.status(h, 0)
	case opReaddir, opReaddirplus:
		in, ok := inStruct[fuse.ReadIn](req)
		if !ok {
			rd.status(h, syscall.EINVAL)
			return
		}
		size := min(int(in.Size), len(rd.out)-outHeaderSize)
		list := fuse.NewDirEntryList(rd.out[outHeaderSize:outHeaderSize+size], in.Offset)
		var st fuse.Status
		if h.Opcode == opReaddirplus {
			st = fs.ReadDirPlus(in, list)
		} else {
			st = fs.ReadDir(in, list)
		}
		if !st.Ok() {
			rd.status(h, syscall.Errno(st))
			return
		}
		rd.replyOut(h, len(list.Bytes()))
	case opInterrupt:
		// Every operation is short: let the interrupted one finish.
	case opDestroy:
		rd.status(h, 0)
	default:
		rd.status(h, syscall.ENOSYS)
	}
}

// answer decodes req as *In, calls op with a zeroed *Out and replies with
// Out, or with op's error; a request too short for In is refused.
func answer[In, Out any](rd *replier, h *fuse.InHeader, req []byte, op func(*In, *Out) fuse.Status) {
	in, ok := inStruct[In](req)
	if !ok {
		rd.status(h, syscall.EINVAL)
		return
	}
	var out Out
	rd.replyStruct(h, op(in, &out), unsafe.Pointer(&out), int(unsafe.Sizeof(out)))
}

// inStruct returns the request as *T (a go-fuse request type, which
// starts with the header) when it is long enough.
func inStruct[T any](req []byte) (*T, bool) {
	var zero T
	if len(req) < int(unsafe.Sizeof(zero)) {
		return nil, false
	}
	return (*T)(unsafe.Pointer(&req[0])), true
}

// cstring is the NUL-terminated string at the start of b.
func cstring(b []byte) (string, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), true
		}
	}
	return "", false
}

// writeReply writes a reply made of iov (the first element holds the
// out header, filled here).
func (rd *replier) writeReply(h *fuse.InHeader, errno syscall.Errno, iov [][]byte) {
	total := 0
	for _, b := range iov {
		total += len(b)
	}
	oh := (*fuse.OutHeader)(unsafe.Pointer(&iov[0][0]))
	oh.Length = uint32(total)
	oh.Status = errnoStatus(errno)
	oh.Unique = h.Unique
	if rd.s.debug {
		rd.s.log.Debugf("reply %d: %s: %v, %d bytes", h.Unique, opName(h.Opcode), errno, total-outHeaderSize)
	}
	var err error
	if len(iov) == 1 {
		_, err = syscall.Write(rd.s.fd, iov[0])
	} else {
		_, err = unix.Writev(rd.s.fd, iov)
	}
	rd.writeErr(h, err)
}

func (rd *replier) writeErr(h *fuse.InHeader, err error) {
	// ENOENT: the request was interrupted and is gone; ENODEV: unmounted.
	if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENODEV) {
		rd.s.log.Errorf("replying to request %d (opcode %d): %v", h.Unique, h.Opcode, err)
	}
}

// status replies with an error (or success without data).
func (rd *replier) status(h *fuse.InHeader, errno syscall.Errno) {
	rd.writeReply(h, errno, [][]byte{rd.out[:outHeaderSize]})
}

// replyOut replies with the n bytes already in rd.out after the header.
func (rd *replier) replyOut(h *fuse.InHeader, n int) {
	rd.writeReply(h, 0, [][]byte{rd.out[:outHeaderSize+n]})
}

// reply replies with data, or with the error st.
func (rd *replier) reply(h *fuse.InHeader, st fuse.Status, data []byte) {
	if !st.Ok() {
		rd.status(h, syscall.Errno(st))
		return
	}
	if len(data) == 0 {
		rd.status(h, 0)
		return
	}
	rd.writeReply(h, 0, [][]byte{rd.out[:outHeaderSize], data})
}

// replyStruct replies with the size bytes at p, or with the error st.
func (rd *replier) replyStruct(h *fuse.InHeader, st fuse.Status, p unsafe.Pointer, size int) {
	if !st.Ok() {
		rd.status(h, syscall.Errno(st))
		return
	}
	copy(rd.out[outHeaderSize:], unsafe.Slice((*byte)(p), size))
	rd.replyOut(h, size)
}

// batchForget drops the references a BATCH_FORGET lists.
func (rd *replier) batchForget(req []byte) {
	const one = 16 // struct fuse_forget_one
	if len(req) < reqHeaderSize+8 {
		return
	}
	count := int(*(*uint32)(unsafe.Pointer(&req[reqHeaderSize])))
	body := req[reqHeaderSize+8:]
	for i := 0; i < count && (i+1)*one <= len(body); i++ {
		id := *(*uint64)(unsafe.Pointer(&body[i*one]))
		n := *(*uint64)(unsafe.Pointer(&body[i*one+8]))
		rd.s.fs.Forget(id, n)
	}
}

// xattr answers GETXATTR and LISTXATTR: with the value's size when the
// caller gave no buffer, else with the value.
func (rd *replier) xattr(h *fuse.InHeader, req []byte) {
	in, ok := inStruct[fuse.GetXAttrIn](req)
	if !ok {
		rd.status(h, syscall.EINVAL)
		return
	}
	size := min(int(in.Size), len(rd.out)-outHeaderSize-8)
	dest := rd.out[outHeaderSize : outHeaderSize+size]
	var n uint32
	var st fuse.Status
	if h.Opcode == opGetxattr {
		name, ok := cstring(req[int(unsafe.Sizeof(fuse.GetXAttrIn{})):])
		if !ok {
			rd.status(h, syscall.EINVAL)
			return
		}
		n, st = rd.s.fs.GetXAttr(h, name, dest)
	} else {
		n, st = rd.s.fs.ListXAttr(h, dest)
	}
	if in.Size == 0 {
		if st == fuse.ERANGE {
			st = fuse.OK
		}
		out := fuse.GetXAttrOut{Size: n}
		rd.replyStruct(h, st, unsafe.Pointer(&out), int(unsafe.Sizeof(out)))
		return
	}
	if !st.Ok() {
		rd.status(h, syscall.Errno(st))
		return
	}
	rd.replyOut(h, int(n))
}

// read answers READ.
func (rd *replier) read(in *fuse.ReadIn) {
	h := &in.InHeader
	size := min(int(in.Size), len(rd.out)-outHeaderSize)
	dest := rd.out[outHeaderSize : outHeaderSize+size]
	sp := rd.s.fs.splicer
	if sp.maps != nil {
		// Held while the reply points into the mappings.
		sp.maps.mu.RLock()
	}
	res, st := rd.s.fs.Read(in, dest, readHow{zeroCopy: true, iov: rd.iov[:1]})
	if st.Ok() && res.iov != nil {
		rd.writeReply(h, 0, res.iov)
		sp.maps.mu.RUnlock()
		sp.mapped.Add(1)
		sp.maps.trim()
		return
	}
	if sp.maps != nil {
		sp.maps.mu.RUnlock()
	}
	if st.Ok() && res.data == nil && res.n > 0 {
		fromFile := res.file != nil
		sent := rd.spliceReply(h, &res)
		res.done()
		if sent {
			if fromFile {
				sp.fromFile.Add(1)
			} else {
				sp.assembled.Add(1)
			}
			return
		}
		// Copy instead.
		res, st = rd.s.fs.Read(in, dest, readHow{})
	}
	if !st.Ok() {
		rd.status(h, syscall.Errno(st))
		return
	}
	rd.replyOut(h, len(res.data))
}

// Capabilities a mount always asks for when the kernel offers them.
const fixedCaps = fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_NO_OPEN_SUPPORT |
	fuse.CAP_PARALLEL_DIROPS | fuse.CAP_MAX_PAGES | fuse.CAP_CACHE_SYMLINKS |
	fuse.CAP_EXPLICIT_INVAL_DATA

// init answers INIT: the protocol version and what the mount uses.
func (rd *replier) init(h *fuse.InHeader, req []byte) {
	s := rd.s
	in, ok := inStruct[fuse.InitIn](req)
	var err error
	switch {
	case !ok:
		err = errors.New("INIT request too short")
	case in.Major != protoMajor:
		err = fmt.Errorf("the kernel speaks FUSE %d.%d; ckptfs needs %d.x", in.Major, in.Minor, protoMajor)
	case in.Minor < minProtoMinor:
		err = fmt.Errorf("the kernel speaks FUSE %d.%d; ckptfs needs %d.%d or later", in.Major, in.Minor, protoMajor, minProtoMinor)
	}
	if err != nil {
		rd.status(h, syscall.EPROTO)
		s.initOnce.Do(func() { s.initErr = err; close(s.initDone) })
		return
	}
	var flags uint64 = uint64(in.Flags)
	if flags&fuse.CAP_INIT_EXT != 0 {
		flags |= uint64(in.Flags2) << 32
	}
	want := (fixedCaps | s.capsMask) & flags
	out := fuse.InitOut{
		Major:               protoMajor,
		Minor:               min(in.Minor, protoMinor),
		MaxReadAhead:        min(in.MaxReadAhead, s.readAhead),
		Flags:               uint32(want),
		MaxBackground:       64,
		CongestionThreshold: 48,
		MaxWrite:            uint32(s.maxWrite),
		TimeGran:            1,
		MaxPages:            uint16((s.maxWrite + 4095) / 4096),
	}
	rd.replyStruct(h, fuse.OK, unsafe.Pointer(&out), int(unsafe.Sizeof(out)))
	s.initOnce.Do(func() { close(s.initDone) })
}
