# ddpipe - one non-recursive makefile.
#   make            build every program into build/bin/
#   make check      install missing dependencies (as root), build, run every test
#   make demo       the main job on Fashion-MNIST (pipelines/demo.mk)
#   make xarch      the cross-architecture table on Fashion-MNIST (pipelines/xarch.mk)
#   make ablation   FADRM's ablations (alpha, k, patches) on Fashion-MNIST (pipelines/ablation.mk)
#   make bench      speed beside the PyTorch peer, same machine, same run
#   make deps       install missing Debian packages (root), or list them
#   make install PREFIX=/usr/local   programs, man pages, pipelines/ into PREFIX/share/ddpipe/
# Variables: GPU=auto|0|1 (CUDA backend when nvcc is found), SAN=1 (ASan+UBSan build in build-san/),
#            OPT=-O2, JOBS=N (parallel tests).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
.SECONDARY:

# pipelines/common.mk warns of a command-line variable no fragment names (a misspelt ALPHA); this
# makefile's own (SAN=1, FULL=1, ...) reach the fragments' makes through MAKEFLAGS, in make check's
# tests and make demo alike, and are no typos: the mark tells the fragments they were seen.
export DDPIPE_VARS_SEEN := 1
# numbers with a decimal point in every recipe and script (bench's ratios, the tests, the demo's
# table), whatever the caller's locale
export LC_ALL := C

PREFIX ?= /usr/local
GPU ?= auto
SAN ?= 0
OPT ?= -O2
PYTHON ?= /usr/bin/python3

ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

