package shim

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// The kubelet rewrites a ConfigMap, Secret, projected or downwardAPI volume when it syncs
// the pod: its atomic writer fills a new timestamped directory and renames ..data onto it,
// then adds and removes the keys' symlinks, all in the volume's own directory. The shim
// watches each such directory with inotify, so an update is sent to the guest as soon as
// the kubelet made it, and reads them all again every volumeBackstop in case an event was
// missed (a full inotify queue, a volume mounted again). Without a watch (inotify's limits
// reached) it reads them every volumeRefreshInterval instead. All the containers of a shim
// share one inotify instance (dirWatch): a user has few (128 by default).

// volumeBackstop is how often the directories are read again while they are watched.
const volumeBackstop = 10 * time.Second

// volumeSettle is how long a wakeup waits after a change, so that the atomic writer's
// steps (..data, then the keys' symlinks) are usually read as one update.
const volumeSettle = 50 * time.Millisecond

// volumeEvents are the changes to a volume's directory that mean new content.
const volumeEvents = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
	unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_ONLYDIR

// volumeWakeups returns a channel that receives when one of the directories vs may have
// changed: on an inotify event in it (through w), and at least every volumeBackstop (every
// volumeRefreshInterval when the directories cannot be watched), until ctx ends.
func volumeWakeups(ctx context.Context, w *dirWatch, id string, vs []hostFiles) <-chan struct{} {
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default: // a wakeup is already pending: it reads every directory
		}
	}
	dirs := make([]string, len(vs))
	for i, v := range vs {
		dirs[i] = v.src
	}
	every := volumeBackstop
	remove, err := w.add(dirs, signal)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Warnf("volumes are read again every %s instead", volumeRefreshInterval)
		every = volumeRefreshInterval
		remove = func() {}
	}
	go func() {
		defer remove()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				signal()
			}
		}
	}()
	return wake
}

// dirWatch is one inotify instance watching directories for several subscribers; it is
// made on the first add and lives until close (the shim's life).
type dirWatch struct {
	mu     sync.Mutex
	f      *os.File // nil until the first add, and after close
	fd     int
	closed bool
	// subs are the subscribers of each watch descriptor: two containers may watch one
	// directory, which inotify gives one descriptor.
	subs map[int32][]*func()
}

// add watches dirs and calls changed, volumeSettle after a burst of events in any of them,
// until remove is called.
func (w *dirWatch) add(dirs []string, changed func()) (remove func(), err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, fmt.Errorf("inotify: the watch is closed")
	}
	if w.f == nil {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("inotify: %w", err)
		}
		// A non-blocking descriptor is read through Go's poller, so closing it ends the read.
		w.f, w.fd, w.subs = os.NewFile(uintptr(fd), "inotify"), fd, map[int32][]*func(){}
		go w.read(w.f)
	}
	sub := &changed
	var wds []int32
	for _, d := range dirs {
		wd, err := unix.InotifyAddWatch(w.fd, d, volumeEvents)
		if err != nil {
			w.drop(sub, wds)
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
		w.subs[int32(wd)] = append(w.subs[int32(wd)], sub)
		wds = append(wds, int32(wd))
	}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.drop(sub, wds)
	}, nil
}

// drop removes sub from the descriptors wds, and each descriptor nobody else uses from
// the instance. w.mu is held.
func (w *dirWatch) drop(sub *func(), wds []int32) {
	for _, wd := range wds {
		rest := slices.DeleteFunc(w.subs[wd], func(s *func()) bool { return s == sub })
		if len(rest) > 0 {
			w.subs[wd] = rest
			continue
		}
		if _, ok := w.subs[wd]; ok && w.f != nil {
			unix.InotifyRmWatch(w.fd, uint32(wd)) // EINVAL when the directory is already gone
		}
		delete(w.subs, wd)
	}
}

// read calls the subscribers of the descriptors that had events, until f is closed.
func (w *dirWatch) read(f *os.File) {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := f.Read(buf)
		if err != nil {
			return // closed
		}
		changed := map[int32]bool{}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			e := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			changed[e.Wd] = true
			off += unix.SizeofInotifyEvent + int(e.Len)
		}
		time.Sleep(volumeSettle)
		var calls []*func()
		w.mu.Lock()
		for wd := range changed {
			calls = append(calls, w.subs[wd]...)
		}
		w.mu.Unlock()
		for _, c := range calls {
			(*c)()
		}
	}
}

// close ends the instance; later adds fail.
func (w *dirWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.f != nil {
		w.f.Close()
		w.f, w.subs = nil, nil
	}
}
