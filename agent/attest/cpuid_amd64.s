#include "textflag.h"

// func cpuid1() (eax uint32)
TEXT ·cpuid1(SB), NOSPLIT, $0-4
	MOVL $1, AX
	XORL CX, CX
	CPUID
	MOVL AX, eax+0(FP)
	RET
