package cache

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// openTest opens a cache on dir with no bound, whatever the environment.
func openTest(t *testing.T, dir string) *Cache {
	t.Helper()
	c, err := Open(dir)
	require.NoError(t, err)
	c.SetMax(Unlimited)
	var mu sync.Mutex
	c.Log = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s", bytes.TrimRight(p, "\n"))
		return len(p), nil
	})
	return c
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// fill is a build writing size bytes (really allocated) and the key.
func fill(key string, size int) BuildFunc {
	return func(_ context.Context, dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "key"), []byte(key), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "data"), bytes.Repeat([]byte{'x'}, size), 0o644)
	}
}

// makeEntry builds an entry of about size bytes through a cache that then
// lets go of it, as a process that ended, and sets its last use.
func makeEntry(t *testing.T, root, key string, size int, lastUse time.Time) {
	t.Helper()
	c := openTest(t, root)
	_, err := c.Get(context.Background(), key, fill(key, size))
	require.NoError(t, err)
	c.Release()
	require.NoError(t, os.Chtimes(c.usePath(key), lastUse, lastUse))
}

func keys(es []Entry) []string {
	var ks []string
	for _, e := range es {
		ks = append(ks, e.Key)
	}
	return ks
}

func present(root, key string) bool { return complete(filepath.Join(root, key)) }

func TestPruneEvictsLeastRecentlyUsedFirst(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	// Names sort in another order than their last uses, and were built in
	// yet another, so only the last use can give the expected order.
	makeEntry(t, root, "c-newest", mib, t0.Add(4*time.Minute))
	makeEntry(t, root, "a-third", mib, t0.Add(3*time.Minute))
	makeEntry(t, root, "d-oldest", mib, t0.Add(1*time.Minute))
	makeEntry(t, root, "b-second", mib, t0.Add(2*time.Minute))

	c := openTest(t, root)
	list, err := c.List(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"d-oldest", "b-second", "a-third", "c-newest"}, keys(list))
	for _, e := range list {
		require.GreaterOrEqual(t, e.Size, int64(mib), e.Key)
		require.Less(t, e.Size, int64(mib+64<<10), e.Key)
		require.False(t, e.InUse, e.Key)
	}

	r, err := c.Prune(context.Background(), 5*mib/2, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"d-oldest", "b-second"}, keys(r.Removed))
	require.Empty(t, r.InUse)
	require.LessOrEqual(t, r.Total, int64(5*mib/2))
	require.Zero(t, r.Over())
	for _, k := range []string{"d-oldest", "b-second"} {
		require.NoDirExists(t, filepath.Join(root, k))
		require.NoFileExists(t, c.usePath(k))
		require.NoFileExists(t, c.lockPath(k))
	}
	require.True(t, present(root, "a-third"))
	require.True(t, present(root, "c-newest"))

	// Under the bound, prune does nothing.
	r, err = c.Prune(context.Background(), 5*mib/2, nil)
	require.NoError(t, err)
	require.Empty(t, r.Removed)
}

func TestGetRecordsUseForLRU(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	makeEntry(t, root, "old", mib, t0)
	makeEntry(t, root, "young", mib, t0.Add(time.Minute))

	// A hit on "old" makes it the most recently used, in another process
	// as much as in this one: the record is the use file's mtime.
	user := openTest(t, root)
	_, err := user.Get(context.Background(), "old", func(context.Context, string) error {
		t.Fatal("a complete entry was rebuilt")
		return nil
	})
	require.NoError(t, err)
	user.Release()
	fi, err := os.Stat(user.usePath("old"))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), fi.ModTime(), time.Minute)

	r, err := openTest(t, root).Prune(context.Background(), 3*mib/2, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"young"}, keys(r.Removed))
	require.True(t, present(root, "old"))
}

