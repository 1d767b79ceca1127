# pipelines/xarch.mk - `make xarch`: the cross-architecture table (FADRM Table 2, RDED's cross-
# architecture results) on Fashion-MNIST. The top-level Makefile builds the programs and runs:
# make -f pipelines/xarch.mk BIN=<abs build/bin>
#
# Distils IPC images per class four ways - RDED (patchsel, rded.mk), SRe2L++ (recover from RDED's
# patches, no residual, sre2lpp.mk), FADRM (recover with ARC residual merges, fadrm.mk), all with
# the one teacher TEACHER, and FADRM+ (recover round robin over TEACHERS, relabel averaging them,
# fadrmplus.mk) - and trains every architecture of STUDENTS from scratch on every distilled set
# with ONE protocol: FKD soft labels (relabel, per method, shared by the students) replayed by
# evaltrain --labels. Prints a table: rows = STUDENTS, columns = RDED, SRe2L++, FADRM, FADRM+,
# cells = top-1 % on the VAL_N test images, final (best over the evaluations), with the settings
# and the teachers' accuracies above it (pipelines/xarch-table.sh).
#
# Demo scale (the default): the first TRAIN_N = 1000 training and VAL_N = 500 test images; IPC 10;
# teachers resnet18m (TEACHER) and the zoo's small-stem variants of the four FADRM+ teacher
# architectures (TEACHERS = resnet18m mobilenet_v2m shufflenet_v2_x1_0m densenet121m; resnet18m is
# shared; not FADRM's own CIFAR DenseNet121, MobileNetV2 and ShuffleNetV2: man 7 ddpipe-models), each
# TEACHER_EPOCHS = 3 epochs of evaltrain's hard-label SGD at batch 32 (TEACHER_TAG -b32); patchsel
# from CANDIDATES = 50 images per class; recover ITERS = 40 steps (FADRM and FADRM+: 4 stages of
# 10, 3 merges, alpha 0.5); students EPOCHS = 20 epochs of labels and training, evaluated every
# EVAL_EVERY = 10. 19 min 50 s in one run on 2 CPU cores (make -j2, one thread per program;
# estimated first, from per-stage timings on 100..500 images, at about 4200 CPU seconds: teachers
# 700, patchsel 45, recover 430, relabel 300, students 2400 + their evaluations 300; densenet121m
# is a third of it). --eval-batch 25 (TEACHER_OPTS, STUDENT_OPTS) only bounds memory: evaluating densenet121m
# at evaltrain's default batch of 256 takes several GB.
# Every parameter of common.mk can be set (make xarch EPOCHS=100 STUDENTS="convnet3 resnet18m");
# outputs go under OUT (default xarch/); file names encode the parameters as in common.mk, one
# eval-ARCH-*.jsonl per student in each method's directory, so adding a student to STUDENTS
# trains only that student, and a re-run only prints the table again.
#
#   make -f pipelines/xarch.mk [STUDENTS="convnet3 resnet18m ..." TEACHERS="..." JOBS=N ...]
#     xarch        xarch-all (make -jJOBS), then xarch-table
#     xarch-all    the runs only: every student's evaluation on every distilled set
#     xarch-table  the table (kept as print-XA_TABLE), after making what is missing
#   and the goals of rded.mk, sre2lpp.mk, fadrm.mk and fadrmplus.mk, at these settings.
# JOBS (default: nproc) is the parallelism: make -jJOBS over the stages, every program on one
# thread (THREADS=1, TEACHER_THREADS=1: several teachers train at once).
THIS := $(lastword $(MAKEFILE_LIST))
OUT = xarch
TRAIN_N = 1000
VAL_N = 500
IPC = 10
SEED = 0
TEACHER = resnet18m
TEACHERS = resnet18m mobilenet_v2m shufflenet_v2_x1_0m densenet121m
TEACHER_EPOCHS = 3
TEACHER_OPTS = --batch 32 --eval-batch 25
TEACHER_TAG = -b32
CANDIDATES = 50
ITERS = 40
EPOCHS = 20
EVAL_EVERY = 10
STUDENT = convnet3
STUDENT_OPTS = --eval-batch 25
STUDENTS ?= convnet3 resnet18m mobilenet_v2m shufflenet_v2_x1_0m densenet121m efficientnet_b0m
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# programs run one thread each, JOBS of them at a time (the teachers too: several train at once)
THREADS = 1
TEACHER_THREADS = 1

