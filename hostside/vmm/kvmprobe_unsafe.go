//go:build linux

package vmm

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The probe guest: 64-bit code at 0x1000, identity-mapped with 2 MiB pages (PML4 at 0x2000,
// PDPT at 0x3000, PD at 0x4000), that fills probeFill bytes of fresh memory from 2 MiB on
// and halts. A healthy KVM host does this in tens of milliseconds; a nested host that
// faults in guest memory slowly (where Linux guests then appear to hang) takes seconds.
const (
	probeFillStart = 2 << 20
	probeFill      = 32 << 20
	probeMemSize   = probeFillStart + probeFill
	probeCode      = 0x1000
	probePML4      = 0x2000
)

var probeProgram = []byte{
	0x48, 0xC7, 0xC7, 0x00, 0x00, 0x20, 0x00, // mov rdi, 0x200000
	0x48, 0xC7, 0xC1, 0x00, 0x00, 0x40, 0x00, // mov rcx, 0x400000 (32 MiB in quadwords)
	0x48, 0xC7, 0xC0, 0xDE, 0xC0, 0x00, 0x00, // mov rax, 0xc0de
	0xF3, 0x48, 0xAB, // rep stosq
	0xF4, // hlt
}

// KVM ioctl numbers from <linux/kvm.h> (x86-64).
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVcpuMmapSize     = 0xAE04
	kvmCreateVcpu          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmRun                 = 0xAE80
	kvmSetRegs             = 0x4090AE82 // struct kvm_regs, 144 bytes
	kvmGetSregs            = 0x8138AE83 // struct kvm_sregs, 312 bytes
	kvmSetSregs            = 0x4138AE84
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

// ProbeKVM reports whether KVM can actually run a guest: it creates a VM, puts one vCPU in
// 64-bit mode running a tiny program that fills 32 MiB of fresh guest memory and executes
// HLT, and requires KVM_EXIT_HLT within timeout (and the memory filled). The existence of
// /dev/kvm proves nothing: on some nested hosts a vCPU runs, but each page of guest memory
// costs so much that a Linux guest appears to hang. The error says why KVM is unusable.
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

	mem, err := unix.Mmap(-1, 0, probeMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	le := binary.LittleEndian
	le.PutUint64(mem[probePML4:], probePML4+0x1000|3)        // PML4[0] -> PDPT, present|rw
	le.PutUint64(mem[probePML4+0x1000:], probePML4+0x2000|3) // PDPT[0] -> PD
	for i := 0; i < probeMemSize>>21; i++ {
		le.PutUint64(mem[probePML4+0x2000+8*i:], uint64(i)<<21|0x83) // 2 MiB page, present|rw|PS
	}
	copy(mem[probeCode:], probeProgram)
	region := kvmUserspaceMemoryRegion{memorySize: probeMemSize, userspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(int(vmfd), kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	runtime.KeepAlive(&region)
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
	if err := enterLongMode(int(vcpu)); err != nil {
		unix.Munmap(run)
		return err
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
	select {
	case r := <-done:
		if r.err != nil {
			return fmt.Errorf("KVM_RUN: %w", r.err)
		}
		unix.Munmap(run)
		if r.exit != kvmExitHLT {
			return fmt.Errorf("vCPU exited with reason %d, want HLT (%d): %w", r.exit, kvmExitHLT, ErrKVMUnusable)
		}
	case <-t.C:
		return kick(done, tid, fmt.Errorf("the probe guest did not fill %d MiB and halt within %v: %w", probeFill>>20, timeout, ErrKVMUnusable))
	case <-ctx.Done():
		return kick(done, tid, ctx.Err())
	}
	// The halt counts only if the program really ran: its pattern fills the whole range.
	if le.Uint64(mem[probeFillStart:]) != 0xc0de || le.Uint64(mem[probeMemSize-8:]) != 0xc0de || le.Uint64(mem[probeFillStart-8:]) != 0 {
		return fmt.Errorf("probe program did not fill guest memory: %w", ErrKVMUnusable)
	}
	return nil
}

// enterLongMode puts the vCPU straight into 64-bit mode with the probe's page tables and
// points it at the probe program (struct kvm_sregs and kvm_regs from <linux/kvm.h>).
func enterLongMode(vcpu int) error {
	var sregs [312]byte
	if _, err := ioctl(vcpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	le := binary.LittleEndian
	// struct kvm_segment (24 bytes): base, limit, selector, type, present, dpl, db, s, l, g.
	seg := func(off int, selector uint16, typ, long byte) {
		le.PutUint64(sregs[off:], 0)
		le.PutUint32(sregs[off+8:], 0xffffffff)
		le.PutUint16(sregs[off+12:], selector)
		sregs[off+14], sregs[off+15], sregs[off+16] = typ, 1, 0
		sregs[off+17], sregs[off+18], sregs[off+19], sregs[off+20] = 1-long, 1, long, 1
	}
	seg(0, 8, 11, 1) // cs: execute/read, 64-bit
	for _, off := range []int{24, 48, 72, 96, 120} {
		seg(off, 16, 3, 0) // ds, es, fs, gs, ss: read/write
	}
	le.PutUint64(sregs[224:], 0x80050033) // cr0: PE MP ET NE WP AM PG
	le.PutUint64(sregs[240:], probePML4)  // cr3
	le.PutUint64(sregs[248:], 1<<5)       // cr4: PAE
	le.PutUint64(sregs[264:], 0x500)      // efer: LME LMA
	if _, err := ioctl(vcpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	var regs [18]uint64 // rax..r15, rip, rflags
	regs[16], regs[17] = probeCode, 2
	if _, err := ioctl(vcpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// kick interrupts a vCPU thread stuck in KVM_RUN and waits a little for it. If the thread
// cannot be interrupted, it is abandoned (with its mappings) and reported as such.
func kick(done <-chan result, tid int, why error) error {
	for i := 0; i < 20; i++ {
		unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
		select {
		case <-done:
			return why
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w (the vCPU thread could not be interrupted)", why)
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
