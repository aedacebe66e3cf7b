package xds

import (
	"sync"
	"syscall"
	"unsafe"
)

// poller waits for the readiness fds of a cache's open watches with one
// epoll instance and one goroutine, and wakes the watch's goroutine through
// a channel. Watch goroutines thus park on a Go channel (no OS thread each)
// and each watch costs only the library's own eventfd.
//
// Registrations are one-shot: the library's eventfd stays readable once
// a response is waiting or the watch is closed, so one report suffices.
type poller struct {
	once sync.Once
	err  error
	ep   int
	wake int // eventfd that ends the dispatcher

	// life is read-held around epoll_ctl and write-held to close ep, so
	// no call reaches a closed (or reused) descriptor.
	life    sync.RWMutex
	stopped bool

	mu      sync.Mutex
	waiters map[uint64]chan struct{}
	nextID  uint64
}

// start makes the epoll instance and the dispatcher on first use.
func (p *poller) start() error {
	p.once.Do(func() {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.err = err
			return
		}
		r, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if e != 0 {
			syscall.Close(ep)
			p.err = e
			return
		}
		p.ep, p.wake = ep, int(r)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
		*(*uint64)(unsafe.Pointer(&ev.Fd)) = 0 // id 0: the wake fd
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, p.wake, &ev); err != nil {
			syscall.Close(ep)
			syscall.Close(p.wake)
			p.err = err
			return
		}
		p.waiters = make(map[uint64]chan struct{})
		go p.dispatch()
	})
	return p.err
}

// arm registers fd; ch gets a value once fd is readable. It returns the
// registration's id for disarm.
func (p *poller) arm(fd int32, ch chan struct{}) (uint64, error) {
	if err := p.start(); err != nil {
		return 0, err
	}
	p.mu.Lock()
	if p.waiters == nil {
		p.mu.Unlock()
		return 0, syscall.EBADF // stopped
	}
	p.nextID++
	id := p.nextID
	p.waiters[id] = ch
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLONESHOT}
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = id
	p.life.RLock()
	var err error = syscall.EBADF
	if !p.stopped {
		err = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}
	p.life.RUnlock()
	if err != nil {
		p.mu.Lock()
		delete(p.waiters, id)
		p.mu.Unlock()
		return 0, err
	}
	return id, nil
}

// disarm removes fd's registration; call it before the fd is closed.
func (p *poller) disarm(fd int32, id uint64) {
	p.life.RLock()
	if !p.stopped {
		syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_DEL, int(fd), nil)
	}
	p.life.RUnlock()
	p.mu.Lock()
	delete(p.waiters, id)
	p.mu.Unlock()
}

func (p *poller) dispatch() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.ep, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			p.fail()
			return
		}
		p.mu.Lock()
		for i := 0; i < n; i++ {
			id := *(*uint64)(unsafe.Pointer(&events[i].Fd))
			if id == 0 {
				p.mu.Unlock()
				p.fail()
				return
			}
			if ch, ok := p.waiters[id]; ok {
				delete(p.waiters, id)
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
		p.mu.Unlock()
	}
}

// fail wakes every waiter (they then find their watch closed or ask
// again) and stops the poller.
func (p *poller) fail() {
	p.mu.Lock()
	for id, ch := range p.waiters {
		delete(p.waiters, id)
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.waiters = nil
	p.mu.Unlock()
	p.life.Lock()
	p.stopped = true
	syscall.Close(p.ep)
	syscall.Close(p.wake)
	p.life.Unlock()
}

// stop ends the dispatcher (after the cache is closed, so every watch is
// already readable).
func (p *poller) stop() {
	p.once.Do(func() { p.err = syscall.EBADF })
	if p.err != nil {
		return
	}
	p.life.RLock()
	if !p.stopped {
		one := [8]byte{1}
		syscall.Write(p.wake, one[:])
	}
	p.life.RUnlock()
}
