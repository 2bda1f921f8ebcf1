package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"layer45/harness/cache"
	"layer45/harness/infra"
	"layer45/harness/initramfs"
	"layer45/harness/kernels"
	"layer45/harness/qemu"
	"layer45/harness/repo"
)

// Env is what every guest of a test process shares: the cache, the kernel,
// the guest image and the accelerator. It is made once per process.
type Env struct {
	Cache  *cache.Cache
	Kernel *kernels.Kernel
	Image  string // initramfs
	// BootImage is the kernel file QEMU boots: the ELF unpacked from the
	// bzImage (kernels.UnpackedImage), or the bzImage when it has to be.
	BootImage string
	Accel     qemu.Accel
	AccelNote string
	// Snapshots: guests that can be are restored from snapshots
	// ($L45_SNAPSHOT, default on).
	Snapshots bool
}

var (
	envOnce sync.Once
	envVal  *Env
	envErr  error
)

// DefaultEnv prepares the environment named by $L45_KERNEL (default: the
// stock Debian kernel) and $L45_ACCEL (kvm, tcg or auto), fetching and
// building what is missing. Progress goes to stderr.
func DefaultEnv(ctx context.Context) (*Env, error) {
	envOnce.Do(func() { envVal, envErr = NewEnv(ctx, os.Getenv("L45_KERNEL"), os.Getenv("L45_ACCEL"), os.Stderr) })
	return envVal, envErr
}

// NewEnv prepares an environment for the kernel spec and accelerator choice.
// Every failure is an *infra.Error: without an environment nothing about
// Layer 4.5 can be judged.
func NewEnv(ctx context.Context, kernelSpec, accel string, progress io.Writer) (*Env, error) {
	e, err := newEnv(ctx, kernelSpec, accel, progress)
	return e, infra.Wrap("prepare guests", err)
}

func newEnv(ctx context.Context, kernelSpec, accel string, progress io.Writer) (*Env, error) {
	// The cheapest check first: no QEMU makes everything else pointless.
	if err := qemu.Installed(); err != nil {
		return nil, err
	}
	snap, err := snapshotAllowed()
	if err != nil {
		return nil, err
	}
	c, err := cache.Default()
	if err != nil {
		return nil, err
	}
	tree, err := repo.KernelTree()
	if err != nil {
		return nil, err
	}
	p, err := kernels.Parse(kernelSpec, c, tree)
	if err != nil {
		return nil, err
	}
	k, err := p.Kernel(ctx, progress)
	if err != nil {
		return nil, err
	}
	img, err := initramfs.GuestImage(ctx, c, k)
	if err != nil {
		return nil, err
	}
	boot, err := kernels.UnpackedImage(ctx, c, k)
	var noPVH *kernels.NoPVHError
	if errors.As(err, &noPVH) {
		// Slower (its decompressor runs emulated) but the same kernel.
		fmt.Fprintf(progress, "kernel: booting the bzImage: %v\n", err)
		boot, err = k.Image, nil
	}
	if err != nil {
		return nil, err
	}
	e := &Env{Cache: c, Kernel: k, Image: img, BootImage: boot, Snapshots: snap}
	switch accel {
	case "", "auto":
		if ok, note := qemu.ProbeKVM(ctx); ok {
			e.Accel, e.AccelNote = qemu.KVM, note
		} else {
			e.Accel, e.AccelNote = qemu.TCG, "TCG (KVM unusable: "+note+")"
		}
	case "kvm":
		if ok, note := qemu.ProbeKVM(ctx); !ok {
			return nil, fmt.Errorf("L45_ACCEL=kvm but KVM is unusable: %s", note)
		}
		e.Accel, e.AccelNote = qemu.KVM, "KVM (asked for)"
	case "tcg":
		e.Accel, e.AccelNote = qemu.TCG, "TCG (asked for)"
	default:
		return nil, fmt.Errorf("L45_ACCEL=%q: use kvm, tcg or auto", accel)
	}
	return e, nil
}
