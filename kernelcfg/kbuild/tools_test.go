package kbuild

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"testing"
)

func TestMissingTools(t *testing.T) {
	tools := []tool{
		{program: "gcc", pkg: "gcc"},
		{program: "xz", pkg: "xz-utils"},
		{file: "/usr/include/libelf.h", pkg: "libelf-dev"},
		{program: "both", file: "/inc/both.h", pkg: "both-dev"},
	}
	for _, tc := range []struct {
		name     string
		programs map[string]bool
		files    map[string]bool
		want     []string
	}{
		{
			name:     "all present",
			programs: map[string]bool{"gcc": true, "xz": true, "both": true},
			files:    map[string]bool{"/usr/include/libelf.h": true, "/inc/both.h": true},
		},
		{
			name:     "program missing names its package",
			programs: map[string]bool{"gcc": true, "both": true},
			files:    map[string]bool{"/usr/include/libelf.h": true, "/inc/both.h": true},
			want:     []string{"xz-utils"},
		},
		{
			name:     "header missing names its package",
			programs: map[string]bool{"gcc": true, "xz": true, "both": true},
			files:    map[string]bool{"/inc/both.h": true},
			want:     []string{"libelf-dev"},
		},
		{
			name:     "program present but header missing",
			programs: map[string]bool{"gcc": true, "xz": true, "both": true},
			files:    map[string]bool{"/usr/include/libelf.h": true},
			want:     []string{"both-dev"},
		},
		{
			name: "nothing installed, package named once each",
			want: []string{"gcc", "xz-utils", "libelf-dev", "both-dev"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookPath := func(p string) (string, error) {
				if tc.programs[p] {
					return "/usr/bin/" + p, nil
				}
				return "", errors.New("not found")
			}
			stat := func(p string) (os.FileInfo, error) {
				if tc.files[p] {
					return nil, nil
				}
				return nil, fs.ErrNotExist
			}
			if got := missingTools(tools, lookPath, stat); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("missingTools(programs %v, files %v) = %q, want %q", tc.programs, tc.files, got, tc.want)
			}
		})
	}
}
