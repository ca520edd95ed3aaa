// Package kernelcfg holds the guest kernel's configuration fragment (guest.config); the
// builder that turns it into a bzImage is in kbuild, its command in cmd/buildkernel.
package kernelcfg

import _ "embed"

// Fragment is guest.config: the options merged onto tinyconfig for the guest kernel.
//
//go:embed guest.config
var Fragment []byte

// FinalConfig is final.config: the complete .config that Kconfig makes of guest.config on
// tinyconfig with the pinned toolchain. The kernel embeds it (CONFIG_IKCONFIG), so the build
// stops before compiling when a machine's Kconfig answers differently; make kernel-config
// rewrites it after a deliberate change of guest.config.
//
//go:embed final.config
var FinalConfig []byte

// SourcePackage is the Debian package whose kernel source the guest kernel is built from;
// its version and .deb digest are pinned in build/packages.lock.
const SourcePackage = "linux-source-6.12"
