# confguest — see README.md. Every target installs what it needs (build/setup.sh).
OUT ?= out
export CONFGUEST_CACHE ?= $(HOME)/.cache/confguest
GO ?= go
BUILD := $(OUT)/build

.PHONY: all setup build kernel kernel-config image verify-published publish-digests run boot test vet soak repro generate bench snp-smoke conformance conformance-ci k8s-node k8s-build k8s-test cosign clean

all: build image

setup:
	@bash build/setup.sh

# Host tools.
build: setup
	$(GO) build -trimpath -o bin/ ./hostside/cmd/confguest ./rootfs/cmd/mkrootfs ./hostside/cmd/containerd-shim-confguest-v2

# The guest kernel, cached under $(CONFGUEST_CACHE)/kernel keyed by source and config.
kernel: setup
	@mkdir -p $(BUILD)
	$(GO) run ./kernelcfg/cmd/buildkernel -o $(BUILD)/bzImage -info $(BUILD)/kernel.json $(if $(KCACHE),-cache $(KCACHE))

# Rewrite kernelcfg/final.config (the final .config the build must reproduce) after a
# deliberate change of kernelcfg/guest.config.
kernel-config: setup
	$(GO) run ./kernelcfg/cmd/buildkernel -config-only -write-final kernelcfg/final.config $(if $(KCACHE),-cache $(KCACHE))

# The guest image: bzImage, initramfs.cpio.gz, rootfs.img, cmdline, manifest.json, SHA256SUMS.
image: kernel
	$(GO) run ./build/cmd/mkimage -out $(OUT) -kernel $(BUILD)/bzImage -kernel-info $(BUILD)/kernel.json -busybox-root $(BUILD)/busybox-root

# Build the image from this clone and compare every artifact and both launch measurements
# with the committed digests (build/published.txt), printing each that differs with both
# values. KCACHE=dir builds the kernel in that (cold) cache instead of the shared one.
verify-published: image
	@git diff --quiet HEAD -- 2>/dev/null || echo "verify-published: note: uncommitted changes; build/published.txt describes a commit" >&2
	$(GO) run ./build/cmd/digests -image $(OUT) -check build/published.txt

# Rewrite build/published.txt from the image built from this tree.
publish-digests: image
	$(GO) run ./build/cmd/digests -image $(OUT) -write build/published.txt

# Build the image, boot it under QEMU and run the busybox demo container in it.
DEMO := echo "hello from confguest"; uname -a; echo "root filesystem verified by $$(grep -o "confguest.roothash=[0-9a-f]*" /proc/cmdline)"
run: image build
	./bin/confguest run --image $(OUT) --timings --rootfs $(BUILD)/busybox-root -- sh -c '$(DEMO)'

# Boot the image under QEMU without the launcher, to the agent's ready line.
boot: image
	bash build/run.sh $(OUT)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Every test: unit tests, root-only tests (libcontainer, loop devices), and the tests that
# boot the real image under QEMU (qemu-tests/; TestSignedImages signs with the cosign of
# make cosign, cached outside the clone). The Kubernetes node test is make k8s-test: its
# build would take a cold .ci/run past 60 minutes.
test: image build vet cosign
	CONFGUEST_IMAGE=$(abspath $(OUT)) $(GO) test -timeout 40m ./...

# cosign at a pinned version, cached (the signed-image tests sign and verify with it).
cosign:
	@bash build/cosign.sh >/dev/null

# SOAK_CYCLES container lifecycles in one guest under QEMU, then SOAK_PODS pod lifecycles
# through containerd's CRI and the shim; fails when the agent's or the host's open files,
# goroutines, mounts, device-mapper devices, cgroups, processes, memory, sockets or
# run-directory files grow beyond the bounds in qemu-tests/soak_test.go and
# qemu-tests/soak_pods_test.go, and prints them.
SOAK_CYCLES ?= 1000
SOAK_PODS ?= 100
soak: image build
	CONFGUEST_SOAK=1 CONFGUEST_SOAK_CYCLES=$(SOAK_CYCLES) CONFGUEST_SOAK_PODS=$(SOAK_PODS) CONFGUEST_IMAGE=$(abspath $(OUT)) \
		$(GO) test -v -count=1 -timeout 0 -run '^TestSoak(Pods)?$$' ./qemu-tests

