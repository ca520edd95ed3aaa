// Package kernelcfg holds the guest kernel's configuration fragment (guest.config); the
// builder that turns it into a bzImage is in kbuild, its command in cmd/buildkernel.
package kernelcfg

import _ "embed"

// Fragment is guest.config: the options merged onto tinyconfig for the guest kernel.
//
//go:embed guest.config
var Fragment []byte

// SourcePackage is the Debian package whose kernel source the guest kernel is built from;
// its version and .deb digest are pinned in build/packages.lock.
const SourcePackage = "linux-source-6.12"
