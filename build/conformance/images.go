package conformance

import (
	"archive/tar"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Image references critest v1.30.0 pulls (pkg/validate/consts.go, multi_container_linux.go,
// security_context_linux.go, pkg/framework/util.go). The registry host names are critest's
// own; containerd's registry configuration sends them to the local registry.
const (
	e2ePrefix     = "registry.k8s.io/e2e-test-images/"
	criToolsImage = "gcr.io/k8s-staging-cri-tools/"
)

// Paths in an image.
const imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// sources are the Debian files the images are built from.
type sources struct {
	busybox string   // unpacked Debian "busybox" package
	nginx   string   // unpacked Debian "nginx" package
	apache  string   // unpacked Debian "apache2-bin" package
	roots   []string // where shared objects are looked up: unpacked packages, then "/"
	nnp     string   // the nonewprivs program (build/conformance/nnp), static
}

// testImage is one image of the registry and every reference it is pushed under.
type testImage struct {
	refs  []string
	image v1.Image
}

// buildImages builds every image critest pulls, plus the pod sandbox image under pause.
func buildImages(ctx context.Context, src sources, pause string) ([]testImage, error) {
	base, err := busyboxTree(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	baseLayer, err := base.layer()
	if err != nil {
		return nil, err
	}
	var out []testImage
	add := func(cfg v1.Config, extra *tree, refs ...string) error {
		img, err := image(cfg, baseLayer, extra)
		if err != nil {
			return fmt.Errorf("image %s: %w", refs[0], err)
		}
		out = append(out, testImage{refs: refs, image: img})
		return nil
	}
	shell := v1.Config{Cmd: []string{"sh"}}

	// The default test image and the pod sandbox. The sandbox's PID 1 waits for a signal
	// and reaps the processes of the pod, as Kubernetes' pause does.
	if err := add(shell, nil, e2ePrefix+"busybox:1.29-2"); err != nil {
		return nil, err
	}
	pauseCfg := v1.Config{Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"}}
	if err := add(pauseCfg, nil, pause); err != nil {
		return nil, err
	}

	// Web servers: Debian's nginx on port 80 (and on 12003 for the host-network image),
	// Debian's Apache httpd on port 80, started as `httpd -D FOREGROUND` like the
	// e2e httpd image (the multi-container spec looks for that command line in its log).
	for _, w := range []struct {
		ref  string
		port int
	}{{e2ePrefix + "nginx:1.14-2", 80}, {criToolsImage + "hostnet-nginx-amd64:latest", 12003}} {
		t, err := nginxTree(src, w.port)
		if err != nil {
			return nil, fmt.Errorf("nginx image: %w", err)
		}
		cfg := v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", w.port): {}}}
		if err := add(cfg, t, w.ref); err != nil {
			return nil, err
		}
	}
	httpd, err := apacheTree(src)
	if err != nil {
		return nil, fmt.Errorf("httpd image: %w", err)
	}
	if err := add(v1.Config{Cmd: []string{"httpd", "-D", "FOREGROUND"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}, httpd, e2ePrefix+"httpd:2.4.39-4"); err != nil {
		return nil, err
	}

	// A setuid-root program that prints its effective UID (the e2e nonewprivs image).
	nnp := newTree()
	if err := nnp.addHostFile("usr/local/bin/nnp", src.nnp, 0o4755); err != nil {
		return nil, err
	}
	if err := add(v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}}, nnp, e2ePrefix+"nonewprivs:1.3"); err != nil {
		return nil, err
	}

	// Images whose config names a user (cri-tools images/build: image-user).
	for name, user := range map[string]string{
		"test-image-user-uid":            "1002",
		"test-image-user-username":       "www-data",
		"test-image-user-uid-group":      "1003:1004",
		"test-image-user-username-group": "www-data:1004",
	} {
		if err := add(v1.Config{Cmd: []string{"sh"}, User: user}, nil, criToolsImage+name+":latest"); err != nil {
			return nil, err
		}
	}
	// A user 1000 whose image-defined groups include 50000 (images/image-predefined-group).
	group := newTree()
	group.file("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"))
	group.file("etc/group", 0o644, []byte(groups+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
	group.dir("home/default-user")
	if err := add(v1.Config{Cmd: []string{"sh"}, User: "1000"}, group, criToolsImage+"test-image-predefined-group:latest"); err != nil {
		return nil, err
	}

	// Images told apart by one empty file named after them (images/image-test); the three
	// tags of test-image-tags are one image. test-image-digest is not built: critest pulls
	// it by its upstream digest, which no image built here can have.
	for _, t := range []struct {
		file string
		refs []string
	}{
		{"test-image-1", []string{criToolsImage + "test-image-1:latest"}},
		{"test-image-2", []string{criToolsImage + "test-image-2:latest"}},
		{"test-image-3", []string{criToolsImage + "test-image-3:latest"}},
		{"test-image-latest", []string{criToolsImage + "test-image-latest:latest"}},
		{"same-image", []string{criToolsImage + "test-image-tags:1", criToolsImage + "test-image-tags:2", criToolsImage + "test-image-tags:3"}},
		{"test", []string{criToolsImage + "test-image-tag:test"}},
		{"all", []string{criToolsImage + "test-image-tag:all"}},
	} {
		marker := newTree()
		marker.file(t.file, 0o644, nil)
		if err := add(shell, marker, t.refs...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// image is the busybox layer plus extra (if any) with cfg, for linux/amd64.
func image(cfg v1.Config, base v1.Layer, extra *tree) (v1.Image, error) {
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=" + imagePath}
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: "amd64", OS: "linux", Config: cfg, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{base}
	if extra != nil {
		l, err := extra.layer()
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return mutate.AppendLayers(img, layers...)
}

// The users and groups of every image (the e2e busybox image has www-data, uid 33).
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	groups = "root:x:0:\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n"
)

// busyboxTree is the common layer of every test image: Debian's busybox with one hard link
// per applet (as in the e2e busybox image, so masking /bin/ls masks that name only), and
// ipcs (util-linux) and pgrep (procps), which Debian's busybox lacks and specs run.
// Debian's dynamic "busybox" package is used, not busybox-static: the static build runs
// applets inside the shell without exec ("standalone shell"), so a masked /bin/ls would
// still run.
func busyboxTree(ctx context.Context, src sources) (*tree, error) {
	t := newTree()
	t.dir("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64",
		"etc", "dev", "proc", "sys", "root", "home", "var/log", "run")
	t.files["tmp"] = entry{typ: tar.TypeDir, mode: 0o1777}
	t.symlink("lib", "usr/lib")
	t.symlink("lib64", "usr/lib64")
	t.symlink("var/run", "/run")
	bb := filepath.Join(src.busybox, "bin", "busybox")
	if err := t.addProgram("bin/busybox", bb, src.roots); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list the applets of %s: %w", bb, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if !t.has(a) {
			t.hardlink(a, "bin/busybox")
		}
	}
	for _, p := range []string{"/usr/bin/ipcs", "/usr/bin/pgrep"} {
		host, err := findInRoots(p, src.roots)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: install %s", p, err, map[string]string{"/usr/bin/ipcs": "util-linux", "/usr/bin/pgrep": "procps"}[p])
		}
		if err := t.addProgram(p, host, src.roots); err != nil {
			return nil, err
		}
	}
	t.file("etc/passwd", 0o644, []byte(passwd))
	t.file("etc/group", 0o644, []byte(groups))
	return t, nil
}

const indexHTML = "<!DOCTYPE html>\n<html><body><h1>It works!</h1></body></html>\n"

// nginxTree is Debian's nginx serving a page on port, its master process writing
// /var/run/nginx.pid (which the HostPID spec reads).
func nginxTree(src sources, port int) (*tree, error) {
	t := newTree()
	if err := t.addProgram("usr/sbin/nginx", filepath.Join(src.nginx, "usr", "sbin", "nginx"), src.roots); err != nil {
		return nil, err
	}
	t.file("etc/nginx/nginx.conf", 0o644, []byte(fmt.Sprintf(`user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
	types { text/html html; }
	access_log /dev/stdout;
	server {
		listen %d;
		root /usr/share/nginx/html;
		index index.html;
	}
}
`, port)))
	t.file("usr/share/nginx/html/index.html", 0o644, []byte(indexHTML))
	t.dir("var/log/nginx", "var/lib/nginx")
	return t, nil
}

// apacheTree is Debian's Apache httpd (apache2-bin) serving a page on port 80, started as
// httpd (a link to apache2) and logging to stderr.
func apacheTree(src sources) (*tree, error) {
	t := newTree()
	if err := t.addProgram("usr/sbin/apache2", filepath.Join(src.apache, "usr", "sbin", "apache2"), src.roots); err != nil {
		return nil, err
	}
	mods := filepath.Join(src.apache, "usr", "lib", "apache2", "modules")
	for _, m := range []string{"mod_mpm_event.so", "mod_authz_core.so", "mod_dir.so", "mod_mime.so"} {
		if err := t.addProgram("usr/lib/apache2/modules/"+m, filepath.Join(mods, m), src.roots); err != nil {
			return nil, err
		}
	}
	t.symlink("usr/local/bin/httpd", "/usr/sbin/apache2")
	t.file("etc/apache2/apache2.conf", 0o644, []byte(`ServerRoot "/etc/apache2"
ServerName localhost
Listen 80
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
User www-data
Group www-data
DefaultRuntimeDir /run/apache2
PidFile /run/apache2/httpd.pid
ErrorLog /proc/self/fd/2
LogLevel info
DocumentRoot "/var/www/html"
<Directory "/var/www/html">
	Require all granted
</Directory>
DirectoryIndex index.html
TypesConfig /dev/null
AddType text/html .html
`))
	t.file("var/www/html/index.html", 0o644, []byte(indexHTML))
	t.dir("run/apache2")
	return t, nil
}
