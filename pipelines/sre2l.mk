# pipelines/sre2l.mk - SRe2L, the original (ddpipe-method(7) section 2): recover from N(0,1) noise, no
# residual (--arc 0), one teacher, SRe2L's own settings as its code runs them: 1000 iterations,
# lr 0.25, r_bn 0.01, first-BN multiplier 10 (the argparse default of data_synthesis.py and
# recover_cifar.py, which no script of SRe2L's overrides; ddpipe-method(7) says 1), and, for small images,
# the augmentation of its recover_cifar.py: the roll only (SRE2L_AUG=full for 224-px data, its
# ImageNet data_synthesis.py: RandomResizedCrop + flip + roll); then the FKD student protocol
# (relabel + evaltrain --labels), not SRe2L's own (an eval-mode teacher on the whole batch).
#
#   make -f pipelines/sre2l.mk [IPC=10 SRE2L_ITERS=1000 SRE2L_FIRST_BN=10 SRE2L_AUG=roll SEED=0 ...]
#     sre2l          recover from noise + labels + student + contact sheet
#     sre2l-distill  the distilled set only
#   out/fmnist/convnet3-e3-s0/sre2l/ipc10-it1000-m10-s0/{distilled.tsr,metrics.jsonl,labels-*,eval-*,sheet.png}
# SRE2L_ITERS: recover's iterations here (ITERS is the other methods'); SRE2L_FIRST_BN: its first-BN
# multiplier (--first-bn-mult); SRE2L_AUG: its augmentation (--aug full, roll or none).
# The shell pipeline:
#   recover -w teacher.safetensors --init noise --ipc 10 --arc 0 --iters 1000 --aug roll > sre2l.tsr
#   relabel -w teacher.safetensors --epochs 300 sre2l.tsr > labels.tsr
#   evaltrain -m convnet3 --labels labels.tsr --epochs 300 --val test.tsr sre2l.tsr
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk

ifndef DDPIPE_SRE2L_MK
DDPIPE_SRE2L_MK := 1
SRE2L_ITERS ?= 1000
SRE2L_FIRST_BN ?= 10
SRE2L_AUG ?= roll
$(call dd_whole,SRE2L_ITERS)
$(call dd_number,SRE2L_FIRST_BN)
$(call dd_oneof,SRE2L_AUG,full roll none)
SRE2L_DIR := $(TD)/sre2l/ipc$(IPC)-it$(SRE2L_ITERS)-m$(call dd_num_id,$(SRE2L_FIRST_BN))$(if $(filter-out roll,$(SRE2L_AUG)),-aug$(SRE2L_AUG))$(SIZES_ID)$(RBATCH_ID)-s$(SEED)$(RECOVER_TAG)

$(SRE2L_DIR)/distilled.tsr $(SRE2L_DIR)/metrics.jsonl &: $(TEACHER_W)
	@mkdir -p $(@D)
	$(call timed,$(SRE2L_DIR)/distilled.tsr,$(call recover_cmd,$(SRE2L_DIR)/distilled.tsr,$(TEACHER_W),\
	    --init noise --ipc $(IPC) --arc 0 --iters $(SRE2L_ITERS) --first-bn-mult $(SRE2L_FIRST_BN) --aug $(SRE2L_AUG) \
	    $(if $(SIZES),--sizes $(SIZES)),) </dev/null)
$(eval $(call fkd_rules,$(SRE2L_DIR),$(TEACHER_W)))

.PHONY: sre2l sre2l-distill
sre2l-distill: $(SRE2L_DIR)/distilled.tsr
sre2l: $(SRE2L_DIR)/eval-$(EVAL_ID).jsonl $(SRE2L_DIR)/sheet.png
	@$(call summary,$<)
.DEFAULT_GOAL := sre2l
endif
