package kbuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareFinal(t *testing.T) {
	const want = "CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_PAHOLE_VERSION=0\nCONFIG_VIRTIO=y\n"
	for _, tc := range []struct {
		name string
		got  string
		want []string // substrings of the error; none: equal
	}{
		{name: "equal", got: want},
		{name: "pahole installed", got: strings.Replace(want, "PAHOLE_VERSION=0", "PAHOLE_VERSION=124", 1),
			want: []string{"- CONFIG_PAHOLE_VERSION=0    <- pahole answered the probe", "+ CONFIG_PAHOLE_VERSION=124", "make kernel-config"}},
		{name: "gcc plugin headers", got: want + "# CONFIG_GCC_PLUGINS is not set\n",
			want: []string{"+ # CONFIG_GCC_PLUGINS is not set    <- gcc's plugin headers are installed (Debian gcc-12-plugin-dev)"}},
		{name: "fragment option dropped", got: strings.Replace(want, "CONFIG_VIRTIO=y\n", "", 1),
			want: []string{"- CONFIG_VIRTIO=y\n", "kernelcfg/final.config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := compareFinal([]byte(want), []byte(tc.got), "kernelcfg/final.config")
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("compareFinal(%q) = %v, want nil", tc.got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("compareFinal(%q) = nil, want an error", tc.got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error()+"\n", w) {
					t.Errorf("compareFinal(%q) = %q, want it to contain %q", tc.got, err, w)
				}
			}
		})
	}
}

// A cache entry is used only when its config is the final config and its recorded tool pins
// are the current ones; an entry from before pins were recorded has none and is rebuilt.
func TestCacheEntryMatches(t *testing.T) {
	const final = "CONFIG_PAHOLE_VERSION=0\nCONFIG_VIRTIO=y\n"
	pins := []string{"xz-utils 5.4.1-1+deb12u2 f99f", "gcc-12 12.2.0-14+deb12u1 b46f"}
	for _, tc := range []struct {
		name   string
		config string
		tools  []string
		want   string // substring of the error; empty: the entry is used
	}{
		{name: "same config and pins", config: final, tools: pins},
		{name: "entry from before pins were recorded", config: final, want: "built before tool pins were recorded"},
		{name: "built where pahole answered Kconfig", config: strings.Replace(final, "=0", "=124", 1), tools: pins, want: "differs from kernelcfg/final.config"},
		{name: "built with another xz", config: final, tools: []string{"xz-utils 5.6.4-1 0a1b", pins[1]}, want: "was built with the tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := Config{FinalConfig: []byte(final), FinalConfigName: "kernelcfg/final.config", Toolchain: pins}
			err := cfg.matches(dir, Info{Toolchain: tc.tools})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("matches(config %q, tools %q) = %v, want %q", tc.config, tc.tools, err, tc.want)
			}
		})
	}
}
