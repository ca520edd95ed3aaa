// Package server runs the confguest agent: the ttrpc API server on its
// listener, under one errgroup with the agent's other long-running tasks.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sync/errgroup"
)

const (
	// DefaultAddress is where the guest agent listens: vsock port 1024,
	// the Kata Containers convention.
	DefaultAddress = "vsock:1024"
	// DefaultStateDir holds container state; /run is a tmpfs in the guest.
	DefaultStateDir = "/run/confguest"
)

// Config configures Run.
type Config struct {
	Address  string       // vsock:PORT or unix:PATH
	StateDir string       // container state directory
	Logger   *slog.Logger // nil means slog.Default()
	Ready    func()       // called once the listener is open
}

// Run serves the agent API until ctx is cancelled, then shuts down.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	l, err := Listen(cfg.Address)
	if err != nil {
		return err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		l.Close()
		return fmt.Errorf("create ttrpc server: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := srv.Serve(gctx, l)
		if errors.Is(err, ttrpc.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	log.Info("agent listening", "address", cfg.Address)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return g.Wait()
}
