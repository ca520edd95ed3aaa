package attest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"confguest/agent/api/evidence"
	"confguest/agent/listen"
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
	// maxRequestHead bounds the request line and headers in bytes.
	maxRequestHead = 8 + 4*MaxRuntimeData/3 + 8<<10
	// requestTimeout bounds reading a request and writing its answer.
	requestTimeout = 30 * time.Second
	// MaxConnections bounds the connections the endpoint serves at once;
	// one more is answered 429 and closed.
	MaxConnections = 16
)

// EvidenceResponse is the JSON body of a successful evidence request.
type EvidenceResponse struct {
	Report       []byte `json:"report"`       // base64: the signed SEV-SNP report
	Certificates []byte `json:"certificates"` // base64: the certificate table
	// ReportData is REPORT_DATA in hex: evidence.ReportData(
	// evidence.WorkloadEvidence, PolicySHA256, runtime_data).
	ReportData string `json:"report_data"`
	// PolicySHA256 is the SHA-256 of the policy in force, hex (64 zeros
	// while none is installed).
	PolicySHA256 string `json:"policy_sha256"`
}

type errorResponse struct {
	Error string `json:"error"`
}

// HTTP status codes the endpoint answers with.
const (
	statusOK                 = 200
	statusBadRequest         = 400
	statusNotFound           = 404
	statusMethodNotAllowed   = 405
	statusTooManyRequests    = 429
	statusHeadTooLarge       = 431
	statusInternalError      = 500
	statusServiceUnavailable = 503
)

// statusText is the reason phrase of a status the endpoint answers with.
func statusText(code int) string {
	switch code {
	case statusOK:
		return "OK"
	case statusBadRequest:
		return "Bad Request"
	case statusNotFound:
		return "Not Found"
	case statusMethodNotAllowed:
		return "Method Not Allowed"
	case statusTooManyRequests:
		return "Too Many Requests"
	case statusHeadTooLarge:
		return "Request Header Fields Too Large"
	case statusInternalError:
		return "Internal Server Error"
	case statusServiceUnavailable:
		return "Service Unavailable"
	}
	return "Status"
}

// Evidence answers one request of the endpoint: method and request
// target (path and query) in, HTTP status and JSON body out. Only
// GET /v1/evidence?runtime_data=<base64url> succeeds, with workload
// evidence under the policy whose SHA-256 is policy.
func (a *Attester) Evidence(ctx context.Context, method, target string, policy [32]byte) (int, []byte) {
	path, rawQuery, _ := strings.Cut(target, "?")
	if path != EvidencePath {
		return jsonBody(statusNotFound, errorResponse{fmt.Sprintf("%.64q: not found: the endpoint serves GET %s?runtime_data=<base64url>", path, EvidencePath)})
	}
	if method != "GET" {
		return jsonBody(statusMethodNotAllowed, errorResponse{fmt.Sprintf("%.16q %s: use GET", method, EvidencePath)})
	}
	q, err := url.ParseQuery(rawQuery)
	vals, ok := q["runtime_data"]
	if err != nil || !ok || len(vals) != 1 {
		return jsonBody(statusBadRequest, errorResponse{"runtime_data: give exactly one runtime_data=<base64url> query parameter"})
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(vals[0], "="))
	if err != nil {
		return jsonBody(statusBadRequest, errorResponse{"runtime_data: not base64url (RFC 4648 section 5, padding optional)"})
	}
	if len(data) > MaxRuntimeData {
		return jsonBody(statusBadRequest, errorResponse{fmt.Sprintf("runtime_data: %d bytes, at most %d: hash larger data first", len(data), MaxRuntimeData)})
	}
	ev, err := a.Report(ctx, evidence.WorkloadEvidence, policy, data)
	if err != nil {
		code := statusInternalError
		if errors.Is(err, ErrNoDevice) {
			code = statusServiceUnavailable
		}
		return jsonBody(code, errorResponse{err.Error()})
	}
	rd := evidence.ReportData(evidence.WorkloadEvidence, policy, data)
	return jsonBody(statusOK, EvidenceResponse{Report: ev.Report, Certificates: ev.Certificates,
		ReportData: hex.EncodeToString(rd[:]), PolicySHA256: hex.EncodeToString(policy[:])})
}

