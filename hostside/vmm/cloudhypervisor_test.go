package vmm

// Contract tests: the Cloud Hypervisor backend is tested against an in-process HTTP server
// on a unix socket that validates every request against Cloud Hypervisor's own OpenAPI
// description (testdata/cloud-hypervisor-v53.0-openapi.yaml, loaded with kin-openapi) and
// answers as that description documents. Cloud Hypervisor itself cannot run here. To catch
// misspelled field names, which the spec would otherwise accept as extra properties, the
// test tightens every object schema to forbid properties the spec does not name.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"golang.org/x/sys/unix"
)

const specPath = "testdata/cloud-hypervisor-v53.0-openapi.yaml"

// loadSpec loads the spec and forbids undeclared properties in every object schema.
func loadSpec() (*openapi3.T, routers.Router, error) {
	data, err := os.ReadFile(specPath)
	if err != nil {
		return nil, nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("validate %s: %w", specPath, err)
	}
	no := false
	for _, s := range doc.Components.Schemas {
		if s.Value != nil && len(s.Value.Properties) > 0 && s.Value.AdditionalProperties.Schema == nil {
			s.Value.AdditionalProperties.Has = &no
		}
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("router for %s: %w", specPath, err)
	}
	return doc, r, nil
}

// fakeCH is the contract server: Cloud Hypervisor's VM state machine behind its API.
type fakeCH struct {
	router routers.Router

	mu         sync.Mutex
	state      string // "", Created, Running, Shutdown
	config     json.RawMessage
	calls      []string
	violations []string
	failCreate string // if set, vm.create answers 500 with this text
	vmmDown    chan struct{}
	nets       []string // vm.add-net bodies, each with the descriptor that came with it
}

// rightsConn is a connection of the contract server that keeps the descriptors a client
// sends with its request (SCM_RIGHTS), as Cloud Hypervisor's HTTP server does.
type rightsConn struct {
	*net.UnixConn
	mu  sync.Mutex
	fds []int
}

func (c *rightsConn) Read(b []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(8*4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if fds, err := unix.ParseUnixRights(&m); err == nil {
				c.mu.Lock()
				c.fds = append(c.fds, fds...)
				c.mu.Unlock()
			}
		}
	}
	return n, err
}

// taken returns the descriptors received so far and forgets them.
func (c *rightsConn) taken() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	fds := c.fds
	c.fds = nil
	return fds
}

type rightsListener struct{ net.Listener }

func (l rightsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &rightsConn{UnixConn: c.(*net.UnixConn)}, nil
}

type connKey struct{}

