package podbench

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Shape of the large image's added content.
const (
	bigLayers   = 4       // layers added to the base
	bigFileSize = 1 << 20 // bytes per file
)

// bigImage is base plus mib MiB of incompressible files (pseudo-random bytes from a fixed
// seed, so every run pushes the same image) in bigLayers uncompressed layers of files
// bigFileSize each, under /data/<layer>/<file>. The layers are stored uncompressed: gzip
// would gain nothing on random bytes and would cost the push and the pull its time.
func bigImage(base v1.Image, mib int) (v1.Image, error) {
	if mib < bigLayers {
		return nil, fmt.Errorf("large image of %d MiB: want at least %d", mib, bigLayers)
	}
	rng := rand.NewChaCha8([32]byte{'c', 'o', 'n', 'f', 'g', 'u', 'e', 's', 't'})
	files := mib * (1 << 20) / bigFileSize
	var layers []v1.Layer
	for l := range bigLayers {
		n := files / bigLayers
		if l < files%bigLayers {
			n++
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		dir := fmt.Sprintf("data/%d/", l)
		for _, d := range []string{"data/", dir} {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
				return nil, err
			}
		}
		content := make([]byte, bigFileSize)
		for i := range n {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sf%04d", dir, i), Mode: 0o644, Size: bigFileSize}); err != nil {
				return nil, err
			}
			rng.Read(content)
			if _, err := tw.Write(content); err != nil {
				return nil, err
			}
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		layers = append(layers, static.NewLayer(buf.Bytes(), types.DockerUncompressedLayer))
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, fmt.Errorf("large image: %w", err)
	}
	return img, nil
}
