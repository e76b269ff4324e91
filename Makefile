# The two commands of README.md: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
GO ?= go
BIN := bin/ingot
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOTEST_TIMEOUT ?= 40m
GOTESTFLAGS ?= # e.g. make test GOTESTFLAGS=-v: each test's time

# Debian packages: QEMU and firmware for x86_64 and aarch64 guests (runtime), and what the test
# guests are built with (the arm64 one through qemu-user-static).
APT_RUNTIME := qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 seabios
APT_GUESTS := debootstrap mtools dosfstools gdisk fdisk e2fsprogs grub-pc-bin grub-efi-amd64-bin grub-common \
	xorriso zstd cpio curl qemu-user-static python3
APT_TEST := openssh-client cloud-init bmap-tools libvirt-daemon-system prometheus xz-utils tmux docker-registry skopeo

.PHONY: demo test build deps deps-test guests libvirtd vet clean
# The demo bakes the test cloud image (built here from Debian packages: no network image needed)
# with the built-in "demo" recipe into ./out/demo.
demo: deps build
	$(BIN) version
	img=$$(bash testdata/guests/ensure.sh cloud) && \
	$(BIN) build --out out \
		--var image_url=file://$$img/debian-12-cloud.qcow2 \
		--var image_sha256=$$(cut -d' ' -f1 $$img/debian-12-cloud.qcow2.sha256) demo

# The arm64 guest (five minutes cold, mostly one emulated process) builds while the tests run:
# only cmd/ingot's TestEdgeArm64 needs it, late in the run, and ensure.sh's lock makes it wait for
# the build rather than start another. -p 1: packages one at a time, so at most two TCG guests
# (t.Parallel, 2 cores) boot at once.
test: deps deps-test libvirtd vet
	bash testdata/guests/ensure.sh cloud >/dev/null
	bash testdata/guests/ensure.sh installer >/dev/null
	@bash testdata/guests/ensure.sh arm64 >/dev/null & arm=$$!; \
	$(GO) test -p 1 -count=1 -timeout $(GOTEST_TIMEOUT) $(GOTESTFLAGS) ./...; rc=$$?; \
	wait $$arm || { echo "make: building the arm64 test guest failed (its log is above)" >&2; rc=1; }; \
	exit $$rc

build:
	@command -v $(GO) >/dev/null || { echo "make: Go is missing; install Go 1.21 or newer (it fetches the 1.26 toolchain itself)" >&2; exit 1; }
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ingot

# apt-get only when something is missing: a warm machine skips the index download.
deps:
	@bash .ci/apt-install $(APT_RUNTIME) $(APT_GUESTS)
# The SBOM tests' third-party validators (CycloneDX's library, packageurl-js, spdx-expression-parse)
# are npm packages, pinned by sbom/testdata/validate/package-lock.json and installed outside the
# clone. The machine image ships Node.js 20 with npm; Debian's own nodejs is the fallback elsewhere.
deps-test:
	@bash .ci/apt-install $(APT_TEST) minisign
	@command -v npm >/dev/null || bash .ci/apt-install nodejs npm
	@bash sbom/testdata/validate/install.sh

# The arm64 guest is built beside the others: its build is mostly one emulated process at a time.
guests:
	@bash testdata/guests/ensure.sh arm64 >/dev/null & arm=$$!; \
	bash testdata/guests/ensure.sh cloud && bash testdata/guests/ensure.sh installer; rc=$$?; \
	wait $$arm || rc=1; exit $$rc

# The libvirt driver's tests need the host's libvirtd and a second one standing in for a remote
# host; without systemd, start.sh starts both (idempotent; the tests also run it if needed).
libvirtd:
	bash testdata/libvirt/start.sh all

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin out
