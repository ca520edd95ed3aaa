// Package qemutests boots the built guest image under QEMU (TCG) and checks
// what only a real boot can show: the dm-verity root, the switch into it,
// the agent starting, fail-closed behaviour and clean power-off.
//
// The image is read from $CONFGUEST_IMAGE, or out/ at the repository root
// (`make image` writes bzImage, initramfs.cpio.gz, rootfs.img, cmdline and
// manifest.json there). Without QEMU or an image the tests skip, except
// with CI=true, where they fail.
//
// Helpers for new tests (in *_test.go files of this package):
//
//	img := needImage(t)                     // the image, or skip/fail
//	res := bootGuest(t, img.Options())      // boot until QEMU exits; console and exit status
//	g := startGuest(t, opts)                // or drive a running guest:
//	g.WaitFor(ctx, "confguest-agent: ready")
//	g.QMP("system_powerdown")
//	res := g.Wait(ctx)
package qemutests
