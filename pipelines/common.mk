# pipelines/common.mk - what every method pipeline shares: make settings, parameters, dataset import,
# teacher training, RDED patch selection (also FADRM's and SRe2L++'s initialisation), the FKD
# student protocol (relabel + evaltrain --labels), contact sheets, and a timing helper.
# Included by rded.mk, sre2l.mk, sre2lpp.mk, fadrm.mk, fadrmplus.mk, cvdd.mk, infer.mk, sharded.mk, demo.mk and xarch.mk
# (once: the guard below); not meant to be run on its own.
#
# Every parameter is a make variable (override on the command line: make -f pipelines/fadrm.mk
# ALPHA=0.7), and every intermediate is a file whose NAME encodes the parameters that made it:
#   $(OUT)/$(DATASET)/data/train.tsr                          import (train-nN.tsr with TRAIN_N;
#                                                             test.tsr: VAL_SPLIT's)
#   $(OUT)/$(DATASET)/teachers/convnet3-e3-s0.safetensors     a teacher, .jsonl = its training log
#   $(OUT)/$(DATASET)/convnet3-e3-s0/METHOD/ID/distilled.tsr  a distilled set made with that teacher
#   .../ID/labels-e300-batch-s0.tsr                           its FKD soft labels
#   .../ID/eval-convnet3-e300-s0.jsonl                        its student's evaluation (evaltrain;
#                                                             xarch.mk: one per student architecture;
#                                                             -bnBN, RELABEL_TAG and -vSPLITN where
#                                                             the labels or validation set are not
#                                                             the defaults)
#   .../ID/sheet.png                                          its contact sheet
# so a re-run does nothing, and changing one parameter re-runs only the stages whose names carry it
# (ALPHA: recover onward; never the teacher or patchsel). Options passed through *_OPTS variables
# are not in the names: give them a name with the matching *_TAG variable.
# Each stage's wall and CPU seconds go to TARGET.sec beside it (read by the demo's table).
#
# Goals it gives every fragment (make -f pipelines/X.mk GOAL), beside the fragment's own:
#     teacher        TEACHER's weights (the import, then evaltrain on hard labels)
#     patches        RDED's selection with TEACHER (patchsel: RDED's distilled set)
#     random         the baseline: whole random real images (patchsel --method random), their FKD
#                    labels, student and contact sheet
#     print-VAR      a variable's value;  help: the fragment's header, these goals and parameters

ifndef DDPIPE_COMMON_MK
DDPIPE_COMMON_MK := 1

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# the C locale for every recipe: bash's time and printf, awk and sort read and write numbers with the
# locale's decimal separator (under de_DE, .sec files said "0,102" and awk read recover's "1.25" as 1)
export LC_ALL := C
.DELETE_ON_ERROR:
# no .SECONDARY: as a blanket it let a missing prerequisite go unbuilt when its target was newer
.SUFFIXES:

PIPELINES := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
# the programs: build/bin of the source tree these fragments are in, or, for fragments installed
# by make install in PREFIX/share/ddpipe/pipelines, PREFIX/bin
BIN ?= $(abspath $(PIPELINES)/$(if $(wildcard $(PIPELINES)/../filters/recover.c),../build/bin,../../../bin))