func (f *fakeCH) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	route, params, err := f.router.FindRoute(r)
	if err != nil {
		f.violations = append(f.violations, fmt.Sprintf("%s %s: not in the spec: %v", r.Method, r.URL.Path, err))
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		f.violations = append(f.violations, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	endpoint := strings.TrimPrefix(r.URL.Path, "/api/v1/")
	f.calls = append(f.calls, endpoint)
	var fds []int
	if c, ok := r.Context().Value(connKey{}).(*rightsConn); ok {
		fds = c.taken()
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if endpoint == "vm.add-net" {
		// With no descriptor Cloud Hypervisor would create a tap of its own, in its
		// own network namespace: never what the launcher means.
		var st unix.Stat_t
		if len(fds) != 1 || unix.Fstat(fds[0], &st) != nil {
			f.violations = append(f.violations, fmt.Sprintf("vm.add-net with %d descriptors, want one open tap", len(fds)))
		} else {
			f.nets = append(f.nets, fmt.Sprintf("%s fds=1", body))
		}
	}
	rec := httptest.NewRecorder()
	f.answer(rec, endpoint, body)
	// The fake must answer as documented, too.
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header()}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		f.violations = append(f.violations, fmt.Sprintf("answer to %s: %v", endpoint, err))
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// answer implements the documented status codes of each endpoint.
func (f *fakeCH) answer(w http.ResponseWriter, endpoint string, body []byte) {
	switch endpoint {
	case "vmm.ping":
		writeJSON(w, map[string]any{"version": "v53.0", "build_version": "fake", "pid": os.Getpid()})
	case "vm.create":
		if f.failCreate != "" {
			http.Error(w, f.failCreate, http.StatusInternalServerError)
			return
		}
		if f.state != "" {
			http.Error(w, "Error creating VM: VM already created", http.StatusInternalServerError)
			return
		}
		f.state, f.config = "Created", body
		w.WriteHeader(http.StatusNoContent)
	case "vm.add-net":
		switch f.state {
		case "":
			http.Error(w, "VM not created", http.StatusInternalServerError)
		case "Created":
			w.WriteHeader(http.StatusNoContent) // cold-added: part of the VM at boot
		default:
			writeJSON(w, map[string]any{"id": "net0", "bdf": "0000:00:06.0"})
		}
	case "vm.boot":
		if f.state == "" {
			http.Error(w, "VM not created", http.StatusNotFound)
			return
		}
		f.state = "Running"
		w.WriteHeader(http.StatusNoContent)
	case "vm.info":
		if f.state == "" {
			http.Error(w, "VM not created", http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"config": f.config, "state": f.state})
	case "vm.power-button":
		if f.state != "Running" {
			http.Error(w, "VM not running", http.StatusInternalServerError)
			return
		}
		f.state = "Shutdown" // the guest honours the ACPI power button
		w.WriteHeader(http.StatusNoContent)
	case "vm.shutdown":
		switch f.state {
		case "":
			http.Error(w, "VM not created", http.StatusNotFound)
		case "Running":
			f.state = "Shutdown"
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "VM not started", http.StatusMethodNotAllowed)
		}
	case "vmm.shutdown":
		w.WriteHeader(http.StatusNoContent)
		select {
		case <-f.vmmDown:
		default:
			close(f.vmmDown)
		}
	default:
		http.Error(w, "endpoint not faked: "+endpoint, http.StatusNotImplemented)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// serveFakeCH serves the contract server on a unix socket at path until vmm.shutdown.
func serveFakeCH(path string) (*fakeCH, func(), error) {
	_, router, err := loadSpec()
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, err
	}
	f := &fakeCH{router: router, vmmDown: make(chan struct{})}
	srv := &http.Server{Handler: f, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}}
	go srv.Serve(rightsListener{ln})
	go func() { <-f.vmmDown; time.Sleep(10 * time.Millisecond); srv.Close() }()
	return f, func() { srv.Close() }, nil
}

func (f *fakeCH) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		t.Errorf("contract violation: %s", v)
	}
}

func testConfig(dir string) Config {
	return Config{
		Kernel: "/img/bzImage", Initramfs: "/img/initramfs.cpio.gz", Cmdline: "console=ttyS0",
		CPUs: 2, MemoryMiB: 256, RunDir: dir,
		Disks: []Disk{{Path: "/img/rootfs.img", Serial: "rootfs", ReadOnly: true}},
	}
}

