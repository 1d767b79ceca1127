# pipelines/fadrm.mk - FADRM (ddpipe-method(7) section 2): RDED's patches (patchsel), then recover with
# ARC = 3 residual merges (alpha = 0.5) over ITERS = 2000 steps, 4 stages of 500, Adam re-created
# per stage, one cosine over the whole budget; multi-resolution with SIZES (224-px data:
# 200,224,200,224, recover's default there); then the FKD student protocol (relabel with the
# teacher's batch-specific soft labels + evaltrain --labels).
#
#   make -f pipelines/fadrm.mk [IPC=10 ITERS=2000 ARC=3 ALPHA=0.5 SIZES= SEED=0 TEACHER=convnet3 ...]
#     fadrm          the fused run (recover --iters --arc --alpha) + labels + student + contact sheet
#     fadrm-distill  the distilled set only
#     fadrm-seam     the same schedule as a pipe of recover --steps pieces and arcmerge (and resample
#                    with SIZES), compared with the fused run by tscmp --exact (CPU: equal bytes)
#   out/fmnist/convnet3-e3-s0/fadrm/ipc10-n300-c5-fauto-it2000-k3-a0.5-s0/
#       distilled.tsr metrics.jsonl labels-e300-batch-s0.tsr eval-convnet3-e300-s0.jsonl sheet.png
#       piped.tsr seam.ok
# Changing ALPHA (or ITERS, ARC, SIZES) makes a new directory: recover onward re-runs, the teacher
# and patchsel (named without them) do not.
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk
$(dd_check_arc)

ifndef DDPIPE_FADRM_MK
DDPIPE_FADRM_MK := 1
FADRM_ID = $(PATCH_PARAMS)-it$(ITERS)-k$(ARC)$(if $(filter-out 0,$(ARC)),-a$(ALPHA_ID))$(SIZES_ID)$(RBATCH_ID)-s$(SEED)$(RECOVER_TAG)
FADRM_DIR := $(TD)/fadrm/$(FADRM_ID)
# --alpha only where something merges (ARC=0, SRe2L++'s schedule, is a usage error with it)
fadrm_opts = --iters $(ITERS) --arc $(ARC) $(if $(filter-out 0,$(ARC)),--alpha $(ALPHA)) $(if $(SIZES),--sizes $(SIZES))

$(FADRM_DIR)/distilled.tsr $(FADRM_DIR)/metrics.jsonl &: $(PATCHES) $(TEACHER_W)
	@mkdir -p $(@D)
	$(call timed,$(FADRM_DIR)/distilled.tsr,$(call recover_cmd,$(FADRM_DIR)/distilled.tsr,$(TEACHER_W),\
	    $(fadrm_opts),$(PATCHES)))
$(eval $(call fkd_rules,$(FADRM_DIR),$(TEACHER_W)))

# $(call fadrm_pipe,WEIGHTS...,INIT): print the FADRM schedule as a shell pipeline of pieces:
#   [resample --size S0 INIT |] recover --steps 0:E1:N [INIT] | [resample --size S1 |]
#   arcmerge -a ALPHA INIT | recover --steps E1:E2:N | ... (ARC merges)
# Stage s covers steps [s*N/(ARC+1), (s+1)*N/(ARC+1)), as the fused run splits them. Without
# SIZES, the sizes are the fused run's own (recover --print-sizes: 200,224,200,224 on 224-px
# images with 3 merges where the teachers take 200 px, else none).
fadrm_pipe = n=$(ITERS); k=$(ARC); \
    sz=$(if $(SIZES),$(SIZES),$$($(BIN)/recover $(addprefix -w ,$(1)) --iters $$n --arc $$k --print-sizes $(2))) \
    || exit $$?; sizes=($${sz//$(comma)/ }); \
    piece() { echo "$(BIN)/recover $(RUN_OPTS) $(addprefix -w ,$(1)) $(if $(RBATCH),--batch $(RBATCH)) -s $(SEED) $(RECOVER_OPTS) --steps $$(($$1*n/(k+1))):$$((($$1+1)*n/(k+1))):$$n"; }; \
    if [ $${\#sizes[@]} -gt 0 ]; then p="$(BIN)/resample -q --size $${sizes[0]} $(2) | $$(piece 0)"; \
    else p="$$(piece 0) $(2)"; fi; \
    for ((s = 1; s <= k; s++)); do \
        [ $${\#sizes[@]} -gt 0 ] && p+=" | $(BIN)/resample -q --size $${sizes[s]}"; \
        p+=" | $(BIN)/arcmerge -q -a $(ALPHA) $(2) | $$(piece $$s)"; \
    done; echo "$$p"

$(FADRM_DIR)/piped.tsr: $(PATCHES) $(TEACHER_W)
	@mkdir -p $(@D)
	@p=$$($(call fadrm_pipe,$(TEACHER_W),$(PATCHES))) || exit $$?; echo "$$p > $@"; \
	$(call run_timed,$@,eval "$$p",$@)
$(FADRM_DIR)/seam.ok: $(FADRM_DIR)/piped.tsr $(FADRM_DIR)/distilled.tsr
	$(BIN)/tscmp --exact $^
	echo "piped == fused (tscmp --exact)" > $@

.PHONY: fadrm fadrm-distill fadrm-seam
fadrm-distill: $(FADRM_DIR)/distilled.tsr
fadrm: $(FADRM_DIR)/eval-$(EVAL_ID).jsonl $(FADRM_DIR)/sheet.png
	@$(call summary,$<)
fadrm-seam: $(FADRM_DIR)/seam.ok
	@cat $<
.DEFAULT_GOAL := fadrm
endif