# ---- parameters ----
OUT ?= out
DATASET ?= fmnist
DATA ?= /usr/share/datasets/fashion-mnist
FORMAT ?= idx
VAL_SPLIT ?= test#           the validation split's name (an ImageFolder tree's folder: ImageNette's val)
TRAIN_N ?=#                  import only the first N training records (empty: all)
VAL_N ?=#                    ... and the first N test records
DEVICE ?= cpu
THREADS ?=#                  -j of every program (empty: the program's default, all CPUs)
SEED ?= 0#                   seed of selection, recover, relabel and the student
IPC ?= 10
# teachers ("squeeze": hard labels on the training set). The default teacher is a quick one, NOT the
# reference recipe: TEACHER_EPOCHS = 3 epochs of evaltrain's hard-label defaults (SGD lr 0.05,
# momentum 0.9, weight decay 5e-4 on every parameter, cosine, batch 128, flip only: no RandomCrop),
# TEACHER_OPTS empty. The reference CIFAR/Tiny teachers (ddpipe-method(7) section 0: SGD lr 0.1,
# momentum 0.9, wd 1e-4, cosine, RandomCrop + flip, 50 epochs for CIFAR-100, 150 for Tiny-ImageNet):
#   TEACHER_EPOCHS=50 TEACHER_OPTS='--lr 0.1 --wd 1e-4 --crop-pad 4' TEACHER_TAG=-ref
# (Tiny-ImageNet: TEACHER_EPOCHS=150 and --batch 64 added; TEACHER_OPTS are not in the file names,
# hence the TEACHER_TAG)
TEACHER ?= convnet3
TEACHERS ?= convnet3 resnet18m#   FADRM+'s list (fadrmplus.mk); the zoo's variants of the reference's: resnet18m densenet121m ...
TEACHER_EPOCHS ?= 3
TEACHER_SEED ?= 0
TEACHER_OPTS ?=
TEACHER_TAG ?=
TEACHER_THREADS ?= $(THREADS)
# RDED patch selection (ddpipe-method(7) section 1)
CANDIDATES ?= 300
CROPS ?= 5
# patches per side: auto leaves it to patchsel (2 from 128 px, else 1, as RDED's scripts) and the
# RDED student (evaltrain --teacher) takes the factor patchsel recorded
FACTOR ?= auto
# recover (ddpipe-method(7) section 2): the budget, FADRM's residual and the batch
ITERS ?= 2000
ARC ?= 3
ALPHA ?= 0.5
SIZES ?=#                    stage sizes, comma-separated (MRO: 200,224,200,224); empty: native
RBATCH ?=#                   classes per recover batch (empty: recover's default, min(classes,100))
RECOVER_OPTS ?=
RECOVER_TAG ?=
METRICS_EVERY ?= 10
# the student protocol (ddpipe-method(7) sections 3-4): FKD labels replayed by evaltrain
STUDENT ?= convnet3
EPOCHS ?= 300
EVAL_EVERY ?= 10
RELABEL_BN ?= batch
RELABEL_OPTS ?=
RELABEL_TAG ?=
STUDENT_OPTS ?=
STUDENT_TAG ?=

comma := ,
space := $(subst ,, )

# ---- parameter checks ----
# A bad value stops make before any stage runs (not hours later, when its stage is reached), with
# one line naming the variable. Method fragments check theirs with the same functions.
dd_nodigits = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst \
    8,,$(subst 9,,$(subst $(space),_,$(1))))))))))))
# $(call dd_whole,VAR[,0]): VAR a whole number, at least 1 (at least 0 with the second argument),
# in decimal without leading zeros (the shell's arithmetic reads 010 as 8, and names would differ)
# and of at most 9 digits
dd_digits = $(subst 0,0 ,$(subst 1,1 ,$(subst 2,2 ,$(subst 3,3 ,$(subst 4,4 ,$(subst 5,5 ,$(subst 6,6 ,$(subst 7,7 ,$(subst \
    8,8 ,$(subst 9,9 ,$(1)))))))))))
dd_whole = $(if $(and $($(1)),$(if $(call dd_nodigits,$($(1))),,1),$(if $(2),1,$(subst 0,,$($(1)))),$(if \
    $(filter-out 0,$(filter 0%,$($(1)))),,1),$(if $(word 10,$(call dd_digits,$($(1)))),,1)),,$(error \
    $(1)='$($(1))': not a whole number$(if $(2),, of at least 1) (decimal digits, no leading zero, at most 9)))
