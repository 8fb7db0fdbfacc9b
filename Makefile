# kcare — see README.md.
GO      ?= go
BIN     := bin
FUZZTIME ?= 10s

.PHONY: all build scanner test unit unit-later fuzz vmtest faulttest benchsmoke demo vet clean packages systest

all: build

build: scanner
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The scanner interface's LD_PRELOAD library (C; see docs/compliance.md).
scanner:
	$(MAKE) -C scanner

# staticcheck, pinned; `go run` fetches it through the Go module proxy
# and builds it once into the build cache.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit tests: everything but the QEMU suite; then, built with the faults
# tag, the tests that stop kcarectl at its fault points (internal/faultpoint).
unit:
	$(GO) test -count=1 -short ./...
	$(GO) test -count=1 -short -tags faults ./internal/faultpoint/... ./internal/agent/... ./cmd/kcarectl/...

# The unit tests again with every clock they meet 400 days ahead
# (scripts/clockshift.sh): a test that compares a fixed date with the wall
# clock, and so passes today and fails later, fails here now.
unit-later:
	scripts/clockshift.sh 400 $(GO) test -count=1 -short ./...

# Each fuzz target, briefly.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# The end-to-end suite on a real Debian kernel in QEMU: the one
# linux-image-amd64 depends on, or KERNEL, a release (6.12.118+deb13-amd64)
# or a family (trixie-6.12) for its newest; see docs/kernels.md.
KERNEL ?=
vmtest:
	KCARE_TEST_KERNEL=$(KERNEL) $(GO) test -count=1 -v -timeout 30m ./test/vm/...

# The fault tests (docs/reliability.md): kcarectl stopped at each of its
# fault points on the real kernel in QEMU, killed or with the guest's
# power cut there; full disks, damaged caches and records, a clock a year
# off, downloads cut; eportal killed under load on SQLite and PostgreSQL,
# its PostgreSQL restarted, its SQLite held by a long clean, its disk full
# (as root, in a private mount namespace).
faulttest:
	$(GO) test -count=1 -v -timeout 30m ./test/faults/...

# Every benchmark once, small, so that none rots: the figures in
# docs/benchmarks.md are taken with the commands there, at full size. Needs
# KCARE_TEST_POSTGRES, the real kernel (as vmtest) and nginx.
benchsmoke:
	KCARE_BENCH_SERVERS=2000 $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./internal/... ./test/vm/
	$(GO) run ./test/loadgen -seed 2000 -agents 16 -concurrency 4 -duration 1s
	$(GO) run ./test/loadgen -api v1 -download-every-cycle -seed 2000 -agents 16 -concurrency 4 -duration 1s
	$(GO) run ./test/loadgen -db postgres -seed 2000 -agents 16 -concurrency 4 -duration 1s
	$(GO) run ./test/loadgen -nginx -seed 0 -concurrency 4 -duration 1s
	$(GO) run ./test/loadgen -rollout -urgent -waves 50,100 -seed 100 -agents 100 -concurrency 4 -time-scale 60

# Everything CI runs. The kernel is fetched first so that the unit tests
# that read a real Debian kernel image, headers and kallsyms find them (the
# kallsyms dump is taken in a guest once per build-id and cached), and a
# local PostgreSQL is started for the portal's store tests.
test: vet
	@set -e; eval "$$($(GO) run ./test/vm/fetchkernel -kallsyms)"; \
	eval "$$(scripts/postgres-test.sh)"; \
	export KCARE_TEST_VMLINUZ KCARE_TEST_HEADERS KCARE_TEST_RELEASE KCARE_TEST_POSTGRES; \
	$(MAKE) --no-print-directory unit unit-later fuzz vmtest faulttest benchsmoke

demo:
	KCARE_TEST_KERNEL=$(KERNEL) $(GO) run ./test/vm/demo

clean:
	rm -rf $(BIN)
	$(MAKE) -C scanner clean

# Retake the web UI screenshots in docs/screenshots (needs chromium).
.PHONY: screenshots
screenshots:
	KCARE_UPDATE_SCREENSHOTS=1 $(GO) test -count=1 -run TestBrowser ./test/ui/

# Portal load test and benchmark figures (docs/benchmarks.md).
.PHONY: bench-portal
bench-portal:
	$(GO) run ./test/loadgen -db sqlite -seed 100000 -agents 1000 -concurrency 32 -duration 30s

# The agent's and eportal's .deb (and .rpm, with rpmbuild) in dist/;
# VERSION=x.y.z sets their version.
packages:
	scripts/build-packages.sh dist
	@if command -v lintian >/dev/null; then lintian --fail-on error dist/*.deb; fi

# Deployment on a real Debian 12 with systemd in QEMU: installer, units,
# reboot, Ansible, crash-loop guard, package upgrade and purge (root).
systest:
	$(GO) test -count=1 -v -timeout 45m ./test/system/...
