package main

import (
	"context"
	"io"
)

// testModes are extra first arguments that select another program in
// test builds only (see benchdirect_linux.go). The published agent has
// none: its only modes are serving, libcontainer's "init" and the pod
// namespace holder (container.HolderArg).
var testModes = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{}
