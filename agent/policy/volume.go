package policy

import (
	"fmt"

	doc "confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1/wire"
)

// checkVolumes allows the request's volumes when entry c lists each one's
// destination with its kind (files the host copies in, or an emptyDir).
// The content itself is bounded and checked by the container manager.
func checkVolumes(c *Container, vs []*agentv1.Volume) *Denial {
	for i, v := range vs {
		field := fmt.Sprintf("volumes[%d]", i)
		var kind string
		switch {
		case v.GetFiles() != nil && v.GetEmptyDir() == nil:
			kind = doc.VolumeFiles
		case v.GetEmptyDir() != nil && v.GetFiles() == nil:
			kind = doc.VolumeEmptyDir
		default:
			return deny("containers["+c.Name+"].volumes", field, fmt.Sprintf("volume at %q: want exactly one of files and empty_dir", v.GetDestination()))
		}
		if d := volumeDenial(c, field+".destination", v.GetDestination(), kind); d != nil {
			return d
		}
	}
	return nil
}

// volumeFiles is the kind of a volume of host-provided files.
const volumeFiles = doc.VolumeFiles

// volumeDenial denies a volume of kind at dest (request field field) unless entry c lists
// it.
func volumeDenial(c *Container, field, dest, kind string) *Denial {
	if volumeAllowed(c.Volumes, dest, kind) {
		return nil
	}
	return deny("containers["+c.Name+"].volumes", field, fmt.Sprintf("mount destination %q may not take %s: the policy does not list it", dest, kindName(kind)))
}

func volumeAllowed(allowed []doc.Volume, dest, kind string) bool {
	for _, a := range allowed {
		if a.Destination == dest && a.Kind == kind {
			return true
		}
	}
	return false
}

func kindName(kind string) string {
	if kind == doc.VolumeEmptyDir {
		return "an emptyDir volume"
	}
	return "host-provided files"
}

// readBackDenial denies reading back the file at dest unless entry c lists it as files
// with read_back.
func readBackDenial(c *Container, dest string) *Denial {
	for _, a := range c.Volumes {
		if a.Destination == dest && a.Kind == doc.VolumeFiles && a.ReadBack {
			return nil
		}
	}
	return deny("containers["+c.Name+"].volumes", "destination", fmt.Sprintf("the policy does not let the host read back the file at %q (read_back)", dest))
}
