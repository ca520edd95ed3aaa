package wire_test

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/wire"
	"confguest/agent/ttrpcserver"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var deterministic = proto.MarshalOptions{Deterministic: true}

// unknownFielder is what every wire message has beside ttrpcserver.Message.
type unknownFielder interface {
	ttrpcserver.Message
	UnknownField() string
}

func newWire(t *testing.T, md protoreflect.MessageDescriptor) unknownFielder {
	t.Helper()
	w, ok := wire.NewMessage(string(md.FullName())).(unknownFielder)
	if !ok {
		t.Fatalf("wire.NewMessage(%q) is no message with UnknownField", md.FullName())
	}
	return w
}

// TestRoundTrip fills every message with random values (unknown fields at any depth
// included) and checks that the wire message decodes protobuf's deterministic encoding,
// encodes it again byte for byte, names the same unknown field as agent/request does, and
// that protobuf decodes the wire encoding into a message equal to the original.
func TestRoundTrip(t *testing.T) {
	f := &filler{r: rand.New(rand.NewPCG(1, 2)), unknown: true}
	for _, md := range allMessages() {
		t.Run(string(md.Name()), func(t *testing.T) {
			for range 300 {
				pb := f.message(md)
				want, err := deterministic.Marshal(pb)
				if err != nil {
					t.Fatalf("proto.Marshal(%v): %v", pb, err)
				}
				w := newWire(t, md)
				if err := w.Unmarshal(want); err != nil {
					t.Fatalf("Unmarshal(%x) of %v: %v", want, pb, err)
				}
				got, err := w.Marshal()
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("Marshal() after Unmarshal(%x) = %x, %v; want it back (%v)", want, got, err, pb)
				}
				back := pb.ProtoReflect().Type().New().Interface()
				if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, pb) {
					t.Fatalf("proto.Unmarshal(%x) = %v, %v; want %v", got, back, err, pb)
				}
				if got, want := w.UnknownField(), referenceUnknownField(pb.ProtoReflect(), ""); got != want {
					t.Fatalf("UnknownField() of %v = %q, want %q", pb, got, want)
				}
			}
		})
	}
}

// TestMarshalFields builds each wire message from the same Go values as a random agentv1
// one (field by field, which also checks that both have the same fields of the same
// types) and compares the encodings.
func TestMarshalFields(t *testing.T) {
	f := &filler{r: rand.New(rand.NewPCG(3, 4))}
	for _, md := range allMessages() {
		for range 300 {
			pb := f.message(md)
			w, err := toWire(pb)
			if err != nil {
				t.Fatalf("%s: %v", md.FullName(), err)
			}
			want, err := deterministic.Marshal(pb)
			if err != nil {
				t.Fatalf("proto.Marshal(%v): %v", pb, err)
			}
			if got, err := w.Marshal(); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Marshal() of %+v = %x, %v, want %x", w, got, err, want)
			}
		}
	}
}

// TestDecodeDifferential decodes the same bytes with proto.Unmarshal and the wire message:
// valid encodings, each of their prefixes, mutated ones, every field with every wire
// type, and hand-made edge cases (long varints, field numbers out of range, stray end
// groups, groups nested at protobuf's limit). Both must accept or both refuse; when they
// accept, the wire message encodes what protobuf encodes and names the same unknown field.
func TestDecodeDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	f := &filler{r: r, unknown: true}
	for _, md := range allMessages() {
		t.Run(string(md.Name()), func(t *testing.T) {
			var inputs [][]byte
			for range 40 {
				b, err := deterministic.Marshal(f.message(md))
				if err != nil {
					t.Fatal(err)
				}
				inputs = append(inputs, b)
				for i := range min(len(b), 40) {
					inputs = append(inputs, b[:i])
				}
				inputs = append(inputs, mutations(r, b)...)
			}
			inputs = append(inputs, wireTypeCases(f, md)...)
			inputs = append(inputs, edgeCases()...)
			for _, b := range inputs {
				differential(t, md, b)
			}
		})
	}
}

// differential checks one input.
func differential(t *testing.T, md protoreflect.MessageDescriptor, b []byte) {
	t.Helper()
	pb := newPB(md)
	perr := proto.Unmarshal(b, pb)
	w := newWire(t, md)
	werr := w.Unmarshal(b)
	if (perr == nil) != (werr == nil) {
		t.Fatalf("Unmarshal(%x) = %v; proto.Unmarshal: %v", b, werr, perr)
	}
	if perr != nil {
		return
	}
	want, err := deterministic.Marshal(pb)
	if err != nil {
		t.Fatalf("proto.Marshal after proto.Unmarshal(%x): %v", b, err)
	}
	if got, err := w.Marshal(); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Marshal() after Unmarshal(%x) = %x, %v, want %x", b, got, err, want)
	}
	if got, want := w.UnknownField(), referenceUnknownField(pb.ProtoReflect(), ""); got != want {
		t.Fatalf("UnknownField() after Unmarshal(%x) = %q, want %q", b, got, want)
	}
}

