package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"confguest/init/devmapper"
)

// DefaultLayerLinger is how long the agent keeps a block image open (its
// dm-verity device and read-only mount) after the last container using
// it was deleted, when the agent's flags do not say otherwise.
const DefaultLayerLinger = 5 * time.Second

// layer is one block image opened through dm-verity and mounted read-only,
// shared by every container created from it (each has its own overlay
// and scratch tmpfs on top). A fresh verity device starts with cold
// caches: each container would re-read and re-hash the pages its program
// needs. So a layer outlives its last container by Config.LayerLinger.
type layer struct {
	name  string // device-mapper name
	mount string // read-only mount point
	users int
	close *time.Timer // pending close once unused; nil while in use
	undo  cleanups    // unmount, remove the mount point, then the verity device
}

// layerKey identifies an image: the same disk opened with the same
// verity parameters and filesystem.
func layerKey(dev, fstype string, b *BlockSource) string {
	v := b.Verity
	return fmt.Sprintf("%s|%s|%s|%s|%d|%d|%d|%d|%s", dev, fstype, v.RootHash, v.Salt, v.HashOffset,
		v.DataBlocks, v.DataBlockSize, v.HashBlockSize, v.Algorithm)
}

// acquireLayer returns the read-only mount of the image b on dev, opening
// it unless a container already uses it or it still lingers, and pushes
// the release of this use onto undo.
func (m *Manager) acquireLayer(ctx context.Context, dev, fstype string, b *BlockSource, undo *cleanups) (string, error) {
	key := layerKey(dev, fstype, b)
	m.layerMu.Lock()
	defer m.layerMu.Unlock()
	l := m.layers[key]
	if l == nil {
		var err error
		if l, err = m.openLayer(ctx, key, dev, fstype, b); err != nil {
			return "", err
		}
		m.layers[key] = l
	}
	if l.close != nil {
		l.close.Stop()
		l.close = nil
	}
	l.users++
	undo.push(func() error { return m.releaseLayer(key) })
	return l.mount, nil
}

func (m *Manager) openLayer(ctx context.Context, key, dev, fstype string, b *BlockSource) (*layer, error) {
	sum := sha256.Sum256([]byte(key))
	l := &layer{name: "confguest-layer-" + hex.EncodeToString(sum[:8])}
	l.mount = filepath.Join(m.cfg.StateDir, "layers", l.name)
	vdev, err := m.cfg.Verity.Open(ctx, l.name, devmapper.VerityTarget{DataDevice: dev, Verity: b.Verity})
	if err != nil {
		return nil, fmt.Errorf("open %s through dm-verity (root hash %s): %w", dev, b.Verity.RootHash, err)
	}
	l.undo.push(func() error { return m.cfg.Verity.Close(context.WithoutCancel(ctx), l.name) })
	l.undo.push(func() error {
		if err := os.Remove(l.mount); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove mount point of layer %s: %w", l.name, err)
		}
		return nil
	})
	if err := mountAt(vdev, l.mount, fstype, unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "", &l.undo); err != nil {
		if cerr := l.undo.run(); cerr != nil {
			m.log.Error("close layer after a failed mount", "layer", l.name, "err", cerr)
		}
		if errors.Is(err, unix.EIO) {
			// dm-verity answers a block whose hash is not in the tree with EIO.
			err = fmt.Errorf("%w: %w: dm-verity refused a block of %s: the disk does not match root hash %s (changed after it was built or signed)",
				err, ErrIntegrity, dev, b.Verity.RootHash)
		}
		return nil, err
	}
	m.log.Info("layer opened", "layer", l.name, "device", dev, "root_hash", b.Verity.RootHash)
	return l, nil
}

// releaseLayer ends one container's use of a layer. The last use closes
// it after Config.LayerLinger (at once when that is zero).
func (m *Manager) releaseLayer(key string) error {
	m.layerMu.Lock()
	defer m.layerMu.Unlock()
	l := m.layers[key]
	l.users--
	if l.users > 0 {
		return nil
	}
	if m.cfg.LayerLinger <= 0 {
		return m.closeLayerLocked(key)
	}
	l.close = time.AfterFunc(m.cfg.LayerLinger, func() {
		m.layerMu.Lock()
		defer m.layerMu.Unlock()
		if m.layers[key] == l && l.users == 0 {
			if err := m.closeLayerLocked(key); err != nil {
				m.log.Error("close unused layer", "layer", l.name, "err", err)
			}
		}
	})
	return nil
}

// closeLayerLocked unmounts and removes an unused layer.
func (m *Manager) closeLayerLocked(key string) error {
	l := m.layers[key]
	delete(m.layers, key)
	if l.close != nil {
		l.close.Stop()
	}
	if err := l.undo.run(); err != nil {
		return fmt.Errorf("close layer %s: %w", l.name, err)
	}
	m.log.Info("layer closed", "layer", l.name)
	return nil
}

// closeUnusedLayers closes every layer no container uses, without waiting
// for its linger to end.
func (m *Manager) closeUnusedLayers() error {
	m.layerMu.Lock()
	defer m.layerMu.Unlock()
	var errs []error
	for key, l := range m.layers {
		if l.users == 0 {
			if err := m.closeLayerLocked(key); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
