package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"confguest/rootfs"
)

// DefaultCacheBytes bounds a disk cache opened with a size of 0.
const DefaultCacheBytes = 8 << 30

// Cache keeps container rootfs disks (erofs + dm-verity), one file per content key, so that
// an image is converted once and every later pod and run reuses its disk. Entries are
// read-only files <key>.img with their verity parameters in <key>.json. An entry is written
// under a temporary name, synced and renamed into place, its parameters last, so a
// half-written entry is never found. Builders of one key take its lock (<key>.lock, flock)
// in turn: the second finds the first one's entry. Every use verifies the whole entry
// against its recorded parameters; one that does not verify is removed and rebuilt. When
// the entries exceed the size bound, the least recently used are removed, those no run directory holds first; a disk in use
// is a hard link in its run directory (or a copy, across filesystems), so removing the
// cache's name does not touch it.
type Cache struct {
	dir string
	max int64
}

// OpenCache opens (creating it, mode 0700) the disk cache in dir, bounded to maxBytes of
// disk files (0: DefaultCacheBytes).
func OpenCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes == 0 {
		maxBytes = DefaultCacheBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("disk cache %s: %w", dir, err)
	}
	return &Cache{dir: dir, max: maxBytes}, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// cacheEntry is <key>.json: the key the disk was built for and its verity parameters.
type cacheEntry struct {
	Key    string        `json:"key"`
	Verity rootfs.Params `json:"verity"`
}

func (c *Cache) imgPath(key string) string  { return filepath.Join(c.dir, key+".img") }
func (c *Cache) metaPath(key string) string { return filepath.Join(c.dir, key+".json") }

// use puts the disk for key at dst (a hard link to the entry, or a copy) and returns its
// verity parameters and whether the cache had it. Without a good entry, build writes the
// disk at the path it is given (in the cache directory) and it becomes the entry. note,
// if not nil, hears about a bad entry that was removed.
func (c *Cache) use(ctx context.Context, key, dst string, build func(ctx context.Context, path string) (rootfs.Params, error), note func(string)) (rootfs.Params, bool, error) {
	if !isCacheKey(key) {
		return rootfs.Params{}, false, fmt.Errorf("disk cache key %q: want 64 lowercase hex digits", key)
	}
	// Users of a good entry share its lock; a builder, or the remover of a bad entry,
	// holds it alone.
	unlock, err := c.lockKey(key, unix.LOCK_SH)
	if err != nil {
		return rootfs.Params{}, false, err
	}
	p, err := c.take(ctx, key, dst)
	unlock()
	hit := err == nil
	if hit {
		c.touch(key)
	} else {
		os.Remove(dst)
		if ctx.Err() != nil {
			return rootfs.Params{}, false, ctx.Err()
		}
		if unlock, err = c.lockKey(key, unix.LOCK_EX); err != nil {
			return rootfs.Params{}, false, err
		}
		p, hit, err = c.useLocked(ctx, key, dst, build, note)
		unlock()
		if err != nil {
			return rootfs.Params{}, false, err
		}
	}
	if err := c.evict(key); err != nil && note != nil {
		note(fmt.Sprintf("disk cache %s: eviction: %v", c.dir, err))
	}
	return p, hit, nil
}

func (c *Cache) useLocked(ctx context.Context, key, dst string, build func(ctx context.Context, path string) (rootfs.Params, error), note func(string)) (rootfs.Params, bool, error) {
	if p, err := c.take(ctx, key, dst); err == nil {
		c.touch(key)
		return p, true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		if ctx.Err() != nil {
			return rootfs.Params{}, false, ctx.Err()
		}
		os.Remove(dst)
		c.remove(key)
		if note != nil {
			note(fmt.Sprintf("disk cache entry %s removed and rebuilt: %v", key, err))
		}
	}
	tmp := filepath.Join(c.dir, fmt.Sprintf(".build-%s-%d.img", key, os.Getpid()))
	p, err := build(ctx, tmp)
	if err != nil {
		os.Remove(tmp)
		return rootfs.Params{}, false, err
	}
	if err := c.commit(key, tmp, p); err != nil {
		os.Remove(tmp)
		return rootfs.Params{}, false, err
	}
	if err := place(c.imgPath(key), dst); err != nil {
		return rootfs.Params{}, false, err
	}
	return p, false, nil
}

// touch marks entry key used now: its parameters' file's times are the LRU clock.
func (c *Cache) touch(key string) {
	now := time.Now()
	os.Chtimes(c.metaPath(key), now, now)
}

// take places entry key at dst and verifies it there. It fails with os.ErrNotExist when
// there is no complete entry.
func (c *Cache) take(ctx context.Context, key, dst string) (rootfs.Params, error) {
	b, err := os.ReadFile(c.metaPath(key))
	if err != nil {
		return rootfs.Params{}, err
	}
	if _, err := os.Stat(c.imgPath(key)); err != nil {
		return rootfs.Params{}, err
	}
	var e cacheEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return rootfs.Params{}, fmt.Errorf("%s: %w", c.metaPath(key), err)
	}
	if e.Key != key {
		return rootfs.Params{}, fmt.Errorf("%s records key %q, want %q", c.metaPath(key), e.Key, key)
	}
	if err := e.Verity.Validate(); err != nil {
		return rootfs.Params{}, fmt.Errorf("%s: %w", c.metaPath(key), err)
	}
	if err := place(c.imgPath(key), dst); err != nil {
		return rootfs.Params{}, err
	}
	// The bytes checked are the ones the VM gets: dst is the entry's inode or a copy of it.
	if err := rootfs.VerifyContext(ctx, dst, e.Verity); err != nil {
		return rootfs.Params{}, fmt.Errorf("verify %s: %w", c.imgPath(key), err)
	}
	return e.Verity, nil
}