# Build the image twice from two clones at different paths and compare every artifact;
# REPRO_KERNEL=1 also builds the kernel twice, each in a cold cache of its own.
repro: setup
	bash build/repro.sh

generate: setup
	bash agent/api/generate.sh

# Pod start through containerd's CRI under confguest and runc in one run (POD_RUNS starts
# of each kind, medians) and the host memory of idle pods: build/bench/README.md.
POD_RUNS ?= 3
bench: image build
	bash build/bench/verity.sh
	bash build/bench/boot.sh
	$(GO) run ./build/cmd/podbench -image $(OUT) -shim bin/containerd-shim-confguest-v2 -out $(OUT)/podbench -runs $(POD_RUNS)
	bash build/bench/agent.sh

# On a host with AMD SEV-SNP: boot each launch mode with --snp and check the hardware's
# report against the expected measurement and HOST_DATA.
snp-smoke: image build
	bash build/snp-smoke.sh

# Kubernetes' CRI validation suite (critest, cri-tools v1.30.0) against a private containerd
# with the confguest runtime handler: prints passed, failed and skipped counts, the failing
# specs, and the wall time. RUNTIME=runc measures runc in the same harness; FOCUS=regexp runs
# only the matching specs. Specs skipped on purpose: build/conformance/skips.txt.
RUNTIME ?= confguest
FOCUS ?=
conformance: image build
	$(GO) run ./build/cmd/conformance -image $(OUT) -shim bin/containerd-shim-confguest-v2 -out $(OUT)/conformance -runtime $(RUNTIME) $(if $(FOCUS),-focus '$(FOCUS)') $(CONFORMANCE_FLAGS)

# A subset for CI that passes with confguest today: runtime info, images, the pod
# lifecycle, container create/start/remove, exec (sync, streaming, TTY), attach, masked
# paths, exec in a two-container pod, container stats, pod sysctls, OOMKilled, the pod
# network (two containers, port mapping with and without a host port). Fails when a
# spec fails.
CONFORMANCE_CI_FOCUS := Runtime info|Image Manager|PodSandbox runtime should support basic operations|runtime should support (creating|starting|removing created|removing running) container \[|runtime should support execSync \[|exec with tty|runtime should support attach|MaskedPaths|Multiple Containers.*container exec|runtime should support listing (container )?stats|should support (safe|unsafe) sysctls|OOMKilled|Multiple Containers.*should support network|port mapping with
conformance-ci:
	$(MAKE) conformance FOCUS='$(CONFORMANCE_CI_FOCUS)' CONFORMANCE_FLAGS=-strict

# A single-node Kubernetes cluster on this machine (etcd and kube-apiserver on 127.0.0.1, the
# kubelet, the private containerd with the confguest handler and a CNI bridge of its own);
# it runs until Ctrl-C, then removes everything it made. See deploy/README.md.
k8s-node: image build k8s-build
	$(GO) run ./build/cmd/k8s-node -image $(OUT) -shim bin/containerd-shim-confguest-v2

# kube-apiserver, kubelet and kubectl of the pinned Kubernetes release, built from the Go
# module proxy into $(CONFGUEST_CACHE)/k8s/<version>/ (cached).
k8s-build: setup
	bash deploy/build-k8s.sh

# The Kubernetes node test (qemu-tests TestK8sNode): one pod spec under confguest and runc
# on a real kubelet. Not in make test, for the cold .ci/run's time.
k8s-test: image build k8s-build
	CONFGUEST_K8S=1 CONFGUEST_IMAGE=$(abspath $(OUT)) $(GO) test -v -count=1 -timeout 60m -run '^TestK8sNode$$' ./qemu-tests

clean:
	rm -rf bin $(OUT)
