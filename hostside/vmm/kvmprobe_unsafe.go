//go:build linux

package vmm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// lowSize is the guest RAM the probe program writes (real mode reaches 640 KiB).
const lowSize = 0xA0000

// probeProgram is 16-bit real-mode code at CS:0xf000 (physical 0xfffff000): it fills
// segments 0x1000..0x9000 (576 KiB) with the word 0xc0de and halts.
var probeProgram = []byte{
	0xB8, 0xDE, 0xC0, // mov ax, 0xc0de
	0xBB, 0x00, 0x10, // mov bx, 0x1000
	0x8E, 0xC3, // outer: mov es, bx
	0x31, 0xFF, // xor di, di
	0xB9, 0x00, 0x80, // mov cx, 0x8000
	0xF3, 0xAB, // rep stosw
	0x81, 0xC3, 0x00, 0x10, // add bx, 0x1000
	0x81, 0xFB, 0x00, 0xA0, // cmp bx, 0xa000
	0x75, 0xED, // jne outer (-19)
	0xF4, // hlt
}

// resetJump sits at the reset vector (IP 0xfff0) and jumps to IP 0xf000.
var resetJump = []byte{0xE9, 0x0D, 0xF0} // jmp near -0xff3

// KVM ioctl numbers from <linux/kvm.h> (x86-64).
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVcpuMmapSize     = 0xAE04
	kvmCreateVcpu          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmRun                 = 0xAE80
	kvmExitHLT             = 5
	kvmAPIVersion          = 12
)

// kvmUserspaceMemoryRegion is struct kvm_userspace_memory_region.
type kvmUserspaceMemoryRegion struct {
	slot          uint32
	flags         uint32
	guestPhysAddr uint64
	memorySize    uint64
	userspaceAddr uint64
}

// ProbeKVM reports whether KVM can actually run a vCPU: it creates a VM whose only page
// holds HLT at the x86 reset vector and runs one vCPU until it exits with KVM_EXIT_HLT, or
// until timeout. The existence of /dev/kvm proves nothing: on nested or broken hosts a
// guest can hang forever in KVM_RUN. The returned error says why KVM is unusable.
func ProbeKVM(ctx context.Context, dev string, timeout time.Duration) error {
	kvm, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(kvm)
	v, err := ioctl(kvm, kvmGetAPIVersion, 0)
	if err != nil {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	defer unix.Close(int(vmfd))

	// Low memory the probe program fills, as a booting kernel touches fresh memory.
	low, err := unix.Mmap(-1, 0, lowSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(low)
	// One page at the top of the 32-bit space: the vCPU resets to CS base 0xffff0000,
	// IP 0xfff0, that is physical 0xfffffff0, offset 0xff0 of this page.
	const pageAddr, pageSize = 0xfffff000, 0x1000
	mem, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap guest page: %w", err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = 0xf4 // HLT everywhere else: a stray jump halts too.
	}
	copy(mem, probeProgram)
	copy(mem[0xff0:], resetJump)
	for slot, r := range []kvmUserspaceMemoryRegion{
		{slot: 0, guestPhysAddr: 0, memorySize: lowSize, userspaceAddr: uint64(uintptr(unsafe.Pointer(&low[0])))},
		{slot: 1, guestPhysAddr: pageAddr, memorySize: pageSize, userspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))},
	} {
		if _, err := ioctl(int(vmfd), kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&r))); err != nil {
			return fmt.Errorf("KVM_SET_USER_MEMORY_REGION %d: %w", slot, err)
		}
		runtime.KeepAlive(&r)
	}
	vcpu, err := ioctl(int(vmfd), kvmCreateVcpu, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	defer unix.Close(int(vcpu))
	size, err := ioctl(kvm, kvmGetVcpuMmapSize, 0)
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	run, err := unix.Mmap(int(vcpu), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap kvm_run: %w", err)
	}

	done := make(chan result, 1)
	tids := make(chan int, 1)
	go func() {
		// The vCPU thread is kicked out of KVM_RUN with a signal on timeout; the Go runtime
		// handles SIGURG itself (preemption), so the ioctl returns EINTR harmlessly.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		_, err := ioctl(int(vcpu), kvmRun, 0)
		done <- result{binary.LittleEndian.Uint32(run[8:12]), err}
	}()
	tid := <-tids
	t := time.NewTimer(timeout)
	defer t.Stop()
	var r result
	select {
	case r = <-done:
	case <-t.C:
		r = kick(done, tid, fmt.Errorf("vCPU did not halt within %v: %w", timeout, ErrKVMUnusable))
	case <-ctx.Done():
		r = kick(done, tid, ctx.Err())
	}
	if r.err != nil {
		if errors.Is(r.err, unix.EINTR) {
			// Not reached unless something else interrupted the run.
			return fmt.Errorf("KVM_RUN interrupted: %w", ErrKVMUnusable)
		}
		return fmt.Errorf("KVM_RUN: %w", r.err)
	}
	unix.Munmap(run)
	if r.exit != kvmExitHLT {
		return fmt.Errorf("vCPU exited with reason %d, want HLT (%d): %w", r.exit, kvmExitHLT, ErrKVMUnusable)
	}
	// The halt counts only if the program really ran: its pattern fills 0x10000..0x9ffff.
	if low[0x10000] != 0xDE || low[0x9fffe] != 0xDE || low[0x9ffff] != 0xC0 || low[0xffff] != 0 {
		return fmt.Errorf("probe program did not fill guest memory: %w", ErrKVMUnusable)
	}
	return nil
}

// kick interrupts a vCPU thread stuck in KVM_RUN and waits a little for it. If the thread
// cannot be interrupted, it is abandoned (with its mapping) and reported as such.
func kick(done <-chan result, tid int, why error) result {
	for i := 0; i < 20; i++ {
		unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
		select {
		case <-done:
			return result{err: why}
		case <-time.After(10 * time.Millisecond):
		}
	}
	return result{err: fmt.Errorf("%w (the vCPU thread could not be interrupted)", why)}
}

// result is the outcome of one KVM_RUN.
type result struct {
	exit uint32
	err  error
}

func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}
