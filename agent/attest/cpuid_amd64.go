package attest

// cpuid1 returns CPUID leaf 1's EAX: the processor's family, model and stepping.
func cpuid1() (eax uint32)

// cpuid1EAX returns CPUID[1].EAX of the processor the agent runs on. Under SEV-SNP the
// value is the one the firmware's CPUID page holds for the guest.
func cpuid1EAX() uint32 { return cpuid1() }
