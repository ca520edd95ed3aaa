package kbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BuildPATH is the only PATH of the kernel build: the Debian-packaged programs that
// build/toolchain.lock pins, never a program of the same name earlier in the caller's PATH
// (a user's ~/.cargo/bin or /usr/local/bin).
const BuildPATH = "/usr/sbin:/usr/bin:/sbin:/bin"

// probeOverrides stop Kconfig from probing optional tools the guest kernel never uses:
// their versions are written into the final .config, which the kernel embeds
// (CONFIG_IKCONFIG), so an installed pahole (dwarves) or rustc would change the bzImage
// (CONFIG_PAHOLE_VERSION=124 instead of 0, CONFIG_RUSTC_VERSION=106300 instead of 0).
// Naming programs that do not exist makes every machine answer "not available".
var probeOverrides = []string{
	"PAHOLE=confguest-no-pahole",
	"RUSTC=confguest-no-rustc",
	"BINDGEN=confguest-no-bindgen",
	"HOSTRUSTC=confguest-no-rustc",
}

// reproducibleEnv is the whole environment of the kernel build: nothing of the caller's
// environment leaks in (no PATH, ARCH, CROSS_COMPILE, KCFLAGS, MAKEFLAGS, locale or time
// zone), and the build's date, user and host are fixed. The date is the mtime of the
// source's top Makefile, which Debian sets from the package changelog, so it follows the
// pinned source and not the time of the build.
func reproducibleEnv(src string) ([]string, error) {
	st, err := os.Stat(filepath.Join(src, "Makefile"))
	if err != nil {
		return nil, fmt.Errorf("dating the kernel source: %w", err)
	}
	epoch := st.ModTime().UTC()
	return []string{
		"PATH=" + BuildPATH,
		"HOME=/nonexistent",
		"LC_ALL=C",
		"TZ=UTC",
		"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch.Unix(), 10),
		"KBUILD_BUILD_TIMESTAMP=" + epoch.Format(time.UnixDate),
		"KBUILD_BUILD_USER=confguest",
		"KBUILD_BUILD_HOST=confguest",
		"KBUILD_BUILD_VERSION=1",
	}, nil
}

// stage runs f and prints its name and elapsed time.
func (b *builder) stage(name string, f func() error) error {
	fmt.Fprintf(b.cfg.Progress, "kernel: %s ...\n", name)
	fmt.Fprintf(b.log, "==> %s\n", name)
	start := time.Now()
	if err := f(); err != nil {
		fmt.Fprintf(b.cfg.Progress, "kernel: %s failed after %s\n", name, round(time.Since(start)))
		return err
	}
	fmt.Fprintf(b.cfg.Progress, "kernel: %s done in %s\n", name, round(time.Since(start)))
	return nil
}

// heartbeat prints the elapsed time of a long stage every minute until stopped.
func (b *builder) heartbeat(name string) (stop func()) {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(b.cfg.Progress, "kernel: %s: %s elapsed\n", name, round(time.Since(start)))
			}
		}
	}()
	return func() { close(done) }
}

// run runs a command in dir with the build environment, its output going to the log. A
// failure names the log and quotes its last lines.
func (b *builder) run(ctx context.Context, dir, name string, args ...string) error {
	fmt.Fprintf(b.log, "+ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w; full log in %s, last lines:\n%s",
			filepath.Base(name), strings.Join(args, " "), err, b.logPath, tail(b.logPath, 25))
	}
	return nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + string(bytes.Join(lines, []byte("\n  ")))
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