# $(call dd_max,VAR,MAX[,WHY]): a whole (checked) VAR, or empty, of at most MAX
dd_max = $(if $($(1)),$(if $(shell [ $($(1)) -le $(2) ] && echo y),,$(error $(1)='$($(1))': at most $(2)$(3))))
# ... or empty
dd_whole_opt = $(if $($(1)),$(call dd_whole,$(1),$(2)))
# $(call dd_number,VAR[,WORD]): VAR (or its word WORD) a number of digits and at most one point
dd_isnum = $(and $(1),$(if $(call dd_nodigits,$(subst .,,$(1))),,1),$(filter 1 2,$(words $(subst ., ,x$(1)x))))
dd_number = $(if $(call dd_isnum,$(or $(2),$($(1)))),,$(error $(1)='$($(1))': $(if $(2),'$(2)' is )not a number (digits and \
    at most one point)))
# $(call dd_oneof,VAR,WORDS): VAR one of WORDS
dd_oneof = $(if $(filter $(2),$($(1))),,$(error $(1)='$($(1))': not one of $(2)))
# $(call dd_fraction,VAR): a number in [0, 1] (digits and one point)
dd_fraction = $(if $(and $($(1)),$(if $(call dd_nodigits,$(subst .,,$($(1)))),,1),$(filter 1 2,$(words $(subst \
    ., ,x$($(1))x))),$(filter 0,$(shell awk 'BEGIN { exit !($($(1)) >= 0 && $($(1)) <= 1) }' </dev/null; \
    echo $$?))),,$(error $(1)='$($(1))': not a number from 0 to 1))
