# pipelines/fadrmplus.mk - FADRM+ (ddpipe-method(7) section 2): FADRM with several teachers used round
# robin by step (recover -w A -w B ...: step t uses teacher t mod M alone, with its own BN
# statistics), soft labels the mean of the same teachers' logits (relabel -w A -w B ...).
# The reference teachers are ResNet-18, DenseNet-121, ShuffleNetV2 and MobileNetV2 (ImageNet-1k
# IPC 1: AlexNet for DenseNet-121), in an order that differs between its scripts (man 1 recover);
# the order of TEACHERS is the order used. The zoo has the four as torchvision's nets, which FADRM
# itself uses for 224-px data; for 28..64-px data it has their small-stem variants
# (TEACHERS="resnet18m densenet121m shufflenet_v2_x1_0m mobilenet_v2m", as xarch.mk uses them),
# which are not FADRM's own CIFAR and Tiny-ImageNet DenseNet121, MobileNetV2 and ShuffleNetV2
# (its ShuffleNetV2 is the x0.5 net: man 7 ddpipe-models).
# TEACHERS defaults to the cheaper "convnet3 resnet18m" (common.mk). The teachers must share the
# input size, mean/std and class list. Every teacher is trained by common.mk's rule.
# The initial patches are RDED's selection with the FIRST teacher of TEACHERS.
#
#   make -f pipelines/fadrmplus.mk [TEACHERS="convnet3 resnet18m" ITERS=2000 ARC=3 ALPHA=0.5 ...]
#     fadrmplus           recover round robin over TEACHERS + their mean labels + student + sheet
#     fadrmplus-distill   the distilled set only
#     fadrmplus-teachers  every teacher of TEACHERS
#   out/fmnist/convnet3-e3-s0+resnet18m-e3-s0/fadrmplus/ipc10-n300-c5-fauto-it2000-k3-a0.5-s0/...
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk
$(dd_check_arc)

ifndef DDPIPE_FADRMPLUS_MK
DDPIPE_FADRMPLUS_MK := 1
PLUS_W := $(foreach t,$(TEACHERS),$(call teacher_file,$(t)))
PLUS_TD := $(D)/$(subst $(space),+,$(foreach t,$(TEACHERS),$(call teacher_id,$(t))))
PLUS_PATCHES := $(call patches_of,$(firstword $(TEACHERS)))
PLUS_DIR := $(PLUS_TD)/fadrmplus/$(PATCH_PARAMS)-it$(ITERS)-k$(ARC)-a$(ALPHA_ID)$(SIZES_ID)$(RBATCH_ID)-s$(SEED)$(RECOVER_TAG)

$(PLUS_DIR)/distilled.tsr $(PLUS_DIR)/metrics.jsonl &: $(PLUS_PATCHES) $(PLUS_W)
	@mkdir -p $(@D)
	$(call timed,$(PLUS_DIR)/distilled.tsr,$(call recover_cmd,$(PLUS_DIR)/distilled.tsr,$(PLUS_W),\
	    --iters $(ITERS) --arc $(ARC) $(if $(filter-out 0,$(ARC)),--alpha $(ALPHA)) $(if $(SIZES),--sizes $(SIZES)),\
	    $(PLUS_PATCHES)))
$(eval $(call fkd_rules,$(PLUS_DIR),$(PLUS_W)))

.PHONY: fadrmplus fadrmplus-distill fadrmplus-teachers
fadrmplus-teachers: $(PLUS_W)
fadrmplus-distill: $(PLUS_DIR)/distilled.tsr
fadrmplus: $(PLUS_DIR)/eval-$(EVAL_ID).jsonl $(PLUS_DIR)/sheet.png
	@$(call summary,$<)
.DEFAULT_GOAL := fadrmplus
endif
