// Command mkrootfs builds an erofs image with a dm-verity tree from a
// directory, appends a verity tree to an existing file, or verifies an
// image against its parameters.
//
//	mkrootfs [-all-root=false] [-salt HEX] [-timestamp UNIX] [-max-size BYTES]
//	         [-normalize-perms] [-special-files] SRC IMAGE
//	mkrootfs -format [-salt HEX] FILE
//	mkrootfs -verify IMAGE PARAMS.json
//
// Building and formatting print the verity parameters as JSON on stdout.
// PARAMS.json is such an object, or a manifest holding one under "verity".
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"confguest/rootfs"
)

type stdio struct {
	out, err io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], stdio{os.Stdout, os.Stderr})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkrootfs:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: mkrootfs [flags] SRC IMAGE | mkrootfs -format [-salt HEX] FILE | mkrootfs -verify IMAGE PARAMS.json")

func run(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("mkrootfs", flag.ContinueOnError)
	fs.SetOutput(io.err)
	var (
		allRoot   = fs.Bool("all-root", true, "store every file as owned by root (false: keep uid/gid)")
		saltHex   = fs.String("salt", "", "dm-verity salt in hex, \"-\" for none (default: derived from the image)")
		timestamp = fs.Int64("timestamp", 0, "Unix time stored for every inode")
		maxSize   = fs.Int64("max-size", 0, "refuse trees or images larger than this many bytes (0: no limit)")
		normalize = fs.Bool("normalize-perms", false, "store 0755 for directories and executables, 0644 for other files")
		special   = fs.Bool("special-files", false, "store device nodes, fifos and sockets instead of refusing them")
		format    = fs.Bool("format", false, "append a verity tree to an existing FILE")
		verify    = fs.Bool("verify", false, "verify IMAGE against PARAMS.json")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var opts []rootfs.Option
	saltSet := false
	fs.Visit(func(f *flag.Flag) { saltSet = saltSet || f.Name == "salt" })
	if saltSet {
		salt := []byte{}
		if *saltHex != "-" {
			var err error
			if salt, err = hex.DecodeString(*saltHex); err != nil {
				return fmt.Errorf("-salt %q: want hex digits or \"-\": %w", *saltHex, err)
			}
		}
		opts = append(opts, rootfs.WithSalt(salt))
	}
	switch {
	case *verify && *format:
		return fmt.Errorf("-verify and -format exclude each other: %w", errUsage)
	case *verify:
		if fs.NArg() != 2 {
			return errUsage
		}
		return runVerify(ctx, fs.Arg(0), fs.Arg(1), io)
	case *format:
		if fs.NArg() != 1 {
			return errUsage
		}
		p, err := rootfs.AppendVerity(ctx, fs.Arg(0), opts...)
		if err != nil {
			return err
		}
		return printJSON(io.out, p)
	}
	if fs.NArg() != 2 {
		return errUsage
	}
	if !*allRoot {
		opts = append(opts, rootfs.WithPreservedOwnership())
	}
	if *normalize {
		opts = append(opts, rootfs.WithNormalizedPermissions())
	}
	if *special {
		opts = append(opts, rootfs.WithSpecialFiles())
	}
	opts = append(opts, rootfs.WithTimestamp(time.Unix(*timestamp, 0)), rootfs.WithMaxSize(*maxSize))
	p, err := rootfs.Build(ctx, fs.Arg(0), fs.Arg(1), opts...)
	if err != nil {
		return err
	}
	return printJSON(io.out, p)
}

func runVerify(ctx context.Context, image, paramsPath string, io stdio) error {
	data, err := os.ReadFile(paramsPath)
	if err != nil {
		return fmt.Errorf("read verity parameters: %w", err)
	}
	var doc struct {
		rootfs.Params
		Verity *rootfs.Params `json:"verity"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: not a verity parameters object: %w", paramsPath, err)
	}
	p := doc.Params
	if doc.Verity != nil {
		p = *doc.Verity
	}
	if err := rootfs.VerifyContext(ctx, image, p); err != nil {
		return err
	}
	fmt.Fprintf(io.out, "%s: ok: %d data blocks match root hash %s\n", image, p.DataBlocks, p.RootHash)
	return nil
}

func printJSON(w io.Writer, p rootfs.Params) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
