# pipelines/sharded.mk - FADRM, class-sharded: the training set is cut into SHARDS slices of
# consecutive classes (tscat --classes), each slice goes through patchsel and recover in its own
# process (make -j runs them in parallel, or on several machines sharing OUT), and the distilled
# shards are concatenated with tscat in class order. On CPU with the same seed the result must
# equal the unsharded run byte for byte (tscmp --exact), provided the shards are aligned with
# recover's class batches: recover's BN-statistics loss is computed over a batch of one image per
# class for B consecutive classes, so both runs use --batch B = the shard's class count
# (NCLASSES / SHARDS, which must divide). With the default B (all 10 classes of Fashion-MNIST in
# one batch) a sharded run is a different, smaller-batch run.
#
#   make -j -f pipelines/sharded.mk [SHARDS=2 NCLASSES=10 IPC=10 ITERS=2000 ARC=3 ALPHA=0.5 ...]
#     sharded          the merged sharded set, its labels, student and contact sheet
#     sharded-distill  the merged sharded set only
#     sharded-check    patches.ok: the shards' patchsel output == the unsharded patchsel output
#                      equal.ok:   the merged distilled set == recover --batch B on all classes
#   out/fmnist/convnet3-e3-s0/fadrm-sharded/ipc10-n300-c5-fauto-it2000-k3-a0.5-x2of10-s0/
#       c0-4/{patches.tsr,distilled.tsr}  c5-9/...  distilled.tsr  unsharded/distilled.tsr  *.ok
# As a shell pipeline (2 shards):
#   for c in 0,1,2,3,4 5,6,7,8,9; do
#     tscat --classes $c train.tsr | patchsel -w t.safetensors --ipc 10 \
#       | recover -w t.safetensors --batch 5 > part-$c.tsr &
#   done; wait; tscat part-0,1,2,3,4.tsr part-5,6,7,8,9.tsr > distilled.tsr
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk
$(dd_check_arc)
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))fadrm.mk

ifndef DDPIPE_SHARDED_MK
DDPIPE_SHARDED_MK := 1
SHARDS ?= 2
NCLASSES ?= 10
$(foreach v,SHARDS NCLASSES,$(call dd_whole,$(v)))
ifneq ($(shell echo $$(( $(NCLASSES) % $(SHARDS) ))),0)
$(error sharded.mk: SHARDS=$(SHARDS) does not divide NCLASSES=$(NCLASSES): shards would not align with recover's class batches)
endif
SHARD_B := $(shell echo $$(( $(NCLASSES) / $(SHARDS) )))
# one word per shard: its classes, comma-separated (0,1,2,3,4 5,6,7,8,9)
SHARD_SETS := $(shell awk -v K=$(NCLASSES) -v S=$(SHARDS) 'BEGIN { for (s = 0; s < S; s++) { \
    l = ""; for (c = s * K / S; c < (s + 1) * K / S; c++) l = l (l == "" ? "" : ",") c; printf "%s ", l } }')
shard_name = c$(firstword $(subst $(comma), ,$(1)))-$(lastword $(subst $(comma), ,$(1)))
SH_DIR := $(TD)/fadrm-sharded/$(PATCH_PARAMS)-it$(ITERS)-k$(ARC)-a$(ALPHA_ID)$(SIZES_ID)-x$(SHARDS)of$(NCLASSES)-s$(SEED)$(RECOVER_TAG)
SH_PARTS := $(foreach s,$(SHARD_SETS),$(SH_DIR)/$(call shard_name,$(s))/distilled.tsr)
SH_PATCHES := $(foreach s,$(SHARD_SETS),$(SH_DIR)/$(call shard_name,$(s))/patches.tsr)
slice = $(basename $(TRAIN))-$(call shard_name,$(1)).tsr

# $(call shard_rules,CLASSES): the slice of the training set, its patches, its recovered images
define shard_rules
$(call slice,$(1)): $(TRAIN)
	@k=$$$$($$(BIN)/tsinfo $$< | sed -n 's/^classes: //p'); [ "$$$$k" = "$$(NCLASSES)" ] || \
	    { echo "sharded.mk: $$< has $$$$k classes, not NCLASSES=$$(NCLASSES) (set NCLASSES=$$$$k)" >&2; exit 2; }
	$$(BIN)/tscat -q --classes $(1) -o $$@ $$<
$(SH_DIR)/$(call shard_name,$(1))/patches.tsr: $(call slice,$(1)) $(TEACHER_W)
	@mkdir -p $$(@D)
	$$(call timed,$$@,$$(BIN)/patchsel $$(RUN_OPTS) -w $$(TEACHER_W) --ipc $$(IPC) -n $$(CANDIDATES) \
	    -k $$(CROPS) $$(factor_opt) -s $$(SEED) -o $$@ $$<)
$(SH_DIR)/$(call shard_name,$(1))/distilled.tsr: $(SH_DIR)/$(call shard_name,$(1))/patches.tsr $(TEACHER_W)
	$$(call timed,$$@,$$(BIN)/recover $$(RUN_OPTS) -w $$(TEACHER_W) $$(fadrm_opts) --batch $$(SHARD_B) \
	    -s $$(SEED) $$(RECOVER_OPTS) -o $$@ $$<)
endef
$(foreach s,$(SHARD_SETS),$(eval $(call shard_rules,$(s))))

$(SH_DIR)/distilled.tsr: $(SH_PARTS)
	$(BIN)/tscat -q -o $@ $^
# the unsharded run: fadrm.mk's recover with RBATCH = the shard's class count
$(SH_DIR)/unsharded/distilled.tsr: $(PATCHES) $(TEACHER_W)
	@mkdir -p $(@D)
	$(call timed,$@,$(BIN)/recover $(RUN_OPTS) -w $(TEACHER_W) $(fadrm_opts) --batch $(SHARD_B) \
	    -s $(SEED) $(RECOVER_OPTS) -o $@ $(PATCHES))
$(SH_DIR)/patches.ok: $(SH_PATCHES) $(PATCHES)
	$(BIN)/tscat -q $(SH_PATCHES) | $(BIN)/tscmp --exact - $(PATCHES)
	echo "sharded patchsel == unsharded patchsel (tscmp --exact)" > $@
$(SH_DIR)/equal.ok: $(SH_DIR)/distilled.tsr $(SH_DIR)/unsharded/distilled.tsr
	$(BIN)/tscmp --exact $^
	echo "sharded == unsharded, $(SHARDS) shards, --batch $(SHARD_B) (tscmp --exact)" > $@
$(eval $(call fkd_rules,$(SH_DIR),$(TEACHER_W)))

.PHONY: sharded sharded-distill sharded-check
sharded-distill: $(SH_DIR)/distilled.tsr
sharded: $(SH_DIR)/eval-$(EVAL_ID).jsonl $(SH_DIR)/sheet.png
	@$(call summary,$<)
sharded-check: $(SH_DIR)/patches.ok $(SH_DIR)/equal.ok
	@cat $^
.DEFAULT_GOAL := sharded
endif
