# pipelines/infer.mk - INFER (ddpipe-method(7) sections 3-5): random real images, ipc_init per class
# (patchsel --method random), then one universal feature compensator per batch and teacher
# (recover --ufc, the teachers of INFER_TEACHERS), static soft labels (relabel --static, the mean
# of the same teachers' logits on each image) and INFER's student protocol (evaltrain on the
# static labels: MixUp 0.8 on images and logits, AdamW 1e-3 with weight decay 0.01 on every
# parameter, plain cosine, batch 64, RandomCrop(pad 4) + flip: evaltrain's static-label
# defaults; the pipeline adds -T 30 (INFER_T; evaltrain's default T is 20) and INFER_EPOCHS = 400).
# That is the reference's ufc_validation/val_static.py. Its val_dyn.py (dynamic labels: the mean
# logits of all M eval-mode teachers, run online on every MixUp batch; AdamW 1e-3, weight decay
# 0.01 on every parameter, cosine to 0, batch 64, RandomCrop(pad 4) + flip, 80 epochs in
# sh/ufc_cifar.sh) is infer-dyn: evaltrain with one --teacher per INFER_TEACHERS.
#
# The budget is the reference's: with M = the number of teachers and C = NCLASSES classes,
# ipc_init = floor(IPC / (M/C + 1)) real images per class, i.e. IPC images' worth once the M
# compensators per ipc index (shared by every class) are counted; the student trains on
# (M+1) * ipc_init images per class. The pipeline takes the exact floor, IPC*C / (M+C) in
# integers; the reference computes int(ipc / (M / C + 1)) in floating point, which for some
# (IPC, M, C) is one less (C=100, M=10, IPC=33: 29 there, 30 here). NCLASSES must be the data's
# class count (checked when the real images are drawn: CIFAR-100 needs NCLASSES=100).
# The reference's CIFAR teachers (ufc_cifar.py): ResNet-18 modified (torchvision's with a 3x3
# stride-1 conv1 and no max pool: the zoo's resnet18m), and MobileNetV2, EfficientNet-B0 and
# ShuffleNetG2 in CIFAR variants of its own: the zoo's mobilenet_v2_cifar, efficientnet_b0_cifar
# and shufflenet_g2_cifar (man 7 ddpipe-models; its pretrained/ checkpoints convert with
# pipelines/torch2safetensors.py), so INFER_TEACHERS="resnet18m mobilenet_v2_cifar
# efficientnet_b0_cifar shufflenet_g2_cifar" is its set (shufflenet_g2_cifar takes 25..56-px
# images). The zoo's mobilenet_v2m, efficientnet_b0m and shufflenet_v2_x1_0m are torchvision's nets
# with a small stem, other networks. Its ImageNet run (ufc_imgnet.py) has M = 3, torchvision's pretrained resnet18,
# mobilenet_v2 and efficientnet_b0 (no ShuffleNet), and brings each initial image to 224 x 224
# with Resize((224, 224)), a squash, where patchsel --method random --res 224 resizes the shorter
# side to 224 and centre-crops. INFER_TEACHERS defaults to FADRM+'s cheaper TEACHERS.
#
#   make -f pipelines/infer.mk [IPC=10 INFER_TEACHERS="convnet3 resnet18m" INFER_ITERS= SEED=0 ...]
#     infer           the compensated set + static labels + INFER's student + contact sheet
#     infer-distill   the compensated set only
#     infer-fkd       the same images under the common FKD protocol (relabel + evaltrain --labels)
#     infer-dyn       the same images under val_dyn.py's dynamic labels (INFER_DYN_EPOCHS, 80)
#     infer-teachers  every teacher of INFER_TEACHERS
#   out/fmnist/random/ipc8-s0.tsr                 the real images (ipc_init 8 = IPC 10, M 2, C 10)
#   out/fmnist/convnet3-e3-s0+resnet18m-e3-s0/infer/ipc10-m2-s0/
#       distilled.tsr metrics.jsonl static.tsr static-convnet3-e400-s0.jsonl sheet.png
# INFER_ITERS empty: recover --ufc's default (1000 steps below 128 px, 2000 from 128, as the
# reference); RBATCH (classes per batch, i.e. per compensator) as for recover. INFER_STUDENT_OPTS:
# more evaltrain options for the students of infer and infer-dyn (infer-fkd's take STUDENT_OPTS),
# not in the file names: give them one with STUDENT_TAG.
# The shell pipeline:
#   patchsel --method random --ipc 8 train.tsr | recover --ufc -w t1.safetensors -w t2.safetensors \
#     | relabel --static -w t1.safetensors -w t2.safetensors > infer.tsr
#   evaltrain -m convnet3 -T 30 --epochs 400 --val test.tsr infer.tsr
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk

