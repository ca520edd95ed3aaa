// Command digests compares a built guest image with the published digests of the commit
// (build/published.txt), or rewrites them from the image:
//
//	digests -image out -check build/published.txt   # make verify-published
//	digests -image out -write build/published.txt   # make publish-digests
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"confguest/build/published"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "digests: %v\n", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("digests", flag.ContinueOnError)
	fs.SetOutput(stderr)
	image := fs.String("image", "out", "built image `dir`")
	check := fs.String("check", "", "compare the image with the published digests in `file`")
	write := fs.String("write", "", "write the image's digests to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*check == "") == (*write == "") {
		return errors.New("pass exactly one of -check FILE and -write FILE")
	}
	built, err := published.FromImage(*image)
	if err != nil {
		return err
	}
	if *write != "" {
		if err := os.WriteFile(*write, published.Format(built), 0o644); err != nil {
			return fmt.Errorf("write published digests: %w", err)
		}
		fmt.Fprintf(stdout, "digests: wrote %d digests of %s to %s\n", len(built), *image, *write)
		return nil
	}
	pub, err := published.Read(*check)
	if err != nil {
		return err
	}
	diffs := published.Compare(pub, built)
	if len(diffs) == 0 {
		fmt.Fprintf(stdout, "digests: %s reproduces all %d published digests of %s\n", *image, len(pub), *check)
		return nil
	}
	for _, d := range diffs {
		fmt.Fprintln(stdout, d)
	}
	return fmt.Errorf("%d of the digests in %s differ from the image in %s: "+
		"see README, \"Reproduce the published measurement\", for what to compare next", len(diffs), *check, *image)
}
