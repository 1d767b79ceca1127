# pipelines/demo.mk - `make demo`: Fashion-MNIST end to end on the CPU, the README's first command.
# The top-level Makefile builds the programs and runs: make -f pipelines/demo.mk BIN=<abs build/bin>
#
# Imports Fashion-MNIST (Debian's dataset-fashion-mnist), trains the convnet3 teacher on all 60,000
# training images, distils IPC 10 four ways - random real images (patchsel --method random), RDED
# (patchsel), SRe2L++ (recover from RDED's patches, no residual) and FADRM (recover with 3 residual
# merges, alpha 0.5) - and evaluates every distilled set with ONE student protocol: a convnet3 from
# scratch trained on the 100 images with FKD soft labels (relabel, the teacher's batch-specific
# logits) replayed by evaltrain --labels, top-1 on the 10,000 test images. RDED is also evaluated
# with its own protocol (online teacher, evaltrain --teacher) as an extra row, and so is INFER
# (infer.mk with the one teacher: 9 random real images per class plus their compensated copies,
# recover --ufc over ITERS steps, static labels, MixUp, T 30, EPOCHS epochs). Prints a table
# (top-1 final and best, distillation time, label storage), the teacher's accuracy, and writes a
# contact sheet per method and a plot of recover's loss curves.
#
# Demo scale (default; measured to fit 20 minutes on 2 CPU cores, see README): teacher 1 epoch,
# recover 500 steps (4 stages of 125 for FADRM), student 100 epochs evaluated every 25.
# FULL=1: the reference settings: recover 2000 steps, student 300 epochs evaluated every 10,
# teacher 50 epochs with the reference CIFAR teacher recipe (SGD lr 0.1, wd 1e-4, crop-pad 4 + flip).
# Every other parameter of common.mk can be set too (make demo EPOCHS=50). Outputs go under
# OUT (default demo/); a re-run only prints the table again.
#
#   make -f pipelines/demo.mk [FULL=0|1 JOBS=N IPC=10 SEED=0 ...]
#     demo        demo-all (make -jJOBS), then demo-table
#     demo-all    the runs only: every method's evaluations and contact sheet, the loss plot
#     demo-table  the table, from the runs' files (kept as table.txt in print-DEMO_DIR)
#   and the goals of rded.mk, sre2lpp.mk, fadrm.mk and infer.mk, at the demo's settings.
# JOBS (default: nproc) is the parallelism: make -jJOBS over the stages, every program on one
# thread (THREADS=1), except the teacher, which trains alone first, on JOBS threads.
THIS := $(lastword $(MAKEFILE_LIST))
FULL ?= 0
$(if $(filter 0 1,$(FULL)),,$(error FULL='$(FULL)': 0 (the demo's scale) or 1 (the reference settings)))
ifeq ($(FULL),1)
ITERS = 2000
EPOCHS = 300
EVAL_EVERY = 10
TEACHER_EPOCHS = 50
TEACHER_OPTS = --lr 0.1 --wd 1e-4 --crop-pad 4
TEACHER_TAG = -ref
else
ITERS = 500
EPOCHS = 100
EVAL_EVERY = 25
TEACHER_EPOCHS = 1
endif
OUT = demo
IPC = 10
SEED = 0
TEACHER = convnet3
STUDENT = convnet3
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# JOBS is checked here, before the includes: common.mk checks TEACHER_THREADS (= JOBS, below) when
# it is read, and would name that variable. A whole number from 1 to 4096 (the teacher's threads).
dd_jobs := $(subst ',x,$(JOBS))
$(if $(shell case '$(dd_jobs)' in (''|0*|*[!0-9]*|?????*) ;; (*) [ $(dd_jobs) -le 4096 ] && echo y;; \
    esac),,$(error JOBS='$(JOBS)': not a whole number from 1 to 4096 (decimal digits, no leading zero)))
# programs run one thread each, JOBS of them at a time; the teacher (alone at that point) uses all
THREADS = 1
TEACHER_THREADS = $(JOBS)

include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))rded.mk
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))sre2lpp.mk
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))fadrm.mk
INFER_TEACHERS = $(TEACHER)
# INFER at the demo's scale; with FULL=1 its own reference settings (recover --ufc's default steps,
# 1000 below 128 px, and 400 student epochs: ddpipe-method(7) sections 4 and 5)
INFER_ITERS = $(if $(filter 1,$(FULL)),,$(ITERS))
INFER_EPOCHS = $(if $(filter 1,$(FULL)),400,$(EPOCHS))
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))infer.mk

