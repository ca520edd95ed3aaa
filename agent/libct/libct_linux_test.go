package libct

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// The test binary plays the helper: "fake-helper BEHAVIOUR OP" does what BEHAVIOUR says
// with the request it reads, so the agent's side is tested without libcontainer.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "fake-helper" {
		os.Exit(fakeHelper(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

func fakeHelper(behaviour string, args []string) int {
	var req Request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "decode: %v", err)
		return 2
	}
	switch behaviour {
	case "echo": // report the operation, ID and arguments back in the error
		json.NewEncoder(os.Stdout).Encode(Result{Pid: 42, Error: fmt.Sprintf("%s %s %q", req.Op, req.ID, args), Kind: req.ID})
	case "ok":
		json.NewEncoder(os.Stdout).Encode(Result{Pid: 42, Pids: []int{7, 8}})
	case "warn": // succeed with a warning on stderr
		fmt.Fprint(os.Stderr, "level=warning msg=\"a libcontainer warning\"")
		json.NewEncoder(os.Stdout).Encode(Result{Pid: 42})
	case "flood": // fail with more on stderr than an error quotes
		fmt.Fprint(os.Stderr, "first words ")
		os.Stderr.Write(bytes.Repeat([]byte("x"), 3*maxDiagnostics))
		fmt.Fprint(os.Stderr, " last words")
		return 3
	case "crash":
		fmt.Fprint(os.Stderr, "the helper's last words")
		return 3
	case "write-stdout": // write to the process's stdout as passed
		f := os.NewFile(uintptr(req.Stdout), "stdout")
		fmt.Fprint(f, "to the process's stdout")
		f.Close()
		json.NewEncoder(os.Stdout).Encode(Result{Pid: 1})
	}
	return 0
}

func fake(t *testing.T, behaviour string) Command {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Command{Path: exe, Args: []string{"fake-helper", behaviour}}
}

func TestRunResult(t *testing.T) {
	res, err := fake(t, "ok").Run(Request{Op: OpProcesses, ID: "c1"})
	if err != nil || res.Pid != 42 || len(res.Pids) != 2 {
		t.Fatalf("Run = %+v, %v; want pid 42 and two pids", res, err)
	}
}

// TestRunLogsDiagnostics: what a helper that sent a result wrote to stderr reaches the log.
func TestRunLogsDiagnostics(t *testing.T) {
	var log bytes.Buffer
	c := fake(t, "warn")
	c.Log = slog.New(slog.NewTextHandler(&log, nil))
	if res, err := c.Run(Request{Op: OpStart, ID: "c1"}); err != nil || res.Pid != 42 {
		t.Fatalf("Run = %+v, %v; want pid 42", res, err)
	}
	if got := log.String(); !strings.Contains(got, "a libcontainer warning") || !strings.Contains(got, "id=c1") {
		t.Errorf("log %q: want the helper's warning with the container's ID", got)
	}
	log.Reset()
	c = fake(t, "ok")
	c.Log = slog.New(slog.NewTextHandler(&log, nil))
	if _, err := c.Run(Request{Op: OpStart, ID: "c1"}); err != nil || log.Len() != 0 {
		t.Errorf("Run of a quiet helper = %v, logged %q; want nothing logged", err, log.String())
	}
}

func TestRunReportsKind(t *testing.T) {
	_, err := fake(t, "echo").Run(Request{Op: OpSignal, ID: KindNotRunning})
	if !IsKind(err, KindNotRunning) || IsKind(err, KindInvalid) {
		t.Errorf("Run = %v; want an error of kind %s only", err, KindNotRunning)
	}
	if err == nil || err.Error() != `signal not-running ["signal"]` {
		t.Errorf("error %q: want the operation as the helper's argument", err)
	}
}

func TestRunWithoutResult(t *testing.T) {
	_, err := fake(t, "crash").Run(Request{Op: OpDestroy, ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "the helper's last words") {
		t.Errorf("Run = %v; want the exit status and the helper's stderr", err)
	}
	if IsKind(err, KindInvalid) || IsKind(err, KindNotRunning) {
		t.Errorf("Run = %v; a crash is no failure of a kind", err)
	}
}

// TestRunBoundsDiagnostics: an error quotes the first maxDiagnostics bytes of the helper's
// stderr, however much it wrote, and the helper is not blocked on a full pipe.
func TestRunBoundsDiagnostics(t *testing.T) {
	_, err := fake(t, "flood").Run(Request{Op: OpDestroy, ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "first words x") {
		t.Fatalf("Run = %v; want the exit status and the start of the helper's stderr", err)
	}
	if strings.Contains(err.Error(), "last words") || strings.Count(err.Error(), "x") > maxDiagnostics {
		t.Errorf("Run's error is %d bytes long: want at most the first %d bytes of stderr quoted", len(err.Error()), maxDiagnostics)
	}
}

// TestLimitedBuffer: reading a stream (os/exec's copy) keeps what writing it would.
func TestLimitedBuffer(t *testing.T) {
	in := bytes.Repeat([]byte("0123456789"), 1000)
	for _, n := range []int{0, 1, 4096, len(in), 2 * len(in)} {
		var viaRead, viaWrite bytes.Buffer
		got, err := (&limitedBuffer{b: &viaRead, n: n}).ReadFrom(bytes.NewReader(in))
		if err != nil || got != int64(len(in)) {
			t.Errorf("limit %d: ReadFrom = %d, %v; want %d, nil", n, got, err, len(in))
		}
		w := &limitedBuffer{b: &viaWrite, n: n}
		for p := in; len(p) > 0; p = p[min(len(p), 999):] {
			w.Write(p[:min(len(p), 999)])
		}
		if !bytes.Equal(viaRead.Bytes(), viaWrite.Bytes()) || viaRead.Len() != min(n, len(in)) {
			t.Errorf("limit %d: ReadFrom kept %d bytes, Write %d; want the same first %d", n, viaRead.Len(), viaWrite.Len(), min(n, len(in)))
		}
	}
}

func TestRunPassesFiles(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Op: OpExec, ID: "c1", Stdout: 3}
	if _, err := fake(t, "write-stdout").Run(req, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, _ := io.ReadAll(r)
	if string(got) != "to the process's stdout" {
		t.Errorf("the process's stdout got %q", got)
	}
}

func TestRunMissingHelper(t *testing.T) {
	_, err := Command{Path: "/nonexistent/libct"}.Run(Request{Op: OpStart, ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/libct") {
		t.Errorf("Run = %v; want an error naming the helper's path", err)
	}
}