func TestEntryInUseIsNeverEvicted(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	makeEntry(t, root, "held", mib, t0) // the least recently used
	makeEntry(t, root, "building", mib, t0.Add(time.Minute))
	makeEntry(t, root, "free", mib, t0.Add(2*time.Minute))

	// Another holder: a second Cache on the same directory has its own
	// open file, so its flock conflicts as another process's would.
	holder := openTest(t, root)
	dir, err := holder.Get(context.Background(), "held", nil)
	require.NoError(t, err)
	require.NoError(t, os.Chtimes(holder.usePath("held"), t0, t0)) // still the oldest
	// A builder of "building" holds its build lock.
	b, err := tryFlock(holder.lockPath("building"), unix.LOCK_EX, true)
	require.NoError(t, err)

	pruner := openTest(t, root)
	list, err := pruner.List(context.Background(), nil)
	require.NoError(t, err)
	inUse := map[string]bool{}
	for _, e := range list {
		inUse[e.Key] = e.InUse
	}
	require.Equal(t, map[string]bool{"held": true, "building": true, "free": false}, inUse)

	r, err := pruner.Prune(context.Background(), 0, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"free"}, keys(r.Removed))
	require.Equal(t, []string{"held", "building"}, keys(r.InUse))
	require.Positive(t, r.Over())
	require.FileExists(t, filepath.Join(dir, "data"))
	require.True(t, present(root, "building"))

	r, err = pruner.Clean(context.Background(), nil)
	require.NoError(t, err)
	require.Empty(t, r.Removed)

	// Let go, and they go.
	holder.Release()
	unlockFile(b)
	r, err = pruner.Clean(context.Background(), nil)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"held", "building"}, keys(r.Removed))
	require.Zero(t, r.Total)
}

// TestMain lets TestEntryHeldByAnotherProcess run this binary as a second
// process that holds a cache entry until its standard input closes.
func TestMain(m *testing.M) {
	if root := os.Getenv("L45_TEST_HOLD_ROOT"); root != "" {
		os.Exit(holdEntry(root, os.Getenv("L45_TEST_HOLD_KEY")))
	}
	os.Exit(m.Run())
}

func holdEntry(root, key string) int {
	c, err := Open(root)
	if err == nil {
		_, err = c.Get(context.Background(), key, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("held")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	return 0
}

func TestEntryHeldByAnotherProcess(t *testing.T) {
	root := t.TempDir()
	makeEntry(t, root, "theirs", mib, time.Now().Add(-time.Hour))

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "L45_TEST_HOLD_ROOT="+root, "L45_TEST_HOLD_KEY=theirs", EnvMax+"=off")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held\n", line)

	c := openTest(t, root)
	r, err := c.Clean(context.Background(), nil)
	require.NoError(t, err)
	require.Empty(t, r.Removed)
	require.Equal(t, []string{"theirs"}, keys(r.InUse))
	require.True(t, present(root, "theirs"))

	stdin.Close()
	require.NoError(t, cmd.Wait())
	r, err = c.Clean(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"theirs"}, keys(r.Removed))
}

func TestEntryJustBuiltSurvivesEviction(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	makeEntry(t, root, "old-1", mib, t0)
	makeEntry(t, root, "old-2", mib, t0.Add(time.Minute))

	c := openTest(t, root)
	var log bytes.Buffer
	c.Log = &log
	c.SetMax(mib) // smaller than the new entry alone
	dir, err := c.Get(context.Background(), "new", fill("new", 2*mib))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, "data"))
	require.False(t, present(root, "old-1"))
	require.False(t, present(root, "old-2"))
	require.Contains(t, log.String(), "cache: evicted old-1")
	require.Contains(t, log.String(), "over the bound")

	// Even unclaimed, the entry just built is not a victim of its own
	// eviction.
	c.Release()
	r, err := c.prune(context.Background(), 0, "new", false, nil)
	require.NoError(t, err)
	require.Empty(t, r.Removed)
	require.True(t, present(root, "new"))

	// A hit builds nothing, so it evicts nothing either.
	makeEntry(t, root, "old-3", mib, t0)
	_, err = c.Get(context.Background(), "new", nil)
	require.NoError(t, err)
	require.True(t, present(root, "old-3"))
}

func TestEvictedEntryIsRebuilt(t *testing.T) {
	root := t.TempDir()
	makeEntry(t, root, "k", 1024, time.Now())
	c := openTest(t, root)
	_, err := c.Clean(context.Background(), nil)
	require.NoError(t, err)
	built := false
	dir, err := c.Get(context.Background(), "k", func(ctx context.Context, dir string) error {
		built = true
		return fill("k", 1024)(ctx, dir)
	})
	require.NoError(t, err)
	require.True(t, built)
	require.FileExists(t, filepath.Join(dir, "data"))
}

