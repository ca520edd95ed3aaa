// Command readyagent is the boot benchmark's stand-in for /sbin/agent: it prints the
// agent's ready line and waits. With AGENT_CONTROL=1, build/bench/boot.sh boots the image
// with this program in the agent's place on an otherwise identical dm-verity root, which
// separates what the agent costs at boot from what PID 1 and the kernel do.
package main

import (
	"fmt"
	"time"
)

func main() {
	fmt.Println("confguest-agent: ready")
	time.Sleep(time.Hour)
}
