package qemutests

import (
	"context"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// rootHash returns confguest.roothash from a command line.
func rootHash(t *testing.T, cmdline string) string {
	t.Helper()
	m := regexp.MustCompile(`(?:^| )confguest\.roothash=([0-9a-fA-F]{64})(?: |$)`).FindStringSubmatch(cmdline)
	if m == nil {
		t.Fatalf("no confguest.roothash in command line %q", cmdline)
	}
	return strings.ToLower(m[1])
}

func TestBootToReadyAndPowerButton(t *testing.T) {
	img := needImage(t)
	g := startGuest(t, img.Options())
	ctx := context.Background()

	t.Run("boots to ready", func(t *testing.T) {
		d, err := g.WaitFor(ctx, markerReady)
		if err != nil {
			t.Fatalf("%v\nconsole:\n%s", err, g.Console())
		}
		t.Logf("QEMU start to %q: %v", markerReady, d)
		c := g.Console()
		if want := markerVerified + rootHash(t, img.Cmdline); !strings.Contains(c, want) {
			t.Errorf("console lacks %q", want)
		}
		if strings.Index(c, markerVerified) > strings.Index(c, markerReady) {
			t.Errorf("agent ready before the root was verified")
		}
		if l := fatalLine(c); l != "" {
			t.Errorf("console has a fatal line: %q", l)
		}
	})

	t.Run("powers off on the ACPI power button", func(t *testing.T) {
		if _, err := g.QMP("system_powerdown"); err != nil {
			t.Fatalf("QMP system_powerdown: %v", err)
		}
		res := g.Wait(ctx)
		if !res.Exited || res.ExitCode != 0 {
			t.Fatalf("after system_powerdown QEMU exited=%v status=%d, want it to exit by itself with status 0", res.Exited, res.ExitCode)
		}
		for _, want := range []string{"power button", markerPowerOff} {
			if !strings.Contains(res.Console, want) {
				t.Errorf("console lacks %q", want)
			}
		}
		if strings.Contains(res.Console, markerPanic) || fatalLine(res.Console) != "" {
			t.Errorf("power-off was not clean: panic or fatal line on the console")
		}
	})
}

// copyImage copies the rootfs image into the test's temp dir.
func copyImage(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rootfs.img")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// flipByte inverts the byte at off in the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read byte %d of %s: %v", off, path, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// fileOffset returns the byte offset in an erofs image of the first data
// block of the file at path, read from dump.erofs's extent listing.
func fileOffset(t *testing.T, image, path string) int64 {
	t.Helper()
	dump, err := exec.LookPath("dump.erofs")
	if err != nil {
		missing(t, "dump.erofs not found: install erofs-utils (build/setup.sh)")
	}
	out, err := exec.Command(dump, "--path="+path, "-e", image).CombinedOutput()
	if err != nil {
		t.Fatalf("dump.erofs --path=%s -e %s: %v\n%s", path, image, err, out)
	}
	// " 0:        0..  299008 |  299008 :       4096..    303104 |  299008"
	m := regexp.MustCompile(`(?m)^\s*0:\s+0\.\.\s*\d+\s*\|\s*\d+\s*:\s*(\d+)\.\.`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no first extent of %s in dump.erofs output:\n%s", path, out)
	}
	off, err := strconv.ParseInt(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

// TestFailsClosed boots images and command lines that must not reach the
// agent: each stops with exactly one fatal line and powers off.
func TestFailsClosed(t *testing.T) {
	img := needImage(t)
	hash := rootHash(t, img.Cmdline)
	tests := []struct {
		name string
		// setup returns the options for the boot.
		setup func(t *testing.T) BootOptions
		// want are substrings of the fatal line.
		want []string
		// verified says whether the root mounted before the failure.
		verified bool
	}{
		{
			name: "byte flipped in the erofs superblock",
			setup: func(t *testing.T) BootOptions {
				o := img.Options()
				o.RootDisk = copyImage(t, img.RootFS)
				flipByte(t, o.RootDisk, 1024+0x30) // the filesystem UUID, which erofs itself never checks
				return o
			},
			want: []string{"mount verity root", "dm-verity detected corrupted data", "confguest.roothash=" + hash},
		},
		{
			name: "byte flipped in the agent binary",
			setup: func(t *testing.T) BootOptions {
				o := img.Options()
				o.RootDisk = copyImage(t, img.RootFS)
				flipByte(t, o.RootDisk, fileOffset(t, o.RootDisk, "/sbin/agent")+0x10) // the ELF header, read by exec
				return o
			},
			want:     []string{"start agent", "dm-verity detected corrupted data"},
			verified: true,
		},
		{
			name: "wrong root hash on the command line",
			setup: func(t *testing.T) BootOptions {
				o := img.Options()
				b, _ := hex.DecodeString(hash)
				b[0] ^= 0x01
				o.Cmdline = strings.Replace(o.Cmdline, "confguest.roothash="+hash, "confguest.roothash="+hex.EncodeToString(b), 1)
				return o
			},
			want: []string{"mount verity root", "dm-verity detected corrupted data"},
		},
		{
			name: "no root disk",
			setup: func(t *testing.T) BootOptions {
				o := img.Options()
				o.RootDisk = ""
				return o
			},
			want: []string{"wait for root device", "confguest.root=/dev/vda did not appear", "attach the rootfs.img"},
		},
		{
			name: "unknown confguest parameter",
			setup: func(t *testing.T) BootOptions {
				o := img.Options()
				o.Cmdline += " confguest.debugshell=1"
				return o
			},
			want: []string{"read kernel command line", "unknown confguest parameter: confguest.debugshell"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := bootGuest(t, tc.setup(t))
			if !res.Exited || res.ExitCode != 0 {
				t.Errorf("QEMU exited=%v status=%d, want the guest to power off (exit by itself, status 0)", res.Exited, res.ExitCode)
			}
			line := fatalLine(res.Console)
			if n := countLines(res.Console, markerFatal); n != 1 {
				t.Errorf("console has %d fatal lines, want exactly 1", n)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("fatal line %q lacks %q", line, w)
				}
			}
			if strings.Contains(res.Console, markerReady) || strings.Contains(res.Console, "agent started") {
				t.Errorf("the agent started despite the failure")
			}
			if got := strings.Contains(res.Console, markerVerified); got != tc.verified {
				t.Errorf("console shows %q: %v, want %v", markerVerified, got, tc.verified)
			}
			if strings.Contains(res.Console, markerPanic) {
				t.Errorf("kernel panicked instead of a clean power-off")
			}
			t.Logf("fatal line: %s (after %v)", line, res.Elapsed)
		})
	}
}
