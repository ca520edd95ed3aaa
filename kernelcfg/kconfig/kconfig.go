// Package kconfig reads Linux kernel configuration files (a full .config or a fragment) and
// checks that every option of a fragment survived a merge: the kernel's merge_config.sh and
// olddefconfig silently drop options whose dependencies are missing.
package kconfig

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Option is one assignment of a configuration file.
type Option struct {
	Name  string // with the CONFIG_ prefix
	Value string // y, m, n (also for "# CONFIG_X is not set"), a number or a quoted string
	Line  int    // 1-based line number in the file it was read from
}

func (o Option) String() string {
	if o.Value == "n" {
		return "# " + o.Name + " is not set"
	}
	return o.Name + "=" + o.Value
}

var (
	assignRE = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetRE  = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
	valueRE  = regexp.MustCompile(`^([ymn]|-?[0-9]+|0[xX][0-9a-fA-F]+|"([^"\\]|\\.)*")$`)
)

// Parse reads the assignments of a configuration file in order. Blank lines and comments are
// skipped, except the "# CONFIG_X is not set" form, which reads as Value "n". A line that is
// neither is an error naming its line number.
func Parse(r io.Reader) ([]Option, error) {
	var opts []Option
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if m := unsetRE.FindStringSubmatch(line); m != nil {
			opts = append(opts, Option{Name: m[1], Value: "n", Line: n})
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := assignRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: %q is not CONFIG_NAME=value or a comment", n, line)
		}
		if !valueRE.MatchString(m[2]) {
			return nil, fmt.Errorf("line %d: %s has value %q: want y, m, n, a number or a quoted string", n, m[1], m[2])
		}
		opts = append(opts, Option{Name: m[1], Value: m[2], Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return opts, nil
}

// ParseFragment reads a fragment: like Parse, but an option set twice is an error, since
// the merge would keep only the last value and hide the first.
func ParseFragment(r io.Reader) ([]Option, error) {
	opts, err := Parse(r)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]int, len(opts))
	for _, o := range opts {
		if first, ok := seen[o.Name]; ok {
			return nil, fmt.Errorf("line %d: %s is already set on line %d: keep one", o.Line, o.Name, first)
		}
		seen[o.Name] = o.Line
	}
	return opts, nil
}

// Config maps option names to values; options not present are not set.
type Config map[string]string

// ParseConfig reads a full .config into a Config.
func ParseConfig(r io.Reader) (Config, error) {
	opts, err := Parse(r)
	if err != nil {
		return nil, err
	}
	c := make(Config, len(opts))
	for _, o := range opts {
		c[o.Name] = o.Value
	}
	return c, nil
}

// Mismatch is a fragment option that the final configuration does not carry as written.
type Mismatch struct {
	Want Option
	Got  string // the final value; "n" when not set
}

func (m Mismatch) String() string {
	switch {
	case m.Got == "n":
		return fmt.Sprintf("%s (line %d): dropped, not set in the final .config (a dependency is missing, or no such option)", m.Want, m.Want.Line)
	case m.Want.Value == "n":
		return fmt.Sprintf("%s (line %d): set to %s anyway (something selects it)", m.Want, m.Want.Line, m.Got)
	default:
		return fmt.Sprintf("%s (line %d): changed to %s", m.Want, m.Want.Line, m.Got)
	}
}

// Check returns every option of fragment whose value in final differs, in fragment order.
// An option absent from final counts as "n", so "# CONFIG_X is not set" is satisfied by
// either form.
func Check(fragment []Option, final Config) []Mismatch {
	var bad []Mismatch
	for _, o := range fragment {
		got, ok := final[o.Name]
		if !ok {
			got = "n"
		}
		if got != o.Value {
			bad = append(bad, Mismatch{Want: o, Got: got})
		}
	}
	return bad
}
