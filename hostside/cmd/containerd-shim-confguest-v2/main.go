// Command containerd-shim-confguest-v2 is containerd's runtime v2 shim for confguest
// (runtime type io.containerd.confguest.v2): each pod runs in one confidential VM.
package main

import (
	cshim "github.com/containerd/containerd/runtime/v2/shim"

	"confguest/hostside/shim"
)

func main() {
	cshim.Run(shim.RuntimeName, shim.New, func(c *cshim.Config) {
		// The launcher waits for its own VMM processes; the library's reaper would take
		// their exit statuses away (it waits for any child).
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
