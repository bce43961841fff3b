# Thin wrapper over CMake. Debug = ASan+UBSan (tests), Release = -O2 (demo, bench).
BUILD_DEBUG   ?= build/debug
BUILD_RELEASE ?= build/release
BUILD_SOAK    ?= build/soak
BUILD_BENCH   ?= build/bench
JOBS          ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE         ?= cmake

.PHONY: all deps build build-debug test demo bench bench-profile fuzz tsan soak leakcheck churn clean install package format format-check layer-check

all: build

deps:
	@sh tools/deps.sh

build: deps
	$(CMAKE) -S . -B $(BUILD_RELEASE) -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD_RELEASE) -j $(JOBS)

build-debug: deps
	$(CMAKE) -S . -B $(BUILD_DEBUG) -DCMAKE_BUILD_TYPE=Debug -DSG_SANITIZE=ON -DSG_WERROR=ON >/dev/null
	$(CMAKE) --build $(BUILD_DEBUG) -j $(JOBS)

test: format-check layer-check
	cd $(BUILD_DEBUG) && ctest --output-on-failure -j 1

# Includes and calls point only down the layers of tools/layers.map, and no
# files call each other in a cycle (tools/layers.py: the call graph comes
# from nm of the Debug build's objects); tools/layers.allow lists the
# violations left, and only shrinks.
layer-check: build-debug
	python3 tools/layers.py --objdir $(BUILD_DEBUG)/CMakeFiles/sgcore.dir --objdir $(BUILD_DEBUG)/CMakeFiles/swarmgate.dir

# Every C source and header as .clang-format writes it (tools/format-check.sh).
format-check: deps
	@sh tools/format-check.sh

format: deps
	git ls-files '*.c' '*.h' | grep -v '^third_party/' | xargs clang-format -i

demo: build
	sh test/demo/demo.sh $(BUILD_RELEASE)/swarmgate

# Release build with the test helpers (the bench starts a throwaway Postgres through them).
bench: deps
	$(CMAKE) -S . -B $(BUILD_BENCH) -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
	$(CMAKE) --build $(BUILD_BENCH) -j $(JOBS) --target swarmgate sgbench
	sh test/bench/bench.sh $(BUILD_BENCH)/swarmgate

# Instructions per request under callgrind (test/bench/profile.sh): immune to this machine's noise.
bench-profile: build
	sh test/bench/profile.sh $(BUILD_RELEASE)/swarmgate

fuzz: deps
	sh test/fuzz/run.sh

# ThreadSanitizer build (clang, build/tsan) under workers: 2 traffic and scrapes.
tsan: deps
	sh test/tsan/run.sh

# Long run (test/soak/soak.c): Release build, wrk with connection churn, upstream and Postgres
# restarts, RSS and fd samples; SOAK_SECONDS=600 by default. Its own tree: it needs the test helpers.
soak: deps
	$(CMAKE) -S . -B $(BUILD_SOAK) -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
	$(CMAKE) --build $(BUILD_SOAK) -j $(JOBS) --target sgsoak
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(BUILD_SOAK)/sgsoak

# The same faults for 90 s against the Debug ASan build; fails on any LeakSanitizer/ASan/UBSan report.
leakcheck: deps
	$(CMAKE) -S . -B $(BUILD_DEBUG) -DCMAKE_BUILD_TYPE=Debug -DSG_SANITIZE=ON -DSG_WERROR=ON >/dev/null
	$(CMAKE) --build $(BUILD_DEBUG) -j $(JOBS) --target sgsoak
	SOAK_MODE=leak SOAK_SECONDS=$${SOAK_SECONDS:-90} $(BUILD_DEBUG)/sgsoak

# Memory under connection churn (test/soak/churn.c): Release build, CHURN_CYCLES (30) cycles of
# CHURN_CONNS (6000) connections (each with a half-sent head; CHURN_REQUEST=0: idle) opened and
# closed, VmRSS after each; fails when the last cycles stay CHURN_MAX_GROWTH_KB (default 4096)
# above the warm-up. A shorter run (20 x 3000) is part of make test (ctest soak_churn).
churn: deps
	$(CMAKE) -S . -B $(BUILD_SOAK) -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
	$(CMAKE) --build $(BUILD_SOAK) -j $(JOBS) --target sgchurn
	CHURN_MAX_GROWTH_KB=$${CHURN_MAX_GROWTH_KB:-4096} $(BUILD_SOAK)/sgchurn

# make install [PREFIX=/usr/local] [DESTDIR=/stage]: binary in $(PREFIX)/sbin, config in
# /etc/swarmgate (kept when present), unit, man page, share/swarmgate (packaging/README.md).
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" $(CMAKE) --install $(BUILD_RELEASE) --prefix "$(PREFIX)"

# make package: $(BUILD_RELEASE)/swarmgate_<version>-1_<arch>.deb
package: build
	cd $(BUILD_RELEASE) && cpack -G DEB

clean:
	rm -rf build
