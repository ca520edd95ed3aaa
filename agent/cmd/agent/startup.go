package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// startup is what the agent's start cost in reads: how much of its binary is
// mapped into it and in the page cache, and how many bytes of the root
// filesystem were read through dm-verity (each one hashed) and from the disk
// beneath (data and hash tree). The agent prints it once after its ready
// line; the boot benchmark (build/bench/boot.sh) reads it from the console.
type startup struct {
	exe          string // the binary's path
	exeBytes     int64
	exeMapped    int64 // pages of the binary mapped into the agent (touched, or faulted around a touch)
	exeCached    int64 // pages of the binary in the page cache (read, read-ahead included)
	rootRead     int64 // bytes read from the root's block device (dm-verity: verified)
	rootDiskRead int64 // bytes read from the devices beneath it
	// exePages has bit i%8 of byte i/8 set when the binary's page i (file
	// offset i*4096) is in the page cache: with the root's read-ahead off
	// (confguest.readahead_kb=0) exactly the pages the start touched.
	// build/bench/agentsize -pages maps them to sections and packages.
	exePages []byte
}

func (s startup) String() string {
	return fmt.Sprintf("confguest-agent: startup: binary %d bytes, %d KiB mapped, %d KiB in the page cache; root %d bytes read through dm-verity, %d bytes from its disk",
		s.exeBytes, s.exeMapped*4, s.exeCached*4, s.rootRead, s.rootDiskRead)
}

// pagesLine is the console line that carries exePages, in hex.
func (s startup) pagesLine() string {
	return "confguest-agent: startup pages: " + hex.EncodeToString(s.exePages)
}

// measureStartup reads what the start read: the pages of /proc/self/exe in the page cache,
// and the bytes read from the block device holding it and the devices beneath it (sysfs
// under sys). It is quick, as it runs before the ready line: the mapped pages, slower to
// read (the kernel writes out /proc/self/smaps), come after it, from readMapped.
func measureStartup(sys string) (startup, error) {
	var s startup
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return s, err
	}
	s.exe = exe
	f, err := os.Open(exe)
	if err != nil {
		return s, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return s, err
	}
	s.exeBytes = st.Size
	if s.exeCached, s.exePages, err = cachedPages(f, st.Size); err != nil {
		return s, fmt.Errorf("pages of %s in the page cache: %w", exe, err)
	}
	dev := filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if s.rootRead, err = bytesRead(dev); err != nil {
		return s, err
	}
	slaves, _ := os.ReadDir(filepath.Join(dev, "slaves"))
	for _, sl := range slaves {
		n, err := bytesRead(filepath.Join(sys, "class", "block", sl.Name()))
		if err != nil {
			return s, err
		}
		s.rootDiskRead += n
	}
	if len(slaves) == 0 {
		s.rootDiskRead = s.rootRead
	}
	return s, nil
}

// readMapped adds the pages of the binary mapped into the agent, from /proc/self/smaps.
func (s *startup) readMapped() error {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return err
	}
	s.exeMapped = mappedKiB(smaps, s.exe) / 4
	return nil
}

// cachedPages counts the pages of the file f (size bytes) in the page cache
// and returns them as a bitmap too (page i is bit i%8 of byte i/8).
func cachedPages(f *os.File, size int64) (int64, []byte, error) {
	if size == 0 {
		return 0, nil, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, nil, err
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+int64(os.Getpagesize())-1)/int64(os.Getpagesize()))
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, nil, fmt.Errorf("mincore: %w", errno)
	}
	var n int64
	bits := make([]byte, (len(vec)+7)/8)
	for i, v := range vec {
		n += int64(v & 1)
		bits[i/8] |= (v & 1) << (i % 8)
	}
	return n, bits, nil
}

// mappedKiB sums the Rss of the mappings of path in a /proc/PID/smaps.
func mappedKiB(smaps []byte, path string) int64 {
	var kib int64
	in := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			n, _ := strconv.ParseInt(fields[1], 10, 64)
			kib += n
		}
	}
	return kib
}

// bytesRead reads the sectors read of the block device dir (its sysfs
// directory) from its stat file.
func bytesRead(dir string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, fmt.Errorf("%s/stat: %q has no sectors-read field", dir, b)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s/stat: sectors read: %w", dir, err)
	}
	return n * 512, nil
}
