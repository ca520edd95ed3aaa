package wire_test

import (
	"go/parser"
	"go/token"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestGeneratedImports checks that the generated code needs nothing beyond the standard
// library and the agent's own packages (ttrpcserver, pbwire).
func TestGeneratedImports(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "agent.wire.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if path != "confguest/agent/ttrpcserver" && strings.Contains(strings.Split(path, "/")[0], ".") {
			t.Errorf("agent.wire.go imports %s: only the standard library and confguest/agent packages are allowed", path)
		}
	}
}

// TestNoProtobufRuntime checks that the package, with the helpers written by hand, links
// none of the protobuf runtime, gRPC or containerd's ttrpc.
func TestNoProtobufRuntime(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the package's dependencies")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"google.golang.org/protobuf", "google.golang.org/grpc", "github.com/containerd/ttrpc", "github.com/gogo/protobuf", "github.com/golang/protobuf"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("package wire depends on %s", dep)
			}
		}
	}
}
