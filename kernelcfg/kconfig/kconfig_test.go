package kconfig

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []Option
		wantErr string
	}{
		{
			name: "values comments and blank lines",
			in: "# virtio\nCONFIG_VIRTIO=y\n\nCONFIG_SEV_GUEST=m\n# CONFIG_MODULES is not set\n" +
				"CONFIG_NR_CPUS=64\nCONFIG_PHYSICAL_START=0x1000000\nCONFIG_INITRAMFS_SOURCE=\"\"\n" +
				"CONFIG_CMDLINE=\"console=ttyS0 x=\\\"y\\\"\"\nCONFIG_LOG_BUF_SHIFT=-1\n  CONFIG_INDENTED=y  \n",
			want: []Option{
				{"CONFIG_VIRTIO", "y", 2},
				{"CONFIG_SEV_GUEST", "m", 4},
				{"CONFIG_MODULES", "n", 5},
				{"CONFIG_NR_CPUS", "64", 6},
				{"CONFIG_PHYSICAL_START", "0x1000000", 7},
				{"CONFIG_INITRAMFS_SOURCE", `""`, 8},
				{"CONFIG_CMDLINE", `"console=ttyS0 x=\"y\""`, 9},
				{"CONFIG_LOG_BUF_SHIFT", "-1", 10},
				{"CONFIG_INDENTED", "y", 11},
			},
		},
		{name: "explicit n", in: "CONFIG_X=n\n", want: []Option{{"CONFIG_X", "n", 1}}},
		{name: "comment that only looks like unset", in: "# CONFIG_X is not set, because\n", want: nil},
		{name: "empty", in: "", want: nil},
		{name: "missing prefix", in: "CONFIG_A=y\nVIRTIO=y\n", wantErr: "line 2"},
		{name: "bare word", in: "CONFIG_A\n", wantErr: "line 1"},
		{name: "bad value", in: "CONFIG_A=yes\n", wantErr: `CONFIG_A has value "yes"`},
		{name: "unterminated string", in: "CONFIG_A=\"abc\n", wantErr: "line 1"},
		{name: "space around equals", in: "CONFIG_A = y\n", wantErr: "line 1"},
		{name: "empty value", in: "CONFIG_A=\n", wantErr: "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseFragmentDuplicate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "unique", in: "CONFIG_A=y\nCONFIG_B=y\n"},
		{name: "same value twice", in: "CONFIG_A=y\nCONFIG_B=y\nCONFIG_A=y\n", wantErr: "line 3: CONFIG_A is already set on line 1"},
		{name: "set and unset", in: "CONFIG_A=y\n# CONFIG_A is not set\n", wantErr: "line 2: CONFIG_A is already set on line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFragment(strings.NewReader(tc.in))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("ParseFragment(%q) error = %v, want nil", tc.in, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("ParseFragment(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	final := "CONFIG_64BIT=y\nCONFIG_VIRTIO=y\nCONFIG_SEV_GUEST=m\n# CONFIG_MODULES is not set\n" +
		"CONFIG_NR_CPUS=64\nCONFIG_CMDLINE=\"a b\"\nCONFIG_SELECTED=y\n"
	cfg, err := ParseConfig(strings.NewReader(final))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	for _, tc := range []struct {
		name     string
		fragment string
		want     []string // Mismatch.String() prefixes, in order
	}{
		{name: "all kept", fragment: "CONFIG_VIRTIO=y\nCONFIG_NR_CPUS=64\nCONFIG_CMDLINE=\"a b\"\n"},
		{name: "unset written as comment, absent in final", fragment: "# CONFIG_ABSENT is not set\n"},
		{name: "unset written as comment, unset in final", fragment: "# CONFIG_MODULES is not set\n"},
		{name: "explicit n, absent in final", fragment: "CONFIG_ABSENT=n\n"},
		{
			name:     "dropped",
			fragment: "CONFIG_VIRTIO=y\nCONFIG_VSOCKETS=y\n",
			want:     []string{"CONFIG_VSOCKETS=y (line 2): dropped"},
		},
		{
			name:     "y became m",
			fragment: "CONFIG_SEV_GUEST=y\n",
			want:     []string{"CONFIG_SEV_GUEST=y (line 1): changed to m"},
		},
		{
			name:     "number changed",
			fragment: "CONFIG_NR_CPUS=512\n",
			want:     []string{"CONFIG_NR_CPUS=512 (line 1): changed to 64"},
		},
		{
			name:     "string changed",
			fragment: "CONFIG_CMDLINE=\"a\"\n",
			want:     []string{`CONFIG_CMDLINE="a" (line 1): changed to "a b"`},
		},
		{
			name:     "unset but selected",
			fragment: "# CONFIG_SELECTED is not set\n",
			want:     []string{"# CONFIG_SELECTED is not set (line 1): set to y anyway"},
		},
		{
			name:     "every mismatch listed in fragment order",
			fragment: "CONFIG_X=y\nCONFIG_VIRTIO=y\n# CONFIG_64BIT is not set\nCONFIG_Y=y\n",
			want: []string{
				"CONFIG_X=y (line 1): dropped",
				"# CONFIG_64BIT is not set (line 3): set to y anyway",
				"CONFIG_Y=y (line 4): dropped",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frag, err := ParseFragment(strings.NewReader(tc.fragment))
			if err != nil {
				t.Fatalf("ParseFragment(%q): %v", tc.fragment, err)
			}
			got := Check(frag, cfg)
			var gotS []string
			for _, m := range got {
				gotS = append(gotS, m.String())
			}
			if len(gotS) != len(tc.want) {
				t.Fatalf("Check(%q) = %q, want %d mismatches starting %q", tc.fragment, gotS, len(tc.want), tc.want)
			}
			for i := range tc.want {
				if !strings.HasPrefix(gotS[i], tc.want[i]) {
					t.Errorf("Check(%q)[%d] = %q, want prefix %q", tc.fragment, i, gotS[i], tc.want[i])
				}
			}
		})
	}
}
