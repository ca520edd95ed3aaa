package container

import "errors"

// cleanups is a stack of undo steps: a partial setup rolls back in reverse
// order, and a finished container keeps its stack for DeleteContainer.
type cleanups []func() error

func (c *cleanups) push(f func() error) { *c = append(*c, f) }

// run undoes everything, newest first, and joins the errors.
func (c *cleanups) run() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*c = nil
	return errors.Join(errs...)
}
