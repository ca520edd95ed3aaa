package measure

import (
	"fmt"
	"strings"
)

// VCPU identifies the guest vCPU model by the CPUID signature (family, model, stepping)
// that the VMSA's RDX holds at reset.
type VCPU struct {
	Name string // QEMU CPU model name, or "" for a signature given directly
	Sig  uint32
}

// CPUSig computes the CPUID Fn0000_0001_EAX signature of a family, model and stepping
// (AMD CPUID Specification #25481: families above 0xF use the extended family field).
func CPUSig(family, model, stepping uint32) uint32 {
	famLow, famHigh := family, uint32(0)
	if family > 0xF {
		famLow, famHigh = 0xF, (family-0xF)&0xFF
	}
	return famHigh<<20 | (model>>4&0xF)<<16 | famLow<<8 | (model&0xF)<<4 | stepping&0xF
}

// vcpuModels lists QEMU's EPYC CPU models (target/i386/cpu.c builtin_x86_defs) with the
// family, model and stepping they report.
var vcpuModels = []struct {
	name                    string
	family, model, stepping uint32
}{
	{"EPYC", 23, 1, 2},
	{"EPYC-v1", 23, 1, 2},
	{"EPYC-v2", 23, 1, 2},
	{"EPYC-IBPB", 23, 1, 2},
	{"EPYC-v3", 23, 1, 2},
	{"EPYC-v4", 23, 1, 2},
	{"EPYC-Rome", 23, 49, 0},
	{"EPYC-Rome-v1", 23, 49, 0},
	{"EPYC-Rome-v2", 23, 49, 0},
	{"EPYC-Rome-v3", 23, 49, 0},
	{"EPYC-Milan", 25, 1, 1},
	{"EPYC-Milan-v1", 25, 1, 1},
	{"EPYC-Milan-v2", 25, 1, 1},
	{"EPYC-Genoa", 25, 17, 0},
	{"EPYC-Genoa-v1", 25, 17, 0},
	{"EPYC-Turin", 26, 0, 0},
	{"EPYC-Turin-v1", 26, 0, 0},
}

// VCPUTypes returns the known QEMU CPU model names.
func VCPUTypes() []string {
	names := make([]string, len(vcpuModels))
	for i, m := range vcpuModels {
		names[i] = m.name
	}
	return names
}

// VCPUByName returns the vCPU of a QEMU CPU model name, such as "EPYC-Milan".
func VCPUByName(name string) (VCPU, error) {
	for _, m := range vcpuModels {
		if m.name == name {
			return VCPU{Name: name, Sig: CPUSig(m.family, m.model, m.stepping)}, nil
		}
	}
	return VCPU{}, fmt.Errorf("vCPU type %q: %w; known types: %s", name, ErrUnknownVCPUType, strings.Join(VCPUTypes(), ", "))
}