# ---- CUDA detection: nothing outside libcommon/nn/cuda/ and this block knows about CUDA ----
NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CU_FOUND := $(wildcard libcommon/nn/cuda/*.cu)
ifeq ($(GPU),auto)
HAVE_CUDA := $(if $(and $(NVCC),$(CU_FOUND)),1,0)
else
HAVE_CUDA := $(GPU)
endif

BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS := $(or $(shell pkg-config --libs openblas 2>/dev/null),-lopenblas)

CFLAGS ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -Wall -Wextra -Wno-missing-field-initializers -D_GNU_SOURCE -pthread -I. \
              $(BLAS_CFLAGS) $(SANFLAGS) $(CFLAGS) -MMD -MP
LDLIBS := -larchive -lzstd -lpng -ljpeg -ljansson -lz $(BLAS_LIBS) -lm -lpthread
ALL_LDFLAGS := -pthread $(SANFLAGS) $(LDFLAGS)

# ---- sources (found by wildcard: adding a file needs no edit here) ----
# The CUDA backend (libcommon/nn/cuda/) is built when nvcc is found and the backend has sources;
# otherwise libcommon/nn/nocuda/ supplies the stub that makes `-d cuda` fail cleanly (exit 3).
LIB_SRC := $(wildcard libcommon/*/*.c libcommon/nn/cpu/*.c formats/*.c)
ifeq ($(HAVE_CUDA),1)
ifeq ($(NVCC),)
$(error GPU=1 but nvcc was not found (set NVCC=/path/to/nvcc or build with GPU=0))
endif
CUDA_DIR := $(patsubst %/bin/nvcc,%,$(NVCC))
CU_SRC := $(CU_FOUND)
# The backend is a library of its own, build/lib/libddpipe-cuda.so, that the programs open when -d cuda
# is asked (libcommon/nn/cudaload/load.c): they link no CUDA library, so they start without one. It
# links cuDNN, cuBLAS and the runtime through the rpath (cuDNN sits beside them in $(CUDA_DIR)/lib64 on
# these machines) and takes the few functions it needs of ours (dd_err, dd_malloc, ...) from the
# program, which exports them (-rdynamic).
CUDA_LIBS := -L$(CUDA_DIR)/lib64 -Wl,-rpath,$(CUDA_DIR)/lib64 -lcudnn -lcublas -lcudart -lstdc++
CUDA_SO := $(BUILD)/lib/libddpipe-cuda.so
LIB_SRC += libcommon/nn/cudaload/load.c
LDLIBS += -ldl
ALL_LDFLAGS += -rdynamic
# sm_90 machine code (H100/H200) plus compute_90 PTX for later GPUs. --fmad=false: our kernels
# round as the CPU reference does (they are memory-bound; cuDNN/cuBLAS are not affected).
NVFLAGS := -O2 -std=c++17 -I. -gencode=arch=compute_90,code=sm_90 \
           -gencode=arch=compute_90,code=compute_90 --fmad=false \
           -Xcompiler -Wall,-Wextra,-Wno-missing-field-initializers,-fPIC -MMD -MP
else
CU_SRC :=
LIB_SRC += $(wildcard libcommon/nn/nocuda/*.c)
endif
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libddpipe.a

PROG_SRC := $(wildcard filters/*.c)
PROGS := $(PROG_SRC:filters/%.c=$(BUILD)/bin/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
PARITY_SRC := $(wildcard tests/parity/*.c)
PARITY := $(PARITY_SRC:tests/parity/%.c=$(BUILD)/tests/parity/%)
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCHES := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/%_replay)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all check check-gpu demo xarch ablation bench deps install clean fuzz man
all: $(PROGS) $(UNITS) $(FUZZ_REPLAY) $(PARITY) $(BENCHES) $(CUDA_SO)

$(BUILD)/obj/%.o: %.c | $(BUILD)/.build-deps-ok
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

# the loader knows the build tree's library by its absolute path too (a program run from elsewhere)
$(BUILD)/obj/libcommon/nn/cudaload/load.o: ALL_CFLAGS += -DDD_CUDA_SO_BUILD='"$(abspath $(CUDA_SO))"'
$(CUDA_SO): $(CU_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared $^ $(CUDA_LIBS) -o $@

$(BUILD)/bin/%: $(BUILD)/obj/filters/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The worker pool under ThreadSanitizer (tests/golden/tsan.sh runs it: a race in the hand-over
# from one job to the next showed only there). A compiler that cannot build it (or SAN=1, whose
# library is ASan's) gets a stub that says so and exits 77 (SKIP).
TSAN_POOL := $(BUILD)/tests/tsan/test_pool
all: $(TSAN_POOL)
$(TSAN_POOL): tests/unit/test_pool.c libcommon/nn/cpu/pool.c tests/unit/check.h $(LIB)
	@mkdir -p $(@D)
	@$(if $(filter 1,$(SAN)),printf '#!/bin/sh\necho "SKIP: %s"\nexit 77\n' \
	    "SAN=1 builds the library with ASan and ThreadSanitizer cannot join it (make check runs this)" \
	    >$@ && chmod +x $@ && exit 0;) \
	$(CC) $(filter-out $(SANFLAGS) -MMD -MP,$(ALL_CFLAGS)) -O1 -fsanitize=thread tests/unit/test_pool.c \
	    libcommon/nn/cpu/pool.c $(LIB) $(LDLIBS) -o $@ 2>$@.log \
	    || printf '#!/bin/sh\necho "SKIP: $(CC) -fsanitize=thread could not build it: %s"\nexit 77\n' \
	        "$$(grep -m1 -i error $@.log | tr -d '"$$\\`')" >$@ && chmod +x $@

# Helper programs of the parity tests (driven by tests/parity/*.sh) and of make bench.
$(BUILD)/tests/parity/%: $(BUILD)/obj/tests/parity/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Fuzz harnesses: replayed over their regression corpus by make check (any compiler); real fuzzing
# with `make fuzz` (clang's libFuzzer).
$(BUILD)/tests/%_replay: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay_main.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/obj/tests/fuzz/replay_main.o: tests/fuzz/replay_main.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

fuzz: $(FUZZ_BIN)
FUZZ_LIB_SRC := $(wildcard libcommon/*/*.c libcommon/nn/cpu/*.c libcommon/nn/nocuda/*.c formats/*.c)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRC)
	@mkdir -p $(@D)
	clang -std=c11 -O1 -g -D_GNU_SOURCE -I. $(BLAS_CFLAGS) -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined $< $(FUZZ_LIB_SRC) $(filter-out $(CUDA_LIBS),$(LDLIBS)) -o $@

# ---- dependencies: Debian packages ----
DEB_BUILD := gcc make pkg-config libarchive-dev libzstd-dev zstd libpng-dev libjpeg62-turbo-dev \
             libopenblas-dev libjansson-dev zlib1g-dev
DEB_TEST := python3-torch python3-torchvision python3-numpy
DEB_DEMO := dataset-fashion-mnist gnuplot-nox
DEB_ALL := $(DEB_BUILD) $(DEB_TEST) $(DEB_DEMO)

deps:
	@missing=""; for p in $(DEB_ALL); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	    echo "deps: missing Debian packages:$$missing"; \
	    echo "deps: run 'sudo make deps' or: sudo apt-get install$$missing"; exit 1; \
	fi

# What a plain `make` needs, checked before the first compile so that a fresh machine gets one line
# naming the Debian packages rather than a compiler error: each library header (after stdio.h, which
# jpeglib.h needs) and the link of an empty program. Checked once per build directory.
BUILD_HEADERS := archive.h:libarchive-dev png.h:libpng-dev jpeglib.h:libjpeg62-turbo-dev \
                 jansson.h:libjansson-dev zlib.h:zlib1g-dev cblas.h:libopenblas-dev
$(BUILD)/.build-deps-ok:
	@missing=""; for hp in $(BUILD_HEADERS); do \
	    printf '#include <stdio.h>\n#include <%s>\n' "$${hp%%:*}" | $(CC) $(BLAS_CFLAGS) -E -x c - >/dev/null 2>&1 \
	        || missing="$$missing $${hp#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "make: headers missing; install the Debian packages:$$missing (as root: make deps)" >&2; exit 1; fi; \
	mkdir -p $(@D); \
	if ! err=$$(printf 'int main(void) { return 0; }\n' | $(CC) -x c - -o $(@D)/.link-test $(LDLIBS) 2>&1); then \
	    echo "make: linking with '$(LDLIBS)' fails (as root, make deps installs the Debian packages):" >&2; \
	    { echo "$$err" | grep 'cannot find' || echo "$$err" | head -n 3; } >&2; exit 1; fi; \
	rm -f $(@D)/.link-test; touch $@

$(BUILD)/.deps-ok: Makefile
	@$(MAKE) --no-print-directory deps
	@mkdir -p $(@D) && touch $@

# ---- tests ----
check: $(BUILD)/.deps-ok
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh

check-gpu: $(BUILD)/.deps-ok
	@$(MAKE) --no-print-directory all GPU=1
	@BUILD=$(BUILD) PYTHON=$(PYTHON) DD_REQUIRE_GPU=1 bash tests/run.sh

bench: $(BUILD)/.deps-ok
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/bench/run.sh

demo: $(BUILD)/.deps-ok
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -f pipelines/demo.mk BIN=$(abspath $(BUILD)/bin)

xarch: $(BUILD)/.deps-ok
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -f pipelines/xarch.mk BIN=$(abspath $(BUILD)/bin)

ablation: $(BUILD)/.deps-ok
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -f pipelines/ablation.mk BIN=$(abspath $(BUILD)/bin)

# ---- install ----
MAN1 := $(wildcard man/man1/*.1)
MAN5 := $(wildcard man/man5/*.5)
MAN7 := $(wildcard man/man7/*.7)
# the make fragments, beside their helpers; installed they find PREFIX/bin (pipelines/common.mk)
PIPE_DATA := $(wildcard pipelines/*.mk pipelines/*.gp)
PIPE_EXEC := $(wildcard pipelines/*.sh pipelines/*.py)
PIPE_DIR := $(DESTDIR)$(PREFIX)/share/ddpipe/pipelines
install: $(PROGS) $(CUDA_SO)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7 $(PIPE_DIR)
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	$(if $(CUDA_SO),install -d $(DESTDIR)$(PREFIX)/lib/ddpipe && install -m 0755 $(CUDA_SO) $(DESTDIR)$(PREFIX)/lib/ddpipe/)
	install -m 0644 $(PIPE_DATA) $(PIPE_DIR)/
	install -m 0755 $(PIPE_EXEC) $(PIPE_DIR)/
	$(if $(MAN1),install -m 0644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1/)
	$(if $(MAN5),install -m 0644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5/)
	$(if $(MAN7),install -m 0644 $(MAN7) $(DESTDIR)$(PREFIX)/share/man/man7/)

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(patsubst %.c,$(BUILD)/obj/%.d,$(PROG_SRC) $(UNIT_SRC) $(PARITY_SRC) $(BENCH_SRC) $(FUZZ_SRC))
