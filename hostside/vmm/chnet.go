package vmm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"

	"golang.org/x/sys/unix"
)

// NetConfig is the body of vm.add-net: one virtio-net device. Its tap is not named: the
// caller's open tap travels beside the request as a descriptor (SCM_RIGHTS), which is how
// Cloud Hypervisor takes a tap that lives in another network namespace. One descriptor is
// one queue pair, so NumQueues is 2.
type NetConfig struct {
	ID        string `json:"id,omitempty"`
	Mac       string `json:"mac,omitempty"`
	NumQueues int    `json:"num_queues,omitempty"`
}

// netConfig is the vm.add-net body of cfg's network device i.
func netConfig(i int, n NIC) NetConfig {
	return NetConfig{ID: fmt.Sprintf("net%d", i), Mac: n.MAC, NumQueues: 2}
}

// AddNet is vm.add-net with tap's descriptor attached to the request: Cloud Hypervisor
// reads descriptors only from the message that carries the request, so the request is
// written in one sendmsg with the descriptor, on a connection of its own.
func (c *CHClient) AddNet(ctx context.Context, nc NetConfig, tap *os.File) error {
	const endpoint = "vm.add-net"
	body, err := json.Marshal(nc)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", endpoint, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://localhost/api/v1/"+endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Close = true
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return fmt.Errorf("cloud-hypervisor %s: %w", endpoint, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return c.dialErr(endpoint, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	uc := conn.(*net.UnixConn)
	raw, err := tap.SyscallConn()
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: tap: %w", endpoint, err)
	}
	var werr error
	if err := raw.Control(func(fd uintptr) {
		_, _, werr = uc.WriteMsgUnix(wire.Bytes(), unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return fmt.Errorf("cloud-hypervisor %s: tap: %w", endpoint, err)
	}
	if werr != nil {
		return fmt.Errorf("cloud-hypervisor %s: send the request with the tap: %w", endpoint, werr)
	}
	resp, err := http.ReadResponse(bufio.NewReader(uc), req)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: read answer: %w", endpoint, err)
	}
	defer resp.Body.Close()
	_, err = readAnswer(endpoint, resp)
	return err
}
