package main

import (
	"context"
	"io"
)

// testModes are extra first arguments that select another program in
// test builds only (see benchdirect_linux.go). The published helper has
// none: its only modes are the operations of package libct and
// libcontainer's "init".
var testModes = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{}