include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))rded.mk
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))sre2lpp.mk
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))fadrm.mk
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))fadrmplus.mk
$(call dd_whole,JOBS)

XA_T0 := $(shell date +%s.%N)
XA_DIRS := $(RDED_DIR) $(SRE2LPP_DIR) $(FADRM_DIR) $(PLUS_DIR)
# fkd_rules made STUDENT's evaluation in each directory; the other students' here
$(foreach d,$(XA_DIRS),$(foreach s,$(filter-out $(STUDENT),$(sort $(STUDENTS))),\
    $(eval $(call student_rule,$(d),$(s)))))
XA_EVALS := $(foreach d,$(XA_DIRS),$(foreach s,$(STUDENTS),$(d)/eval-$(call eval_id,$(s)).jsonl))
# the table of one configuration: its evaluations and FADRM+'s teachers name it (a checksum of
# their paths: TRAIN_N, TEACHER, TEACHERS, STUDENTS and the methods' parameters are all in them)
XA_TABLE := $(D)/xarch-ipc$(IPC)-it$(ITERS)-e$(EPOCHS)-s$(SEED)-$(shell printf '%s\n' $(XA_EVALS) $(PLUS_W) | cksum | cut -d' ' -f1).txt
XA_TEACHERS := $(TEACHER) $(filter-out $(TEACHER),$(TEACHERS))

.PHONY: xarch xarch-all xarch-table
xarch:
	@echo "xarch: Fashion-MNIST, IPC $(IPC), $(words $(STUDENTS)) students x 4 methods: make -j$(JOBS), outputs under $(OUT)/"
	@$(MAKE) --no-print-directory -f $(THIS) -j$(JOBS) xarch-all
	@$(MAKE) --no-print-directory -f $(THIS) xarch-table XA_T0=$(XA_T0)
# the teachers' logs too (the table reads them; a log lost is remade with its teacher)
xarch-all: $(XA_EVALS) $(foreach t,$(XA_TEACHERS),$(basename $(call teacher_file,$(t))).jsonl $(call teacher_eval,$(t)))
xarch-table: $(XA_EVALS) $(foreach t,$(XA_TEACHERS),$(call teacher_eval,$(t)))
	@s=0; XA_T0=$(XA_T0) BIN=$(BIN) TRAIN=$(TRAIN) VAL=$(VAL) IPC=$(IPC) ITERS=$(ITERS) ARC=$(ARC) ALPHA=$(ALPHA) \
	EPOCHS=$(EPOCHS) EVAL_EVERY=$(EVAL_EVERY) TEACHER_EPOCHS=$(TEACHER_EPOCHS) TEACHER_OPTS='$(TEACHER_OPTS)' \
	RELABEL_BN=$(RELABEL_BN) SEED=$(SEED) TEACHER=$(TEACHER) TEACHERS='$(TEACHERS)' \
	TEACHER_LOGS='$(foreach t,$(XA_TEACHERS),$(basename $(call teacher_file,$(t))).jsonl)' VAL_EVAL_ID=v$(VAL_SPLIT)$(VAL_N) \
	STUDENTS='$(STUDENTS)' STUDENT_IDS='$(foreach s,$(STUDENTS),$(call eval_id,$(s)))' LABEL_ID=$(LABEL_ID) \
	DIR_RDED=$(RDED_DIR) DIR_SRE2LPP=$(SRE2LPP_DIR) DIR_FADRM=$(FADRM_DIR) DIR_PLUS=$(PLUS_DIR) PLUS_PATCHES=$(PLUS_PATCHES) \
	bash $(PIPELINES)/xarch-table.sh > $(XA_TABLE).tmp.$$$$ || s=$$?; cat $(XA_TABLE).tmp.$$$$; \
	if [ $$s = 0 ]; then mv $(XA_TABLE).tmp.$$$$ $(XA_TABLE); echo "table: $(XA_TABLE)"; else rm -f $(XA_TABLE).tmp.$$$$; exit $$s; fi

.DEFAULT_GOAL := xarch