func jsonBody(code int, v any) (int, []byte) {
	b, err := json.Marshal(v)
	if err != nil {
		return statusInternalError, []byte(`{"error":"encode response"}`)
	}
	return code, append(b, '\n')
}

// errHeadTooLarge reports a request line and headers over maxRequestHead.
var errHeadTooLarge = errors.New("request head too large")

// readRequest reads an HTTP/1.x request head and returns the method and
// request target; headers and any body are ignored (the endpoint serves
// one GET per connection).
func readRequest(r *bufio.Reader) (method, target string, err error) {
	total := 0
	line := func() (string, error) {
		var b []byte
		for {
			frag, err := r.ReadSlice('\n')
			total += len(frag)
			if total > maxRequestHead {
				return "", errHeadTooLarge
			}
			b = append(b, frag...)
			if err == nil {
				return string(bytes.TrimRight(b, "\r\n")), nil
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return "", err
			}
		}
	}
	first, err := line()
	if err != nil {
		return "", "", err
	}
	parts := strings.Split(first, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
		return "", "", fmt.Errorf("request line %.64q: want METHOD /path HTTP/1.1", first)
	}
	for {
		h, err := line()
		if err != nil {
			return "", "", err
		}
		if h == "" {
			return parts[0], parts[1], nil
		}
	}
}

// Listen opens the evidence endpoint's unix socket at path (replacing a
// stale one). The socket is world-accessible: only containers whose policy
// entry allows attestation get it bind-mounted. The agent opens it before
// it serves its API, so the socket exists when a container that mounts it
// is created.
func Listen(path string) (net.Listener, error) {
	l, err := listen.Unix(path)
	if err != nil {
		return nil, fmt.Errorf("evidence endpoint: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("evidence endpoint: %w", err)
	}
	return l, nil
}

// Serve serves the evidence endpoint (HTTP/1.1, one request per
// connection) on l, from Listen, until ctx is cancelled, and closes l;
// inForce returns the SHA-256 of the policy in force when a request comes.
func Serve(ctx context.Context, l net.Listener, a *Attester, inForce func() [32]byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, MaxConnections)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("evidence endpoint: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			refuse(c)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			serveConn(ctx, c, a, inForce)
		}()
	}
}

// refuse answers a connection over MaxConnections without reading it.
// The answer fits the socket buffer; the deadline keeps a peer that
// fills it from stalling the accept loop.
func refuse(c net.Conn) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)) //nolint:errcheck // unix sockets support deadlines
	code, body := jsonBody(statusTooManyRequests, errorResponse{fmt.Sprintf("%d connections are being served, the limit is %d (attest.MaxConnections): retry later", MaxConnections, MaxConnections)})
	writeBody(c, code, body)
}

func serveConn(ctx context.Context, c net.Conn, a *Attester, inForce func() [32]byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(requestTimeout)) //nolint:errcheck // unix sockets support deadlines
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	method, target, err := readRequest(bufio.NewReaderSize(c, 4096))
	var code int
	var body []byte
	switch {
	case errors.Is(err, errHeadTooLarge):
		code, body = jsonBody(statusHeadTooLarge, errorResponse{fmt.Sprintf("request head over %d bytes", maxRequestHead)})
	case err != nil:
		code, body = jsonBody(statusBadRequest, errorResponse{"malformed HTTP request: " + err.Error()})
	default:
		code, body = a.Evidence(ctx, method, target, inForce())
	}
	writeBody(c, code, body)
}

func writeBody(c net.Conn, code int, body []byte) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", code, statusText(code), len(body), body)
}
