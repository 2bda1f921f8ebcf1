# The two commands a newcomer needs are `make e2e` (the end-to-end suites on
# the default kernel, with a per-rule verdict) and `make test` (every test).
# Both install what is missing first.

# Debian packages the harness uses: QEMU, the guests' programs (busybox, dig,
# dnsmasq), the kernel module toolchain, kmod for depmod, e2fsprogs for
# persistent guest disks, pahole (newer kernels' headers make BTF
# for modules) and mmdebstrap (build roots with the compiler of a kernel
# from another Debian suite).
PACKAGES := qemu-system-x86 busybox-static bind9-dnsutils dnsmasq-base \
	build-essential bc bison flex libelf-dev libssl-dev kmod cpio e2fsprogs \
	xz-utils zstd pahole mmdebstrap

GO ?= go
# Guest tests share 2 cores; one test package at a time keeps boots paced.
TESTFLAGS ?= -count=1 -p 1 -timeout 80m

.PHONY: setup packages test e2e matrix faults bench clean-cache

setup: packages
	$(GO) run ./cmd/l45 setup

packages:
	@missing=""; for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "packages: all present"; exit 0; fi; \
	echo "packages: installing$$missing"; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "error: these Debian packages are missing:$$missing" >&2; \
		echo "run as root: apt-get install -y$$missing   (or: sudo make setup)" >&2; exit 1; \
	fi; \
	apt-get update -q || { echo "error: apt-get update failed: no access to the Debian archive?" >&2; exit 1; }; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing || \
		{ echo "error: could not install:$$missing" >&2; exit 1; }

# Besides the default kernel, make test proves on Debian's prebuilt 6.12
# (bookworm-security, same compiler as the host) what 6.1 cannot: R9 with
# single-buffer send()/recv() arriving as ITER_UBUF (6.4+), and R15's races
# on two vCPUs of a newer kernel.
NEWER_KERNEL ?= debian:bookworm:6.12
NEWER_KERNEL_TESTS ?= TestR5_R9_ReplaceAndSegments|TestLifecycle

test: setup
	$(GO) test $(TESTFLAGS) ./...
	L45_KERNEL=$(NEWER_KERNEL) $(GO) test $(TESTFLAGS) -run '$(NEWER_KERNEL_TESTS)' ./suites/

e2e: setup
	$(GO) run ./cmd/l45 e2e

# The suites on every kernel of kernel/matrix.json ($L45_MATRIX: names, or
# nightly, the default), one table at the end.
matrix: packages
	$(GO) run ./cmd/l45 matrix

# Each deliberate fault of kernel/faults against the suites: which tests turn
# red (README, "Deliberate faults"). E.g. make faults FAULTFLAGS="--only error-sign --sample"
FAULTFLAGS ?=
faults: setup
	$(GO) run ./cmd/l45 faults $(FAULTFLAGS)

# Benchmarks (README, "Benchmarks"): guest start-up, 5 of each, then Layer
# 4.5's overhead, which repeats its own measurements and so runs once.
bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 5x -count=1 -timeout 60m ./harness/vm/
	$(GO) test -run '^$$' -bench '^BenchmarkOverhead$$' -benchtime 1x -count=1 -timeout 60m ./suites/
	$(GO) test -run '^$$' -bench '^BenchmarkE2ESnapshots$$' -benchtime 1x -count=1 -timeout 60m ./cmd/l45/

clean-cache:
	rm -rf "$${L45_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/layer45}"
