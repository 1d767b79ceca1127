# pipelines/rded.mk - RDED (ddpipe-method(7) sections 1 and 4): the teacher's most realistic random crops
# per class (patchsel), evaluated with RDED's own student protocol: an eval-mode teacher labels every
# augmented batch online (evaltrain --teacher; ShufflePatches(f) -> RandomResizedCrop(1/f..1) -> flip,
# CutMix, T = 20, AdamW, eta 2, RDED's batch, lr and BN momentum: evaltrain's --teacher defaults, f
# the factor patchsel recorded unless FACTOR is set). No label storage.
#
#   make -f pipelines/rded.mk [IPC=10 SEED=0 TEACHER=convnet3 EPOCHS=300 FACTOR=auto ...]
#     rded          patchsel -> evaltrain --teacher (RDED's protocol) + contact sheet
#     rded-fkd      the same images under the common FKD protocol (relabel + evaltrain --labels)
#     rded-distill  the distilled set only (patchsel: common.mk's patches)
#   out/fmnist/convnet3-e3-s0/rded/ipc10-n300-c5-fauto-s0/{distilled.tsr,online-*.jsonl,sheet.png}
# RDED_STUDENT_OPTS: more evaltrain options for rded's student (rded-fkd's take STUDENT_OPTS), not in
# the file names: give them one with STUDENT_TAG.
# The shell pipeline (man 7 ddpipe):
#   patchsel -w teacher.safetensors --ipc 10 train.tsr > rded.tsr
#   evaltrain -m convnet3 --teacher teacher.safetensors --epochs 300 --val test.tsr rded.tsr
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk

ifndef DDPIPE_RDED_MK
DDPIPE_RDED_MK := 1
RDED_STUDENT_OPTS ?=
ONLINE_ID := $(call ddid,$(STUDENT))-e$(EPOCHS)-f$(FACTOR)-s$(SEED)$(STUDENT_TAG)$(VAL_ID)
RDED_ONLINE := $(RDED_DIR)/online-$(ONLINE_ID).jsonl

$(RDED_ONLINE): $(PATCHES) $(TEACHER_W) $(VAL)
	$(call timed,$@,$(BIN)/evaltrain $(RUN_OPTS) -m $(STUDENT) --teacher $(TEACHER_W) \
	    $(if $(filter-out auto,$(FACTOR)),--shuffle-patches $(FACTOR)) --epochs $(EPOCHS) \
	    --eval-every $(EVAL_EVERY) -s $(SEED) \
	    $(RDED_STUDENT_OPTS) --val $(VAL) $<,$@)
$(eval $(call fkd_rules,$(RDED_DIR),$(TEACHER_W)))

.PHONY: rded rded-fkd rded-distill
rded-distill: $(PATCHES)
rded: $(RDED_ONLINE) $(RDED_DIR)/sheet.png
	@$(call summary,$<)
rded-fkd: $(RDED_DIR)/eval-$(EVAL_ID).jsonl $(RDED_DIR)/sheet.png
	@$(call summary,$<)
.DEFAULT_GOAL := rded
endif
