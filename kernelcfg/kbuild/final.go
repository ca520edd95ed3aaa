package kbuild

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// probeHints explain the final .config lines that depend on what is installed on the build
// machine rather than on the fragment: Kconfig probes the toolchain, and the kernel embeds
// its .config (CONFIG_IKCONFIG), so each of these changes the bzImage.
var probeHints = map[string]string{
	"CONFIG_CC_VERSION_TEXT":    "the C compiler differs from the pinned gcc (build/toolchain.lock)",
	"CONFIG_GCC_VERSION":        "the C compiler differs from the pinned gcc (build/toolchain.lock)",
	"CONFIG_AS_VERSION":         "the assembler differs from the pinned binutils (build/toolchain.lock)",
	"CONFIG_LD_VERSION":         "the linker differs from the pinned binutils (build/toolchain.lock)",
	"CONFIG_GCC_PLUGINS":        "gcc's plugin headers are installed (Debian gcc-12-plugin-dev): remove that package",
	"CONFIG_PAHOLE_VERSION":     "pahole answered the probe",
	"CONFIG_RUSTC_VERSION":      "rustc answered the probe",
	"CONFIG_CC_CAN_LINK":        "the C library development files differ (libc6-dev)",
	"CONFIG_CC_CAN_LINK_STATIC": "the static C library differs (libc6-dev)",
}

// compareFinal returns an error listing every line in which the final .config got differs
// from the committed one, with what each usually means.
func compareFinal(want, got []byte, name string) error {
	if bytes.Equal(want, got) {
		return nil
	}
	wantLines, gotLines := lineSet(want), lineSet(got)
	var sb strings.Builder
	fmt.Fprintf(&sb, "the final .config differs from %s (every line of it is embedded in the bzImage):", name)
	hints := map[string]bool{}
	note := func(sign, line string) {
		fmt.Fprintf(&sb, "\n  %s %s", sign, line)
		if h, ok := probeHints[symbolOf(line)]; ok && !hints[h] {
			hints[h] = true
			fmt.Fprintf(&sb, "    <- %s", h)
		}
	}
	for _, l := range strings.Split(string(want), "\n") {
		if !gotLines[l] {
			note("-", l)
		}
	}
	for _, l := range strings.Split(string(got), "\n") {
		if !wantLines[l] {
			note("+", l)
		}
	}
	sb.WriteString("\nif the fragment changed on purpose, regenerate it with make kernel-config and commit it with the new published digests")
	return errors.New(sb.String())
}

func lineSet(b []byte) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		m[l] = true
	}
	return m
}

// symbolOf returns the CONFIG_ symbol a .config line sets or leaves unset.
func symbolOf(line string) string {
	line = strings.TrimPrefix(line, "# ")
	name, _, _ := strings.Cut(line, "=")
	name, _, _ = strings.Cut(name, " ")
	return name
}
