package kbuild

import (
	"fmt"
	"os"
	"strings"
)

// A tool the kernel build needs, found either as a program on PATH or as a header file.
type tool struct {
	program string // looked up on PATH when set
	file    string // must exist when set
	pkg     string // Debian package that provides it
}

var buildTools = []tool{
	{program: "gcc", pkg: "gcc"},
	{program: "make", pkg: "make"},
	{program: "flex", pkg: "flex"},
	{program: "bison", pkg: "bison"},
	{program: "bc", pkg: "bc"},
	{program: "perl", pkg: "perl"},
	{program: "tar", pkg: "tar"},
	{program: "xz", pkg: "xz-utils"},
	{program: "gzip", pkg: "gzip"},
	{file: "/usr/include/libelf.h", pkg: "libelf-dev"},
	{file: "/usr/include/openssl/evp.h", pkg: "libssl-dev"},
}

// missingTools returns the Debian packages providing the tools that are absent. lookPath and
// stat are exec.LookPath and os.Stat outside tests.
func missingTools(tools []tool, lookPath func(string) (string, error), stat func(string) (os.FileInfo, error)) []string {
	var pkgs []string
	for _, t := range tools {
		if t.program != "" {
			if _, err := lookPath(t.program); err != nil {
				pkgs = append(pkgs, t.pkg)
				continue
			}
		}
		if t.file != "" {
			if _, err := stat(t.file); err != nil {
				pkgs = append(pkgs, t.pkg)
			}
		}
	}
	return pkgs
}

func checkTools() error {
	if pkgs := missingTools(buildTools, lookBuildPath, os.Stat); len(pkgs) > 0 {
		return fmt.Errorf("the kernel build needs tools that are missing: install them with apt-get install %s", strings.Join(pkgs, " "))
	}
	return nil
}
