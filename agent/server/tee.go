package server

import (
	"fmt"
	"os"

	"confguest/agent/attest"
	"confguest/init/cmdline"
)

// TEE types reported by Version: the values of confguest.tee.
const (
	TEESNP  = string(cmdline.TEESNP)
	TEENone = string(cmdline.TEENone)
)

// sevGuestDevice is the SEV-SNP guest driver's device node.
const sevGuestDevice = "/dev/sev-guest"

// SNPDeviceProbe reports whether the guest has an SEV-SNP guest device,
// and which (for the error message).
type SNPDeviceProbe func() (device string, found bool)

// probeSNPDevice finds /dev/sev-guest, or a configfs-tsm report provider
// sev_guest (what attest.OpenDevice opens).
func probeSNPDevice() (string, bool) {
	if _, err := os.Stat(sevGuestDevice); err == nil {
		return sevGuestDevice, true
	}
	if _, err := attest.OpenDevice(); err == nil {
		return "configfs-tsm report provider sev_guest", true
	}
	return "", false
}

// guestTEE reads confguest.tee from the kernel command line with PID 1's
// parser (init/cmdline: a key given twice, an unknown confguest.* key or
// a bad value is an error; words after "--" are not read). A guest that
// says tee=none but has an SEV-SNP device is refused: tee=none turns
// policy binding and attestation off, which a host must not be able to do
// to an SEV-SNP guest.
func guestTEE(line string, probe SNPDeviceProbe) (string, error) {
	c, err := cmdline.Params(line)
	if err != nil {
		return "", fmt.Errorf("kernel command line: %w", err)
	}
	if c.TEE == cmdline.TEENone {
		if dev, found := probe(); found {
			return "", fmt.Errorf("kernel command line %s=%s: %w: this guest has an SEV-SNP device (%s): boot it with %s=%s or without %s",
				cmdline.KeyTEE, c.TEE, ErrTEEMismatch, dev, cmdline.KeyTEE, cmdline.TEESNP, cmdline.KeyTEE)
		}
	}
	return string(c.TEE), nil
}
