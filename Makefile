# weft: build, test, benchmark and lab targets. `make help` lists them.

SHELL   := /bin/bash
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BACKEND ?= vxlan
# Privileged tests and e2e need root; they run only when make runs as root.
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

export WEFT_BIN_DIR := $(BIN)

# The image (make image): its name, the archive it is written to, and what
# its labels and time stamps record. SOURCE_DATE_EPOCH defaults to the
# commit's time, so that two builds of one commit are identical.
IMAGE_REPO        ?= ghcr.io/weftnet/weft
IMAGE             ?= $(IMAGE_REPO):$(VERSION)
IMAGE_ARCHIVE     ?= $(BIN)/weft-image.tar
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

# kube-apiserver, kube-controller-manager and kubectl for the Kubernetes-mode
# tests, built from the nested module e2e/kube/tools into a cache directory
# named for everything that decides the binaries: the Go version and that
# module's go.mod, go.sum and mains. Tests find them through WEFT_KUBE_TOOLS.
KUBE_TOOLS_MOD   := e2e/kube/tools
KUBE_TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/weft/kube-tools
KUBE_TOOLS_KEY   := $(shell { $(GO) env GOVERSION; cat $(KUBE_TOOLS_MOD)/go.mod $(KUBE_TOOLS_MOD)/go.sum $(KUBE_TOOLS_MOD)/cmd/*/main.go; } | sha256sum | cut -c1-16)
export WEFT_KUBE_TOOLS := $(KUBE_TOOLS_CACHE)/$(KUBE_TOOLS_KEY)

.PHONY: help build image kube-tools test test-unit test-priv e2e bench bench-scale fuzz lab lab-down lint check-tidy e2e-vagrant clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build weftd, weftctl, the weft CNI plugin, weft-install-cni, weft-etcd (lab/e2e) and weft-lab into ./bin
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weftd ./daemon/cmd/weftd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weftctl ./daemon/cmd/weftctl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft ./cni/cmd/weft
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft-install-cni ./cni/cmd/weft-install-cni
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft-etcd ./e2e/cmd/weft-etcd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft-lab ./e2e/cmd/weft-lab

image: build ## write bin/weft-image.tar: the image ghcr.io/weftnet/weft:VERSION as a docker-archive, built with no container engine (docker/podman load, ctr import; reproducible)
	@start=$$(date +%s%N); \
	$(GO) run ./etc/image/cmd/weft-image --bin-dir $(BIN) --arch $$($(GO) env GOARCH) --tag $(IMAGE) \
	  --version $(VERSION) --revision $(REVISION) --created $(SOURCE_DATE_EPOCH) --out $(IMAGE_ARCHIVE) && \
	echo "image: $$(du -h $(IMAGE_ARCHIVE) | cut -f1) in $$(( ($$(date +%s%N) - start) / 1000000 )) ms (after make build)"

test: lint check-tidy ## the README's test command: lint, go.mod tidiness, unit tests (-race), then as root the privileged and e2e tiers (e2e after kube-tools)
	@$(MAKE) --no-print-directory test-unit
	@if [ "$(IS_ROOT)" = yes ]; then \
		$(MAKE) --no-print-directory test-priv && $(MAKE) --no-print-directory e2e && \
		echo "tiers run: lint, unit, privileged, e2e"; \
	else \
		echo "tiers run: lint, unit"; \
		echo "tiers skipped: privileged and e2e (they need root: network namespaces, links, nftables)"; \
	fi

kube-tools: ## build kube-apiserver, kube-controller-manager and kubectl for the Kubernetes-mode tests, once per key (WEFT_KUBE_TOOLS)
	@set -e; dir='$(WEFT_KUBE_TOOLS)'; start=$$(date +%s); \
	if [ -x "$$dir/kube-apiserver" ] && [ -x "$$dir/kube-controller-manager" ] && [ -x "$$dir/kubectl" ]; then \
		echo "kube-tools: cached in $$dir (0 s)"; exit 0; \
	fi; \
	echo "kube-tools: building kube-apiserver, kube-controller-manager and kubectl into $$dir (10 to 20 min with a cold Go build cache on 2 cores)"; \
	mkdir -p '$(KUBE_TOOLS_CACHE)'; tmp=$$(mktemp -d "$$dir.partial.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
	(cd $(KUBE_TOOLS_MOD) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o "$$tmp/" ./cmd/...); \
	chmod 755 "$$tmp"; rm -rf "$$dir"; mv -T "$$tmp" "$$dir" || echo "kube-tools: another build filled $$dir meanwhile; keeping it"; \
	find '$(KUBE_TOOLS_CACHE)' -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' ! -name '$(KUBE_TOOLS_KEY)' -exec rm -rf {} +; \
	echo "kube-tools: built in $$(( $$(date +%s) - start )) s ($$(du -sh "$$dir" | cut -f1) in $$dir)"

test-unit: ## tier 1: unit tests with -race, then every benchmark once; privileged tests skip (WEFT_TEST_UNPRIVILEGED=1)
	WEFT_TEST_UNPRIVILEGED=1 $(GO) test -race -count=1 -timeout 20m ./...
	WEFT_TEST_UNPRIVILEGED=1 $(GO) test -count=1 -run '^$$' -bench . -benchtime=1x ./...  # benchmarks compile and run once

test-priv: build ## tier 2 (root): every package's tests, privileged ones included
	@[ "$(IS_ROOT)" = yes ] || { echo "test-priv needs root"; exit 1; }
	$(GO) test -count=1 -p 2 -timeout 30m ./...

e2e: build ## tier 3 (root): multi-node tests with real weftd processes in network namespaces, and a real kube-apiserver (after kube-tools)
	@[ "$(IS_ROOT)" = yes ] || { echo "e2e needs root"; exit 1; }
	@$(MAKE) --no-print-directory kube-tools
	$(GO) test -tags e2e -count=1 -p 1 -timeout 40m ./e2e/... ./subnet/kube/...

bench: build ## benchmarks: a table of figures, each beside its reference from the same run (apt-installs missing references: .ci/bench-deps; Kubernetes mode after kube-tools)
	@[ "$(IS_ROOT)" = yes ] || { echo "bench needs root (network namespaces)"; exit 1; }
	@./.ci/bench-deps
	@$(MAKE) --no-print-directory kube-tools
	@$(GO) test -tags bench -run '^TestBench' -count=1 -p 1 -timeout 60m -v ./... > $(CURDIR)/.bench.log 2>&1; rc=$$?; \
	  printf '%-58s | %-22s | %-44s | %s\n' figure weft reference ratio; \
	  grep -h '^BENCH|' $(CURDIR)/.bench.log | sed 's/^BENCH| *//' | awk -F' *\\| *' '{printf "%-58s | %-22s | %-44s | %s\n", $$1, $$2, $$3, $$4}'; \
	  grep -hE '^\s+--- SKIP|^--- FAIL' $(CURDIR)/.bench.log || true; \
	  echo "(full log: .bench.log)"; exit $$rc

bench-scale: ## bench with the long scale runs (WEFT_BENCH_SCALE=1), then docs/scale.md's model: .bench-scale.png and .bench-scale.md from the points in .bench-scale.jsonl
	@rm -f $(CURDIR)/.bench-scale.jsonl
	@WEFT_BENCH_SCALE=1 WEFT_BENCH_OUT=$(CURDIR)/.bench-scale.jsonl $(MAKE) --no-print-directory bench; rc=$$?; \
	  $(GO) run ./e2e/cmd/weft-scaleplot -png $(CURDIR)/.bench-scale.png -md $(CURDIR)/.bench-scale.md $(CURDIR)/.bench-scale.jsonl && \
	  echo "(scale model: .bench-scale.md, .bench-scale.png; points: .bench-scale.jsonl)"; exit $$rc

# Wall-clock seconds `make fuzz` may take in all: each target gets an even
# share of what is left, less 8 s for compiling its package (at most 30 s).
FUZZ_BUDGET ?= 170

fuzz: ## fuzz every Fuzz target (found with go test -list) for a share of FUZZ_BUDGET s; a crash is saved under testdata/fuzz/: commit it
	@start=$$(date +%s); targets=""; \
	for p in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(WEFT_TEST_UNPRIVILEGED=1 $(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do targets="$$targets $$p:$$f"; done; \
	done; \
	left=$$(echo $$targets | wc -w); [ $$left -gt 0 ] || { echo "no fuzz targets found"; exit 1; }; \
	echo "fuzzing $$left targets within $(FUZZ_BUDGET)s:$$targets"; rc=0; \
	for t in $$targets; do p=$${t%%:*}; f=$${t##*:}; \
	  per=$$(( ($(FUZZ_BUDGET) - ($$(date +%s) - start)) / left - 8 )); [ $$per -ge 1 ] || per=1; [ $$per -le 30 ] || per=30; \
	  echo "== $$f ($$p, $${per}s)"; \
	  WEFT_TEST_UNPRIVILEGED=1 $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${per}s $$p || { rc=1; \
	    echo "$$f found a failing input, saved in $$p/testdata/fuzz/$$f/: fix the code and commit that file as a corpus entry"; }; \
	  left=$$((left - 1)); \
	done; echo "fuzzing took $$(( $$(date +%s) - start ))s"; exit $$rc

# STORE=kube runs the lab in Kubernetes mode, on a real kube-apiserver and
# kube-controller-manager (built first by kube-tools when not cached).
STORE ?= etcd

lab: build ## bring up the lab (weft-lab up): etcd, 3 nodes, 2 pods each, in network namespaces (BACKEND=vxlan|wireguard|host-gw, STORE=etcd|kube)
	@[ "$(IS_ROOT)" = yes ] || { echo "the lab needs root (network namespaces)"; exit 1; }
	@if [ "$(STORE)" = kube ]; then $(MAKE) --no-print-directory kube-tools; fi
	$(BIN)/weft-lab up --backend $(BACKEND) --store $(STORE)

lab-down: ## remove everything the lab made (weft-lab down)
	@[ -x $(BIN)/weft-lab ] || $(MAKE) --no-print-directory build
	$(BIN)/weft-lab down

lint: ## gofmt and go vet (for every build tag in use, and for darwin); weftctl builds for darwin and windows
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags e2e,bench ./...  # no file is built only without these tags: this vets the default build too
	$(GO) vet -tags cnitesthook ./cni/
	$(GO) vet ./cni/testdata/skelfloor
	@# Off Linux: the portable code and its pure tests compile (kernel code is in _linux.go files with _other.go stubs).
	GOOS=darwin $(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./daemon/cmd/weftctl
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./daemon/cmd/weftctl
	@for p in ./daemon ./daemon/membership $$($(GO) list ./subnet/...); do \
	  echo "GOOS=darwin $(GO) test -c -o /dev/null $$p"; GOOS=darwin $(GO) test -c -o /dev/null $$p || exit 1; \
	done

check-tidy: ## fail if go mod tidy would change go.mod or go.sum
	$(GO) mod tidy -diff

e2e-vagrant: build ## multi-VM e2e with Vagrant (needs vagrant and a VM provider; not runnable on the CI machine)
	cd e2e/vagrant && ./run.sh

clean: ## remove build outputs
	rm -rf $(BIN) .bench.log
