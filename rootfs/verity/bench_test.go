package verity

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkHashData measures leaf hashing, the bulk of the work, from memory.
func BenchmarkHashData(b *testing.B) {
	const n = 16384 // 64 MiB
	data := make([]byte, n*BlockSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	leaves := make([]byte, n*digestSize)
	r := bytes.NewReader(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := hashData(context.Background(), r, n, BlockSize, []byte("salt"), leaves); err != nil {
			b.Fatal(err)
		}
	}
}
