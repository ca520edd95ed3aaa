package attest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
)

// sevGuestProvider is what configfs-tsm's provider attribute reads for the SEV-SNP guest
// driver.
const sevGuestProvider = "sev_guest"

// configfsTSM gets extended reports through the kernel's configfs-tsm interface
// (/sys/kernel/config/tsm/report, CONFIG_TSM_REPORTS): the report in outblob, the
// certificate table in auxblob.
type configfsTSM struct {
	client    configfsi.Client
	cpuid1EAX uint32 // for the platform information entry (extendCertTable)
}

// openConfigfsTSM returns a provider over client if its report provider is the SEV-SNP
// guest driver.
func openConfigfsTSM(client configfsi.Client, cpuid1EAX uint32) (*configfsTSM, error) {
	r, err := report.Create(client, &report.Request{})
	if err != nil {
		return nil, fmt.Errorf("create a configfs-tsm report: %w", err)
	}
	provider, err := r.ReadOption("provider")
	err = errors.Join(err, r.Destroy())
	if err != nil {
		return nil, fmt.Errorf("read the configfs-tsm report provider: %w", err)
	}
	if p := strings.TrimSpace(string(provider)); p != sevGuestProvider {
		return nil, fmt.Errorf("configfs-tsm report provider %q, want %q", p, sevGuestProvider)
	}
	return &configfsTSM{client: client, cpuid1EAX: cpuid1EAX}, nil
}

// GetRawQuote returns the report for reportData followed by its certificate table, with
// the platform information entry when the table has no VCEK (extendCertTable).
func (c *configfsTSM) GetRawQuote(reportData [64]byte) ([]byte, error) {
	resp, err := report.Get(c.client, &report.Request{InBlob: reportData[:], GetAuxBlob: true})
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm report: %w", err)
	}
	if p := strings.TrimSpace(resp.Provider); p != sevGuestProvider {
		return nil, fmt.Errorf("configfs-tsm report from provider %q, want %q", p, sevGuestProvider)
	}
	certs, err := extendCertTable(resp.AuxBlob, c.cpuid1EAX)
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm auxblob: %w", err)
	}
	return append(resp.OutBlob, certs...), nil
}

// openSystemDevice opens the configfs-tsm report interface of this guest.
func openSystemDevice() (QuoteProvider, error) {
	client, err := linuxtsm.MakeClient()
	if err != nil {
		return nil, err
	}
	return openConfigfsTSM(client, cpuid1EAX())
}
