//go:build !amd64

package attest

// cpuid1EAX is 0 off x86: the platform information then names no product (SEV-SNP guests
// run on AMD x86-64 only).
func cpuid1EAX() uint32 { return 0 }
