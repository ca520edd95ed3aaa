package devmapper

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestEncodeHeaderRoundTrip(t *testing.T) {
	h := header{TargetCount: 2, OpenCount: 3, Flags: flagReadOnly | flagSuspend, EventNr: 7, Dev: 0xfe01, Name: "root", UUID: "CONFGUEST-root"}
	buf := encode(h, []byte("payload"), 1024)
	if len(buf) != 1024 {
		t.Fatalf("len(encode) = %d, want 1024", len(buf))
	}
	got, err := decodeHeader(buf)
	if err != nil {
		t.Fatalf("decodeHeader error %v", err)
	}
	want := h
	want.DataSize, want.DataStart = 1024, headerSize
	if got != want {
		t.Errorf("decodeHeader(encode(%+v)) = %+v, want %+v", h, got, want)
	}
	if v := binary.NativeEndian.Uint32(buf[offVersion:]); v != versionMajor {
		t.Errorf("version major = %d, want %d", v, versionMajor)
	}
	if string(buf[headerSize:headerSize+7]) != "payload" {
		t.Errorf("payload not at data start: %q", buf[headerSize:headerSize+7])
	}
	// A buffer smaller than the payload needs grows to fit it.
	if n := len(encode(h, make([]byte, 100), 0)); n != headerSize+100 {
		t.Errorf("len(encode(100-byte payload, min 0)) = %d, want %d", n, headerSize+100)
	}
}

func TestDecodeHeaderShort(t *testing.T) {
	if _, err := decodeHeader(make([]byte, headerSize-1)); !errors.Is(err, ErrShortReply) {
		t.Errorf("decodeHeader(311 bytes) = %v, want ErrShortReply", err)
	}
}

func TestEncodeTable(t *testing.T) {
	targets := []Target{
		{Start: 0, Length: 8, Type: "verity", Params: "abc"},
		{Start: 8, Length: 16, Type: "linear", Params: "/dev/vdb 0"},
	}
	b, err := encodeTable(targets)
	if err != nil {
		t.Fatal(err)
	}
	// 40 + "abc\0" = 44 -> 48; 40 + "/dev/vdb 0\0" = 51 -> 56.
	if len(b) != 48+56 {
		t.Fatalf("len(encodeTable) = %d, want %d", len(b), 48+56)
	}
	le := binary.NativeEndian
	checks := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"first start", le.Uint64(b[0:]), 0},
		{"first length", le.Uint64(b[8:]), 8},
		{"first next (relative)", uint64(le.Uint32(b[20:])), 48},
		{"second start", le.Uint64(b[48:]), 8},
		{"second length", le.Uint64(b[56:]), 16},
		{"second next (relative)", uint64(le.Uint32(b[48+20:])), 56},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("encodeTable: %s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if got := cstring(b[24:40]); got != "verity" {
		t.Errorf("first type = %q, want verity", got)
	}
	if got := cstring(b[40:48]); got != "abc" {
		t.Errorf("first params = %q, want abc", got)
	}
	if got := cstring(b[48+40:]); got != "/dev/vdb 0" {
		t.Errorf("second params = %q, want %q", got, "/dev/vdb 0")
	}
}

func TestEncodeTableRejects(t *testing.T) {
	tests := []struct {
		name string
		t    Target
	}{
		{"empty type", Target{Length: 1, Params: "x"}},
		{"long type", Target{Length: 1, Type: strings.Repeat("v", 16)}},
		{"NUL in params", Target{Length: 1, Type: "verity", Params: "a\x00b"}},
		{"zero length", Target{Type: "verity", Params: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := encodeTable([]Target{tc.t}); !errors.Is(err, ErrInvalidTarget) {
				t.Errorf("encodeTable(%+v) = %v, want ErrInvalidTarget", tc.t, err)
			}
		})
	}
}

// replyWith builds a buffer as the kernel writes a DM_TABLE_STATUS reply:
// specs whose "next" is the offset from the start of the data area.
func replyWith(targets []Target) []byte {
	var data []byte
	le := binary.NativeEndian
	for _, t := range targets {
		spec := make([]byte, align8(targetSpecSize+len(t.Params)+1))
		le.PutUint64(spec[0:], t.Start)
		le.PutUint64(spec[8:], t.Length)
		copy(spec[24:], t.Type)
		copy(spec[40:], t.Params)
		le.PutUint32(spec[20:], uint32(len(data)+len(spec)))
		data = append(data, spec...)
	}
	return encode(header{Name: "x", TargetCount: uint32(len(targets)), Flags: flagActivePresent | flagReadOnly, Dev: 254<<8 | 3}, data, 0)
}

func TestDecodeTargets(t *testing.T) {
	want := []Target{
		{Start: 0, Length: 8000, Type: "verity", Params: "C"},
		{Start: 8000, Length: 8, Type: "linear", Params: ""},
	}
	buf := replyWith(want)
	h, err := decodeHeader(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeTargets(buf, h)
	if err != nil {
		t.Fatalf("decodeTargets error %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("decodeTargets = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decodeTargets[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	st := statusFrom(h, got)
	if !st.VerityCorrupted() || !st.Active || !st.ReadOnly || st.Suspended || st.Major != 254 || st.Minor != 3 {
		t.Errorf("statusFrom = %+v, want active, read-only, 254:3, verity corrupted", st)
	}
}

func TestDecodeTargetsMalformed(t *testing.T) {
	buf := replyWith([]Target{{Length: 8, Type: "verity", Params: "V"}})
	h, _ := decodeHeader(buf)
	h.TargetCount = 3 // claims more targets than the data holds
	if _, err := decodeTargets(buf, h); !errors.Is(err, ErrShortReply) {
		t.Errorf("decodeTargets(3 claimed, 1 present) = %v, want ErrShortReply", err)
	}
	h.TargetCount, h.DataStart = 1, uint32(len(buf)+1)
	if _, err := decodeTargets(buf, h); !errors.Is(err, ErrShortReply) {
		t.Errorf("decodeTargets(data start past buffer) = %v, want ErrShortReply", err)
	}
}

func TestVerityCorrupted(t *testing.T) {
	tests := []struct {
		targets []Target
		want    bool
	}{
		{[]Target{{Type: "verity", Params: "V"}}, false},
		{[]Target{{Type: "verity", Params: "C"}}, true},
		{[]Target{{Type: "linear", Params: "C"}}, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := (DeviceStatus{Targets: tc.targets}).VerityCorrupted(); got != tc.want {
			t.Errorf("VerityCorrupted(%+v) = %v, want %v", tc.targets, got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"root", true},
		{"layer-3fa1", true},
		{"", false},
		{"a/b", false},
		{"..", false},
		{strings.Repeat("n", 127), true},
		{strings.Repeat("n", 128), false},
	}
	for _, tc := range tests {
		if err := validName(tc.name); (err == nil) != tc.ok {
			t.Errorf("validName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
