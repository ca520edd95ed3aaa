package qemutests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"confguest/agent/api/imagesig"
	"confguest/agent/api/policy"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
)

// cosignBinary is cosign at the version build/cosign.sh pins (built once, cached).
func cosignBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "build", "cosign.sh")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		missing(t, "cosign unavailable (build/cosign.sh: %v)\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// signingEnv signs images of an in-process registry on 127.0.0.1 with cosign, as a user
// would: confguest image attest writes the predicate, cosign attest signs and attaches it.
type signingEnv struct {
	t               *testing.T
	cosign, cg, dir string
	registry        string // host:port
	ctx             context.Context
}

func (e *signingEnv) cmd(bin string, args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	c.Dir = e.dir
	c.Env = append(os.Environ(), "COSIGN_PASSWORD=confguest-test", "COSIGN_YES=true", "HOME="+e.dir)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		e.t.Fatalf("%s %q: %v\n%s%s", filepath.Base(bin), args, err, out.String(), errOut.String())
	}
	return out.String()
}

// push stores a busybox image whose /etc/hello says hello under repo:tag and returns it
// pinned by digest.
func (e *signingEnv) push(repoTag, hello string) name.Digest {
	e.t.Helper()
	root := busyboxRoot(e.t)
	if err := os.WriteFile(filepath.Join(root, "etc", "hello"), []byte(hello+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	tag, err := name.NewTag(e.registry + "/" + repoTag)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.Write(tag, dirImage(e.t, root), remote.WithContext(e.ctx)); err != nil {
		e.t.Fatal(err)
	}
	d, err := image.Resolve(e.ctx, tag.String())
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// attest writes the image's predicate with confguest image attest and has cosign sign it
// with the key pair of keyPrefix and attach it to the image in the registry (with more
// cosign attest flags, if any).
func (e *signingEnv) attest(d name.Digest, keyPrefix string, flags ...string) {
	e.t.Helper()
	pred := filepath.Join(e.dir, strings.ReplaceAll(d.DigestStr(), ":", "-")+".json")
	e.cmd(e.cg, "image", "attest", "-o", pred, d.String())
	args := append([]string{"attest", "--key", keyPrefix + ".key", "--type", imagesig.PredicateType, "--predicate", pred,
		"--tlog-upload=false", "--allow-http-registry", "--allow-insecure-registry", "--yes"}, flags...)
	e.cmd(e.cosign, append(args, d.String())...)
}

// envelope reads image d's attestation back from the registry, as confguest run --pull does.
func (e *signingEnv) envelope(d name.Digest) []byte {
	e.t.Helper()
	env, err := image.FindAttestation(e.ctx, d)
	if err != nil {
		e.t.Fatalf("FindAttestation(%s) = %v", d, err)
	}
	return env
}

// TestSignedImages: a policy entry that trusts a signer runs every image version that key
// signed with cosign, in one guest under one policy (one HOST_DATA), and the guest refuses
// an unsigned image, another key, a statement about another image, a signed root hash that
// is not the disk's, a changed byte in the envelope and a disk changed after signing, each
// naming why.
func TestSignedImages(t *testing.T) {
	img := needImage(t)
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		missing(t, "mkfs.erofs not found: install erofs-utils (build/setup.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	e := &signingEnv{t: t, cosign: cosignBinary(t), cg: confguestBinary(t), dir: t.TempDir(),
		registry: strings.TrimPrefix(reg.URL, "http://"), ctx: ctx}

	e.cmd(e.cosign, "generate-key-pair")
	e.cmd(e.cosign, "generate-key-pair", "--output-key-prefix", "other")
	repo := e.registry + "/team/app"
	v1 := e.push("team/app:v1", "hello v1")
	v2 := e.push("team/app:v2", "hello v2")
	unsigned := e.push("team/app:unsigned", "hello unsigned")
	otherKey := e.push("team/app:other-key", "hello other key")
	otherImage := e.push("team/other:v1", "hello other image")
	tampered := e.push("team/app:tampered", "hello tampered")
	bundled := e.push("team/app:bundle", "hello bundle")
	for _, d := range []name.Digest{v1, v2, otherImage, tampered} {
		e.attest(d, "cosign")
	}
	e.attest(otherKey, "other")
	// A Sigstore bundle among the image's OCI 1.1 referrers instead of the .att tag.
	e.attest(bundled, "cosign", "--new-bundle-format")
	// The statement is standard: cosign itself accepts what confguest image attest + cosign made.
	out := e.cmd(e.cosign, "verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog", "--type", imagesig.PredicateType,
		"--allow-http-registry", "--allow-insecure-registry", v1.String())
	if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
		t.Errorf("cosign verify-attestation printed %.300q, want the DSSE envelope", out)
	}

	// The policy: the signer and the repository, the process from the image's config.
	polFile := filepath.Join(e.dir, "policy.json")
	e.cmd(e.cg, "policy", "generate", "--signer", filepath.Join(e.dir, "cosign.pub"), "--image", repo,
		"--pull", v1.String(), "-o", polFile)
	doc, err := os.ReadFile(polFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(doc)
	if err != nil || p.Containers[0].Rootfs.Signed == nil || len(p.Containers[0].Rootfs.Layers) != 0 {
		t.Fatalf("confguest policy generate --signer wrote %s (%v): want one entry pinned by signer only", doc, err)
	}
	t.Logf("policy %s, HOST_DATA %s, for every version of %s", polFile, policy.HashHex(doc), repo)

	sb := newSandbox(ctx, t, img, 512)
	disks := map[name.Digest]launcher.Disk{}
	for _, d := range []name.Digest{v1, v2, unsigned, otherKey, otherImage, tampered, bundled} {
		disk, err := sb.BuildDisk(ctx, image.Source{Kind: image.Registry, Ref: d.String()})
		if err != nil {
			t.Fatalf("BuildDisk(%s) = %v", d, err)
		}
		disks[d] = disk
	}
	// The host changes one byte of the erofs superblock after signing, and sends the signed
	// verity parameters: only dm-verity in the guest can tell.
	flipByte(t, disks[tampered].Path, 1024+8)
	g, err := sb.Boot(ctx, doc)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}

	v1Env := e.envelope(v1)
	// The same statement signed by confguest itself with cosign's (encrypted) key.
	ownEnvFile := filepath.Join(e.dir, "v1.confguest.dsse.json")
	e.cmd(e.cg, "image", "attest", "-o", filepath.Join(e.dir, "v1.predicate.json"), "--key", "cosign.key", "--envelope", ownEnvFile, v1.String())
	ownEnv, err := os.ReadFile(ownEnvFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		disk     launcher.Disk
		envelope []byte
		wantOut  string // admitted: the container's output
		wantErr  []string
	}{
		{name: "signed image", disk: disks[v1], envelope: v1Env, wantOut: "hello v1\n"},
		{name: "signed by confguest image attest --key", disk: disks[v1], envelope: ownEnv, wantOut: "hello v1\n"},
		{name: "second version, same key, same policy", disk: disks[v2], envelope: e.envelope(v2), wantOut: "hello v2\n"},
		{name: "cosign bundle, OCI 1.1 referrers", disk: disks[bundled], envelope: e.envelope(bundled), wantOut: "hello bundle\n"},
		{name: "unsigned image", disk: disks[unsigned], envelope: e.envelope(unsigned),
			wantErr: []string{"containers[main].rootfs.signed", "rootfs_attestation: missing"}},
		{name: "signed by another key", disk: disks[otherKey], envelope: e.envelope(otherKey),
			wantErr: []string{"containers[main].rootfs.signed", "no signature verifies with a trusted key"}},
		{name: "statement for another image", disk: disks[otherImage], envelope: e.envelope(otherImage),
			wantErr: []string{"containers[main].rootfs.signed.image", "team/other, which the entry's image does not match"}},
		{name: "signed root hash not the disk's", disk: disks[v1], envelope: e.envelope(v2),
			wantErr: []string{"containers[main].rootfs.signed", "rootfs.block.verity.root_hash: the root hash is not the one signed"}},
		{name: "a changed byte in the envelope", disk: disks[v1], envelope: changeByte(t, v1Env),
			wantErr: []string{"containers[main].rootfs.signed", "no signature verifies with a trusted key"}},
		{name: "disk changed after signing", disk: disks[tampered], envelope: e.envelope(tampered),
			wantErr: []string{"code = DataLoss", "dm-verity refused a block", "does not match root hash"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantErr == nil && tc.envelope == nil {
				t.Fatalf("no attestation of the image found in the registry")
			}
			proc, err := launcher.ProcessFromImage(tc.disk.Config, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := tc.disk
			d.Attestation = tc.envelope
			var stdout, stderr bytes.Buffer
			code, err := g.RunContainer(ctx, "ctr", d, proc, launcher.IO{Stdout: &stdout, Stderr: &stderr})
			if tc.wantErr == nil {
				if err != nil || code != 0 || stdout.String() != tc.wantOut {
					t.Fatalf("RunContainer(%s) = %d, %v, stdout %q; want 0, %q\nstderr: %s", tc.name, code, err, stdout.String(), tc.wantOut, stderr.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("RunContainer(%s) = %d, stdout %q; want refused", tc.name, code, stdout.String())
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("RunContainer(%s) = %v, want an error naming %q", tc.name, err, w)
				}
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
	t.Run("confguest run --pull", func(t *testing.T) { signedCLIRun(t, polFile, v2, "hello v2\n") })
}

// TestImageDiskIsDirDisk: the disk of an image (what confguest image attest describes and
// confguest run --pull builds) is the disk of its unpacked tree (what the shim builds from
// containerd's snapshot), so a statement signed for the image holds in a pod. No VM.
func TestImageDiskIsDirDisk(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		missing(t, "mkfs.erofs not found: install erofs-utils (build/setup.sh)")
	}
	root, w := busyboxRoot(t), t.TempDir()
	ctx := context.Background()
	fromDir, err := image.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: root}, w, filepath.Join(w, "dir.img"))
	if err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(w, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(dirImage(t, root), layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})); err != nil {
		t.Fatal(err)
	}
	fromImage, err := image.BuildDisk(ctx, image.Source{Kind: image.OCILayout, Ref: lay}, w, filepath.Join(w, "image.img"))
	if err != nil {
		t.Fatal(err)
	}
	if fromDir.Verity != fromImage.Verity {
		t.Errorf("disk of the tree: root hash %s; of its image: %s; want the same disk", fromDir.Verity.RootHash, fromImage.Verity.RootHash)
	}
}

// TestSignedImages' user path, with the CLI: confguest run --pull finds the image's cosign
// attestation in the registry and sends it; the policy admits the second version.
func signedCLIRun(t *testing.T, polFile string, d name.Digest, want string) {
	ce := newCLIEnv(t)
	r := ce.run("", append(append([]string{"run"}, ce.launchFlags()...), "--policy", polFile, "--pull", d.String())...)
	if r.code != 0 || r.stdout != want || !strings.Contains(r.stderr, "found the image's attestation") {
		t.Errorf("confguest run --policy (signer) --pull %s = exit %d, stdout %q; want 0, %q, the attestation found\nstderr:\n%s", d, r.code, r.stdout, want, r.stderr)
	}
	ce.checkNoLeftovers()
}

// changeByte changes one byte of an envelope's signed statement (a digit of the root hash),
// keeping it valid JSON and base64.
func changeByte(t *testing.T, env []byte) []byte {
	t.Helper()
	var e imagesig.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	p, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(p, []byte(`"root_hash":"`)) + len(`"root_hash":"`)
	if p[i] == '0' {
		p[i] = '1'
	} else {
		p[i] = '0'
	}
	e.Payload = base64.StdEncoding.EncodeToString(p)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
