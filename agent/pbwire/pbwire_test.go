package pbwire

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// inputs are wire data built to reach every case: valid fields of each wire type, groups
// nested and mismatched, reserved wire types, overlong and truncated varints, and random
// bytes and their truncations.
func inputs() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	field := func(depth int) []byte {
		var b []byte
		for i := 0; i < 1+r.IntN(4); i++ {
			num := protowire.Number(1 + r.IntN(1<<r.IntN(31)))
			switch r.IntN(7) {
			case 0:
				b = protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), r.Uint64()>>r.IntN(64))
			case 1:
				b = protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), r.Uint32())
			case 2:
				b = protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), r.Uint64())
			case 3:
				b = protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), bytes.Repeat([]byte{'x'}, r.IntN(200)))
			case 4:
				inner := protowire.AppendVarint(protowire.AppendTag(nil, protowire.Number(1+r.IntN(1<<31-1)), protowire.VarintType), 7)
				for d := 0; d < depth; d++ {
					inner = protowire.AppendTag(append(protowire.AppendTag(nil, num, protowire.StartGroupType), inner...), num, protowire.EndGroupType)
				}
				b = append(protowire.AppendTag(b, num, protowire.StartGroupType), append(inner, protowire.AppendTag(nil, num+protowire.Number(r.IntN(2)), protowire.EndGroupType)...)...)
			case 5:
				b = append(b, byte(num<<3|6), 0) // reserved wire type
			case 6:
				b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, byte(r.IntN(3)))
			}
		}
		return b
	}
	for i := 0; i < 3000; i++ {
		b := field(r.IntN(4))
		out = append(out, b, b[:r.IntN(len(b)+1)])
		junk := make([]byte, r.IntN(24))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		out = append(out, junk)
	}
	deep := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)
	for d := 0; d < RecursionLimit+2; d++ {
		deep = protowire.AppendTag(append(protowire.AppendTag(nil, 5, protowire.StartGroupType), deep...), 5, protowire.EndGroupType)
	}
	return append(out, deep, deep[1:], nil)
}

// Each function accepts and refuses exactly what protowire does, with the same values and
// lengths.
func TestMatchesProtowire(t *testing.T) {
	for _, b := range inputs() {
		v, n := ConsumeVarint(b)
		pv, pn := protowire.ConsumeVarint(b)
		if (n < 0) != (pn < 0) || n >= 0 && (v != pv || n != pn) {
			t.Fatalf("ConsumeVarint(%x) = %d, %d; protowire %d, %d", b, v, n, pv, pn)
		}
		vb, n := ConsumeBytes(b)
		pvb, pn := protowire.ConsumeBytes(b)
		if (n < 0) != (pn < 0) || n >= 0 && (!bytes.Equal(vb, pvb) || n != pn) {
			t.Fatalf("ConsumeBytes(%x) = %d; protowire %d", b, n, pn)
		}
		num, typ, n := ConsumeTag(b)
		pnum, ptyp, pn := protowire.ConsumeTag(b)
		// A message's tag: protowire takes numbers to 2^31-1 and end groups, which
		// proto.Unmarshal then refuses for a message's field; ConsumeTag refuses them at once.
		pok := pn >= 0 && pnum <= MaxFieldNumber && ptyp != protowire.EndGroupType
		if (n >= 0) != pok || n >= 0 && (num != int32(pnum) || typ != byte(ptyp) || n != pn) {
			t.Fatalf("ConsumeTag(%x) = %d, %d, %d; protowire %d, %d, %d", b, num, typ, n, pnum, ptyp, pn)
		}
		if pn < 0 {
			continue
		}
		// Any tag protowire reads: the value after it, groups and their numbers included.
		fn := ConsumeFieldValue(int32(pnum), byte(ptyp), b[pn:])
		pfn := protowire.ConsumeFieldValue(pnum, ptyp, b[pn:])
		if (fn < 0) != (pfn < 0) || fn >= 0 && fn != pfn {
			t.Fatalf("ConsumeFieldValue(%d, %d, %x) = %d; protowire %d", pnum, ptyp, b[pn:], fn, pfn)
		}
	}
}

// The appenders write what protowire writes.
func TestAppendMatchesProtowire(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1<<63 + 5, ^uint64(0)} {
		if got, want := AppendVarint([]byte{9}, v), protowire.AppendVarint([]byte{9}, v); !bytes.Equal(got, want) || SizeVarint(v) != protowire.SizeVarint(v) {
			t.Errorf("AppendVarint(%d) = %x (size %d), protowire %x", v, got, SizeVarint(v), want)
		}
	}
	if got, want := AppendTag(nil, MaxFieldNumber, BytesType), protowire.AppendTag(nil, MaxFieldNumber, protowire.BytesType); !bytes.Equal(got, want) {
		t.Errorf("AppendTag = %x, protowire %x", got, want)
	}
	s := string(bytes.Repeat([]byte("é"), 100))
	if got, want := AppendString(nil, s), protowire.AppendString(nil, s); !bytes.Equal(got, want) || SizeBytes(len(s)) != protowire.SizeBytes(len(s)) {
		t.Errorf("AppendString differs from protowire's")
	}
	if got, want := AppendBytes(nil, []byte(s)), protowire.AppendBytes(nil, []byte(s)); !bytes.Equal(got, want) {
		t.Errorf("AppendBytes differs from protowire's")
	}
	if EncodeBool(true) != protowire.EncodeBool(true) || EncodeBool(false) != protowire.EncodeBool(false) {
		t.Errorf("EncodeBool differs from protowire's")
	}
}
