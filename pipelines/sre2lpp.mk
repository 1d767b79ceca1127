# pipelines/sre2lpp.mk - SRe2L++ (ddpipe-method(7) section 2): the recover loop started from RDED's patches
# (patchsel), no residual (--arc 0), one teacher, the FADRM paper's settings otherwise (ITERS = 2000,
# first-BN multiplier 10); then the FKD student protocol (relabel + evaltrain --labels).
#
#   make -f pipelines/sre2lpp.mk [IPC=10 ITERS=2000 SEED=0 TEACHER=convnet3 EPOCHS=300 ...]
#     sre2lpp          recover from RDED's patches + labels + student + contact sheet
#     sre2lpp-distill  the distilled set only
#   out/fmnist/convnet3-e3-s0/sre2lpp/ipc10-n300-c5-fauto-it2000-s0/{distilled.tsr,metrics.jsonl,...}
# The shell pipeline:
#   patchsel -w teacher.safetensors --ipc 10 train.tsr > init.tsr
#   recover -w teacher.safetensors --iters 2000 --arc 0 init.tsr > sre2lpp.tsr
#   relabel -w teacher.safetensors --epochs 300 sre2lpp.tsr > labels.tsr
#   evaltrain -m convnet3 --labels labels.tsr --epochs 300 --val test.tsr sre2lpp.tsr
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk

ifndef DDPIPE_SRE2LPP_MK
DDPIPE_SRE2LPP_MK := 1
SRE2LPP_DIR := $(TD)/sre2lpp/$(PATCH_PARAMS)-it$(ITERS)$(SIZES_ID)$(RBATCH_ID)-s$(SEED)$(RECOVER_TAG)

$(SRE2LPP_DIR)/distilled.tsr $(SRE2LPP_DIR)/metrics.jsonl &: $(PATCHES) $(TEACHER_W)
	@mkdir -p $(@D)
	$(call timed,$(SRE2LPP_DIR)/distilled.tsr,$(call recover_cmd,$(SRE2LPP_DIR)/distilled.tsr,$(TEACHER_W),\
	    --iters $(ITERS) --arc 0 $(if $(SIZES),--sizes $(SIZES)),$(PATCHES)))
$(eval $(call fkd_rules,$(SRE2LPP_DIR),$(TEACHER_W)))

.PHONY: sre2lpp sre2lpp-distill
sre2lpp-distill: $(SRE2LPP_DIR)/distilled.tsr
sre2lpp: $(SRE2LPP_DIR)/eval-$(EVAL_ID).jsonl $(SRE2LPP_DIR)/sheet.png
	@$(call summary,$<)
.DEFAULT_GOAL := sre2lpp
endif
