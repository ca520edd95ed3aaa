package kbuild

import (
	"regexp"
	"testing"
)

func TestCacheKey(t *testing.T) {
	base := Source{Package: "linux-source-6.12", Version: "6.12.117-1", DebSHA256: "9141325315c7f1eca682113d185a8c77c82814aa6e32f7e127e61d6106403835", Tarball: "/a/linux.tar.xz"}
	frag := []byte("CONFIG_VIRTIO=y\n")
	const gcc = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
	want := CacheKey(base, frag, gcc)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(want) {
		t.Fatalf("CacheKey = %q, want 64 hex digits", want)
	}

	for _, tc := range []struct {
		name     string
		src      Source
		frag     []byte
		compiler string
		same     bool
	}{
		{name: "identical inputs", src: base, frag: frag, compiler: gcc, same: true},
		{name: "tarball path is not an input", src: Source{base.Package, base.Version, base.DebSHA256, "/elsewhere/linux.tar.xz"}, frag: frag, compiler: gcc, same: true},
		{name: "other version", src: Source{base.Package, "6.12.118-1", base.DebSHA256, base.Tarball}, frag: frag, compiler: gcc},
		{name: "other package", src: Source{"linux-source-6.13", base.Version, base.DebSHA256, base.Tarball}, frag: frag, compiler: gcc},
		{name: "other deb digest", src: Source{base.Package, base.Version, "0141325315c7f1eca682113d185a8c77c82814aa6e32f7e127e61d6106403835", base.Tarball}, frag: frag, compiler: gcc},
		{name: "fragment changed", src: base, frag: []byte("CONFIG_VIRTIO=m\n"), compiler: gcc},
		{name: "fragment comment changed", src: base, frag: []byte("# virtio\nCONFIG_VIRTIO=y\n"), compiler: gcc},
		{name: "other compiler", src: base, frag: frag, compiler: "gcc (Debian 14.2.0-19) 14.2.0"},
		// Without length prefixes, moving bytes between adjacent parts would not change the key.
		{name: "bytes moved between version and digest", src: Source{base.Package, base.Version + "9", base.DebSHA256[1:], base.Tarball}, frag: frag, compiler: gcc},
		{name: "bytes moved between compiler and fragment", src: base, frag: append([]byte("0"), frag...), compiler: gcc[:len(gcc)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CacheKey(tc.src, tc.frag, tc.compiler)
			if (got == want) != tc.same {
				t.Errorf("CacheKey(%+v, %q, %q) = %s, base key %s: want same=%v", tc.src, tc.frag, tc.compiler, got, want, tc.same)
			}
		})
	}
}
