// Package childexit waits for a child process to exit without holding a thread.
//
// os.Process.Wait blocks its thread in waitid for as long as the child runs; the runtime
// hands the thread's work to another one, starting a new thread when none is idle, and
// keeps every thread it started. Await waits instead for the child's pidfd to become
// readable, which it does when the child exits, through the runtime's poller: the waiting
// goroutine parks and no thread waits with it. Wait then reaps the exited child at once.
package childexit

import (
	"os"

	"golang.org/x/sys/unix"
)

// Await returns once child pid has exited (it is not reaped; Wait reaps it). Where the pid
// has no pidfd to poll (a kernel before 5.3, or a pid already reaped) it returns at once and
// Wait blocks as it would have.
func Await(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err != nil || n > 0
	})
}