DEMO_T0 := $(shell date +%s.%N)
# beside FADRM's set: its directory's name carries every parameter of both curves (SRe2L++'s are
# a subset), so another ALPHA, ARC or SIZES draws another plot
LOSS_PNG := $(FADRM_DIR)/recover-loss.png
METHOD_DIRS := $(RANDOM_DIR) $(RDED_DIR) $(SRE2LPP_DIR) $(FADRM_DIR)
RESULTS := $(foreach d,$(METHOD_DIRS),$(d)/eval-$(EVAL_ID).jsonl $(d)/sheet.png) $(RDED_ONLINE) $(LOSS_PNG) \
    $(INFER_EVAL) $(INFER_DIR)/sheet.png $(basename $(TEACHER_W)).jsonl $(call teacher_eval,$(TEACHER))
# the table's directory: named by a checksum of the results' paths too, which hold every parameter of every
# stage (CANDIDATES, CROPS, VAL_N, ...: another parameter set's table is another file, not this one's)
DEMO_DIR := $(TD)/demo-ipc$(IPC)-it$(ITERS)-e$(EPOCHS)-s$(SEED)-$(shell printf '%s\n' $(RESULTS) | cksum | cut -d' ' -f1)

# recover's metrics, mean over the batches per step: step ce bn loss
%/metrics.dat: %/metrics.jsonl
	awk -F'[:,}]' '{ for (i = 1; i < NF; i++) v[$$i] = $$(i + 1); s = v["\"step\""]; \
	    if (v["\"loss\""] == "null") next; n[s]++; ce[s] += v["\"ce\""]; bn[s] += v["\"bn\""]; l[s] += v["\"loss\""] } \
	    END { for (s in n) printf "%d %.6g %.6g %.6g\n", s, ce[s] / n[s], bn[s] / n[s], l[s] / n[s] }' $< \
	    | sort -n > $@.part.$$$$ && mv -f $@.part.$$$$ $@
$(LOSS_PNG): $(SRE2LPP_DIR)/metrics.dat $(FADRM_DIR)/metrics.dat $(PIPELINES)/recover-loss.gp
	@mkdir -p $(@D)
	gnuplot -e "out='$@'; ttl='recover, $(DATASET) IPC $(IPC), $(ITERS) steps: mean over the class batches'; a='$(FADRM_DIR)/metrics.dat'; b='$(SRE2LPP_DIR)/metrics.dat'; \
	    ta='FADRM (k=$(ARC), alpha=$(ALPHA))'; tb='SRe2L++ (no residual)'" $(PIPELINES)/recover-loss.gp

.PHONY: demo demo-all demo-table
demo:
	@echo "demo: Fashion-MNIST, IPC $(IPC), $(if $(filter 1,$(FULL)),reference settings (FULL=1),demo scale): make -j$(JOBS), outputs under $(OUT)/"
	@$(MAKE) --no-print-directory -f $(THIS) -j$(JOBS) demo-all; times > $(DEMO_DIR).times
	@$(MAKE) --no-print-directory -f $(THIS) demo-table DEMO_T0=$(DEMO_T0)
demo-all: $(RESULTS)
demo-table:
	@mkdir -p $(DEMO_DIR)
	@DEMO_T0=$(DEMO_T0) TIMES=$(DEMO_DIR).times TEACHER_LOG=$(basename $(TEACHER_W)).jsonl \
	TEACHER_EVAL=$(call teacher_eval,$(TEACHER)) \
	TEACHER_SEC=$(TEACHER_W).sec EVAL_ID=$(EVAL_ID) LABEL_ID=$(LABEL_ID) ONLINE=$(RDED_ONLINE) \
	DIR_RANDOM=$(RANDOM_DIR) DIR_RDED=$(RDED_DIR) DIR_SRE2LPP=$(SRE2LPP_DIR) DIR_FADRM=$(FADRM_DIR) \
	DIR_INFER=$(INFER_DIR) INFER_INIT=$(INFER_INIT) INFER_EVAL=$(INFER_EVAL) IPC_INIT=$(IPC_INIT) \
	LOSS=$(LOSS_PNG) TRAIN=$(TRAIN) VAL=$(VAL) IPC=$(IPC) ITERS=$(ITERS) ARC=$(ARC) ALPHA=$(ALPHA) EPOCHS=$(EPOCHS) \
	EVAL_EVERY=$(EVAL_EVERY) TEACHER=$(TEACHER) STUDENT=$(STUDENT) TEACHER_EPOCHS=$(TEACHER_EPOCHS) \
	TEACHER_OPTS='$(TEACHER_OPTS)' JOBS=$(JOBS) BIN=$(BIN) SEED=$(SEED) INFER_ITERS=$(INFER_ITERS) \
	INFER_EPOCHS=$(INFER_EPOCHS) INFER_T=$(INFER_T) bash $(PIPELINES)/demo-table.sh | tee $(DEMO_DIR)/table.txt.tmp.$$$$ \
	    || { rm -f $(DEMO_DIR)/table.txt.tmp.$$$$; exit 1; }; mv $(DEMO_DIR)/table.txt.tmp.$$$$ $(DEMO_DIR)/table.txt

.DEFAULT_GOAL := demo
