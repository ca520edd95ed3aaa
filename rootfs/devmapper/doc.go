// Package devmapper creates, inspects and removes device-mapper devices with
// the kernel's ioctl interface (/dev/mapper/control), without dmsetup or
// veritysetup. It provides what confguest needs: read-only dm-verity targets
// over a root filesystem or a container layer image.
//
// A typical use in the guest:
//
//	dev, err := devmapper.CreateVerity(ctx, "root", devmapper.VerityTarget{
//		DataDevice: "/dev/vda",
//		Verity:     params, // verity.Params, as the image builder wrote them
//	})
//	// mount dev read-only ...
//	err = devmapper.Remove(ctx, "root")
//
// CreateVerity rolls back what it did when a later step fails, so a failed
// call leaves no device behind. The device node is created as
// /dev/mapper/<name> (there is no udev in the guest).
package devmapper
