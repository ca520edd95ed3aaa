//go:build !amd64

package vmm

// hostCBit is only known on amd64 hosts: give SNPLaunch.CBitPos and ReducedPhysBits.
func hostCBit() (pos, reduced int, ok bool) { return 0, 0, false }
