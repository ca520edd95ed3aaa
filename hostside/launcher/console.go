package launcher

import (
	"bytes"
	"context"
	"os"
	"time"
)

// agentReadyMarker is the console line the guest's agent prints once it listens on vsock.
const agentReadyMarker = "confguest-agent: ready"

// waitForConsole returns once the console file at path shows marker, or when ctx ends.
// The launcher dials the agent only then. Twice, vhost-device-vsock accepted every CONNECT
// of a boot without ever answering one, although the agent listened; the suspected cause
// is a CONNECT that reached the backend while the guest's vsock driver was still coming
// up, so none is sent before the guest says it listens.
func waitForConsole(ctx context.Context, path, marker string) bool {
	var (
		off  int64
		tail []byte // the end of what was read, in case the marker spans two reads
		buf  = make([]byte, 64<<10)
	)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if f, err := os.Open(path); err == nil {
			for {
				n, err := f.ReadAt(buf, off)
				if n > 0 {
					off += int64(n)
					seen := append(tail, buf[:n]...)
					if bytes.Contains(seen, []byte(marker)) {
						f.Close()
						return true
					}
					tail = append([]byte(nil), seen[max(0, len(seen)-len(marker)):]...)
				}
				if err != nil || n == 0 {
					break
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
