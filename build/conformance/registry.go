package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// localRegistry is an in-memory OCI registry on 127.0.0.1 holding the test images.
type localRegistry struct {
	addr string // host:port
	srv  *http.Server
	done chan error
}

// startRegistry serves an empty registry on a free port of 127.0.0.1.
func startRegistry() (*localRegistry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("local registry: listen on 127.0.0.1: %w", err)
	}
	r := &localRegistry{addr: ln.Addr().String(), done: make(chan error, 1),
		srv: &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}}
	go func() { r.done <- r.srv.Serve(ln) }()
	return r, nil
}

// push stores img under each of its references, rewritten onto this registry: the
// repository path stays, the registry host becomes 127.0.0.1:port (where containerd's
// mirror configuration sends the reference's own host).
func (r *localRegistry) push(ctx context.Context, img testImage) error {
	for _, ref := range img.refs {
		local, err := r.localRef(ref)
		if err != nil {
			return err
		}
		if err := remote.Write(local, img.image, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("push %s to the local registry: %w", ref, err)
		}
	}
	return nil
}

// localRef is ref's repository and tag on this registry.
func (r *localRegistry) localRef(ref string) (name.Reference, error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return name.NewTag(r.addr+"/"+t.RepositoryStr()+":"+t.TagStr(), name.Insecure)
}

// close stops serving.
func (r *localRegistry) close() error {
	err := r.srv.Close()
	if serveErr := <-r.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

// registryHosts are the registry hosts of the images' references (each once), for
// containerd's registry configuration.
func registryHosts(imgs []testImage) ([]string, error) {
	seen := map[string]bool{}
	var hosts []string
	for _, img := range imgs {
		for _, ref := range img.refs {
			t, err := name.NewTag(ref)
			if err != nil {
				return nil, fmt.Errorf("image reference %q: %w", ref, err)
			}
			h := t.RegistryStr()
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	return hosts, nil
}