func TestCHClientContract(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	f, stop, err := serveFakeCH(sock)
	if err != nil {
		t.Fatalf("serveFakeCH: %v", err)
	}
	defer stop()
	ctx := context.Background()
	c := NewCHClient(sock)

	igvm := testConfig(dir)
	igvm.IGVM, igvm.HostData, igvm.SEVSNP = "/img/guest.igvm", strings.Repeat("ab", 32), true
	cfg := testConfig(dir)
	for _, c := range []*Config{&cfg, &igvm} {
		if err := c.validate(); err != nil {
			t.Fatal(err)
		}
	}
	for _, vc := range []VmConfig{vmConfig(cfg, "/r/vm.vsock", "/r/console.log"), vmConfig(igvm, "/r/vm.vsock", "/r/console.log")} {
		f.state = ""
		steps := []struct {
			name string
			call func() error
		}{
			{"vmm.ping", func() error { _, err := c.Ping(ctx); return err }},
			{"vm.create", func() error { return c.Create(ctx, vc) }},
			{"vm.boot", func() error { return c.Boot(ctx) }},
			{"vm.info", func() error {
				info, err := c.Info(ctx)
				if err == nil && (info.State != "Running" || info.Config.Payload != vc.Payload || len(info.Config.Disks) != 1) {
					return fmt.Errorf("info = %+v, want Running with the created config", info)
				}
				return err
			}},
			{"vm.shutdown", func() error { return c.Shutdown(ctx) }},
		}
		for _, s := range steps {
			if err := s.call(); err != nil {
				t.Errorf("%s = %v, want nil", s.name, err)
			}
		}
	}
	f.check(t)

	t.Run("API error answer", func(t *testing.T) {
		f.mu.Lock()
		f.failCreate = "Error creating VM: Invalid disk path"
		f.mu.Unlock()
		err := c.Create(ctx, vmConfig(cfg, "/r/vm.vsock", "/r/c.log"))
		if !errors.Is(err, ErrAPI) || !strings.Contains(err.Error(), "Invalid disk path") || !strings.Contains(err.Error(), "500") {
			t.Errorf("Create with failing VMM = %v, want ErrAPI quoting the status and the VMM's message", err)
		}
		f.failCreate = ""
		f.check(t)
	})
	t.Run("boot before create", func(t *testing.T) {
		f.mu.Lock()
		f.state = ""
		f.mu.Unlock()
		if err := c.Boot(ctx); !errors.Is(err, ErrAPI) || !strings.Contains(err.Error(), "404") {
			t.Errorf("Boot before Create = %v, want ErrAPI with 404", err)
		}
	})
	t.Run("misspelled field is caught", func(t *testing.T) {
		// Guards the guard: the tightened spec must reject a field Cloud Hypervisor lacks.
		req, _ := http.NewRequest(http.MethodPut, "http://localhost/api/v1/vm.create",
			strings.NewReader(`{"payload":{"kernel":"/k"},"memory":{"size":1,"sizee":2}}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		f.mu.Lock()
		n := len(f.violations)
		if n != 1 {
			t.Errorf("violations = %q, want one", f.violations)
		}
		f.violations = nil
		f.mu.Unlock()
		if resp.StatusCode != http.StatusBadRequest || n != 1 {
			t.Errorf("PUT vm.create with memory.sizee = %d and %d violations, want 400 and 1", resp.StatusCode, n)
		}
	})
	t.Run("vmm.shutdown", func(t *testing.T) {
		if err := c.ShutdownVMM(ctx); err != nil {
			t.Errorf("ShutdownVMM = %v, want nil", err)
		}
		f.check(t)
	})
}

func TestCHClientNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // socket file stays, nobody listens: a crashed VMM
	for _, path := range []string{filepath.Join(dir, "missing.sock"), stale} {
		_, err := NewCHClient(path).Ping(context.Background())
		if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), path) {
			t.Errorf("Ping(%q) = %v, want ErrNotRunning naming the socket", path, err)
		}
	}
}

func TestStartCloudHypervisorNotOnPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartCloudHypervisor(context.Background(), testConfig(t.TempDir()))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "cloud-hypervisor is not on PATH") || !strings.Contains(err.Error(), "--vmm qemu") {
		t.Errorf("StartCloudHypervisor without the binary = %v, want ErrNotFound saying what to install", err)
	}
}

// fakeCHEnv makes the test binary act as cloud-hypervisor: "--api-socket path=P" serves
// the contract server on P until vmm.shutdown.
const fakeCHEnv = "CONFGUEST_TEST_FAKE_CH"

func TestMain(m *testing.M) {
	if os.Getenv(fakeCHEnv) == "1" {
		os.Exit(runFakeCH(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func runFakeCH(args []string) int {
	if len(args) != 2 || args[0] != "--api-socket" || !strings.HasPrefix(args[1], "path=") {
		fmt.Fprintf(os.Stderr, "fake cloud-hypervisor: unexpected arguments %q\n", args)
		return 2
	}
	f, _, err := serveFakeCH(strings.TrimPrefix(args[1], "path="))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor:", err)
		return 1
	}
	<-f.vmmDown
	time.Sleep(20 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.violations) > 0 {
		fmt.Fprintf(os.Stderr, "contract violations: %q\n", f.violations)
		return 3
	}
	fmt.Fprintf(os.Stderr, "calls: %s\n", strings.Join(f.calls, " "))
	if len(f.nets) > 0 {
		fmt.Fprintf(os.Stderr, "nets: %s\n", strings.Join(f.nets, "; "))
	}
	return 0
}

func TestStartCloudHypervisor(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeCHEnv, "1")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := StartCloudHypervisor(ctx, testConfig(dir), WithCloudHypervisor(self))
	if err != nil {
		t.Fatalf("StartCloudHypervisor(fake) = %v", err)
	}
	if got := vm.VsockPath(); got != filepath.Join(dir, VsockSocket) {
		t.Errorf("VsockPath() = %q, want %q", got, filepath.Join(dir, VsockSocket))
	}
	if err := vm.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v, want nil", err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait() after Stop = %v, want nil (fake VMM exits 0 only without contract violations)", err)
	}
	logData, _ := os.ReadFile(filepath.Join(dir, chLog))
	wantCalls := "calls: vmm.ping vm.create vm.boot vm.power-button vm.info vm.shutdown vmm.shutdown"
	if !strings.Contains(string(logData), wantCalls) {
		t.Errorf("fake VMM log = %q, want %q", logData, wantCalls)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if slices.Contains(left, APISocket) {
		t.Errorf("run dir after Stop = %q, want no %s", left, APISocket)
	}
}

// TestCHAddNetContract: the pod's tap reaches Cloud Hypervisor as a descriptor sent with
// vm.add-net (SCM_RIGHTS; the spec's NetConfig has no descriptor field, and vm.create
// ignores descriptors), cold-added between vm.create and vm.boot, with a body the v53
// spec accepts and the veth's MAC. Cloud Hypervisor itself is not on this machine: the
// fake validates every request against its OpenAPI spec.
func TestCHAddNetContract(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeCHEnv, "1")
	dir := t.TempDir()
	tap, err := os.Open(os.DevNull) // stands in for the tap: the fake checks it arrives open
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	cfg := testConfig(dir)
	cfg.NICs = []NIC{{Tap: tap, MAC: "02:42:0a:58:4d:05"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := StartCloudHypervisor(ctx, cfg, WithCloudHypervisor(self))
	if err != nil {
		t.Fatalf("StartCloudHypervisor(fake, one NIC) = %v", err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v, want nil", err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait() = %v, want nil (the fake exits non-zero on a contract violation)", err)
	}
	logData, _ := os.ReadFile(filepath.Join(dir, chLog))
	for _, want := range []string{
		"calls: vmm.ping vm.create vm.add-net vm.boot",
		`nets: {"id":"net0","mac":"02:42:0a:58:4d:05","num_queues":2} fds=1`,
	} {
		if !strings.Contains(string(logData), want) {
			t.Errorf("fake VMM log = %q, want %q", logData, want)
		}
	}

	t.Run("a request without the tap is a violation", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "api.sock")
		f, stop, err := serveFakeCH(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		c := NewCHClient(sock)
		plain := testConfig(dir)
		plain.validate()
		if err := c.Create(ctx, vmConfig(plain, "/r/vm.vsock", "/r/c.log")); err != nil {
			t.Fatal(err)
		}
		if err := c.do(ctx, http.MethodPut, "vm.add-net", netConfig(0, cfg.NICs[0]), nil); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.violations) != 1 || !strings.Contains(f.violations[0], "0 descriptors") {
			t.Errorf("violations after vm.add-net without a descriptor = %q, want one naming it", f.violations)
		}
	})
}
