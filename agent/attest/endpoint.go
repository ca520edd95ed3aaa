package attest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const (
	// SocketPath is where the agent serves the evidence endpoint in the
	// guest (among the agent's bind-mount sources); ContainerSocketPath is
	// where a container whose policy entry allows attestation sees it.
	SocketPath          = "/run/confguest/shared/attestation.sock"
	ContainerSocketPath = "/run/confguest/attestation.sock"
	// EvidencePath is the endpoint's only resource.
	EvidencePath = "/v1/evidence"
	// MaxRuntimeData bounds the decoded runtime_data in bytes.
	MaxRuntimeData = 64 << 10
)

// EvidenceResponse is the JSON body of a successful evidence request.
type EvidenceResponse struct {
	Report       []byte `json:"report"`       // base64: the signed SEV-SNP report
	Certificates []byte `json:"certificates"` // base64: the certificate table
	ReportData   string `json:"report_data"`  // hex: SHA-512(runtime_data)
}

type errorResponse struct {
	Error string `json:"error"`
}

// Handler serves GET /v1/evidence?runtime_data=<base64url> from a.
func Handler(a *Attester) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(EvidencePath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeJSON(w, http.StatusMethodNotAllowed, errorResponse{r.Method + " " + EvidencePath + ": use GET"})
			return
		}
		q := r.URL.Query()
		vals, ok := q["runtime_data"]
		if !ok || len(vals) != 1 {
			writeJSON(w, http.StatusBadRequest, errorResponse{"runtime_data: give exactly one runtime_data=<base64url> query parameter"})
			return
		}
		data, err := decodeBase64URL(vals[0])
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{"runtime_data: not base64url (RFC 4648 section 5, padding optional)"})
			return
		}
		if len(data) > MaxRuntimeData {
			writeJSON(w, http.StatusBadRequest, errorResponse{fmt.Sprintf("runtime_data: %d bytes, at most %d: hash larger data first", len(data), MaxRuntimeData)})
			return
		}
		ev, err := a.WorkloadEvidence(r.Context(), data)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrNoDevice) {
				code = http.StatusServiceUnavailable
			}
			writeJSON(w, code, errorResponse{err.Error()})
			return
		}
		rd := RuntimeReportData(data)
		writeJSON(w, http.StatusOK, EvidenceResponse{Report: ev.Report, Certificates: ev.Certificates, ReportData: hex.EncodeToString(rd[:])})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorResponse{r.URL.Path + ": not found: the endpoint serves GET " + EvidencePath + "?runtime_data=<base64url>"})
	})
	return mux
}

func decodeBase64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

// Serve serves the evidence endpoint on a unix socket at path until ctx
// is cancelled. The socket is world-accessible: only containers whose
// policy entry allows attestation get it bind-mounted.
func Serve(ctx context.Context, path string, a *Attester) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("evidence endpoint: remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("evidence endpoint: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return fmt.Errorf("evidence endpoint: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: Handler(a), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // best effort at exit
	}()
	err = srv.Serve(l)
	cancel()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("evidence endpoint: %w", err)
}
