# pipelines/ablation.mk - `make ablation`: FADRM's ablations (ddpipe-method(7) section 6) on Fashion-MNIST.
# The top-level Makefile builds the programs and runs: make -f pipelines/ablation.mk BIN=<abs build/bin>
#
# The FADRM paper's ablations, each a FADRM run that differs from the default (k = 3 merges, alpha
# 0.5, 1x1 patches) in one setting: the ARC weight alpha, the number of merges k, no residual at
# all (k = 0: SRe2L++), 2x2 patches (patchsel -f 2, four 14-px crops per image); every run with
# each seed of SEEDS (selection, recover, labels and student), all evaluated by the demo's student
# protocol (FKD labels, a convnet3 from scratch). Prints a table: one row per configuration, a
# "final (best)" top-1 cell per seed and their means, and the paper's directions beside it.
# The paper (ImageNet-1k, ResNet-18): alpha 0.5 best; ARC over none +1.3 points (IPC 10); k = 3
# best; 1x1 patches slightly better than 2x2. This checks whether they hold on this data; they
# need not (a 28-px, 10-class set and a small teacher).
#
# Scale, output tree and teacher are demo.mk's (it is included): a 1-epoch teacher, recover ITERS =
# 500 steps, students EPOCHS = 100 epochs evaluated every 25, IPC 10, OUT = demo, so the teacher,
# the patches and the runs `make demo` made (its FADRM and SRe2L++, seed 0) are reused; FULL=1
# takes demo.mk's reference settings (2000 steps, 300 epochs, a 50-epoch teacher). 27 minutes on 2
# cores from scratch for the 7 configurations x 2 seeds and the teacher. Set ABLATION
# (configurations kK[-aA][-fF]: K merges, alpha A, F x F patches; k0 is SRe2L++), SEEDS and any
# parameter of common.mk (make ablation SEEDS="0 1 2" ITERS=2000). Each run is a sub-make of fadrm.mk
# (sre2lpp.mk for k0) with its parameters, so its files are the ones those fragments make, and a
# re-run only prints the table again.
#
#   make -f pipelines/ablation.mk [ABLATION="k3-a0.5 k0 ..." SEEDS="0 1" FULL=0|1 JOBS=N ...]
#     ablation        the teacher, each seed's patches (make -jJOBS), ablation-all (make -jJOBS),
#                     then ablation-table
#     ablation-all    the runs only
#     ablation-table  the table, from the runs' files (kept as print-AB_TABLE)
# JOBS (default: nproc, as demo.mk) is the parallelism: make -jJOBS over the runs and the patches,
# every program on one thread (THREADS=1), the teacher, made first, on JOBS threads.
ABLATION_MK := $(lastword $(MAKEFILE_LIST))
# the demo's scale, output tree and teacher (FULL=1: the reference settings), and its runs reused
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))demo.mk
SEEDS ?= 0 1
$(foreach s,$(SEEDS),$(if $(filter-out 0,$(filter 0%,$(s)))$(call dd_nodigits,$(s)),$(error SEEDS='$(SEEDS)': '$(s)' is not a \
    seed (a whole number))))
$(if $(strip $(SEEDS)),,$(error SEEDS is empty))
ABLATION ?= k3-a0.5 k0 k3-a0.3 k3-a0.7 k1-a0.5 k7-a0.5 k3-a0.5-f2

# $(call ab_arg,CONFIG,LETTER): the value after LETTER in CONFIG's dash-separated fields
ab_arg = $(patsubst $(2)%,%,$(filter $(2)%,$(subst -, ,$(1))))
ab_factor = $(or $(call ab_arg,$(1),f),auto)
# the sub-make of CONFIG and SEED: fragment, goal and parameters
ab_mk = $(if $(filter 0,$(call ab_arg,$(1),k)),sre2lpp.mk sre2lpp,fadrm.mk fadrm ARC=$(call ab_arg,$(1),k) \
    ALPHA=$(or $(call ab_arg,$(1),a),$(ALPHA)))
AB_PASS = BIN=$(BIN) OUT=$(OUT) IPC=$(IPC) ITERS=$(ITERS) EPOCHS=$(EPOCHS) EVAL_EVERY=$(EVAL_EVERY) \
    TEACHER_EPOCHS=$(TEACHER_EPOCHS) TEACHER_OPTS='$(TEACHER_OPTS)' TEACHER_TAG=$(TEACHER_TAG) TEACHER=$(TEACHER) \
    STUDENT=$(STUDENT) THREADS=$(THREADS) TEACHER_THREADS=$(TEACHER_THREADS)
