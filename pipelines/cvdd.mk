# pipelines/cvdd.mk - CV-DD (committee voting; ddpipe-method(7) section 2, Jiacheng8/CV-DD): SRe2L++'s loop
# (RDED's patches, no residual) with every teacher of TEACHERS at every step, their losses summed
# with the weights softmax(PRIORS / 5) (recover --committee prior:...), or 1/M each where PRIORS is
# empty (--committee equal); soft labels from the first teacher alone (the reference relabels with
# its ResNet18), the student as the other methods'. The initial patches are RDED's selection with
# the first teacher.
# A teacher's prior, in CV-DD, is the top-1 of a student of the teacher's architecture trained on
# the teacher's own SRe2L++ set (its recover/, relabel/ and validate/scripts/imagenet1k_prior):
# PRIORS=auto makes them (sre2lpp.mk with TEACHER = STUDENT = each teacher, with this run's other
# parameters), says them and goes on with their final top-1s, in the order of TEACHERS. The
# reference runs ITERS=4000 and changes the pair of teachers from one ipc index to the next
# (recover(1) shows that as a pipe).
#
#   make -f pipelines/cvdd.mk [TEACHERS="convnet3 resnet18m" PRIORS="78.8 80.2"|auto ITERS=2000 ...]
#     cvdd           the committee's recover + labels (first teacher) + student + contact sheet
#     cvdd-distill   the distilled set only
#     cvdd-teachers  every teacher of TEACHERS (not with PRIORS=auto)
#     cvdd-priors    with PRIORS=auto only: each teacher's SRe2L++ student, then the priors said
#   out/fmnist/convnet3-e3-s0+resnet18m-e3-s0/cvdd/ipc10-n300-c5-fauto-it2000-cprior78.8_80.2-s0/...
include $(dir $(realpath $(lastword $(MAKEFILE_LIST))))common.mk

ifndef DDPIPE_CVDD_MK
DDPIPE_CVDD_MK := 1
CVDD_MK := $(lastword $(filter %cvdd.mk,$(MAKEFILE_LIST)))
PRIORS ?=
ifeq ($(strip $(PRIORS)),auto)
# each teacher's SRe2L++ student first (one sub-make per teacher, in turn: they share the import),
# then this fragment again with their final top-1s as PRIORS
cvdd_prior_mk = $(MAKE) --no-print-directory -f $(PIPELINES)/sre2lpp.mk TEACHER=$(1) STUDENT=$(1)
# the shell commands that run them and leave their top-1s in $p, said on stdout
define cvdd_priors_sh
$(foreach t,$(TEACHERS),$(call cvdd_prior_mk,$(t)) sre2lpp &&) p=""; for t in $(TEACHERS); do \
    e=$$($(MAKE) -s --no-print-directory -f $(PIPELINES)/sre2lpp.mk TEACHER=$$t STUDENT=$$t print-SRE2LPP_DIR)/eval-$$($(MAKE) \
        -s --no-print-directory -f $(PIPELINES)/sre2lpp.mk TEACHER=$$t STUDENT=$$t print-EVAL_ID).jsonl; \
    v=$$(tail -n 1 "$$e" | sed -n 's/.*"final_top1":\([0-9.]*\)[,}].*/\1/p'); \
    [ -n "$$v" ] || { echo "cvdd.mk: $$e: no final_top1 for $$t's prior" >&2; exit 1; }; p="$$p $$v"; \
done; echo "cvdd: PRIORS=auto:$$p (each teacher's SRe2L++ student, final top-1 %, in TEACHERS order)"
endef
.PHONY: cvdd cvdd-distill cvdd-priors
cvdd-priors:
	+@$(cvdd_priors_sh)
cvdd cvdd-distill:
	+@$(cvdd_priors_sh); $(MAKE) --no-print-directory -f $(CVDD_MK) PRIORS="$$p" $@
.DEFAULT_GOAL := cvdd
else
CVDD_W := $(foreach t,$(TEACHERS),$(call teacher_file,$(t)))
CVDD_TD := $(D)/$(subst $(space),+,$(foreach t,$(TEACHERS),$(call teacher_id,$(t))))
CVDD_PATCHES := $(call patches_of,$(firstword $(TEACHERS)))
ifneq ($(words $(PRIORS)),0)
$(foreach p,$(PRIORS),$(call dd_number,PRIORS,$(p)))
ifneq ($(words $(PRIORS)),$(words $(TEACHERS)))
$(error cvdd.mk: PRIORS has $(words $(PRIORS)) values for $(words $(TEACHERS)) TEACHERS)
endif
endif
CVDD_VOTE := $(if $(strip $(PRIORS)),prior:$(subst $(space),$(comma),$(strip $(PRIORS))),equal)
CVDD_DIR := $(CVDD_TD)/cvdd/$(PATCH_PARAMS)-it$(ITERS)-c$(subst :,,$(subst $(comma),_,$(CVDD_VOTE)))$(SIZES_ID)$(RBATCH_ID)-s$(SEED)$(RECOVER_TAG)

$(CVDD_DIR)/distilled.tsr $(CVDD_DIR)/metrics.jsonl &: $(CVDD_PATCHES) $(CVDD_W)
	@mkdir -p $(@D)
	$(call timed,$(CVDD_DIR)/distilled.tsr,$(call recover_cmd,$(CVDD_DIR)/distilled.tsr,$(CVDD_W),\
	    --committee $(CVDD_VOTE) --iters $(ITERS) --arc 0 $(if $(SIZES),--sizes $(SIZES)),$(CVDD_PATCHES)))
$(eval $(call fkd_rules,$(CVDD_DIR),$(firstword $(CVDD_W))))

.PHONY: cvdd cvdd-distill cvdd-teachers
cvdd-teachers: $(CVDD_W)
cvdd-distill: $(CVDD_DIR)/distilled.tsr
cvdd: $(CVDD_DIR)/eval-$(EVAL_ID).jsonl $(CVDD_DIR)/sheet.png
	@$(call summary,$<)
.DEFAULT_GOAL := cvdd
endif
endif
