package published

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	sumA = strings.Repeat("a", 64)
	sumB = strings.Repeat("b", 64)
	m384 = strings.Repeat("c", 96)
	n384 = strings.Repeat("d", 96)
)

func TestFormatParseRoundTrip(t *testing.T) {
	d := Digests{
		{SHA256, "bzImage", sumA},
		{SHA256, "rootfs.img", sumB},
		{SNPLaunch, LaunchQEMU, m384},
		{SNPLaunch, LaunchCloudHypervisor, n384},
	}
	got, err := Parse("published.txt", bytes.NewReader(Format(d)))
	if err != nil {
		t.Fatalf("Parse(Format(d)): %v", err)
	}
	if len(got) != len(d) {
		t.Fatalf("Parse(Format(d)) = %v, want %v", got, d)
	}
	for i := range d {
		if got[i] != d[i] {
			t.Errorf("Parse(Format(d))[%d] = %v, want %v", i, got[i], d[i])
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"two fields", "sha256 bzImage\n", "published.txt:1: want \"kind name digest\""},
		{"short sha256", "sha256 bzImage abcd\n", "not a hex SHA-256"},
		{"upper-case hex", "sha256 bzImage " + strings.ToUpper(sumA) + "\n", "not a hex SHA-256"},
		{"sha256 as a measurement", "snp-launch qemu_ovmf " + sumA + "\n", "not a hex SHA-384"},
		{"unknown launch", "snp-launch firecracker " + m384 + "\n", `unknown launch path "firecracker"`},
		{"unknown kind", "md5 bzImage " + sumA + "\n", `unknown kind "md5"`},
		{"listed twice", "sha256 bzImage " + sumA + "\nsha256 bzImage " + sumB + "\n", "published.txt:2: sha256 bzImage is listed twice"},
		{"empty", "# nothing yet\n", "make publish-digests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("published.txt", strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	pub := Digests{{SHA256, "bzImage", sumA}, {SHA256, "rootfs.img", sumA}, {SNPLaunch, LaunchQEMU, m384}}
	for _, tc := range []struct {
		name  string
		built Digests
		want  []string
	}{
		{name: "same", built: Digests{{SNPLaunch, LaunchQEMU, m384}, {SHA256, "rootfs.img", sumA}, {SHA256, "bzImage", sumA}}},
		{name: "kernel and measurement differ", built: Digests{{SHA256, "bzImage", sumB}, {SHA256, "rootfs.img", sumA}, {SNPLaunch, LaunchQEMU, n384}},
			want: []string{"sha256 bzImage: published " + sumA + ", built " + sumB, "snp-launch qemu_ovmf: published " + m384 + ", built " + n384}},
		{name: "artifact missing from the build", built: Digests{{SHA256, "bzImage", sumA}, {SNPLaunch, LaunchQEMU, m384}},
			want: []string{"sha256 rootfs.img: published " + sumA + ", built (none)"}},
		{name: "new artifact not published", built: append(pub[:3:3], Entry{SHA256, "extra.img", sumB}),
			want: []string{"sha256 extra.img: published (none), built " + sumB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diffs := Compare(pub, tc.built)
			var got []string
			for _, d := range diffs {
				got = append(got, d.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Compare(%v, %v) =\n%s\nwant\n%s", pub, tc.built, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFromImage(t *testing.T) {
	dir := t.TempDir()
	sums := sumB + "  rootfs.img\n" + sumA + "  bzImage\n"
	meas := `{"qemu_ovmf": {"measurement": "` + m384 + `", "vmm": "qemu"}, "cloud_hypervisor_igvm": {"measurement": "` + n384 + `"}}`
	os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o644)
	os.WriteFile(filepath.Join(dir, "measurement.json"), []byte(meas), 0o644)
	got, err := FromImage(dir)
	if err != nil {
		t.Fatalf("FromImage: %v", err)
	}
	want := Digests{{SHA256, "bzImage", sumA}, {SHA256, "rootfs.img", sumB}, {SNPLaunch, LaunchQEMU, m384}, {SNPLaunch, LaunchCloudHypervisor, n384}}
	if len(Compare(want, got)) != 0 || len(got) != len(want) || got[0] != want[0] {
		t.Errorf("FromImage = %v, want %v", got, want)
	}

	os.WriteFile(filepath.Join(dir, "measurement.json"), []byte(`{"qemu_ovmf": {"measurement": "`+m384+`"}}`), 0o644)
	if _, err := FromImage(dir); err == nil || !strings.Contains(err.Error(), "cloud_hypervisor_igvm") {
		t.Errorf("FromImage(measurement.json without the IGVM launch) = %v, want an error naming cloud_hypervisor_igvm", err)
	}
}

// The committed digests are those of the image make test just built (CONFGUEST_IMAGE): a
// change that alters a guest artifact must update build/published.txt in the same commit.
func TestCommittedDigestsMatchImage(t *testing.T) {
	image := os.Getenv("CONFGUEST_IMAGE")
	if image == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CONFGUEST_IMAGE is not set: run make test, which builds the image and sets it")
		}
		t.Skip("CONFGUEST_IMAGE is not set (make test sets it)")
	}
	pub, err := Read(filepath.Join("..", "published.txt"))
	if err != nil {
		t.Fatal(err)
	}
	built, err := FromImage(image)
	if err != nil {
		t.Fatal(err)
	}
	diffs := Compare(pub, built)
	if len(diffs) == 0 {
		return
	}
	var b strings.Builder
	for _, d := range diffs {
		b.WriteString("\n  " + d.String())
	}
	t.Errorf("the image in %s differs from build/published.txt:%s\n"+
		"a change altered the guest without updating the published digests: run make publish-digests and commit "+
		"build/published.txt with the change (or, if you changed nothing of the guest, find what differs: README, "+
		"\"Reproduce the published measurement\")", image, b.String())
}
