// Package devmapper creates, inspects and removes device-mapper devices with
// the kernel's ioctl interface (/dev/mapper/control), without dmsetup or
// veritysetup: the guest's device-mapper client. It provides what confguest
// needs: read-only dm-verity targets over the root filesystem (PID 1) or a
// container layer image (the agent).
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
