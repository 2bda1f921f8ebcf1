package infra

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestWrap(t *testing.T) {
	if Wrap("x", nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
	base := fmt.Errorf("open qemu: %w", fs.ErrNotExist)
	err := Wrap("start QEMU", base)
	if !Is(err) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Wrap lost the kind or the cause: %v", err)
	}
	if err.Error() != "start QEMU: open qemu: file does not exist" {
		t.Errorf("message %q", err)
	}
	outer := fmt.Errorf("guest a: %w", err)
	if again := Wrap("boot", outer); again != outer {
		t.Errorf("an already marked error was wrapped twice: %v", again)
	}
	if Is(context.DeadlineExceeded) || Is(nil) {
		t.Error("an unmarked error counts as infrastructure")
	}
}
