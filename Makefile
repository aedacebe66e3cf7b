# meshring: build, test, demo, bench. `make help` lists the targets.

CARGO    ?= cargo
CC       ?= cc
GO       ?= go
PREFIX   ?= /usr/local
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
LIBDIR   := target/release
LIB_A    := $(LIBDIR)/libmeshring.a
LIB_SO   := $(LIBDIR)/libmeshring.so
CFLAGS_C := -std=c99 -O2 -Wall -Wextra -Werror -pedantic -Iinclude
LDLIBS   := -lpthread -ldl -lm
BUILD    := build

.PHONY: all lib header header-check test test-rust test-c test-go test-swift test-netns test-repl test-fuzz fuzz examples demo bench install clean help gtk test-gui bench-gui

all: lib examples

help:
	@echo "make demo          build and run the demos: UDP echo (backend, verified echo, throughput), notify bus (examples/c/watch --demo), lifecycle runtime (examples/c/routes), HA pair with failover (examples/c/ha_pair)"
	@echo "make test          everything CI runs: header drift, cargo test, C tests (ASan/UBSan, valgrind), Go -race, examples, Swift module, netns tunnel, replication fault tests"
	@echo "make test-repl     replication: kill -9 of a sync/durable primary (REPL_KILL_REPS=20), kill -9 and restart of a durable secondary, a netns link cut with resync (root)"
	@echo "make bench         side-by-side benchmarks with ratios"
	@echo "make fuzz          every fuzz target for FUZZ_SECONDS (600) each, from the committed seed corpus"
	@echo "make install PREFIX=/usr/local   library, header, modulemap, meshring.pc"

lib: $(BUILD)/meshring.pc
	$(CARGO) build --release

# Regenerates include/meshring.h (build.rs runs cbindgen).
header: lib

$(BUILD)/meshring.pc: meshring.pc.in Cargo.toml
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# Fails when the committed header differs from a fresh generation.
header-check:
	@mkdir -p $(BUILD)
	cp include/meshring.h $(BUILD)/meshring.h.committed
	$(CARGO) build --release
	@if ! cmp -s $(BUILD)/meshring.h.committed include/meshring.h; then \
	  echo "include/meshring.h is out of date with the Rust sources; commit the regenerated header:"; \
	  diff -u $(BUILD)/meshring.h.committed include/meshring.h | head -40; exit 1; fi
	@if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- include/meshring.h; then \
	  echo "include/meshring.h differs from the committed version (git diff include/meshring.h)"; exit 1; fi
	@echo "header: up to date"

examples: lib
	@mkdir -p examples/c/bin
	$(CC) $(CFLAGS_C) examples/c/udp_echo.c -o examples/c/bin/udp_echo $(LIB_A) $(LDLIBS)
	$(CC) $(CFLAGS_C) examples/c/watch.c -o examples/c/bin/watch $(LIB_A) $(LDLIBS)
	$(CC) $(CFLAGS_C) examples/c/tunnel.c -o examples/c/bin/tunnel $(LIB_A) $(LDLIBS)
	$(CC) $(CFLAGS_C) examples/c/ha_pair.c -o examples/c/bin/ha_pair $(LIB_A) $(LDLIBS)
	$(CC) $(CFLAGS_C) examples/c/routes.c -o examples/c/bin/routes $(LIB_A) $(LDLIBS)

demo: examples
	./examples/c/bin/udp_echo demo
	./examples/c/bin/watch --demo
	./examples/c/bin/ha_pair
	./examples/c/bin/routes

test: header-check test-rust test-c test-go examples test-swift test-netns test-repl test-fuzz test-gui
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) test --release

test-c: lib
	$(MAKE) -C c-tests check

test-go: lib
	cd go && CGO_ENABLED=1 $(GO) vet ./... && CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	cd go/xds && CGO_ENABLED=1 $(GO) vet ./... && CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	bash go/xds/upstream/run.sh
	cd go/tailscale && CGO_ENABLED=1 $(GO) vet ./... && CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	bash go/tailscale/conformance/run.sh
	cd go/tailscale && CGO_ENABLED=1 $(GO) run ./examples/tsgui -demo -for 1s | grep -q "^done: following the bus" && echo "tsgui: status and bus read through Tailscale's LocalAPI client"
	cd go/wgbind && CGO_ENABLED=1 $(GO) vet ./... && CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	RACE=1 bash go/wgbind/upstream/run.sh

# Coverage-guided fuzzing (fuzz/): every parser that takes host or network
# input. `make test` runs a short smoke pass so the targets keep building and
# the seeds keep passing; `make fuzz` is the long run.
FUZZ_SECONDS ?= 600
test-fuzz:
	FUZZ_SECONDS=8 bash fuzz/run.sh

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

# Root only: two network namespaces, a tunnel in each, ping and TCP across (skips with a reason otherwise).
test-netns: examples
	bash tests/netns/tunnel_test.sh

# Replication fault tests: a primary killed with SIGKILL mid-stream of sync
# or durable writes must lose no acknowledged write, on the secondary nor in
# its own file (REPL_KILL_REPS repetitions per mode, 20); a secondary killed
# mid-burst of durable writes must hold every acknowledged write in its
# file, and restarted from its files must resync to an identical volume;
# a netns link cut must end in a reconnect, a dirty-only resync and
# identical volumes (root; skips with a reason otherwise).
$(BUILD)/repl_node: tests/repl/repl_node.c include/meshring.h $(LIB_A)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_C) $< -o $@ $(LIB_A) $(LDLIBS)

test-repl: lib
	$(MAKE) --no-print-directory $(BUILD)/repl_node
	bash tests/repl/kill_test.sh
	bash tests/repl/secondary_kill_test.sh
	bash tests/repl/netns_cut_test.sh

# The Swift module map, checked with clang's module support (Swift imports the same map).
test-swift: lib
	@if command -v clang >/dev/null 2>&1; then \
	  mkdir -p $(BUILD)/swift-check && \
	  printf '@import CMeshring;\nint main(void) { return mr_version_number() == MR_VERSION_NUMBER ? 0 : 1; }\n' > $(BUILD)/swift-check/main.m && \
	  clang -fmodules -fmodules-cache-path=$(BUILD)/swift-check/cache -Iinclude $(BUILD)/swift-check/main.m -o $(BUILD)/swift-check/main -L$(LIBDIR) -l:libmeshring.a $(LDLIBS) && \
	  ./$(BUILD)/swift-check/main && echo "module.modulemap: CMeshring imports and links"; \
	else echo "SKIP module.modulemap check: clang is not installed (.ci/run installs it)"; fi

bench: lib examples
	bash bench/run.sh
	bash bench/tunnel.sh
	bash bench/wireguard.sh
	cd bench/xds && $(GO) run .
	$(MAKE) --no-print-directory bench-gui

# The GTK 4 desktop window (examples/gtk): needs libgtk-4-dev and libjson-glib-dev.
gtk: lib
	$(MAKE) -C examples/gtk

# The window under Xvfb: scripted sessions checked against the library's own view.
test-gui: lib
	bash tests/gui/gui_test.sh

# Longest main-loop stall at 10k peers and 20k deltas/s (goal: one frame, 16 ms).
bench-gui: lib
	bash tests/gui/gui_bench.sh 10

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/meshring $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/meshring.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/module.modulemap $(DESTDIR)$(PREFIX)/include/meshring/
	install -m 644 $(BUILD)/meshring.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

clean:
	$(CARGO) clean
	rm -rf $(BUILD) examples/c/bin c-tests/bin bench/bin
	$(MAKE) -C examples/gtk clean
