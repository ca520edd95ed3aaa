package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// qmpPowerdown asks QEMU, through its QMP socket, to press the guest's ACPI power button.
func qmpPowerdown(ctx context.Context, path string) error {
	return qmpRun(ctx, path, 5*time.Second, []qmpCommand{{Execute: "system_powerdown"}})
}

// qmpCommand is one QMP command with its arguments.
type qmpCommand struct {
	Execute   string         `json:"execute"`
	Arguments map[string]any `json:"arguments,omitempty"`
}

// qmpRun runs commands in one QMP session, in order, stopping at the first error, and
// waits for each answer (skipping events). The session ends after timeout at the latest.
func qmpRun(ctx context.Context, path string, timeout time.Duration, cmds []qmpCommand) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("QMP socket %s: %w", path, ErrNotRunning)
		}
		return fmt.Errorf("dial QMP socket %s: %w", path, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	dec := json.NewDecoder(conn)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("QMP %s: no greeting: %v", path, err)
	}
	enc := json.NewEncoder(conn)
	for _, c := range append([]qmpCommand{{Execute: "qmp_capabilities"}}, cmds...) {
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("QMP %s: send %s: %w", path, c.Execute, err)
		}
		for {
			var reply struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class string `json:"class"`
					Desc  string `json:"desc"`
				} `json:"error"`
				Event string `json:"event"`
			}
			if err := dec.Decode(&reply); err != nil {
				return fmt.Errorf("QMP %s: read reply to %s: %w", path, c.Execute, err)
			}
			if reply.Event != "" {
				continue
			}
			if reply.Error != nil {
				return fmt.Errorf("QMP %s: %s: %s: %s: %w", path, c.Execute, reply.Error.Class, reply.Error.Desc, ErrAPI)
			}
			break
		}
	}
	return nil
}
