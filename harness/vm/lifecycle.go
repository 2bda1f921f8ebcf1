package vm

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// privatePrefix names per-guest temporary directories; the pid in the name
// lets a later run remove what a killed run left.
const privatePrefix = "l45-vm-"

// makePrivateDir makes a 0700 directory for a guest's sockets and files.
// Unix socket paths are limited to 108 bytes, so it lives in the system's
// temporary directory, not in the (possibly deep) evidence folder.
func makePrivateDir(name string) (string, error) {
	removeStaleDirs()
	d, err := os.MkdirTemp("", fmt.Sprintf("%s%d-%s-", privatePrefix, os.Getpid(), name))
	if err != nil {
		return "", fmt.Errorf("guest %s: private directory: %w", name, err)
	}
	return d, os.Chmod(d, 0o700)
}

var staleOnce sync.Once

// removeStaleDirs deletes private directories of test processes that no
// longer exist (killed by a go test timeout, say).
func removeStaleDirs() {
	staleOnce.Do(func() {
		matches, _ := filepath.Glob(filepath.Join(os.TempDir(), privatePrefix+"*"))
		for _, m := range matches {
			rest := strings.TrimPrefix(filepath.Base(m), privatePrefix)
			pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
			if err != nil || pid == os.Getpid() {
				continue
			}
			if unix.Kill(pid, 0) == unix.ESRCH {
				os.RemoveAll(m)
			}
		}
	})
}

var (
	liveMu  sync.Mutex
	live    = map[*Machine]bool{}
	sigOnce sync.Once
)

// track remembers a running guest so a SIGINT or SIGTERM to the test binary
// ends its QEMU and removes its directory before the process exits.
func track(m *Machine) {
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-ch
			liveMu.Lock()
			var ms []*Machine
			for m := range live {
				ms = append(ms, m)
			}
			liveMu.Unlock()
			for _, m := range ms {
				m.mu.Lock()
				q := m.qemu
				m.mu.Unlock()
				if q != nil {
					q.Kill(time.Second)
				}
				os.RemoveAll(m.tmp)
			}
			fmt.Fprintf(os.Stderr, "layer45 harness: %v: stopped %d guest(s)\n", s, len(ms))
			os.Exit(2)
		}()
	})
	liveMu.Lock()
	live[m] = true
	liveMu.Unlock()
}

func untrack(m *Machine) {
	liveMu.Lock()
	delete(live, m)
	liveMu.Unlock()
}

// bootSlot lets one guest boot at a time on this machine, across test
// processes: two guests booting at once on 2 cores under TCG starve each
// other's timer calibration. It is held from QEMU start to agent ready.
func bootSlot(ctx context.Context, env *Env) (func(), error) {
	f, err := os.OpenFile(filepath.Join(env.Cache.Root(), ".boot.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("boot lock: %w", err)
	}
	for {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another guest to finish booting: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var (
	speedMu      sync.Mutex
	bootTimes    []time.Duration
	restoreTimes []time.Duration
	slowdown     = 1.0
)

// DefaultCommandTimeout is how long a guest command may take on a machine
// as fast as the host; Scale stretches it.
const DefaultCommandTimeout = 20 * time.Second

// firstBootTimeout bounds the first boot of a process, before anything has
// been measured; later boots get a multiple of the measured median.
const firstBootTimeout = 3 * time.Minute

func recordBoot(d time.Duration) {
	speedMu.Lock()
	defer speedMu.Unlock()
	bootTimes = append(bootTimes, d)
}

func recordRestore(d time.Duration) {
	speedMu.Lock()
	defer speedMu.Unlock()
	restoreTimes = append(restoreTimes, d)
}

// MedianRestore is the median restore-to-agent-ready time of this
// process's guests resumed from snapshots.
func MedianRestore() time.Duration {
	speedMu.Lock()
	defer speedMu.Unlock()
	return median(restoreTimes)
}

// MedianBoot is the median boot-to-agent-ready time of this process's guests.
func MedianBoot() time.Duration {
	speedMu.Lock()
	defer speedMu.Unlock()
	return median(bootTimes)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// bootTimeout is the deadline for one boot: generous until a boot has been
// measured, then five times the median, never beyond ctx's deadline.
func bootTimeout(ctx context.Context) time.Duration {
	d := firstBootTimeout
	if m := MedianBoot(); m > 0 {
		d = max(5*m, 30*time.Second)
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return d
}

// SetSlowdown records how much slower than the host guests run (measured by
// MeasureSlowdown); Scale uses it.
func SetSlowdown(f float64) {
	speedMu.Lock()
	defer speedMu.Unlock()
	slowdown = max(f, 1)
}

// Slowdown is the measured factor.
func Slowdown() float64 {
	speedMu.Lock()
	defer speedMu.Unlock()
	return slowdown
}

// Scale stretches a duration that holds on the host to this machine's
// guests.
func Scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Slowdown())
}
