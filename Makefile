# Tidal: `make run` and `make test` install what is missing, build, and run or test.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
DATA_DIR ?= $(HOME)/.local/share/tidal
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: all deps configure build run test ci-checks check check-thread-safety check-sanitizers check-fuzz bench clean format

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@bash scripts/run.sh $(BUILD_DIR) $(DATA_DIR)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

# The checks beyond the suite (scripts/check.sh): clang's thread-safety
# analysis, the suite under ASan+UBSan, the concurrent components under TSan,
# and a short libFuzzer run of each fuzz target. CHECKS picks some of them
# (default: all); CI runs `make test` then `make ci-checks` (CI_CHECKS).
CHECKS ?=
CI_CHECKS = thread-safety tsan fuzz
check: build
	@bash scripts/check.sh $(BUILD_DIR) $(CHECKS)

ci-checks: build
	@bash scripts/check.sh $(BUILD_DIR) $(CI_CHECKS)

check-thread-safety: build
	@bash scripts/check.sh $(BUILD_DIR) thread-safety

check-sanitizers: deps
	@bash scripts/check.sh $(BUILD_DIR) asan tsan

check-fuzz: deps
	@bash scripts/check.sh $(BUILD_DIR) fuzz

bench: build
	@bash bench/run_all.sh $(BUILD_DIR)

format:
	@find src tests bench examples -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	@rm -rf $(BUILD_DIR)
