# confguest — see README.md. Every target installs what it needs (build/setup.sh).
OUT ?= out
export CONFGUEST_CACHE ?= $(HOME)/.cache/confguest
GO ?= go
BUILD := $(OUT)/build

.PHONY: all setup build kernel image run test vet repro generate bench clean

all: build image

setup:
	@bash build/setup.sh

# Host tools.
build: setup
	$(GO) build -trimpath -o bin/ ./hostside/cmd/confguest ./rootfs/cmd/mkrootfs

# The guest kernel, cached under $(CONFGUEST_CACHE)/kernel keyed by source and config.
kernel: setup
	@mkdir -p $(BUILD)
	$(GO) run ./kernelcfg/cmd/buildkernel -o $(BUILD)/bzImage -info $(BUILD)/kernel.json $(if $(KCACHE),-cache $(KCACHE))

# The guest image: bzImage, initramfs.cpio.gz, rootfs.img, cmdline, manifest.json, SHA256SUMS.
image: kernel
	$(GO) run ./build/cmd/mkimage -out $(OUT) -kernel $(BUILD)/bzImage -kernel-info $(BUILD)/kernel.json -busybox-root $(BUILD)/busybox-root

# Build the image and boot it under QEMU.
run: image build
	bash build/run.sh $(OUT)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Every test: unit tests, root-only tests (libcontainer, loop devices), and the tests that
# boot the real image under QEMU (qemu-tests/).
test: image build vet
	CONFGUEST_IMAGE=$(abspath $(OUT)) $(GO) test -timeout 40m ./...

# Build the image twice from two clones at different paths and compare every artifact.
repro: setup
	bash build/repro.sh

generate: setup
	bash agent/api/generate.sh

bench: image build
	bash build/bench/verity.sh
	bash build/bench/boot.sh

clean:
	rm -rf bin $(OUT)
