package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"

	"confguest/agent/api/evidence"
)

// certTable writes a certificate table with go-sev-guest's own encoder.
func certTable(entries map[string][]byte, order ...string) []byte {
	var t abi.CertTable
	for _, g := range order {
		t.Entries = append(t.Entries, abi.CertTableEntry{GUID: uuid.MustParse(g), RawCert: entries[g]})
	}
	return t.Marshal()
}

// TestExtendCertTable: extendCertTable gives what go-sev-guest's quote providers gave
// (abi.ExtendPlatformCertTable with the masked CPUID[1].EAX), and refuses what they refused.
func TestExtendCertTable(t *testing.T) {
	certs := map[string][]byte{abi.ArkGUID: bytes.Repeat([]byte{1}, 700), abi.AskGUID: bytes.Repeat([]byte{2}, 650), abi.VcekGUID: bytes.Repeat([]byte{3}, 900)}
	arkAsk := certTable(certs, abi.ArkGUID, abi.AskGUID)
	padded := append(append([]byte(nil), arkAsk...), make([]byte, 4096-len(arkAsk))...)
	withVCEK := certTable(certs, abi.VcekGUID, abi.AskGUID, abi.ArkGUID)
	inHeader := append([]byte(nil), arkAsk...)
	binary.LittleEndian.PutUint32(inHeader[16:], 24) // first entry's blob starts in the header
	outside := append([]byte(nil), arkAsk...)
	binary.LittleEndian.PutUint32(outside[20:], 1<<20) // first entry's blob runs past the end
	wraps := append([]byte(nil), arkAsk...)
	binary.LittleEndian.PutUint32(wraps[16:], 0xffffff00) // offset+length wraps in 32 bits
	binary.LittleEndian.PutUint32(wraps[20:], 0x200)
	tests := []struct {
		name    string
		table   []byte
		wantErr bool
	}{
		{"empty", nil, false},
		{"ARK and ASK", arkAsk, false},
		{"ARK and ASK in a zero-padded page", padded, false},
		{"with the VCEK: unchanged", withVCEK, false},
		{"no terminator", arkAsk[:2*certEntrySize], true},
		{"offset inside the header", inHeader, true},
		{"blob outside the table", outside, true},
		{"offset and length wrap", wraps, true},
	}
	const eax = 0xa00f11 | 0xf000f000 // Milan B1, with bits outside the product mask set
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := extendCertTable(tc.table, eax)
			if (err != nil) != tc.wantErr {
				t.Fatalf("extendCertTable(%d bytes) error = %v, want error %v", len(tc.table), err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			want, err := abi.ExtendPlatformCertTable(tc.table, &abi.ExtraPlatformInfo{Size: abi.ExtraPlatformInfoV0Size, Cpuid1Eax: eax & abi.CpuidProductMask})
			if err != nil {
				t.Fatalf("abi.ExtendPlatformCertTable: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("extendCertTable(%d bytes) = %x..., want go-sev-guest's %x...", len(tc.table), got[:min(len(got), 96)], want[:min(len(want), 96)])
			}
		})
	}
}

// fakeTSM is a configfs-tsm report subsystem (go-configfs-tsm's fake, driven through the
// library's real report code) whose outblob is qp's report for the inblob and whose
// auxblob is aux.
func fakeTSM(t *testing.T, provider string, qp QuoteProvider, aux []byte) *faketsm.Client {
	sub := &faketsm.ReportSubsystem{
		MakeEntry: func() *faketsm.ReportEntry {
			// One write generation ahead of reads: the fake then answers reads of a fresh
			// entry (provider) through ReadAttr, as the kernel does.
			return &faketsm.ReportEntry{WriteGeneration: 1, InAttrs: map[string]*faketsm.ReportAttributeState{"inblob": {}, "privlevel": {Value: []byte("0\n")}}}
		},
		CheckInAttr: func(*faketsm.ReportEntry, string, []byte) error { return nil },
		ReadAttr: func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
			switch attr {
			case "provider":
				return []byte(provider + "\n"), nil
			case "auxblob":
				return aux, nil
			case "outblob":
				var rd [64]byte
				copy(rd[:], e.InAttrs["inblob"].Value)
				raw, err := qp.GetRawQuote(rd)
				if err != nil {
					return nil, err
				}
				return raw[:ReportSize], nil
			}
			t.Errorf("configfs-tsm attribute %q read", attr)
			return nil, nil
		},
		Random: rand.Reader,
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestConfigfsTSM(t *testing.T) {
	rd := evidence.ReportData(evidence.HostReport, evidence.NoPolicy, []byte("nonce"))
	qp, signer := fakeDevice(t, rd)
	const eax = 0xa00f11
	certs := map[string][]byte{abi.ArkGUID: signer.Ark.Raw, abi.AskGUID: signer.Ask.Raw, abi.VcekGUID: signer.Vcek.Raw}
	tests := []struct {
		name string
		aux  []byte
	}{
		{"VCEK in the auxblob", certTable(certs, abi.VcekGUID, abi.AskGUID, abi.ArkGUID)},
		{"no VCEK: platform information added", certTable(certs, abi.AskGUID, abi.ArkGUID)},
		{"no certificates", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := openConfigfsTSM(fakeTSM(t, sevGuestProvider, qp, tc.aux), eax)
			if err != nil {
				t.Fatalf("openConfigfsTSM: %v", err)
			}
			ev, err := New(p).Report(context.Background(), evidence.HostReport, evidence.NoPolicy, []byte("nonce"))
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			raw, err := qp.GetRawQuote(rd) // signed anew: compare what the signature covers
			if err != nil {
				t.Fatal(err)
			}
			signed := abi.SignedComponent(raw[:ReportSize])
			wantCerts, err := abi.ExtendPlatformCertTable(tc.aux, &abi.ExtraPlatformInfo{Size: abi.ExtraPlatformInfoV0Size, Cpuid1Eax: eax})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(abi.SignedComponent(ev.Report), signed) || !bytes.Equal(ev.Certificates, wantCerts) {
				t.Errorf("Report() = report %x..., certificates %x..., want the device's report and go-sev-guest's extended table %x...",
					ev.Report[:16], ev.Certificates[:min(len(ev.Certificates), 48)], wantCerts[:min(len(wantCerts), 48)])
			}
			if bytes.Contains(tc.aux, signer.Vcek.Raw) {
				checkSigned(t, signer, ev)
			}
		})
	}
}

func TestConfigfsTSMOtherProvider(t *testing.T) {
	_, err := openConfigfsTSM(fakeTSM(t, "fake", nil, nil), 0)
	if err == nil || !strings.Contains(err.Error(), `provider "fake"`) {
		t.Errorf("openConfigfsTSM(provider fake) = %v, want an error naming the provider", err)
	}
}
