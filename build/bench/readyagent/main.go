// Command readyagent is the boot benchmark's stand-in for /sbin/agent: it prints the
// agent's ready line and waits. With AGENT_CONTROL=1, build/bench/boot.sh boots the image
// with this program in the agent's place on an otherwise identical dm-verity root, which
// separates what the agent costs at boot from what PID 1 and the kernel do.
//
// Built with -ldflags "-X main.readFirst=FILE" it first reads FILE whole (the benchmark
// keeps the image's agent in the root as that file): the reading control, which reads
// through dm-verity the bytes the agent's read-ahead reads, and does nothing else the
// agent's start does.
package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// readFirst is the file read before the ready line; empty: none.
var readFirst string

func main() {
	if readFirst != "" {
		f, err := os.Open(readFirst)
		if err == nil {
			_, err = io.Copy(io.Discard, f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "readyagent: %v\n", err)
		}
	}
	fmt.Println("confguest-agent: ready")
	time.Sleep(time.Hour)
}
