package container

import (
	"regexp"
	"sync"
)

var idPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`) })

// ValidateID checks a container or exec ID against
// [A-Za-z0-9][A-Za-z0-9_.-]{0,63}; field names the request field for the
// error message.
func ValidateID(field, id string) error {
	if !idPattern().MatchString(id) {
		return fieldErr(field, "%q is not a valid ID: use 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit", id)
	}
	return nil
}
