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
	return qmpExecute(ctx, path, "system_powerdown")
}

// qmpExecute runs one QMP command without arguments and waits for its answer.
func qmpExecute(ctx context.Context, path, command string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("QMP socket %s: %w", path, ErrNotRunning)
		}
		return fmt.Errorf("dial QMP socket %s: %w", path, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
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
	for _, c := range []string{"qmp_capabilities", command} {
		if err := json.NewEncoder(conn).Encode(map[string]string{"execute": c}); err != nil {
			return fmt.Errorf("QMP %s: send %s: %w", path, c, err)
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
				return fmt.Errorf("QMP %s: read reply to %s: %w", path, c, err)
			}
			if reply.Event != "" {
				continue
			}
			if reply.Error != nil {
				return fmt.Errorf("QMP %s: %s: %s: %s: %w", path, c, reply.Error.Class, reply.Error.Desc, ErrAPI)
			}
			break
		}
	}
	return nil
}
