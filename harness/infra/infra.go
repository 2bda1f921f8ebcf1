// Package infra marks failures of the harness itself — no QEMU, a kernel
// that cannot be fetched or built, a module tree that does not compile, an
// unwritable evidence folder — so that they are never reported as a verdict
// on Layer 4.5. Callers test with errors.As(err, new(*infra.Error)) or Is.
package infra

import "errors"

// Error is a failure of the harness's own set-up.
type Error struct {
	// What the harness was doing: "fetch kernel debian:bookworm", say.
	What string
	Err  error
}

func (e *Error) Error() string { return e.What + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Wrap marks err as an infrastructure failure while doing what; nil stays
// nil and an error already marked is returned as it is.
func Wrap(what string, err error) error {
	if err == nil || Is(err) {
		return err
	}
	return &Error{What: what, Err: err}
}

// Is reports whether err is (or wraps) an infrastructure failure.
func Is(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
