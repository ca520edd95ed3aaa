package shim

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// The kubelet rewrites a ConfigMap, Secret, projected or downwardAPI volume when it syncs
// the pod: its atomic writer fills a new timestamped directory and renames ..data onto it,
// then adds and removes the keys' symlinks, all in the volume's own directory. The shim
// watches each such directory with inotify, so an update is sent to the guest as soon as
// the kubelet made it, and reads them all again every volumeBackstop in case an event was
// missed (a full inotify queue, a volume mounted again). Without a watch (inotify's limits
// reached) it reads them every volumeRefreshInterval instead.

// volumeBackstop is how often the directories are read again while they are watched.
const volumeBackstop = 10 * time.Second

// volumeSettle is how long a wakeup waits after a change, so that the atomic writer's
// steps (..data, then the keys' symlinks) are usually read as one update.
const volumeSettle = 50 * time.Millisecond

// volumeEvents are the changes to a volume's directory that mean new content.
const volumeEvents = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
	unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_ONLYDIR

// volumeWakeups returns a channel that receives when one of the directories vs may have
// changed: on an inotify event in it, and at least every volumeBackstop (every
// volumeRefreshInterval when the directories cannot be watched), until ctx ends.
func volumeWakeups(ctx context.Context, id string, vs []hostFiles) <-chan struct{} {
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default: // a wakeup is already pending: it reads every directory
		}
	}
	every := volumeBackstop
	if err := watchDirs(ctx, vs, signal); err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Warnf("volumes are read again every %s instead", volumeRefreshInterval)
		every = volumeRefreshInterval
	}
	go func() {
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

// watchDirs calls changed, volumeSettle after each burst of inotify events in the
// directories vs, until ctx ends.
func watchDirs(ctx context.Context, vs []hostFiles, changed func()) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	// A non-blocking descriptor is read through Go's poller, so closing it ends the read.
	f := os.NewFile(uintptr(fd), "inotify")
	for _, v := range vs {
		if _, err := unix.InotifyAddWatch(fd, v.src, volumeEvents); err != nil {
			f.Close()
			return fmt.Errorf("watch %s: %w", v.src, err)
		}
	}
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			if _, err := f.Read(buf); err != nil {
				return // closed with ctx
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(volumeSettle):
			}
			changed()
		}
	}()
	return nil
}
