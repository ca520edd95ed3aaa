package kbuild

import (
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
