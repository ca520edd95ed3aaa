package ttrpcserver

import (
	"bytes"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// requestSeeds are Request encodings, good and bad, for the table test and
// as the fuzz target's seed corpus.
func requestSeeds(t testing.TB) [][]byte {
	good, err := proto.Marshal(&ttrpc.Request{
		Service:     "svc",
		Method:      "m",
		Payload:     []byte{1, 2, 3},
		TimeoutNano: -5,
		Metadata:    []*ttrpc.KeyValue{{Key: "k", Value: "v"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var unknown []byte
	unknown = protowire.AppendTag(unknown, 9, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 7)
	unknown = protowire.AppendTag(unknown, 10, protowire.StartGroupType)
	unknown = protowire.AppendTag(unknown, 1, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	unknown = protowire.AppendTag(unknown, 10, protowire.EndGroupType)
	unknown = protowire.AppendTag(unknown, 1, protowire.VarintType) // service, wrong wire type
	unknown = protowire.AppendVarint(unknown, 3)
	unknown = protowire.AppendTag(unknown, 11, protowire.Fixed64Type)
	unknown = protowire.AppendFixed64(unknown, 1)
	// Deeply nested groups, closed and not: linear work either way.
	nested := append(bytes.Repeat([]byte{0x5b}, 9000), bytes.Repeat([]byte{0x5c}, 9000)...)
	unclosed := append(bytes.Repeat([]byte{0x5b}, 9000), 0x0e)
	return [][]byte{
		nil,
		nested,
		unclosed,
		good,
		append(append([]byte{}, good...), unknown...),
		{0x1a, 0x00},                         // empty payload
		{0x0a, 0x02, 0xff, 0xfe},             // service not UTF-8
		{0x2a, 0x04, 0x0a, 0x02, 0xc3, 0x28}, // metadata key not UTF-8
		{0x0a, 0x05, 'a'},                    // truncated string
		{0x20},                               // truncated varint
		{0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, // varint overflow
		{0x00, 0x00},                         // field number 0
		{0x5c},                               // end group 11, not started
		{0x5b, 0x64},                         // group 11 ended by 12
		{0x5b},                               // group 11 never ended
		{0x0e},                               // wire type 6
		{0x80, 0x80, 0x80, 0x80, 0x10, 0x00}, // field number 2^29, beyond the largest
	}
}

// checkRequest compares decodeRequest with proto.Unmarshal into ttrpc's
// generated Request: both accept the same input and read the same fields.
func checkRequest(t *testing.T, b []byte) {
	got, err := decodeRequest(b)
	var want ttrpc.Request
	werr := proto.Unmarshal(b, &want)
	if (err == nil) != (werr == nil) {
		t.Fatalf("decodeRequest(%x) error = %v, proto.Unmarshal error = %v", b, err, werr)
	}
	if err != nil {
		return
	}
	if got.service != want.Service || got.method != want.Method || !bytes.Equal(got.payload, want.Payload) ||
		(got.payload == nil) != (want.Payload == nil) || got.timeoutNano != want.TimeoutNano {
		t.Errorf("decodeRequest(%x) = %+v, proto.Unmarshal gives %v", b, got, &want)
	}
}

func TestDecodeRequestMatchesProto(t *testing.T) {
	for _, b := range requestSeeds(t) {
		checkRequest(t, b)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, b := range requestSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkRequest)
}

// TestEncodeResponseMatchesProto compares encodeResponse with what ttrpc's
// server sends: proto.Marshal of a Response with the status's proto.
func TestEncodeResponseMatchesProto(t *testing.T) {
	tests := []struct {
		code    Code
		msg     string
		payload []byte
	}{
		{OK, "", nil},
		{OK, "", []byte{0x0a, 0x01, 'x'}},
		{NotFound, "no such container", nil},
		{Unauthenticated, "", nil},
		{Code(-3), "negative", []byte{1}},
	}
	for _, tc := range tests {
		got := encodeResponse(tc.code, tc.msg, tc.payload)
		want, err := proto.Marshal(&ttrpc.Response{
			Status:  status.New(codes.Code(tc.code), tc.msg).Proto(),
			Payload: tc.payload,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encodeResponse(%d, %q, %x) = %x, want %x", tc.code, tc.msg, tc.payload, got, want)
		}
	}
	// A message that is not UTF-8 still decodes.
	var resp ttrpc.Response
	if err := proto.Unmarshal(encodeResponse(Unknown, "bad \xff byte", nil), &resp); err != nil || resp.Status.GetMessage() != "bad \uFFFD byte" {
		t.Errorf("proto.Unmarshal(encodeResponse of a non-UTF-8 message) = %v, %v", resp.Status, err)
	}
}
