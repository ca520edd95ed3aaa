package container

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"busybox-1", true},
		{"A.b_c-9", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"../x", false},
		{".hidden", false},
		{"-flag", false},
		{"a/b", false},
		{"a\x00b", false},
		{"a b", false},
		{"é", false},
		{"x\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			err := ValidateID("container_id", tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "container_id")) {
				t.Fatalf("ValidateID(%q) = %v, want an ErrInvalid naming container_id", tc.id, err)
			}
		})
	}
}