AB_SUB = $(MAKE) --no-print-directory -f $(PIPELINES)/$(word 1,$(call ab_mk,$(1))) $(AB_PASS) SEED=$(2) \
    FACTOR=$(call ab_factor,$(1)) $(wordlist 3,9,$(call ab_mk,$(1)))

$(foreach c,$(ABLATION),$(if $(call ab_arg,$(c),k),,$(error ablation.mk: configuration '$(c)' has no kK field)))
AB_FACTORS := $(sort $(foreach c,$(ABLATION),$(call ab_factor,$(c))))
AB_PATCHES := $(foreach s,$(SEEDS),$(foreach f,$(AB_FACTORS),ab-patches-s$(s)-f$(f)))
AB_RUNS := $(foreach s,$(SEEDS),$(foreach c,$(ABLATION),ab-run-$(c)-s$(s)))
# the table's file: named by a checksum of its runs' evaluation files, whose paths hold every parameter
# of every stage (CROPS, CANDIDATES, VAL_N, ...: a table of other runs is another file); a shell snippet,
# since the paths come from the fragments' own sub-makes (print-AB_TABLE runs it too)
AB_TABLE = $(TD)/ablation-ipc$(IPC)-it$(ITERS)-e$(EPOCHS)-$$(ab_runs | cksum | cut -d' ' -f1).txt

define ab_patches_rule
ab-patches-s$(1)-f$(2):
	@$$(MAKE) --no-print-directory -f $$(PIPELINES)/fadrm.mk $$(AB_PASS) SEED=$(1) FACTOR=$(2) patches
endef
define ab_run_rule
ab-run-$(1)-s$(2):
	+@$$(call AB_SUB,$(1),$(2)) $(word 2,$(call ab_mk,$(1)))
endef
$(foreach s,$(SEEDS),$(foreach f,$(AB_FACTORS),$(eval $(call ab_patches_rule,$(s),$(f)))))
$(foreach s,$(SEEDS),$(foreach c,$(ABLATION),$(eval $(call ab_run_rule,$(c),$(s)))))

.PHONY: ablation ablation-all ablation-table print-AB_TABLE $(AB_PATCHES) $(AB_RUNS)
# the shared files first (teacher, then each seed's and factor's patches), so that the runs, in
# parallel, find them made
ablation:
	@echo "ablation: Fashion-MNIST, IPC $(IPC), $(words $(ABLATION)) configurations x $(words $(SEEDS)) seeds: make -j$(JOBS), outputs under $(OUT)/"
	@$(MAKE) --no-print-directory -f $(ABLATION_MK) teacher
	@$(MAKE) --no-print-directory -f $(ABLATION_MK) -j$(JOBS) $(AB_PATCHES)
	@$(MAKE) --no-print-directory -f $(ABLATION_MK) -j$(JOBS) ablation-all
	@$(MAKE) --no-print-directory -f $(ABLATION_MK) ablation-table
ablation-all: $(AB_RUNS)
# the table: each run's evaluation file named by its fragment's own variables (a line per
# configuration and seed for ablation-table.sh), then the rows
ab_dirvar = $(if $(filter 0,$(call ab_arg,$(1),k)),SRE2LPP_DIR,FADRM_DIR)
ab_runs_fn = ab_runs() { $(foreach s,$(SEEDS),$(foreach c,$(ABLATION),echo "$(c) $(s) $$($(call AB_SUB,$(c),$(s)) -s \
    print-$(call ab_dirvar,$(c)))/eval-$$($(call AB_SUB,$(c),$(s)) -s print-EVAL_ID).jsonl";)) };
ablation-table: $(call teacher_eval,$(TEACHER))
	+@$(ab_runs_fn) s=0; table=$(AB_TABLE); t=$$table.tmp.$$$$; ab_runs > $$t.runs; \
	TEACHER_EVAL=$(call teacher_eval,$(TEACHER)) TRAIN=$(TRAIN) VAL=$(VAL) BIN=$(BIN) IPC=$(IPC) ITERS=$(ITERS) \
	EPOCHS=$(EPOCHS) EVAL_EVERY=$(EVAL_EVERY) TEACHER=$(TEACHER) STUDENT=$(STUDENT) TEACHER_EPOCHS=$(TEACHER_EPOCHS) \
	ALPHA=$(ALPHA) ABLATION='$(ABLATION)' SEEDS='$(SEEDS)' bash $(PIPELINES)/ablation-table.sh $$t.runs > $$t || s=$$?; \
	cat $$t; rm -f $$t.runs; \
	if [ $$s = 0 ]; then mv $$t $$table; echo "table: $$table"; else rm -f $$t; exit $$s; fi
print-AB_TABLE:
	+@$(ab_runs_fn) echo "$(AB_TABLE)"

.DEFAULT_GOAL := ablation
