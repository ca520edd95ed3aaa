package k8snode

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func TestNewPKI(t *testing.T) {
	dir := t.TempDir()
	nodeIP := net.IPv4(10, 88, 76, 1)
	now := time.Now()
	if _, err := newPKI(dir, certSpecs("node1", nodeIP), now, time.Hour); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, tc := range []struct {
		file  string
		cn    string
		orgs  []string
		usage x509.ExtKeyUsage
		host  string // a name or address the certificate must be valid for
	}{
		{"apiserver", "kube-apiserver", nil, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"apiserver", "kube-apiserver", nil, x509.ExtKeyUsageServerAuth, "10.88.76.1"},
		{"apiserver", "kube-apiserver", nil, x509.ExtKeyUsageServerAuth, "kubernetes.default.svc"},
		{"kubelet", "node1", nil, x509.ExtKeyUsageServerAuth, "10.88.76.1"},
		{"kubelet-client", "system:node:node1", []string{"system:nodes"}, x509.ExtKeyUsageClientAuth, ""},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, ""},
		{"admin", "confguest-admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.file+" "+tc.host, func(t *testing.T) {
			c := readCert(t, filepath.Join(dir, tc.file+".crt"))
			if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.Organization, tc.orgs) {
				t.Errorf("%s subject = %q %q, want %q %q", tc.file, c.Subject.CommonName, c.Subject.Organization, tc.cn, tc.orgs)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}, CurrentTime: now}); err != nil {
				t.Errorf("%s.crt does not verify for %q with usage %v: %v", tc.file, tc.host, tc.usage, err)
			}
			if _, err := os.Stat(filepath.Join(dir, tc.file+".key")); err != nil {
				t.Errorf("%s.key: %v", tc.file, err)
			}
		})
	}
	if !ca.NotAfter.Before(now.Add(2 * time.Hour)) {
		t.Errorf("CA valid until %s, want about an hour (the validity asked for)", ca.NotAfter)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("sa.pub: no PEM block")
	}
	if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
		t.Errorf("sa.pub: %v", err)
	}
}