ifndef DDPIPE_INFER_MK
DDPIPE_INFER_MK := 1
INFER_TEACHERS ?= $(TEACHERS)
NCLASSES ?= 10#              classes of DATASET (INFER's budget rule needs it)
INFER_ITERS ?=
INFER_EPOCHS ?= 400
INFER_T ?= 30
INFER_STUDENT_OPTS ?=
INFER_DYN_EPOCHS ?= 80
$(foreach v,NCLASSES INFER_EPOCHS INFER_DYN_EPOCHS,$(call dd_whole,$(v)))
$(call dd_whole_opt,INFER_ITERS)
$(call dd_number,INFER_T)
INFER_M := $(words $(INFER_TEACHERS))
IPC_INIT := $(shell echo $$(( $(IPC) * $(NCLASSES) / ($(INFER_M) + $(NCLASSES)) )))
INFER_W := $(foreach t,$(INFER_TEACHERS),$(call teacher_file,$(t)))
INFER_TD := $(D)/$(subst $(space),+,$(foreach t,$(INFER_TEACHERS),$(call teacher_id,$(t))))
INFER_DIR := $(INFER_TD)/infer/ipc$(IPC)-m$(INFER_M)$(if $(INFER_ITERS),-it$(INFER_ITERS))$(RBATCH_ID)-s$(SEED)$(RECOVER_TAG)
# the random real images: named by what makes them only (no teacher, no recover setting)
INFER_INIT := $(D)/random/ipc$(IPC_INIT)$(if $(TRAIN_N),-n$(TRAIN_N))-s$(SEED).tsr
INFER_DYN_EVAL := $(INFER_DIR)/dyn-$(call ddid,$(STUDENT))-e$(INFER_DYN_EPOCHS)$(if $(filter-out 30,$(INFER_T)),-T$(INFER_T))-s$(SEED)$(STUDENT_TAG)$(VAL_ID).jsonl
INFER_EVAL := $(INFER_DIR)/static-$(call ddid,$(STUDENT))-e$(INFER_EPOCHS)$(if $(filter-out 30,$(INFER_T)),-T$(INFER_T))-s$(SEED)$(STUDENT_TAG)$(VAL_ID).jsonl

ifeq ($(IPC_INIT),0)
$(error INFER: IPC=$(IPC) with $(INFER_M) teachers and NCLASSES=$(NCLASSES) leaves no real image per class)
endif

# NCLASSES against the data, where the real images are drawn and again where they are used (they may have
# been drawn before, by a run with the right NCLASSES: the budget of this one would still be wrong)
infer_check_nclasses = @k=$$($(BIN)/tsinfo $(TRAIN) | sed -n 's/^classes: //p'); [ "$$k" = "$(NCLASSES)" ] || \
    { echo "infer.mk: $(TRAIN) has $$k classes, not NCLASSES=$(NCLASSES): INFER's budget counts them (set NCLASSES=$$k)" >&2; exit 2; }
$(INFER_INIT): $(TRAIN)
	$(infer_check_nclasses)
	@mkdir -p $(@D)
	$(call timed,$@,$(BIN)/patchsel $(RUN_OPTS) --method random --ipc $(IPC_INIT) -s $(SEED) -o $@ $(TRAIN))
$(INFER_DIR)/distilled.tsr $(INFER_DIR)/metrics.jsonl &: $(INFER_INIT) $(INFER_W) $(TRAIN)
	$(infer_check_nclasses)
	@mkdir -p $(@D)
	$(call timed,$(INFER_DIR)/distilled.tsr,$(call recover_cmd,$(INFER_DIR)/distilled.tsr,$(INFER_W),\
	    --ufc $(if $(INFER_ITERS),--iters $(INFER_ITERS)),$(INFER_INIT)))
$(INFER_DIR)/static.tsr: $(INFER_DIR)/distilled.tsr $(INFER_W)
	$(call timed,$@,$(BIN)/relabel $(RUN_OPTS) --static $(addprefix -w ,$(INFER_W)) -o $@ $<)
$(INFER_EVAL): $(INFER_DIR)/static.tsr $(VAL)
	$(call timed,$@,$(BIN)/evaltrain $(RUN_OPTS) -m $(STUDENT) -T $(INFER_T) --epochs $(INFER_EPOCHS) \
	    --eval-every $(EVAL_EVERY) -s $(SEED) $(INFER_STUDENT_OPTS) --val $(VAL) $<,$@)
# val_dyn.py: the teachers' mean logits online on every MixUp batch (evaltrain's --teacher
# defaults are RDED's, so each of val_dyn's settings is given)
$(INFER_DYN_EVAL): $(INFER_DIR)/distilled.tsr $(INFER_W) $(VAL)
	$(call timed,$@,$(BIN)/evaltrain $(RUN_OPTS) -m $(STUDENT) $(addprefix --teacher ,$(INFER_W)) --mixup 0.8 \
	    --crop-pad 4 --shuffle-patches 1 -T $(INFER_T) --batch 64 --micro 1 --lr 0.001 --wd 0.01 --decay all \
	    --eta 1 --bn-momentum 0.1 --epochs $(INFER_DYN_EPOCHS) --eval-every $(EVAL_EVERY) -s $(SEED) \
	    $(INFER_STUDENT_OPTS) --val $(VAL) $<,$@)
# the FKD protocol of the other methods, and the contact sheet (one row per class: its inputs,
# then their compensated copies)
$(eval $(call fkd_rules,$(INFER_DIR),$(INFER_W),$(shell echo $$(( ($(INFER_M) + 1) * $(IPC_INIT) )))))
# teachers that are in neither TEACHER nor TEACHERS (common.mk made the rules of those)
$(foreach t,$(filter-out $(sort $(TEACHER) $(TEACHERS)),$(sort $(INFER_TEACHERS))),$(eval $(call teacher_rule,$(t))))

.PHONY: infer infer-distill infer-fkd infer-dyn infer-teachers
infer-teachers: $(INFER_W)
infer-distill: $(INFER_DIR)/distilled.tsr
infer: $(INFER_EVAL) $(INFER_DIR)/sheet.png
	@$(call summary,$<)
infer-fkd: $(INFER_DIR)/eval-$(EVAL_ID).jsonl $(INFER_DIR)/sheet.png
	@$(call summary,$<)
infer-dyn: $(INFER_DYN_EVAL) $(INFER_DIR)/sheet.png
	@$(call summary,$<)
.DEFAULT_GOAL := infer
endif
