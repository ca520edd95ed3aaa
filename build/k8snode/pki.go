package k8snode

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certSpec is one certificate the node's components use, signed by the node's CA.
type certSpec struct {
	file  string   // <file>.crt and <file>.key under the PKI folder
	cn    string   // the subject's common name: a user name to the API server
	orgs  []string // the subject's organizations: group names to the API server
	dns   []string // server names
	ips   []net.IP // server addresses
	usage []x509.ExtKeyUsage
}

// certSpecs are the node's certificates: the API server's serving certificate (for
// 127.0.0.1 and the node address), its client certificate towards the kubelet, the
// kubelet's serving certificate and its client certificate (the node identity
// system:node:<name> in system:nodes, which the Node authorizer and the NodeRestriction
// admission plugin expect), and an administrator's (system:masters) for kubectl and tests.
func certSpecs(nodeName string, nodeIP net.IP) []certSpec {
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return []certSpec{
		{file: "apiserver", cn: "kube-apiserver", usage: server,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
			ips: []net.IP{net.IPv4(127, 0, 0, 1), nodeIP}},
		{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, usage: client},
		{file: "kubelet", cn: nodeName, usage: server, dns: []string{nodeName}, ips: []net.IP{nodeIP}},
		{file: "kubelet-client", cn: "system:node:" + nodeName, orgs: []string{"system:nodes"}, usage: client},
		{file: "admin", cn: "confguest-admin", orgs: []string{"system:masters"}, usage: client},
	}
}

// pki is the node's certificate authority and the files made from it.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer
}

// newPKI creates a CA valid for validity in dir (ca.crt, ca.key), every certificate of
// specs signed by it, and the service-account signing key pair (sa.key, sa.pub).
func newPKI(dir string, specs []certSpec, now time.Time, validity time.Duration) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "confguest-node-ca"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create the CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caCert: ca, caKey: key}
	if err := p.write("ca", der, key); err != nil {
		return nil, err
	}
	for _, s := range specs {
		if err := p.issue(s, now, validity); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", s.file, err)
		}
	}
	// The API server signs service-account tokens with sa.key; it and the token
	// authenticator check them with sa.pub. Kubernetes accepts RSA or ECDSA keys.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate the service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	return p, writePEM(filepath.Join(dir, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
}

// issue writes s's certificate and key.
func (p *pki) issue(s certSpec, now time.Time, validity time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  s.usage,
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return err
	}
	return p.write(s.file, der, key)
}

// write stores a certificate and its key as <name>.crt and <name>.key.
func (p *pki) write(name string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(p.path(name+".crt"), "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(p.path(name+".key"), "EC PRIVATE KEY", keyDER)
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// serial is a random 128-bit certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return n
}