// commit makes the built disk at tmp the entry for key: synced, read-only, renamed into
// place, then its parameters written the same way.
func (c *Cache) commit(key, tmp string, p rootfs.Params) error {
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	if err := os.Rename(tmp, c.imgPath(key)); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	b, err := json.Marshal(cacheEntry{Key: key, Verity: p})
	if err != nil {
		return err
	}
	mtmp := filepath.Join(c.dir, fmt.Sprintf(".meta-%s-%d.json", key, os.Getpid()))
	if err := os.WriteFile(mtmp, b, 0o444); err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	if err := syncFile(mtmp); err != nil {
		os.Remove(mtmp)
		return err
	}
	if err := os.Rename(mtmp, c.metaPath(key)); err != nil {
		os.Remove(mtmp)
		return fmt.Errorf("disk cache: %w", err)
	}
	return syncFile(c.dir)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("disk cache: sync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("disk cache: sync %s: %w", path, err)
	}
	return nil
}

// remove deletes entry key, its parameters first so it is never found half-removed.
func (c *Cache) remove(key string) {
	os.Remove(c.metaPath(key))
	os.Remove(c.imgPath(key))
}

// place makes dst a hard link to src or, where that fails (another filesystem), a copy.
func place(src, dst string) error {
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy cached disk: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("copy cached disk: %w", err)
	}
	_, err = io.Copy(out, in) // copy_file_range: a reflink where the filesystem has them
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy cached disk to %s: %w", dst, err)
	}
	return nil
}

// lockKey takes the flock of key: how is unix.LOCK_SH or unix.LOCK_EX, with unix.LOCK_NB
// to fail with unix.EWOULDBLOCK rather than wait. Eviction removes lock files, so a lock
// taken on a file that is no longer the one at its path is dropped and taken again.
func (c *Cache) lockKey(key string, how int) (func(), error) {
	return lockFile(filepath.Join(c.dir, key+".lock"), how)
}

func lockFile(path string, how int) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("disk cache lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			f.Close()
			return nil, fmt.Errorf("disk cache lock %s: %w", path, err)
		}
		var held, named unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &named) == nil && held.Ino == named.Ino && held.Dev == named.Dev {
			return func() { f.Close() }, nil
		}
		f.Close()
	}
}

// dropLock removes the lock file of key when key has no entry and nobody holds the lock.
func (c *Cache) dropLock(key string) {
	if _, err := os.Stat(c.imgPath(key)); !errors.Is(err, os.ErrNotExist) {
		return
	}
	unlock, err := c.lockKey(key, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return
	}
	if _, err := os.Stat(c.imgPath(key)); errors.Is(err, os.ErrNotExist) {
		os.Remove(filepath.Join(c.dir, key+".lock"))
	}
	unlock()
}

// staleAfter is how old a temporary file of the cache must be to be a crashed builder's.
const staleAfter = time.Hour

// evict removes the least recently used entries until the disks fit the bound, those no
// run directory links first (removing a disk a VM uses frees its space only when the VM's
// run directory goes), never keep
// (the entry just used) and never an entry whose lock is held. It also removes what
// crashed builders left.
func (c *Cache) evict(keep string) error {
	unlock, err := lockFile(filepath.Join(c.dir, ".evict.lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	type entry struct {
		key    string
		size   int64
		used   time.Time
		linked bool // also named in a run directory: removing it frees nothing yet
	}
	var all []entry
	var total int64
	for _, d := range ents {
		name := d.Name()
		fi, err := d.Info()
		if err != nil {
			continue
		}
		if strings.HasPrefix(name, ".") && name != ".evict.lock" && time.Since(fi.ModTime()) > staleAfter {
			os.Remove(filepath.Join(c.dir, name))
			continue
		}
		if key, ok := strings.CutSuffix(name, ".lock"); ok && !strings.HasPrefix(name, ".") {
			c.dropLock(key) // of a build that failed, when no entry came of it
			continue
		}
		key, ok := strings.CutSuffix(name, ".img")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		e := entry{key: key, size: fi.Size(), used: fi.ModTime()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.linked = st.Nlink > 1
		}
		if mi, err := os.Stat(c.metaPath(key)); err == nil {
			e.used = mi.ModTime()
		}
		all = append(all, e)
		total += e.size
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].linked != all[j].linked {
			return !all[i].linked
		}
		return all[i].used.Before(all[j].used)
	})
	for _, e := range all {
		if total <= c.max {
			break
		}
		if e.key == keep {
			continue
		}
		unlockKey, err := c.lockKey(e.key, unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			continue // being built or used now
		}
		c.remove(e.key)
		os.Remove(filepath.Join(c.dir, e.key+".lock"))
		unlockKey()
		total -= e.size
	}
	return nil
}