// mutations are copies of b with a byte changed, inserted or removed, a random field
// appended, or b repeated (protobuf merges a message given twice).
func mutations(r *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for range 8 {
		m := append([]byte(nil), b...)
		switch i := r.IntN(len(m) + 1); r.IntN(4) {
		case 0:
			if i < len(m) {
				m[i] = byte(r.UintN(256))
			}
		case 1:
			m = append(m[:i], append([]byte{byte(r.UintN(256))}, m[i:]...)...)
		case 2:
			if i < len(m) {
				m = append(m[:i], m[i+1:]...)
			}
		case 3:
			for range 1 + r.IntN(4) {
				m = append(m, byte(r.UintN(256)))
			}
		}
		out = append(out, m)
	}
	return append(out, append(append([]byte(nil), b...), b...))
}

// wireTypeCases encode each field of md (and a field it does not define) once with each
// wire type and a valid value of that type, and twice for merging.
func wireTypeCases(f *filler, md protoreflect.MessageDescriptor) [][]byte {
	var out [][]byte
	nums := []protowire.Number{99}
	for i := range md.Fields().Len() {
		nums = append(nums, md.Fields().Get(i).Number())
	}
	values := map[protowire.Type][]byte{
		protowire.VarintType:  protowire.AppendVarint(nil, 1<<40),
		protowire.Fixed32Type: protowire.AppendFixed32(nil, 7),
		protowire.Fixed64Type: protowire.AppendFixed64(nil, 7),
		protowire.BytesType:   protowire.AppendBytes(nil, []byte("é")),
	}
	for _, num := range nums {
		for typ, v := range values {
			one := append(protowire.AppendTag(nil, num, typ), v...)
			out = append(out, one, append(one, one...))
		}
		group := protowire.AppendTag(nil, num, protowire.StartGroupType)
		group = protowire.AppendVarint(protowire.AppendTag(group, 1, protowire.VarintType), 5)
		out = append(out, protowire.AppendTag(group, num, protowire.EndGroupType), group)
		out = append(out, protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), []byte{0xff}))
		// An empty message, then one with an unknown field: merged.
		sub := protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), f.unknownFields(md))
		out = append(out, append(protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), nil), sub...))
	}
	return out
}

// edgeCases are encodings at the limits of protobuf's decoder.
func edgeCases() [][]byte {
	nested := func(depth int) []byte {
		var b []byte
		for range depth {
			b = protowire.AppendTag(b, 9, protowire.StartGroupType)
		}
		for range depth {
			b = protowire.AppendTag(b, 9, protowire.EndGroupType)
		}
		return b
	}
	return [][]byte{
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},       // 10-byte varint
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},       // 65 bits
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, // 11 bytes
		{0x88, 0x80, 0x80, 0x80, 0x00, 0x01},                                     // a tag of 5 bytes (re-encoded short when unknown)
		{0x80, 0x80, 0x80, 0x80, 0x10, 0x00},                                     // field 1<<29: too large
		{0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00},                                     // field 1<<29-1: the largest
		{0x00, 0x00},                                                             // field 0
		{0x0c},                                                                   // an end group alone
		{0x0e, 0x00}, {0x0f, 0x00},                                               // reserved wire types
		{0x0b, 0x0c}, // an empty group of field 1
		{0x0b, 0x14}, // a group ended by another field
		{0x9b, 0x01, 0xf8, 0xff, 0xff, 0xff, 0x3f, 0x00, 0x9c, 0x01},       // a group holding field 2^31-1
		{0x9b, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 0x9c, 0x01}, // a group holding field 2^32
		{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10},                               // a length past the end
		{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // a length of 2^64-1
		nested(10001), nested(10002),
		nil,
	}
}

