# Thin wrapper over CMake/CTest (the build itself is CMake; see CMakeLists.txt).
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build serve test test-all bench clean

all: build

deps:
	@scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DLFMD_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Starts the server on the embedded default model (127.0.0.1:8080).
serve: build
	./$(BUILD)/src/lfmd serve

# The default test run (under ~10 minutes on 2 cores).
test: build
	@[ -d tests/server/node_modules ] || ! command -v npm >/dev/null || \
		npm install --prefix tests/server --no-audit --no-fund --silent
	ctest --test-dir $(BUILD) --output-on-failure -j 2 -LE slow

# Everything, including slow golden checks on regenerated 350M/1.2B-shaped models.
test-all: build
	@[ -d tests/server/node_modules ] || ! command -v npm >/dev/null || \
		npm install --prefix tests/server --no-audit --no-fund --silent
	ctest --test-dir $(BUILD) --output-on-failure -j 2

clean:
	rm -rf $(BUILD)
