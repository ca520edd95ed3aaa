// Command tinyinit is the smallest /init that shows a guest kernel boots: it mounts
// devtmpfs, prints one line with the kernel release on the console and powers the VM off,
// so the VMM exits by itself. Build it statically and pack it as /init in a newc cpio:
//
//	CGO_ENABLED=0 go build -o init ./kernelcfg/testdata/tinyinit
package main

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
)

func main() {
	out := os.Stdout
	if err := os.MkdirAll("/dev", 0o755); err == nil {
		if err := syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err == nil {
			if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
				out = c
			}
		}
	}
	var u syscall.Utsname
	release := "unknown"
	if err := syscall.Uname(&u); err == nil {
		b := make([]byte, 0, len(u.Release))
		for _, c := range u.Release {
			b = append(b, byte(c))
		}
		release = string(bytes.TrimRight(b, "\x00"))
	}
	fmt.Fprintf(out, "tinyinit: kernel %s booted, powering off\n", release)
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(out, "tinyinit: power off: %v\n", err)
	}
	select {}
}
