// Package mainstack grows the main goroutine's stack once, to Size, before any other
// package of the program initializes.
//
// A goroutine starts with a 2 KiB stack and the runtime doubles it when a call needs
// more, copying it: to copy, it reads, for every frame on the stack, the function's
// records, frame size and stack map in the binary's function table (.gopclntab). The
// agent's start grew its stack several times, deep in package initializers and in its
// setup, and each growth read the table pages of every function then on the stack: about
// 40 pages of the binary (150 KiB, measured with perf's major faults on a host), each one
// a read through dm-verity before the agent was ready (build/bench/boot.sh). Growing once here, while only the runtime's init frames are on
// the stack, reads a handful; the stack stays this size until a garbage collection finds
// most of it unused and shrinks it.
//
// Import it for its effect, from the program's main package:
//
//	import _ "confguest/agent/mainstack"
//
// It imports nothing, so it initializes right after the runtime: Go initializes, of the
// packages whose imports are initialized, the first by import path, and right after the
// runtime "confguest/agent/mainstack" sorts before every other such package that has an
// initializer (agent/cmd/agent's TestMainstackInitializesFirst checks the agent's order).
package mainstack

// Size is the main goroutine's stack after this package's init: the runtime grows it to
// the smallest power of two that holds grow's frame, and the agent's start (flags,
// logger, server setup, the ready line) fits in it without another growth.
const Size = 32 << 10

// frame is grow's local array: with the frames below it and the runtime's guard it needs
// more than Size/2, so the stack grows to Size.
const frame = Size * 3 / 4

// index is read at run time, so the compiler keeps grow's array.
var index = 1

var sink byte

func init() { grow() }

//go:noinline
func grow() {
	var b [frame]byte
	b[index%frame] = 1
	sink = b[(index+1)%frame]
}