func TestConcurrentGetAndPrune(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	ks := []string{"k1", "k2", "k3"}
	var builds atomic.Int32
	stop := make(chan struct{})
	var pruners sync.WaitGroup
	for range 2 {
		pruners.Add(1)
		go func() {
			defer pruners.Done()
			p := openTest(t, root)
			p.Log = nil
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch i % 3 {
				case 0:
					_, err = p.Prune(ctx, 0, nil)
				case 1:
					_, err = p.Clean(ctx, nil)
				case 2:
					_, err = p.List(ctx, nil)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c := openTest(t, root)
			c.SetMax(0) // every build also evicts
			// At least 40 rounds, and on until entries were evicted and
			// rebuilt under the workers' feet a few times.
			start := time.Now()
			for i := 0; i < 40 || builds.Load() < int32(3*len(ks)) && time.Since(start) < 30*time.Second; i++ {
				key := ks[(w+i)%len(ks)]
				dir, err := c.Get(ctx, key, func(ctx context.Context, dir string) error {
					builds.Add(1)
					return fill(key, 64<<10)(ctx, dir)
				})
				if err != nil {
					t.Error(err)
					return
				}
				// Claimed: nothing may remove or change it now.
				for range 2 {
					b, err := os.ReadFile(filepath.Join(dir, "key"))
					if err != nil || string(b) != key {
						t.Errorf("entry %s while claimed: %q, %v", key, b, err)
						return
					}
					time.Sleep(time.Millisecond)
				}
				if i%3 != 0 { // sometimes keep a claim into the next round
					c.Release()
				}
			}
			c.Release()
		}()
	}
	workers.Wait()
	close(stop)
	pruners.Wait()
	// Entries were evicted and rebuilt under the workers' feet.
	require.GreaterOrEqual(t, builds.Load(), int32(3*len(ks)))
	t.Logf("%d builds", builds.Load())

	// What is left is whole, and no temporary directory was abandoned.
	des, err := os.ReadDir(root)
	require.NoError(t, err)
	for _, de := range des {
		name := de.Name()
		require.False(t, strings.HasPrefix(name, ".build-") || strings.HasPrefix(name, ".trash-"), name)
		if de.IsDir() {
			require.True(t, present(root, name), name)
			b, err := os.ReadFile(filepath.Join(root, name, "key"))
			require.NoError(t, err)
			require.Equal(t, name, string(b))
		}
	}
}

func TestCleanRemovesDebrisOnly(t *testing.T) {
	root := t.TempDir()
	c := openTest(t, root)
	dead := Key("kernel-x", "dead")
	building := Key("kernel-x", "building")
	orphan := Key("modules-x", "orphan")
	mk := func(p string) {
		require.NoError(t, os.MkdirAll(filepath.Join(root, p), 0o755))
	}
	touchFile := func(p string) {
		require.NoError(t, os.WriteFile(filepath.Join(root, p), nil, 0o644))
	}
	mk(".build-" + dead + "-123")     // a killed build
	mk(dead)                          // an incomplete entry
	mk(".build-" + building + "-456") // a live build
	mk(".trash-" + orphan + "-1-1")   // a killed eviction
	touchFile("." + orphan + ".lock") // locks of an entry long gone
	touchFile("." + orphan + ".use")
	touchFile(".boot.lock") // not the cache's own
	touchFile(".thing.lock")
	b, err := tryFlock(c.lockPath(building), unix.LOCK_EX, true)
	require.NoError(t, err)
	defer unlockFile(b)

	r, err := c.Clean(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, 5, r.Debris)
	var left []string
	des, err := os.ReadDir(root)
	require.NoError(t, err)
	for _, de := range des {
		left = append(left, de.Name())
	}
	require.ElementsMatch(t, []string{".boot.lock", ".thing.lock", ".prune.mutex",
		".build-" + building + "-456", "." + building + ".lock"}, left)
}

func TestListMeasuresEntriesWithoutRecordedSize(t *testing.T) {
	root := t.TempDir()
	key := Key("kernel-debian-6.1.0-57-amd64", "p=1")
	dir := filepath.Join(root, key)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data"), bytes.Repeat([]byte{1}, mib), 0o644))
	// The marker of an entry built before sizes were recorded.
	require.NoError(t, os.WriteFile(filepath.Join(dir, completeMarker), []byte("2025-01-01T00:00:00Z\n"), 0o644))
	var progress bytes.Buffer
	list, err := openTest(t, root).List(context.Background(), &progress)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "kernel", list[0].Kind)
	require.GreaterOrEqual(t, list[0].Size, int64(mib))
	require.Contains(t, progress.String(), "measuring "+key)
	require.NoFileExists(t, filepath.Join(root, "."+key+".use"), "listing must not record a use")
}
