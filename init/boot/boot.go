// Package boot runs PID 1's boot steps: the early mounts, the confguest.*
// command line, the dm-verity root and the switch into it. The steps are
// data (a slice of Step, in the order they run), each with a String that
// names it on the console when it fails, in the style of u-root's libinit.
package boot

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Step is one boot action.
type Step interface {
	fmt.Stringer
	Run(ctx context.Context) error
}

// StepError is a failed step. Its text is "<step>: <reason>" on one line,
// the form the fatal console line carries.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return OneLine(e.Step + ": " + e.Err.Error()) }
func (e *StepError) Unwrap() error { return e.Err }

// OneLine folds s onto a single line, so a fatal message is exactly one
// console line.
func OneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}

// Run runs steps in order and stops at the first failure, returned as a
// *StepError.
func Run(ctx context.Context, log *slog.Logger, steps []Step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return &StepError{Step: s.String(), Err: err}
		}
		log.Debug("boot step", "step", s.String())
		if err := s.Run(ctx); err != nil {
			return &StepError{Step: s.String(), Err: err}
		}
	}
	return nil
}