// TestInvalidUTF8 sets each string field of every message (singular, repeated, in a
// oneof) to invalid UTF-8: Marshal refuses it, naming the field, as proto.Marshal
// refuses it; Unmarshal refuses its encoding as proto.Unmarshal does.
func TestInvalidUTF8(t *testing.T) {
	const bad = "a\xffb"
	for _, md := range allMessages() {
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.Kind() != protoreflect.StringKind {
				continue
			}
			pb := newPB(md)
			if fd.IsList() {
				l := pb.ProtoReflect().Mutable(fd).List()
				l.Append(protoreflect.ValueOfString("ok"))
				l.Append(protoreflect.ValueOfString(bad))
			} else {
				pb.ProtoReflect().Set(fd, protoreflect.ValueOfString(bad))
			}
			if _, err := deterministic.Marshal(pb); err == nil {
				t.Fatalf("proto.Marshal(%v) accepts invalid UTF-8: the test is wrong", pb)
			}
			w, err := toWire(pb)
			if err != nil {
				t.Fatal(err)
			}
			wantErr := string(fd.FullName()) + ": invalid UTF-8"
			if _, err := w.Marshal(); err == nil || err.Error() != wantErr {
				t.Errorf("%s.Marshal() with %s = %q: error %v, want %q", md.Name(), fd.Name(), bad, err, wantErr)
			}
			enc := protowire.AppendString(protowire.AppendTag(nil, fd.Number(), protowire.BytesType), bad)
			if err := proto.Unmarshal(enc, newPB(md)); err == nil {
				t.Fatalf("proto.Unmarshal(%x) accepts invalid UTF-8: the test is wrong", enc)
			}
			if err := wire.NewMessage(string(md.FullName())).Unmarshal(enc); err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s.Unmarshal(%x) = %v, want %q", md.Name(), enc, err, wantErr)
			}
		}
	}
}

// TestUnknownField checks the names UnknownField gives, as agent/request's tests expect
// them, and that the fields stay in the encoding.
func TestUnknownField(t *testing.T) {
	unknown := func(num protowire.Number) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), 1)
	}
	sub := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	verity := sub(3, sub(1, sub(3, unknown(12)))) // rootfs.block.verity
	tests := []struct {
		name string
		msg  unknownFielder
		b    []byte
		want string
	}{
		{"none", &wire.UpdateContainerRequest{}, sub(2, protowire.AppendVarint([]byte{0x08}, 5)), ""},
		{"top level", &wire.UpdateContainerRequest{}, append(sub(1, []byte("a")), unknown(7)...), "field 7"},
		{"in memory", &wire.UpdateContainerRequest{}, sub(2, unknown(9)), "memory field 9"},
		{"top level first", &wire.UpdateContainerRequest{}, append(sub(2, unknown(9)), unknown(7)...), "field 7"},
		{"first set field first", &wire.UpdateContainerRequest{}, append(sub(4, unknown(8)), sub(2, unknown(9))...), "memory field 9"},
		{"in a oneof's message", &wire.CreateContainerRequest{}, verity, "rootfs.block.verity field 12"},
		// memory.limit as a fixed32: a known number with the wrong wire type is unknown.
		{"wrong wire type", &wire.UpdateContainerRequest{}, sub(2, protowire.AppendFixed32([]byte{0x0d}, 5)), "memory field 1"},
		{"in a list: not looked at", &wire.ListContainersResponse{}, sub(1, unknown(9)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.msg.Unmarshal(tc.b); err != nil {
				t.Fatalf("Unmarshal(%x): %v", tc.b, err)
			}
			if got := tc.msg.UnknownField(); got != tc.want {
				t.Errorf("UnknownField() after Unmarshal(%x) = %q, want %q", tc.b, got, tc.want)
			}
			if got, err := tc.msg.Marshal(); err != nil || len(got) != len(tc.b) {
				t.Errorf("Marshal() after Unmarshal(%x) = %x, %v: want every field kept", tc.b, got, err)
			}
		})
	}
	var nilReq *wire.UpdateContainerRequest
	if got := nilReq.UnknownField(); got != "" {
		t.Errorf("(*UpdateContainerRequest)(nil).UnknownField() = %q, want \"\"", got)
	}
}

// TestUnmarshalResets checks that Unmarshal replaces what the message held, and that the
// decoded bytes fields do not alias the input.
func TestUnmarshalResets(t *testing.T) {
	w := &wire.WriteStdinRequest{Data: []byte("old"), Process: &wire.ProcessRef{ContainerId: "old"}}
	in, err := deterministic.Marshal(&agentv1.WriteStdinRequest{Data: []byte("new")})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Unmarshal(in); err != nil {
		t.Fatal(err)
	}
	in[len(in)-1] = 'X'
	if string(w.GetData()) != "new" || w.GetProcess() != nil {
		t.Errorf("Unmarshal into a set message = %+v, want only data \"new\"", w)
	}
	if err := w.Unmarshal([]byte{0x0a}); err == nil || !strings.Contains(err.Error(), "confguest.agent.v1.WriteStdinRequest") {
		t.Errorf("Unmarshal(truncated) = %v, want an error naming the message", err)
	}
}
