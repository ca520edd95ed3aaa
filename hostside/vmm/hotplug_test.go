package vmm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// fakeQMP is a QMP server on a unix socket that records each command, fails the one
// named in fail and answers from replies (keyed by command, or "qom-get <path>"), else
// with an empty object.
type fakeQMP struct {
	mu      sync.Mutex
	cmds    []map[string]any
	fail    string
	replies map[string]string
}

// pcPeripherals is qom-list /machine/peripheral of a pc machine with no devices given ids.
const pcPeripherals = `[{"name": "type", "type": "string"}]`

func serveFakeQMP(t *testing.T, path, fail string) *fakeQMP {
	return serveFakeQMPReplies(t, path, fail, map[string]string{"qom-list": pcPeripherals})
}

func serveFakeQMPReplies(t *testing.T, path, fail string, replies map[string]string) *fakeQMP {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fakeQMP{fail: fail, replies: replies}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}}`+"\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var cmd map[string]any
					if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
						return
					}
					f.mu.Lock()
					f.cmds = append(f.cmds, cmd)
					f.mu.Unlock()
					// An event before the answer, as QEMU sends them.
					io.WriteString(c, `{"event": "DEVICE_ADDED", "data": {}}`+"\n")
					if cmd["execute"] == f.fail {
						io.WriteString(c, `{"error": {"class": "GenericError", "desc": "Duplicate device ID"}}`+"\n")
						continue
					}
					key, _ := cmd["execute"].(string)
					if args, ok := cmd["arguments"].(map[string]any); ok && key == "qom-get" {
						key += " " + args["path"].(string)
					}
					ret, ok := f.replies[key]
					if !ok {
						ret = "{}"
					}
					io.WriteString(c, `{"return": `+ret+`}`+"\n")
				}
			}()
		}
	}()
	return f
}

// dirVM is a VM whose run directory is dir (AddDisk needs nothing else).
type dirVM struct {
	VM
	dir string
}

func (v dirVM) VsockPath() string { return filepath.Join(v.dir, VsockSocket) }

func TestAddDiskQEMU(t *testing.T) {
	for _, tc := range []struct {
		name, fail string
		wantErr    string
		wantCmds   []string
	}{
		{"blockdev then device", "", "", []string{"qmp_capabilities", "qom-list", "blockdev-add", "device_add"}},
		{"device_add refused", "device_add", "Duplicate device ID", []string{"qmp_capabilities", "qom-list", "blockdev-add", "device_add"}},
		{"blockdev-add refused", "blockdev-add", "GenericError", []string{"qmp_capabilities", "qom-list", "blockdev-add"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "hp")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			f := serveFakeQMP(t, filepath.Join(dir, QMPSocket), tc.fail)
			err = AddDisk(context.Background(), dirVM{dir: dir}, Disk{Path: "/d/ctr1.img", Serial: "ctr1", ReadOnly: true})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("AddDisk: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrAPI)) {
				t.Fatalf("AddDisk error = %v, want ErrAPI with %q", err, tc.wantErr)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			var got []string
			for _, c := range f.cmds {
				got = append(got, c["execute"].(string))
			}
			if !reflect.DeepEqual(got, tc.wantCmds) {
				t.Fatalf("QMP commands = %v, want %v", got, tc.wantCmds)
			}
			wantArgs := []map[string]any{
				{"driver": "raw", "node-name": "hot-ctr1", "read-only": true,
					"file": map[string]any{"driver": "file", "filename": "/d/ctr1.img", "read-only": true}},
				{"driver": "virtio-blk-pci", "drive": "hot-ctr1", "id": "dev-ctr1", "serial": "ctr1"},
			}
			for i, c := range f.cmds[2:] {
				if !reflect.DeepEqual(c["arguments"], wantArgs[i]) {
					t.Errorf("%s arguments = %v, want %v", c["execute"], c["arguments"], wantArgs[i])
				}
			}
		})
	}
}

// On a q35 machine the disk goes into the first PCIe root port that QEMU's device tree
// shows empty, as a modern device behind the DMA API; with every port taken nothing is sent.
func TestAddDiskQEMURootPort(t *testing.T) {
	peripherals := `[{"name": "type", "type": "string"},
		{"name": "hp0", "type": "child<pcie-root-port>"}, {"name": "hp1", "type": "child<pcie-root-port>"},
		{"name": "hp2", "type": "child<pcie-root-port>"},
		{"name": "dev-a", "type": "child<virtio-blk-pci>"}, {"name": "rng", "type": "child<virtio-rng-pci>"}]`
	for _, tc := range []struct {
		name    string
		busOfA  string
		want    string // the bus, or "" for ErrNoHotplugPort
		allFull bool
	}{
		{name: "first port taken", busOfA: "/machine/peripheral/hp0/hp0", want: "hp1"},
		{name: "a device on the root bus takes no port", busOfA: "/machine/q35/pcie.0", want: "hp0"},
		{name: "every port taken", busOfA: "/machine/peripheral/hp0/hp0", allFull: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "hp")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			replies := map[string]string{
				"qom-list":                          peripherals,
				"qom-get /machine/peripheral/dev-a": `"` + tc.busOfA + `"`,
				"qom-get /machine/peripheral/rng":   `"/machine/q35/pcie.0"`,
			}
			if tc.allFull {
				replies["qom-get /machine/peripheral/rng"] = `"/machine/peripheral/hp1/hp1"`
				replies["qom-list"] = strings.Replace(peripherals, `{"name": "hp2", "type": "child<pcie-root-port>"},`, "", 1)
			}
			f := serveFakeQMPReplies(t, filepath.Join(dir, QMPSocket), "", replies)
			err = AddDisk(context.Background(), dirVM{dir: dir}, Disk{Path: "/d/ctr2.img", Serial: "ctr2", ReadOnly: true})
			f.mu.Lock()
			defer f.mu.Unlock()
			var sent []string
			for _, c := range f.cmds {
				sent = append(sent, c["execute"].(string))
			}
			if tc.want == "" {
				if !errors.Is(err, ErrNoHotplugPort) || !strings.Contains(err.Error(), "2 PCIe root ports") {
					t.Fatalf("AddDisk with every port taken = %v, want ErrNoHotplugPort naming the 2 ports", err)
				}
				if slices.Contains(sent, "blockdev-add") || slices.Contains(sent, "device_add") {
					t.Errorf("QMP commands = %v, want no blockdev-add or device_add", sent)
				}
				return
			}
			if err != nil {
				t.Fatalf("AddDisk: %v", err)
			}
			want := map[string]any{"driver": "virtio-blk-pci", "drive": "hot-ctr2", "id": "dev-ctr2", "serial": "ctr2",
				"bus": tc.want, "disable-legacy": "on", "iommu_platform": true}
			last := f.cmds[len(f.cmds)-1]
			if last["execute"] != "device_add" || !reflect.DeepEqual(last["arguments"], want) {
				t.Errorf("last QMP command = %v, want device_add %v", last, want)
			}
		})
	}
}

func TestAddDiskBadSerial(t *testing.T) {
	for _, serial := range []string{"", "abcdefghijklmnopqrstuvwxyz"} {
		if err := AddDisk(context.Background(), dirVM{dir: t.TempDir()}, Disk{Path: "/d.img", Serial: serial}); err == nil {
			t.Errorf("AddDisk(serial %q) succeeded, want an error", serial)
		}
	}
}

// TestAddDiskCloudHypervisor is a contract test: vm.add-disk's request and answer are
// validated against Cloud Hypervisor's OpenAPI spec.
func TestAddDiskCloudHypervisor(t *testing.T) {
	_, router, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		status  int
		wantErr bool
	}{
		{"hot-plugged", http.StatusOK, false},
		{"refused", http.StatusInternalServerError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "hpch")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			ln, err := net.Listen("unix", filepath.Join(dir, APISocket))
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var violations []string
			var got DiskConfig
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(strings.NewReader(string(body)))
				mu.Lock()
				defer mu.Unlock()
				route, params, err := router.FindRoute(r)
				if err != nil {
					violations = append(violations, err.Error())
					http.Error(w, "not found", http.StatusNotFound)
					return
				}
				in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route}
				if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
					violations = append(violations, err.Error())
				}
				json.Unmarshal(body, &got)
				rec := httptest.NewRecorder()
				if tc.status == http.StatusOK {
					writeJSON(rec, map[string]any{"id": "_disk1", "bdf": "0000:00:06.0"})
				} else {
					http.Error(rec, "Failed to add disk", tc.status)
				}
				out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header()}
				out.SetBodyBytes(rec.Body.Bytes())
				if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
					violations = append(violations, "answer: "+err.Error())
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
			})}
			go srv.Serve(ln)
			defer srv.Close()
			want := Disk{Path: "/d/ctr1.img", Serial: "ctr1", ReadOnly: true}
			err = AddDisk(context.Background(), dirVM{dir: dir}, want)
			if (err != nil) != tc.wantErr {
				t.Fatalf("AddDisk error = %v, want error %v", err, tc.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, v := range violations {
				t.Errorf("contract violation: %s", v)
			}
			if (got != DiskConfig{Path: want.Path, Readonly: true, Serial: "ctr1"}) {
				t.Errorf("vm.add-disk body = %+v, want path, readonly and serial of %+v", got, want)
			}
		})
	}
}