$(foreach v,IPC ITERS EPOCHS TEACHER_EPOCHS CANDIDATES CROPS EVAL_EVERY METRICS_EVERY,$(call dd_whole,$(v)))
$(foreach v,SEED TEACHER_SEED ARC,$(call dd_whole,$(v),0))
$(foreach v,TRAIN_N VAL_N THREADS TEACHER_THREADS RBATCH,$(call dd_whole_opt,$(v)))
$(call dd_fraction,ALPHA)
# ALPHA as a name part, one spelling per value (0.50, .5 and 00.5 are 0.5; 1.0 is 1), so that
# another spelling of the same alpha finds the same files rather than redoing recover onward
# $(call dd_num_id,NUMBER): one spelling of a decimal number for a file name (.5, 0.50 -> 0.5; 10.0 -> 10)
dd_num_id = $(shell echo '$(1)' | sed -e 's/^\./0./' -e '/\./s/0*$$//' -e 's/\.$$//' -e 's/^0*\([0-9]\)/\1/')
ALPHA_ID := $(call dd_num_id,$(ALPHA))
$(if $(filter-out auto,$(FACTOR)),$(call dd_whole,FACTOR))
# paths and names that become file names: make cannot name a file with a space
$(foreach v,OUT DATA DATASET BIN TEACHER STUDENT FORMAT VAL_SPLIT,$(if $(word 2,$($(v))),$(error $(v)='$($(v))': has a \
    space (a path with one does not survive make's names and recipes: rename or link the directory))))
$(if $(strip $(VAL_SPLIT)),,$(error VAL_SPLIT='': empty (the validation split's name: test, val, ...)))
# DATASET names the files of a data set (out/DATASET/...), not DATA or FORMAT: other data under the default
# name would find Fashion-MNIST's files made and report their numbers, so DATA or FORMAT needs DATASET too
$(if $(filter file,$(origin DATASET)),$(foreach v,DATA FORMAT,$(if $(filter-out file undefined,$(origin $(v))),\
    $(error $(v)='$($(v))' ($(origin $(v))) without DATASET: name the data set (DATASET=NAME names its files \
    under $(OUT)), or the files made from the default data (DATASET=$(DATASET)) would be reused for it))))
# the programs' own limits, said before any stage runs rather than at the stage
$(foreach v,THREADS TEACHER_THREADS,$(call dd_max,$(v),4096))
$(call dd_max,IPC,9999)
$(call dd_max,ARC,63, (recover's merges))
$(if $(filter-out auto,$(FACTOR)),$(call dd_max,FACTOR,2, (patchsel: 1x1 or 2x2 patches), or auto))
# ITERS against ARC, in the fragments that merge (fadrm, fadrmplus, sharded: $(dd_check_arc) after this
# file); sre2lpp and cvdd run --arc 0 whatever ARC says
dd_check_arc = $(if $(shell [ $(ITERS) -gt $(ARC) ] && echo y),,$(error ITERS=$(ITERS): ARC=$(ARC) merges make $(ARC)+1 \
    stages of at least one step each))
$(if $(SIZES),$(foreach z,$(subst $(comma), ,$(SIZES)) $(if $(findstring $(comma)$(comma),$(comma)$(SIZES)$(comma)),x),$(if \
    $(and $(z),$(if $(call dd_nodigits,$(z)),,1),$(subst 0,,$(z))),,$(error SIZES='$(SIZES)': not comma-separated sizes in \
    pixels))))
$(if $(filter cpu cuda auto,$(DEVICE)),,$(error DEVICE='$(DEVICE)': not cpu, cuda or auto))
$(if $(filter batch eval,$(RELABEL_BN)),,$(error RELABEL_BN='$(RELABEL_BN)': not batch or eval))
# the programs, before anything is made with them (print-VAR and help need none)
$(if $(filter-out print-% help,$(or $(MAKECMDGOALS),all)),$(if $(wildcard $(BIN)/recover),,$(error BIN=$(BIN): no ddpipe \
    programs there (build them: make; or set BIN=DIR))))
dd_uses = $(shell grep -lE -- '[$$][({]$(1)[)}]|[$$]$(1)([^A-Za-z0-9_]|$$)|^[[:space:]]*(export[[:space:]]+)?$(1)[[:space:]]*[?:+]?=' \
    $(PIPELINES)/*.mk $(PIPELINES)/*.sh 2>/dev/null)
# a variable given on the command line that no fragment of this directory uses (as $(V), ${V}, $V,
# or a definition V = ... at a line's start; a word in a comment or an option such as --alpha is
# no use: alpha=0.7 was not said) is most likely a typo (ALPHA misspelt would rerun nothing and
# print the cached ALPHA=0.5 results): said once,
# not again by the makes this one starts (the demo's), which inherit the mark (as do the makes
# the top-level Makefile starts, whose own variables they inherit)
$(if $(filter environment,$(origin DDPIPE_VARS_SEEN)),,$(foreach v,$(filter-out MAKEFLAGS MFLAGS GNUMAKEFLAGS,$(foreach v,$(.VARIABLES),$(if \
    $(filter command line,$(origin $(v))),$(v)))),$(if $(call dd_uses,$(v)),,$(warning $(v)=$($(v)): no pipeline \
    fragment uses $(v) (a typo?)))))
export DDPIPE_VARS_SEEN := 1

# ---- names ----
# a parameter as a file-name part: convnet4:width=64 -> convnet4-width64, 200,224 -> 200x224
ddid = $(subst =,,$(subst :,-,$(subst $(comma),x,$(1))))
dev_opt := $(if $(filter-out cpu,$(DEVICE)),-d $(DEVICE))
thr_opt = $(if $(THREADS),-j $(THREADS))
RUN_OPTS = -q $(dev_opt) $(thr_opt)

# the device computes every stage's numbers (GPU and CPU round differently): a device other than
# the CPU gets its own tree, data included
D := $(OUT)/$(DATASET)$(if $(filter-out cpu,$(DEVICE)),-$(DEVICE))
TRAIN := $(D)/data/train$(if $(TRAIN_N),-n$(TRAIN_N)).tsr
VAL := $(D)/data/$(VAL_SPLIT)$(if $(VAL_N),-n$(VAL_N)).tsr
teacher_id = $(call ddid,$(1))-e$(TEACHER_EPOCHS)$(if $(TRAIN_N),-n$(TRAIN_N))-s$(TEACHER_SEED)$(TEACHER_TAG)
teacher_file = $(D)/teachers/$(call teacher_id,$(1)).safetensors
TID := $(call teacher_id,$(TEACHER))
TEACHER_W := $(call teacher_file,$(TEACHER))
TD := $(D)/$(TID)
SIZES_ID := $(if $(SIZES),-z$(call ddid,$(SIZES)))
RBATCH_ID := $(if $(RBATCH),-b$(RBATCH))
PATCH_PARAMS := ipc$(IPC)-n$(CANDIDATES)-c$(CROPS)-f$(FACTOR)
PATCH_ID := $(PATCH_PARAMS)-s$(SEED)
# $(call patches_of,ARCH): RDED's selection with teacher ARCH (RDED's distilled set)
patches_of = $(D)/$(call teacher_id,$(1))/rded/$(PATCH_ID)/distilled.tsr
RDED_DIR := $(TD)/rded/$(PATCH_ID)
PATCHES := $(RDED_DIR)/distilled.tsr
RANDOM_DIR := $(TD)/random/ipc$(IPC)-s$(SEED)
LABEL_ID := e$(EPOCHS)-$(RELABEL_BN)-s$(SEED)$(RELABEL_TAG)
# an evaluation's validation set where it is not the default (the whole test split), and its
# schedule where it is not every 10th epoch (EVAL_EVERY decides which epochs the best top-1 is over)
VAL_ID := $(if $(or $(VAL_N),$(filter-out test,$(VAL_SPLIT))),-v$(VAL_SPLIT)$(VAL_N))$(if $(filter-out 10,$(EVAL_EVERY)),-ev$(EVAL_EVERY))
# $(call eval_id,ARCH): the name part of a student ARCH's evaluation on FKD labels (EVAL_ID:
# STUDENT's): its labels where they are not relabel's defaults, and VAL_ID, so that a changed
# RELABEL_BN, RELABEL_TAG, VAL_N, VAL_SPLIT or EVAL_EVERY names another file (unchanged names
# otherwise)
eval_id = $(call ddid,$(1))-e$(EPOCHS)-s$(SEED)$(STUDENT_TAG)$(if $(filter-out batch,$(RELABEL_BN)),-bn$(RELABEL_BN))$(RELABEL_TAG)$(VAL_ID)
EVAL_ID := $(call eval_id,$(STUDENT))

# $(call timed,FILE,COMMAND[,OUT]): run COMMAND (one pipeline; its standard output to OUT where
# given); write "WALL USER SYS" seconds to FILE.sec (bash's time; COMMAND's own standard error
# passes through on fd 3); on failure no FILE.sec and COMMAND's exit status. The old FILE.sec goes
# first; OUT and FILE.sec are written under names of this shell's pid (OUT.part.PID,
# FILE.sec.part.PID) and renamed into place only after COMMAND succeeds, so a stage interrupted or
# killed (SIGKILL and out-of-memory too) leaves no OUT or FILE.sec that make would take as done,
# and make processes building the same file at once (two parameter sets in one OUT sharing a
# teacher, machines sharing OUT) do not write into each other's files. It begins a recipe line:
# make echoes COMMAND (> OUT) alone, the pipeline a user would type, not this bookkeeping.
# FILE is dated when the stage began, not when it ended: every prerequisite is older than that, and
# when two makes build a shared file (the teacher) at once, the one that ends last does not make the
# other's later stages (patches, recover, from the first copy: the same bits) out of date.
# run_timed is the same without the echo, for the middle of a line.
run_timed = $(dd_start) $(run_timed_from)
# dd_start: the stage's start (dd_t0), taken before made_meanwhile looks for another make's file
dd_start = dd_t0=$$(date +%s.%N);
# $(call dd_trap,FILES,SIG): on SIG (make interrupted: ^C, a scheduler's SIGTERM) the stage's part files
# go, and the shell then dies of SIG as it would have (SIGKILL cannot be caught: its parts stay)
dd_trap = trap 'rm -f $(1); trap - $(2); kill -$(2) $$$$' $(2);
# run_timed_from: run_timed with dd_t0 already set
run_timed_from = rm -f $(1).sec; TIMEFORMAT='%R %U %S'; dd_pid=$$$$; \
	$(foreach s,INT TERM HUP,$(call dd_trap,$(1).sec.part.$$dd_pid $(if $(3),$(3).part.$$dd_pid),$(s))) \
	{ time { $(2) $(if $(3),> $(3).part.$$dd_pid) ; } 2>&3 ; } 3>&2 2> $(1).sec.part.$$dd_pid && \
	$(if $(3),mv -f $(3).part.$$dd_pid $(3) && )touch -c -d @$$dd_t0 $(1) && mv -f $(1).sec.part.$$dd_pid $(1).sec || \
	{ s=$$?; rm -f $(1).sec.part.$$dd_pid $(if $(3),$(3).part.$$dd_pid); exit $$s; }
timed = @printf '%s\n' '$(subst ','\'',$(2))$(if $(3), > $(3))'; $(call run_timed,$(1),$(2),$(3))
# ... for a stage with one output that another make may be making too: see made_meanwhile
timed_shared = @$(dd_start) $(call made_meanwhile,$(1) $(3)) printf '%s\n' '$(subst ','\'',$(2))$(if $(3), > $(3))'; \
	$(call run_timed_from,$(1),$(2),$(3))

# $(call made_meanwhile[,FILES]): the start of a recipe line of a stage with outputs FILES ($@
# when not given; a teacher: its weights and its log), which another make sharing OUT may be making at
# the same time (the imports, a teacher, its patches): when every FILE exists now and no prerequisite is
# newer (a teacher whose log was lost is trained again, not taken as made), that make made it
# after this one looked (make reads a file's date once, before it makes the prerequisites) and it
# is kept, not made again (a teacher trained twice; and a copy dated later would put the other
# make's later stages out of date). The programs write atomically: a FILE that exists is whole.
# It follows dd_start, and the stage's FILE is dated dd_t0: any copy this make finds missing here
# was not there at dd_t0, so the copy that ends up in place (whichever make wrote it last) is dated
# before any make's later stage began. Under make -B (--always-make) nothing is kept.
made_meanwhile = $(if $(findstring B,$(firstword -$(MAKEFLAGS))),,n=; for f in $(or $(1),$@); do [ -e $$f ] || n=1; \
    for p in $^; do [ "$$p" -nt $$f ] && n=1; done; done; \
    [ -z "$$n" ] && { echo "$(or $(1),$@): made meanwhile by another make"; exit 0; };)

# ---- data ----
import_cmd = $(BIN)/tsimport -q -f $(FORMAT) -S $(1) $(if $(2),-n $(2)) -o $@ $(DATA)
$(TRAIN):
	@mkdir -p $(@D)
	@$(dd_start) $(made_meanwhile) printf '%s\n' '$(subst ','\'',$(call import_cmd,train,$(TRAIN_N)))'; \
	    $(call import_cmd,train,$(TRAIN_N)) && touch -c -d @$$dd_t0 $@
$(VAL):
	@mkdir -p $(@D)
	@$(dd_start) $(made_meanwhile) printf '%s\n' '$(subst ','\'',$(call import_cmd,$(VAL_SPLIT),$(VAL_N)))'; \
	    $(call import_cmd,$(VAL_SPLIT),$(VAL_N)) && touch -c -d @$$dd_t0 $@

# ---- teachers: one rule per architecture in TEACHER and TEACHERS ----
# The weights (written atomically by --save) and the training log are one grouped target. The
# validation set is an order-only prerequisite: the weights do not depend on it (its top-1 goes to
# the log and the metadata), so a new VAL_N or VAL_SPLIT makes new student evaluations, not a new
# teacher (whose log keeps the top-1 on the set it was trained beside).
define teacher_rule
$(call teacher_file,$(1)) $(basename $(call teacher_file,$(1))).jsonl &: $(TRAIN) | $(VAL)
	@mkdir -p $$(@D)
	$$(call timed_shared,$(call teacher_file,$(1)),$$(BIN)/evaltrain -q $$(dev_opt) \
	    $$(if $$(TEACHER_THREADS),-j $$(TEACHER_THREADS)) -m $(subst $(comma),$$(comma),$(1)) --epochs $$(TEACHER_EPOCHS) \
	    -s $$(TEACHER_SEED) $$(TEACHER_OPTS) --val $$(VAL) --save $(call teacher_file,$(1)) $$(TRAIN),$(basename \
	    $(call teacher_file,$(1))).jsonl)
endef
$(foreach t,$(sort $(TEACHER) $(TEACHERS)),$(eval $(call teacher_rule,$(t))))
# $(call teacher_eval,ARCH): the teacher's top-1 on the validation set the students are evaluated on, for
# the tables (evaltrain --eval-only: {"records":N,"top1":...}); its log's is on the set it was trained beside,
# which another VAL_N or VAL_SPLIT since would not match
teacher_eval = $(basename $(call teacher_file,$(1)))-eval-v$(VAL_SPLIT)$(VAL_N).json
define teacher_eval_rule
$(call teacher_eval,$(1)): $(call teacher_file,$(1)) $(VAL)
	$$(call timed,$$@,$$(BIN)/evaltrain -q $$(dev_opt) --eval-only -w $(call teacher_file,$(1)) $$(VAL),$$@)
endef
$(foreach t,$(sort $(TEACHER) $(TEACHERS)),$(eval $(call teacher_eval_rule,$(t))))

# ---- distilled sets shared by several methods ----
# patchsel's -f where FACTOR is not auto
factor_opt = $(if $(filter-out auto,$(FACTOR)),-f $(FACTOR))
# RDED's selection: RDED's distilled set, and the initial patches of SRe2L++ and FADRM(+);
# one rule per teacher architecture.
define patches_rule
$(call patches_of,$(1)): $(TRAIN) $(call teacher_file,$(1))
	@mkdir -p $$(@D)
	$$(call timed_shared,$$@,$$(BIN)/patchsel $$(RUN_OPTS) -w $(call teacher_file,$(1)) --ipc $$(IPC) \
	    -n $$(CANDIDATES) -k $$(CROPS) $$(factor_opt) -s $$(SEED) -o $$@ $$(TRAIN))
endef
$(foreach t,$(sort $(TEACHER) $(TEACHERS)),$(eval $(call patches_rule,$(t))))

# The sanity baseline: whole random real images (no teacher).
$(RANDOM_DIR)/distilled.tsr: $(TRAIN)
	@mkdir -p $(@D)
	$(call timed,$@,$(BIN)/patchsel $(RUN_OPTS) --method random --ipc $(IPC) -s $(SEED) -o $@ $(TRAIN))

# ---- the student protocol, for any DIR/distilled.tsr ----
# $(call student_rule,DIR,ARCH): DIR/eval-$(call eval_id,ARCH).jsonl, a student ARCH from scratch
# trained by evaltrain replaying DIR's FKD labels (JSON lines, the last one the summary). One
# rule per (DIR, ARCH): fkd_rules makes STUDENT's; xarch.mk adds the other architectures'. ARCH's
# commas (efficientnet_b0m:dropout=0,stochastic_depth=0) reach the recipe as $(comma), so that
# they do not split the arguments of timed.
define student_rule
$(1)/eval-$(call eval_id,$(2)).jsonl: $(1)/distilled.tsr $(1)/labels-$(LABEL_ID).tsr $(VAL)
	$$(call timed,$$@,$$(BIN)/evaltrain $$(RUN_OPTS) -m $(subst $(comma),$$(comma),$(2)) --labels $(1)/labels-$(LABEL_ID).tsr \
	    --epochs $$(EPOCHS) --eval-every $$(EVAL_EVERY) -s $$(SEED) $$(STUDENT_OPTS) --val $$(VAL) $$<,$$@)
endef
# $(call fkd_rules,DIR,WEIGHTS...[,COLS]): DIR/labels-$(LABEL_ID).tsr (relabel with the mean of
# WEIGHTS), DIR/eval-$(EVAL_ID).jsonl (student_rule for STUDENT) and DIR/sheet.png (tsexport
# --grid, one row per class, COLS images a row: default IPC).
define fkd_rules
$(1)/labels-$(LABEL_ID).tsr: $(1)/distilled.tsr $(2)
	$$(call timed,$$@,$$(BIN)/relabel $$(RUN_OPTS) $(addprefix -w ,$(2)) --epochs $$(EPOCHS) \
	    --bn $$(RELABEL_BN) -s $$(SEED) $$(RELABEL_OPTS) -o $$@ $$<)
$(call student_rule,$(1),$(STUDENT))
$(1)/sheet.png: $(1)/distilled.tsr
	$$(BIN)/tsexport --grid $$@ --grid-cols $(if $(3),$(3),$$(IPC)) $$<
endef
$(eval $(call fkd_rules,$(RANDOM_DIR),$(TEACHER_W)))

# $(call recover_cmd,OUTPUT,WEIGHTS...,OPTIONS,INPUT): the fused recover, metrics beside OUTPUT
recover_cmd = $(BIN)/recover $(RUN_OPTS) $(addprefix -w ,$(2)) $(3) $(if $(RBATCH),--batch $(RBATCH)) \
    -s $(SEED) $(RECOVER_OPTS) --metrics $(dir $(1))metrics.jsonl --metrics-every $(METRICS_EVERY) \
    -o $(1) $(4)

# $(call summary,EVAL.jsonl): one line from evaltrain's last line (final and best top-1)
summary = tail -n 1 $(1) | sed 's/^/$(subst /,\/,$(1)): /'

.PHONY: teacher patches random help
# make -f pipelines/X.mk print-FADRM_DIR: the value of a variable (paths for scripts and tests)
print-%:
	@printf '%s\n' '$(subst ','\'',$($*))'
# make -f pipelines/X.mk help: X.mk's header (its goals, outputs and own parameters), the shared
# goals, then the shared parameters with the values they have in this make
# shared parameters: those the parameters section above sets with ?= (read when help runs), and BIN
DD_PARAMS = $(shell sed -n '/^\# ---- parameters ----/,/^\# ---- parameter checks/s/^\([A-Z_][A-Z0-9_]*\) ?=.*/\1/p' \
    '$(PIPELINES)/common.mk') BIN
help:
	@sed -n '1,/^[^#]/{/^#/s/^# \{0,1\}//p}' '$(firstword $(MAKEFILE_LIST))'
	@echo; echo 'shared goals (pipelines/common.mk), in every fragment:'
	@echo "  teacher          TEACHER's weights (evaltrain on hard labels: TEACHER_EPOCHS, TEACHER_OPTS)"
	@echo "  patches          RDED's selection with TEACHER (patchsel)"
	@echo "  random           random real images (patchsel --method random), labels, student, sheet"
	@echo "  print-VAR, help  a variable's value; this text"
	@echo; echo 'shared parameters (VAR=VALUE on the command line; pipelines/common.mk), as set now:'
	@$(foreach v,$(DD_PARAMS),printf '  %-16s %s\n' '$(v)' '$(or $(subst ','\'',$($(v))),(empty))';)
	@echo "print-VAR prints one (FADRM_DIR, EVAL_ID, ... too); man 7 ddpipe describes every fragment"
teacher: $(TEACHER_W) $(basename $(TEACHER_W)).jsonl   # the log too: the tables read it
patches: $(PATCHES)
random: $(RANDOM_DIR)/eval-$(EVAL_ID).jsonl $(RANDOM_DIR)/sheet.png
	@$(call summary,$<)

endif
