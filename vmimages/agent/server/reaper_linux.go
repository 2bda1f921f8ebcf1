package server

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper owns every wait(2) of the process. PID 1 has to reap orphans that
// the kernel re-parents to it, and a wait4(-1) loop would steal the status
// of programs the agent started itself; so the agent never calls
// os.Process.Wait or exec.Cmd.Wait and starts programs through the reaper,
// which hands each status to whoever registered that pid and discards the
// rest.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
	orphans int
}

var (
	reaperOnce sync.Once
	theReaper  *reaper
)

// sharedReaper returns the process-wide reaper, starting it on first use.
func sharedReaper(logf func(string, ...any)) *reaper {
	reaperOnce.Do(func() {
		r := &reaper{waiting: make(map[int]chan unix.WaitStatus)}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, unix.SIGCHLD)
		go r.loop(sigs, logf)
		theReaper = r
	})
	return theReaper
}

// StartReaper starts reaping children (and orphans) now. The agent calls it
// once its boot steps, which wait for their own children, are done.
func StartReaper(logf func(string, ...any)) { sharedReaper(logf) }

func (r *reaper) loop(sigs <-chan os.Signal, logf func(string, ...any)) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		func() {
			defer recoverTo(logf, "reaper")
			for {
				r.reapAll()
				select {
				case <-sigs:
				case <-tick.C:
				}
			}
		}()
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		ch := r.waiting[pid]
		delete(r.waiting, pid)
		if ch == nil {
			r.orphans++
		}
		r.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// start runs startFn with the reaper locked, so that a child that exits at
// once is still handed to its waiter, and returns the channel on which its
// wait status arrives.
func (r *reaper) start(startFn func() (*os.Process, error)) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := startFn()
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid
	// The reaper waits; release the pidfd os.StartProcess may hold.
	p.Release()
	ch := make(chan unix.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}
