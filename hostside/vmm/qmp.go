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
	_, err := qmpExecute(ctx, path, 5*time.Second, qmpCommand{Execute: "system_powerdown"})
	return err
}

// qmpCommand is one QMP command with its arguments.
type qmpCommand struct {
	Execute   string         `json:"execute"`
	Arguments map[string]any `json:"arguments,omitempty"`
}

// QMPExecute runs one QMP command with its arguments (nil for none) on the QMP socket at
// path, in a session of its own, and returns the command's "return" value.
func QMPExecute(ctx context.Context, path, command string, args map[string]any) (json.RawMessage, error) {
	return qmpExecute(ctx, path, 30*time.Second, qmpCommand{command, args})
}

// qmpExecute runs c in a QMP session of its own that ends after timeout at the latest,
// and returns the command's "return" value (events are skipped).
func qmpExecute(ctx context.Context, path string, timeout time.Duration, c qmpCommand) (json.RawMessage, error) {
	s, err := qmpDial(ctx, path, timeout)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.run(c)
}

// qmpSession is one QMP connection, past its greeting and capabilities negotiation.
type qmpSession struct {
	path string
	conn net.Conn
	dec  *json.Decoder
	enc  *json.Encoder
}

// qmpDial connects to the QMP socket at path; the session ends after timeout (or ctx's
// deadline, if earlier) at the latest.
func qmpDial(ctx context.Context, path string, timeout time.Duration) (*qmpSession, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("QMP socket %s: %w", path, ErrNotRunning)
		}
		return nil, fmt.Errorf("dial QMP socket %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	s := &qmpSession{path: path, conn: conn, dec: json.NewDecoder(conn), enc: json.NewEncoder(conn)}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := s.dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP %s: no greeting: %v", path, err)
	}
	if _, err := s.run(qmpCommand{Execute: "qmp_capabilities"}); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// run sends c and returns its answer's "return" value, skipping events.
func (s *qmpSession) run(c qmpCommand) (json.RawMessage, error) {
	if err := s.enc.Encode(c); err != nil {
		return nil, fmt.Errorf("QMP %s: send %s: %w", s.path, c.Execute, err)
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
		if err := s.dec.Decode(&reply); err != nil {
			return nil, fmt.Errorf("QMP %s: read reply to %s: %w", s.path, c.Execute, err)
		}
		if reply.Event != "" {
			continue
		}
		if reply.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s: %s: %s: %w", s.path, c.Execute, reply.Error.Class, reply.Error.Desc, ErrAPI)
		}
		return reply.Return, nil
	}
}

func (s *qmpSession) close() { s.conn.Close() }
