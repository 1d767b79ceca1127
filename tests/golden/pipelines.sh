# pipelines: the make fragments of pipelines/ on a tiny Fashion-MNIST problem (300 training
# images, a 1-epoch teacher, IPC 2, 8 recover steps): FADRM's piped schedule equals the fused run;
# a re-run does nothing (make -q); changing ALPHA re-runs recover onward but not the teacher or
# patchsel; a failed or killed stage leaves no output (nor its time), also when make is killed with
# it; parameters are checked before any stage; VAL_N makes no new teacher; two make processes may
# share one OUT; INFER's pipeline runs; the
# class-sharded run (2 shards, make -j) equals the unsharded run with recover --batch = the shard's
# class count (tscmp --exact), checked stage by stage; FADRM on an ImageFolder tree of several image sizes (train/, val/);
# under a German locale, the recipes' numbers keep their decimal point; help.
source "$TESTS/golden/lib.sh"
[ -d "$fmnist" ] || { echo "Fashion-MNIST not installed at $fmnist"; exit 77; }
P=$TESTS/../pipelines
tiny=(BIN="$BIN" OUT=out TRAIN_N=300 VAL_N=100 TEACHER_EPOCHS=1 IPC=2 CANDIDATES=20 CROPS=2
      ITERS=8 SRE2L_ITERS=8 EPOCHS=1 EVAL_EVERY=1 METRICS_EVERY=1 THREADS=1 TEACHER_THREADS=2)
mk() { make --no-print-directory "$@" "${tiny[@]}"; }
val() { mk -s -f "$P/$1" "print-$2" "${@:3}"; }
mtime() { stat -c %Y.%y "$1"; }

# FADRM fused, its student, and the stage seam (pipe of recover --steps pieces and arcmerge)
if mk -j2 -f "$P/fadrm.mk" fadrm fadrm-seam >log.fadrm 2>&1; then ok "fadrm.mk: fused run, labels, student, sheet"
else fail "fadrm.mk: $(tail -n 5 log.fadrm)"; fi
fd=$(val fadrm.mk FADRM_DIR)
grep -q final_top1 "$fd/eval-$(val fadrm.mk EVAL_ID).jsonl" && [ -s "$fd/sheet.png" ] && [ -s "$fd/metrics.jsonl" ] \
    && ok "outputs under $fd" || fail "missing outputs in $fd: $(ls "$fd")"
[ -f "$fd/seam.ok" ] && ok "piped recover --steps | arcmerge == fused recover (tscmp --exact)" \
    || fail "piped != fused: $(grep -i differ log.fadrm | head -n 3)"
# ... with SIZES given (convnet3 takes 28 px alone): the pipe resamples before each stage as told
mk -f "$P/fadrm.mk" SIZES=28,28,28,28 fadrm-seam >log.seam28 2>&1 \
    && [ "$(grep -o "resample -q --size 28 " log.seam28 | wc -l)" = 4 ] \
    && ok "SIZES=28,28,28,28: piped (4 resamples) == fused (tscmp --exact)" || fail "SIZES seam: $(tail -n 3 log.seam28)"

# re-running does nothing
teacher=$(val fadrm.mk TEACHER_W); patches=$(val fadrm.mk PATCHES)
mk -q -f "$P/fadrm.mk" "$fd/distilled.tsr" "$fd/seam.ok" "$fd/eval-$(val fadrm.mk EVAL_ID).jsonl" \
    && ok "re-run: everything up to date (make -q)" || fail "re-run: make -q says something is out of date"
[ -z "$(mk -n -f "$P/fadrm.mk" "$fd/distilled.tsr" 2>&1 | grep -v "^make")" ] && ok "re-run: make -n runs nothing" \
    || fail "re-run: make -n: $(mk -n -f "$P/fadrm.mk" "$fd/distilled.tsr" | head -n 3)"

# a stage's output removed is made again, with what depends on it (under a blanket .SECONDARY make
# skipped a missing prerequisite whose dependents were newer)
lab=$(ls "$fd"/labels-*.tsr | head -n 1); mv "$lab" "$lab.away"
plan=$(mk -n -f "$P/fadrm.mk" fadrm 2>&1); mv "$lab.away" "$lab"
grep -q "/relabel " <<<"$plan" && grep -q "/evaltrain .*--labels" <<<"$plan" \
    && ok "labels removed: make -n plans relabel and the student again" || fail "labels removed, plan: $plan"
# changing ALPHA re-runs recover onward, never the teacher or patchsel
plan=$(mk -n -f "$P/fadrm.mk" ALPHA=0.7 fadrm 2>&1)
grep -q "/recover .*--alpha 0.7" <<<"$plan" && grep -q "/relabel " <<<"$plan" && grep -q "/evaltrain .*--labels" <<<"$plan" \
    && ok "ALPHA=0.7: make -n plans recover, relabel, student" || fail "ALPHA=0.7 plan: $plan"
grep -q -e "/patchsel " -e "--save" -e "/tsimport " <<<"$plan" && fail "ALPHA=0.7 re-runs patchsel, teacher or import" \
    || ok "ALPHA=0.7: make -n plans no import, teacher or patchsel"
# the student's evaluation is named by its labels and validation set: RELABEL_BN=eval and VAL_N=50
# plan relabel and a student (they ran nothing and printed the old result), ARC=0 passes no --alpha
# (a usage error with --arc 0), a teacher architecture with commas reaches evaltrain whole
plan=$(mk -n -f "$P/fadrm.mk" RELABEL_BN=eval fadrm 2>&1)
grep -q "/relabel .*--bn eval" <<<"$plan" && grep -q "/evaltrain .*--labels [^ ]*labels-e1-eval" <<<"$plan" \
    && ok "RELABEL_BN=eval: make -n plans relabel and a student" || fail "RELABEL_BN=eval plan: $plan"
plan=$(make --no-print-directory -n -f "$P/fadrm.mk" "${tiny[@]}" VAL_N=50 fadrm 2>&1)   # after tiny's VAL_N
grep -q "/evaltrain .*--val [^ ]*test-n50.tsr" <<<"$plan" && ok "VAL_N=50: make -n plans the student's evaluation" \
    || fail "VAL_N=50 plan: $plan"
# EVAL_EVERY names the evaluation (it decides the best top-1's epochs); DEVICE the whole tree
plan=$(make --no-print-directory -n -f "$P/fadrm.mk" "${tiny[@]}" EVAL_EVERY=5 fadrm 2>&1)   # after tiny's
grep -q "/evaltrain .*--eval-every 5 .*> [^ ]*/eval-[^ ]*-ev5\.jsonl" <<<"$plan" \
    && ok "EVAL_EVERY=5: make -n plans the student's evaluation again, named -ev5" || fail "EVAL_EVERY=5 plan: $plan"
plan=$(mk -n -f "$P/fadrm.mk" DEVICE=cuda fadrm 2>&1)
grep -q "/evaltrain -q -d cuda .*out/fmnist-cuda/teachers/" <<<"$plan" && ! grep -q " out/fmnist/" <<<"$plan" \
    && ok "DEVICE=cuda: every stage -d cuda under out/fmnist-cuda/" || fail "DEVICE=cuda plan: $plan"
plan=$(mk -n -f "$P/fadrm.mk" ARC=0 fadrm-distill 2>&1)
grep -q "/recover .*--arc 0 " <<<"$plan" && ! grep -q -- "--alpha" <<<"$plan" && ok "ARC=0: recover without --alpha" \
    || fail "ARC=0 plan: $plan"
plan=$(mk -n -f "$P/fadrm.mk" TEACHER=efficientnet_b0m:dropout=0,stochastic_depth=0 teacher 2>&1)
grep -q "/evaltrain .*-m efficientnet_b0m:dropout=0,stochastic_depth=0 --epochs 1 .*--save " <<<"$plan" \
    && ok "a teacher architecture with commas: one evaltrain argument" || fail "comma teacher plan: $plan"
t0=$(mtime "$teacher"); p0=$(mtime "$patches")
mk -f "$P/fadrm.mk" ALPHA=0.7 fadrm-distill >log.alpha 2>&1 || fail "ALPHA=0.7 run: $(tail -n 3 log.alpha)"
fd7=$(val fadrm.mk FADRM_DIR ALPHA=0.7)
[ "$fd7" != "$fd" ] && [ -s "$fd7/distilled.tsr" ] && [ -s "$fd/distilled.tsr" ] \
    && ok "ALPHA=0.7: new $fd7, the alpha 0.5 run kept" || fail "ALPHA=0.7: $fd7"
[ "$(mtime "$teacher")" = "$t0" ] && [ "$(mtime "$patches")" = "$p0" ] \
    && ok "ALPHA=0.7: teacher and patches untouched" || fail "ALPHA=0.7 touched the teacher or the patches"
# another spelling of a value is the same run: its files, nothing to do
[ "$(val fadrm.mk FADRM_DIR ALPHA=0.70)" = "$fd7" ] && [ "$(val fadrm.mk FADRM_DIR ALPHA=.5)" = "$fd" ] \
    && mk -q -f "$P/fadrm.mk" ALPHA=0.700 fadrm-distill \
    && ok "ALPHA=0.70, 0.700 and .5: the runs of 0.7 and 0.5, up to date" || fail "ALPHA spellings: other runs"

# a failed stage leaves no output (recover refuses an option: exit 2)
bad=(RECOVER_OPTS=--lr=x RECOVER_TAG=-bad)
fb=$(val fadrm.mk FADRM_DIR "${bad[@]}"); mkdir -p "$fb" && echo "1 1 1" >"$fb/distilled.tsr.sec"   # an old run's time
if mk -f "$P/fadrm.mk" "${bad[@]}" fadrm-distill >log.bad 2>&1; then fail "a failing recover did not fail make"
else
    [ ! -e "$fb/distilled.tsr" ] && [ ! -e "$fb/metrics.jsonl" ] && [ -z "$(ls "$fb" | grep '\.sec')" ] \
        && ok "failed recover: no distilled.tsr, no metrics.jsonl, no .sec (the old one gone)" \
        || fail "failed recover left: $(ls "$fb")"
fi
# a stage killed (its shell gone, as by ^C or the OOM killer) leaves no .sec for the demo's table:
# a recover that kills the shell running it
mkdir -p kbin && for f in "$BIN"/*; do ln -sf "$f" kbin/; done && rm kbin/recover
printf '#!/bin/sh\nkill -KILL $PPID\nsleep 2\n' >kbin/recover && chmod +x kbin/recover
make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" BIN="$PWD/kbin" RECOVER_TAG=-killed fadrm-distill >log.kill 2>&1 \
    && fail "a killed recover did not fail make"
fk=$(val fadrm.mk FADRM_DIR RECOVER_TAG=-killed)
[ -d "$fk" ] && [ ! -e "$fk/distilled.tsr.sec" ] && [ ! -e "$fk/distilled.tsr" ] \
    && ok "killed recover: no distilled.tsr, no distilled.tsr.sec" || fail "killed recover left: $(ls "$fk")"
# a stage writing its standard output (the student's log) killed with make itself (SIGKILL to the
# group: the OOM killer, a scheduler's kill -9; make cannot delete anything then): no log that make
# would take as done, and the next make runs the student again
mkdir -p kbin2 && for f in "$BIN"/*; do ln -sf "$f" kbin2/; done && rm kbin2/evaltrain
printf '#!/bin/sh
echo "{\"epoch\":1}"
kill -KILL 0
' >kbin2/evaltrain && chmod +x kbin2/evaltrain
ev=$fd/eval-$(val fadrm.mk EVAL_ID STUDENT_TAG=-killed).jsonl
rc=$(setsid -w make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" BIN="$PWD/kbin2" STUDENT_TAG=-killed fadrm \
     >log.kill2 2>&1; echo $?)
[ "$rc" = 137 ] || fail "a student killed with make: exit $rc, not 137 (SIGKILL)"
plan=$(mk -n -f "$P/fadrm.mk" STUDENT_TAG=-killed fadrm 2>&1)
[ ! -e "$ev" ] && [ ! -e "$ev.sec" ] && ls "$ev".part.* >/dev/null 2>&1 && grep -q "/evaltrain .*--labels" <<<"$plan" \
    && ok "student killed with make: no $(basename "$ev") (its .part.PID kept apart), planned again" \
    || fail "killed student: $(ls "$fd"); plan: $plan"
# ... interrupted (^C, a scheduler's SIGTERM: the signal to make's process group): its part files go too
mkdir -p kbin3 && for f in "$BIN"/*; do ln -sf "$f" kbin3/; done && rm kbin3/evaltrain
printf '#!/bin/sh\necho "{\\"epoch\\":1}"\nexec sleep 60\n' >kbin3/evaltrain && chmod +x kbin3/evaltrain
for sig in INT TERM; do
    ev3=$fd/eval-$(val fadrm.mk EVAL_ID STUDENT_TAG=-$sig).jsonl
    rc=0; timeout -s $sig 4 make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" BIN="$PWD/kbin3" STUDENT_TAG=-$sig \
        fadrm >log.int 2>&1 || rc=$?
    [ $rc = 124 ] && [ ! -e "$ev3" ] && ! ls "$ev3".* >/dev/null 2>&1 && grep -q "/evaltrain .*--labels" log.int \
        && ok "student interrupted by SIG$sig: no $(basename "$ev3"), no part files" \
        || fail "SIG$sig student: exit $rc, left $(ls "$fd" | grep -- "-$sig" | tr '\n' ' ')"
done

# parameters are checked before any stage: one line naming the variable, nothing made
# (and the programs' own limits, numbers the shell would misread, names make cannot hold)
for bad in ALPHA=abc ALPHA=1.5 ALPHA= IPC=0 EPOCHS=x SEED=-1 TRAIN_N=0 SIZES=200,,224 FACTOR=0 DEVICE=gpu RELABEL_BN=x \
           BIN=/nonexistent IPC=010 SEED=00 IPC=1234567890 ARC=64 THREADS=5000 FACTOR=3 ITERS=3 "OUT=o u t" VAL_SPLIT= \
           DATA=/elsewhere FORMAT=cifar10; do   # (other data under the default DATASET: its files taken for theirs)
    rc=0; make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" OUT=bad "$bad" fadrm >log.param 2>&1 || rc=$?
    if [ $rc != 0 ] && [ ! -e bad ] && [ "$(wc -l <log.param)" = 1 ] && grep -q "\*\*\* ${bad%%=*}=" log.param; then
        ok "$bad: stopped before any stage: $(sed 's/.*\*\*\* //' log.param)"
    else fail "$bad: exit $rc, $(ls bad 2>/dev/null | head -n 3) $(head -n 3 log.param)"; fi
done
DATA=/elsewhere make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" OUT=bad fadrm >log.param 2>&1 \
    && fail "DATA in the environment without DATASET: accepted" || { grep -q "DATA='/elsewhere' (environment) without DATASET" \
    log.param && [ ! -e bad ] && ok "DATA in the environment without DATASET: $(sed 's/.*\*\*\* //' log.param)" \
    || fail "DATA in the environment: $(cat log.param)"; }
# (make check's own variables, SAN=1, reach it through MAKEFLAGS, with the mark that says so)
env -u DDPIPE_VARS_SEEN -u MAKEFLAGS -u MFLAGS make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" ALHPA=0.7 \
    print-ALPHA >log.typo 2>&1
grep -q "ALHPA=0.7: no pipeline fragment uses ALHPA (a typo?)" log.typo && grep -qx 0.5 log.typo \
    && ok "a command-line variable no fragment names: said ($(grep -o 'ALHPA.*' log.typo))" || fail "typo: $(cat log.typo)"
# ... a lower-case one too (alpha is a word of the fragments' comments and options, not a variable)
env -u DDPIPE_VARS_SEEN -u MAKEFLAGS -u MFLAGS make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" alpha=0.7 \
    print-ALPHA >log.typo 2>&1
grep -q "alpha=0.7: no pipeline fragment uses alpha (a typo?)" log.typo && grep -qx 0.5 log.typo \
    && ok "alpha=0.7: said as a typo" || fail "lower-case typo: $(cat log.typo)"
# a fragment's own parameters are checked too
for c in "sre2l.mk SRE2L_AUG=bogus" "sre2l.mk SRE2L_ITERS=08" "infer.mk INFER_T=x" "ablation.mk SEEDS=x" "demo.mk FULL=2"; do
    rc=0; make --no-print-directory -f "$P/${c%% *}" "${tiny[@]}" OUT=bad "${c#* }" >log.param 2>&1 || rc=$?
    v=${c#* }
    [ $rc != 0 ] && [ ! -e bad ] && [ "$(wc -l <log.param)" = 1 ] && grep -q "\*\*\* ${v%%=*}=" log.param \
        && ok "$c: $(sed 's/.*\*\*\* //' log.param)" || fail "$c: exit $rc, $(head -n 2 log.param)"
done
# help: the fragment's header and the shared parameters as set, without the programs built
make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" BIN=/nonexistent ALPHA=0.7 help >log.help 2>&1 \
    && grep -q "^  *fadrm-seam  " log.help && grep -q "^pipelines/fadrm.mk - FADRM" log.help \
    && grep -qx "  ALPHA  *0.7" log.help && grep -qx "  SIZES  *(empty)" log.help && ! grep -q "^#" log.help \
    && ok "fadrm.mk help: the header and the parameters as set ($(grep -c . log.help) lines)" \
    || fail "help: $(head -n 5 log.help)"
rc=0; mk -f "$P/sharded.mk" SHARDS=0 print-SH_DIR >log.sh0 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "SHARDS='0': not a whole number of at least 1" log.sh0 && ! grep -q "division" log.sh0 \
    && ok "sharded.mk SHARDS=0: $(sed 's/.*\*\*\* //' log.sh0)" || fail "SHARDS=0: $(cat log.sh0)"
# the teacher does not depend on the validation set: VAL_N=50 plans an import and a student only
plan=$(make --no-print-directory -n -f "$P/fadrm.mk" "${tiny[@]}" VAL_N=50 fadrm 2>&1)
! grep -q -- "--save" <<<"$plan" && ! grep -q -e "/patchsel " -e "/recover " -e "/relabel " <<<"$plan" \
    && ok "VAL_N=50: no teacher, patchsel, recover or relabel planned" || fail "VAL_N=50 plan: $plan"
# two parameter sets at once in a fresh OUT, both building the import, teacher and patches they
# share. The first make's import waits 2 s, so the second's is in place first and its teacher
# begins before the first make's import replaces the file: dated when that import began, it does
# not outdate that teacher. The first make's teacher training waits 1 s, the second's 8 s, so the
# second (its copy missing when it began) trains its own and finishes it after the first make's
# patches and recover: those stay up to date, the second copy dated when its training began.
mkdir -p pbin && for f in "$BIN"/*; do ln -sf "$f" pbin/; done && rm pbin/evaltrain pbin/tsimport
printf '#!/bin/sh\ncase " $* " in *" --save "*) sleep "${SLOW:-0}" ;; esac\nexec "%s/evaltrain" "$@"\n' "$BIN" >pbin/evaltrain
# (WAIT_GO=F: the import waits, once F.waiting is made, until F exists)
printf '#!/bin/sh\nsleep "${SLOW_IMPORT:-0}"\n[ -z "$WAIT_GO" ] || { : >"$WAIT_GO.waiting"; until [ -e "$WAIT_GO" ]; do sleep 0.1; done; }
exec "%s/tsimport" "$@"\n' "$BIN" >pbin/tsimport
chmod +x pbin/evaltrain pbin/tsimport
par=(make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" OUT=par BIN="$PWD/pbin")   # after tiny's OUT, BIN
SLOW_IMPORT=2 SLOW=1 "${par[@]}" ALPHA=0.3 fadrm-distill >log.par1 2>&1 & p1=$!
SLOW=8 "${par[@]}" ALPHA=0.9 fadrm-distill >log.par2 2>&1 & p2=$!
r1=0 r2=0; wait $p1 || r1=$?; wait $p2 || r2=$?
[ $r1 = 0 ] && [ $r2 = 0 ] && [ -s "$("${par[@]}" -s print-FADRM_DIR ALPHA=0.3)/distilled.tsr" ] \
    && [ -s "$("${par[@]}" -s print-FADRM_DIR ALPHA=0.9)/distilled.tsr" ] && "${par[@]}" -q teacher \
    && grep -q -- "--save par/" log.par1 && grep -q -- "--save par/" log.par2 \
    && [ "$(grep -c "tsimport .*-S train" log.par1 log.par2 | grep -c ':1$')" = 2 ] \
    && ok "two make processes at once in one fresh OUT, both importing and training what they share: both done" \
    || fail "concurrent makes: exit $r1 $r2: $(tail -n 2 log.par1) $(tail -n 2 log.par2)"
"${par[@]}" -q ALPHA=0.3 fadrm-distill && "${par[@]}" -q ALPHA=0.9 fadrm-distill \
    && ok "... and after both, each run up to date (the later teacher did not outdate the first run)" \
    || fail "concurrent makes: a run out of date after both: $("${par[@]}" -n ALPHA=0.3 fadrm-distill 2>&1 | head -3)"
# a make whose import is slow finds, when its teacher's turn comes, the teacher another make has
# trained meanwhile: kept, not trained again (nor its import's later copy dating it out). The
# first make's import waits (having looked at the teacher: missing) until the second make is done.
par2=("${par[@]}" OUT=par2)
WAIT_GO=$PWD/go3 "${par2[@]}" teacher >log.par3 2>&1 & p3=$!
for i in $(seq 600); do [ -e go3.waiting ] && break; sleep 0.1; done
r3=0 r4=0; "${par2[@]}" teacher >log.par4 2>&1 || r4=$?
: >go3; wait $p3 || r3=$?
[ $r3 = 0 ] && [ $r4 = 0 ] && grep -q "teachers/.*: made meanwhile by another make" log.par3 \
    && ! grep -q -- "--save" log.par3 && grep -q -- "--save" log.par4 && "${par2[@]}" -q teacher \
    && ok "a teacher trained by another make meanwhile is kept: $(grep teachers/ log.par3 | cut -c1-90)" \
    || fail "teacher made meanwhile: exit $r3 $r4: $(cat log.par3)"
# ... but make -B makes it again
tr2=$("${par2[@]}" -s print-TRAIN); touch -d @1 "$tr2"
"${par2[@]}" -B "$tr2" >log.par5 2>&1 && ! grep -q meanwhile log.par5 && [ "$(stat -c %Y "$tr2")" -gt 1 ] \
    && ok "make -B: the import made again, not kept as made meanwhile" || fail "make -B: $(cat log.par5)"

# the other fragments parse and plan (make -n), sre2l/sre2lpp/rded run at this size
for f in rded sre2l sre2lpp; do
    if mk -j2 -f "$P/$f.mk" >log.$f 2>&1; then ok "$f.mk: $(tail -n 1 log.$f | cut -c1-100)"
    else fail "$f.mk: $(tail -n 3 log.$f)"; fi
done
# SRe2L as its code runs: first-BN multiplier 10 and, on small images, the roll only
grep -q -- "/recover .*--init noise .*--first-bn-mult 10 --aug roll" log.sre2l \
    && ok "sre2l.mk: recover --first-bn-mult 10 --aug roll (SRe2L's recover_cifar.py)" \
    || fail "sre2l.mk's recover: $(grep recover log.sre2l)"
mk -n -f "$P/fadrmplus.mk" >log.plus 2>&1 && grep -q -- "-w .*convnet3.* -w .*resnet18m" log.plus \
    && ok "fadrmplus.mk plans recover with two teachers" || fail "fadrmplus.mk -n: $(tail -n 3 log.plus)"
# CV-DD: a committee of two teachers (equal weights without PRIORS, else prior:...), relabel with
# the first; run at this size with a second cheap teacher
cv=(TEACHERS="convnet3 convnet2:width=8")
if mk -j2 -f "$P/cvdd.mk" "${cv[@]}" cvdd >log.cvdd 2>&1; then ok "cvdd.mk: $(tail -n 1 log.cvdd | cut -c1-100)"
else fail "cvdd.mk: $(tail -n 3 log.cvdd)"; fi
cd1=$(val cvdd.mk CVDD_DIR "${cv[@]}")
grep -q -- "/recover .*-w .*convnet3.* -w .*convnet2-width8.* --committee equal --iters 8 --arc 0 " log.cvdd \
    && [ "$(grep "/relabel " log.cvdd | grep -o -- " -w " | wc -l)" = 1 ] && [ -s "$cd1/distilled.tsr" ] \
    && ok "cvdd.mk: recover --committee equal with both teachers, relabel with the first" \
    || fail "cvdd.mk's commands: $(grep -E '/(recover|relabel) ' log.cvdd)"
plan=$(mk -n -f "$P/cvdd.mk" "${cv[@]}" PRIORS="70 75.5" cvdd-distill 2>&1)
[ "$(val cvdd.mk CVDD_DIR "${cv[@]}" PRIORS="70 75.5")" != "$cd1" ] && grep -q -- "--committee prior:70,75.5 " <<<"$plan" \
    && ok "cvdd.mk PRIORS: --committee prior:70,75.5 into a directory of its own" || fail "cvdd.mk PRIORS: $plan"
# PRIORS=auto: each teacher's own SRe2L++ student (teacher = student architecture) gives its prior
if mk -f "$P/cvdd.mk" "${cv[@]}" PRIORS=auto cvdd-distill >log.cva 2>&1; then
    p1=$(tail -n 1 "$(val sre2lpp.mk SRE2LPP_DIR TEACHER=convnet3)/eval-$(val sre2lpp.mk EVAL_ID STUDENT=convnet3)".jsonl \
         | sed -n 's/.*"final_top1":\([0-9.]*\).*/\1/p')
    p2=$(tail -n 1 "$(val sre2lpp.mk SRE2LPP_DIR TEACHER=convnet2:width=8)/eval-$(val sre2lpp.mk EVAL_ID \
         STUDENT=convnet2:width=8)".jsonl | sed -n 's/.*"final_top1":\([0-9.]*\).*/\1/p')
    grep -q "^cvdd: PRIORS=auto: $p1 $p2 " log.cva && grep -q -- "/recover .* --committee prior:$p1,$p2 --iters 8 " log.cva \
        && grep -q -- "/evaltrain .*-m convnet2:width=8 --labels .*/sre2lpp/" log.cva \
        && ok "cvdd.mk PRIORS=auto: the teachers' own SRe2L++ students ($p1, $p2) weigh the committee" \
        || fail "PRIORS=auto: $(grep -E 'cvdd:|/recover ' log.cva | cut -c1-200)"
else fail "cvdd.mk PRIORS=auto: $(tail -n 3 log.cva)"; fi
rc=0; mk -n -f "$P/cvdd.mk" "${cv[@]}" PRIORS=70 >log.cvp 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "PRIORS has 1 values for 2 TEACHERS" log.cvp && ok "cvdd.mk: a PRIORS count off is an error" \
    || fail "cvdd.mk PRIORS=70: exit $rc $(tail -n 2 log.cvp)"

# INFER: random images, recover --ufc, static labels, INFER's student (one teacher: 1 real image
# per class at IPC 2, plus its compensated copy)
inf=(INFER_TEACHERS=convnet3 INFER_ITERS=4 INFER_EPOCHS=1)
if mk -f "$P/infer.mk" "${inf[@]}" infer >log.infer 2>&1; then ok "infer.mk: $(tail -n 1 log.infer | cut -c1-100)"
else fail "infer.mk: $(tail -n 3 log.infer)"; fi
id=$(val infer.mk INFER_DIR "${inf[@]}")
[ "$(val infer.mk IPC_INIT "${inf[@]}")" = 1 ] && [ "$(val infer.mk IPC_INIT INFER_TEACHERS="a b c d" NCLASSES=100)" = 1 ] \
    && ! val infer.mk IPC_INIT INFER_TEACHERS="a b c" NCLASSES=2 >/dev/null 2>&1 \
    && ok "infer.mk: ipc_init = floor(IPC / (M/C + 1)) (IPC 2: M 1, C 10: 1; M 4, C 100: 1; M 3, C 2: 0, an error)" \
    || fail "IPC_INIT"
"$BIN/tsinfo" "$id/static.tsr" | grep -q "^records: 20" && "$BIN/tsinfo" "$id/static.tsr" | grep -q "soft (20 records): F32\[10\]" \
    && grep -q final_top1 "$(val infer.mk INFER_EVAL "${inf[@]}")" && [ -s "$id/sheet.png" ] \
    && ok "infer.mk: 20 images (10 real + 10 compensated) with static labels, a student, a sheet" \
    || fail "infer.mk outputs: $(ls "$id")"
# val_dyn.py's protocol on the same images: every teacher online, MixUp, RandomCrop
if mk -f "$P/infer.mk" "${inf[@]}" INFER_DYN_EPOCHS=1 infer-dyn >log.dyn 2>&1 \
    && grep -q -- "/evaltrain .*--teacher .*--mixup 0.8 --crop-pad 4 .*--epochs 1 " log.dyn; then
    ok "infer.mk infer-dyn: $(tail -n 1 log.dyn | cut -c1-100)"
else fail "infer-dyn: $(tail -n 3 log.dyn)"; fi
plan=$(mk -n -f "$P/infer.mk" "${inf[@]}" INFER_ITERS=5 infer 2>&1)
grep -q "/recover .*--ufc --iters 5" <<<"$plan" && ! grep -q -e "/patchsel " -e "--save" <<<"$plan" \
    && ok "infer.mk INFER_ITERS=5: plans recover onward, not the teacher or the random images" || fail "INFER_ITERS plan: $plan"
make --no-print-directory -f "$P/infer.mk" "${tiny[@]}" "${inf[@]}" OUT=out-ncls NCLASSES=12 infer-distill >log.ncls 2>&1 \
    && fail "NCLASSES=12 on 10 classes accepted"
grep -q "has 10 classes, not NCLASSES=12" log.ncls && ok "infer.mk: NCLASSES checked against the data" \
    || fail "NCLASSES check: $(tail -n 2 log.ncls)"
# ... also where the real images were drawn before (IPC=3 with NCLASSES=1 takes the 1 per class drawn above)
rc=0; make --no-print-directory -f "$P/infer.mk" "${tiny[@]}" "${inf[@]}" IPC=3 NCLASSES=1 infer-distill >log.ncls1 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "has 10 classes, not NCLASSES=1" log.ncls1 && ! grep -q "/recover " log.ncls1 \
    && ok "infer.mk: NCLASSES checked where the real images already exist" || fail "NCLASSES=1: exit $rc: $(tail -n 3 log.ncls1)"

# class-sharded == unsharded (CPU, same seed, --batch = 5 classes in both)
if mk -j2 -f "$P/sharded.mk" SHARDS=2 sharded-distill >log.sh 2>&1; then ok "sharded.mk: 2 shards in parallel, merged"
else fail "sharded.mk: $(grep -E '^(patchsel|recover|tscat|tscmp):' log.sh | head -n 3)"; fi
sd=$(val sharded.mk SH_DIR SHARDS=2)
mk -f "$P/sharded.mk" SHARDS=2 "$sd/patches.ok" >log.shp 2>&1 && ok "sharded patchsel == unsharded patchsel" \
    || fail "sharded patchsel != unsharded patchsel: $(grep -E '^(patchsel|recover|tscat|tscmp):|differ' log.shp | head -n 3)"
mk -f "$P/sharded.mk" SHARDS=2 "$sd/equal.ok" >log.she 2>&1 && ok "sharded FADRM == unsharded FADRM (tscmp --exact)" \
    || fail "sharded FADRM != unsharded: $(grep -E '^(patchsel|recover|tscat|tscmp):|differ' log.she | head -n 3)"
# recover alone on class slices of the same patches (isolates recover from patchsel)
b=$BIN; w=$teacher
for c in 0,1,2,3,4 5,6,7,8,9; do
    $b/tscat -q --classes $c "$patches" | $b/recover -q -j1 -w "$w" --iters 8 --arc 3 --batch 5 > "r-$c.tsr"
done
$b/recover -q -j1 -w "$w" --iters 8 --arc 3 --batch 5 "$patches" > r-all.tsr
$b/tscat -q r-0,1,2,3,4.tsr r-5,6,7,8,9.tsr | $b/tscmp --exact -m 2 - r-all.tsr >cmp.txt 2>&1 \
    && ok "recover on class slices of one patch set == unsharded recover" \
    || fail "recover on class slices != unsharded: $(head -n 2 cmp.txt)"
# an ImageFolder tree of several image sizes with train/ and val/ (ImageNette's layout): the teacher
# trains at --res 32 on crops of each image at its size, patchsel scores on its 32-px canvas, and
# the student evaluates the mixed-size val at its input size
"$BIN/tsimport" -q --format idx --limit 240 "$fmnist" >if_all.tsr
for k in 0 1 2; do
    "$BIN/tscat" -q --every 3:$k if_all.tsr | "$BIN/resample" -q -A --size $((32 + 8 * k))x$((40 - 4 * k)) >if_$k.tsr
    "$BIN/tscat" -q --every 4:0 if_$k.tsr >if_v$k.tsr
    "$BIN/tsexport" --png if_t$k if_$k.tsr && "$BIN/tsexport" --png if_w$k if_v$k.tsr
done
mkdir -p itree/train itree/val && cp -r if_t0/* if_t1/* if_t2/* itree/train/ && cp -r if_w0/* if_w1/* if_w2/* itree/val/
ifolder=(DATASET=itree DATA=itree FORMAT=imagefolder VAL_SPLIT=val TEACHER_OPTS="--res 32 --batch 32")
if mk -j2 -f "$P/fadrm.mk" "${ifolder[@]}" fadrm >log.itree 2>&1; then
    idir=$(val fadrm.mk FADRM_DIR "${ifolder[@]}")
    grep -q '"final_top1":[0-9]' "$idir/eval-$(val fadrm.mk EVAL_ID "${ifolder[@]}").jsonl" \
        && "$BIN/tsinfo" "$(val fadrm.mk VAL "${ifolder[@]}")" | grep -q 'sizes \[3,32-48,32-40\]' \
        && "$BIN/tsinfo" --json "$idir/distilled.tsr" | tr -d ' \n' | grep -q '"shapes":\[\[3,32,32\]\]' \
        && ok "fadrm.mk on an ImageFolder tree of three sizes (train/, val/): a 32-px set, a student evaluated" \
        || fail "ImageFolder pipeline outputs: $(ls "$idir"; "$BIN/tsinfo" --json "$idir/distilled.tsr" | head -n 30)"
else
    fail "fadrm.mk on an ImageFolder tree: $(tail -n 5 log.itree)"
fi
# under a German locale (built here by localedef from Debian's locales sources) the recipes keep
# a decimal point: bash's time wrote "0,102" to .sec files, and awk read recover's "1.25" as 1 in
# the loss plot's data (common.mk now runs its recipes in the C locale)
if mkdir -p loc && localedef -i de_DE -f UTF-8 "$PWD/loc/de_DE.UTF-8" >/dev/null 2>&1 \
    && [ "$(LOCPATH=$PWD/loc LC_ALL=de_DE.UTF-8 bash -c 'printf %.1f 1')" = "1,0" ]; then
    mv "$fd/distilled.tsr" de-before.tsr; export LOCPATH=$PWD/loc
    (export LC_ALL=de_DE.UTF-8 && mk -f "$P/fadrm.mk" "$fd/distilled.tsr" && mk -f "$P/demo.mk" "$fd/metrics.dat") \
        >log.de 2>&1 || fail "de_DE: $(tail -n 5 log.de)"
    "$BIN/tscmp" -q --exact de-before.tsr "$fd/distilled.tsr" && grep -qE '^[0-9]+[.][0-9]+( [0-9]+[.][0-9]+){2}$' \
        "$fd/distilled.tsr.sec" && ok "de_DE: recover again, the same bits; its .sec: $(cat "$fd/distilled.tsr.sec")" \
        || fail "de_DE: recover's output or .sec: $(cat "$fd/distilled.tsr.sec")"
    "$PYTHON" - "$fd/metrics.jsonl" "$fd/metrics.dat" <<'PY' && ok "de_DE: the loss plot's data (metrics.dat) exact" \
        || fail "de_DE: metrics.dat"
import json, sys
acc = {}
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j.get("loss") is None: continue
    a = acc.setdefault(j["step"], [0, 0.0, 0.0, 0.0])
    a[0] += 1; a[1] += j["ce"]; a[2] += j["bn"]; a[3] += j["loss"]
rows = [l.split() for l in open(sys.argv[2])]
assert len(rows) == len(acc) > 0, (len(rows), len(acc))
for r in rows:
    n, ce, bn, loss = acc[int(r[0])]
    for got, want in zip(r[1:], (ce / n, bn / n, loss / n)):
        assert abs(float(got) - want) <= 1e-5 * abs(want), (r, want)
PY
else
    echo "note: no de_DE locale could be built here (localedef, Debian's locales): the locale rows did not run"
fi
# demo.mk at the tiny scale: its table (kept as DEMO_DIR/table.txt, DEMO_DIR named by every result's path:
# other CROPS, another table); a result missing: "-" in its row, named on stderr, exit non-zero, the table
# still printed whole and the last good table.txt kept
if mk -f "$P/demo.mk" JOBS=2 >log.demo 2>&1; then
    dd=$(val demo.mk DEMO_DIR); fe=$(val demo.mk FADRM_DIR)/eval-$(val demo.mk EVAL_ID).jsonl
    [ -s "$dd/table.txt" ] && grep -Eq "^FADRM +FKD labels \(relabel\) +[0-9.]+ +[0-9.]+ " "$dd/table.txt" \
        && [ "$(make --no-print-directory -s -f "$P/demo.mk" "${tiny[@]}" CROPS=3 print-DEMO_DIR)" != "$dd" ] && ok "demo.mk: table.txt, its directory named by the results" \
        || fail "demo table: $dd: $(ls "$dd" 2>&1)"
    mv "$fe" fe.saved && cp -p "$dd/table.txt" table.saved
    rc=0; mk -f "$P/demo.mk" demo-table >log.dt 2>err.dt || rc=$?
    [ $rc != 0 ] && grep -q "^demo-table.sh: $fe: missing or empty$" err.dt && grep -Eq "^FADRM +FKD labels \(relabel\) +- +- " log.dt \
        && grep -q "^INFER " log.dt && cmp -s "$dd/table.txt" table.saved \
        && ok "demo-table with a result missing: '-', the file named, the table whole, the last table.txt kept" \
        || fail "demo-table, a result missing: exit $rc: $(cat err.dt) $(grep -E '^(FADRM|INFER) ' log.dt)"
    mv fe.saved "$fe"
    # the teacher's top-1 in the table is on the students' test images (VAL_N=50 here; its log's, on 100)
    if make --no-print-directory -f "$P/demo.mk" "${tiny[@]}" VAL_N=50 JOBS=2 >log.demo50 2>&1; then
        te=$(make --no-print-directory -s -f "$P/demo.mk" "${tiny[@]}" VAL_N=50 print-TEACHER_W); te=${te%.safetensors}-eval-vtest50.json
        a=$(sed -n 's/.*"top1":\([0-9.]*\),.*/\1/p' "$te" 2>/dev/null)
        [ -n "$a" ] && grep -q "\"records\":50," "$te" && grep -q "top-1 $a % (on the same test images)" log.demo50 \
            && grep -q "top-1 % on the 50 test images" log.demo50 && ok "demo, VAL_N=50: the teacher's top-1 ($a) on those 50" \
            || fail "teacher on VAL_N=50: $(cat "$te" 2>&1); $(grep -E 'top-1' log.demo50)"
    else fail "demo.mk VAL_N=50: $(tail -n 3 log.demo50)"; fi
else fail "demo.mk: $(tail -n 3 log.demo)"; fi
# a teacher whose log was lost (the tables read it) is trained again, not taken as made by another make
tw=$(val fadrm.mk TEACHER_W); rm -f "${tw%.safetensors}.jsonl"
mk -f "$P/fadrm.mk" teacher >log.tlog 2>&1
[ -s "${tw%.safetensors}.jsonl" ] && grep -q "/evaltrain .*--save $tw" log.tlog && ! grep -q "made meanwhile" log.tlog \
    && ok "a teacher's lost log: the teacher trained again, its log back" || fail "lost teacher log: $(cat log.tlog)"
# ITERS against ARC only where recover merges: sre2lpp and cvdd run --arc 0 whatever ARC says
[ "$(make --no-print-directory -s -f "$P/sre2lpp.mk" "${tiny[@]}" ITERS=3 print-ITERS 2>&1)" = 3 ] \
    && [ "$(make --no-print-directory -s -f "$P/cvdd.mk" "${tiny[@]}" ITERS=3 print-ITERS 2>&1)" = 3 ] \
    && ok "ITERS=3 with the default ARC=3: fine for sre2lpp and cvdd (no merges)" || fail "sre2lpp/cvdd ITERS=3"
# one name for the same work: ALPHA is no part of FADRM's directory at ARC=0 (nothing merges), and
# SRE2L_FIRST_BN=10.0 is 10's directory
[ "$(val fadrm.mk FADRM_DIR ARC=0 ALPHA=0.7)" = "$(val fadrm.mk FADRM_DIR ARC=0)" ] \
    && [ "$(make --no-print-directory -s -f "$P/sre2l.mk" "${tiny[@]}" SRE2L_FIRST_BN=10.0 print-SRE2L_DIR)" = \
         "$(val sre2l.mk SRE2L_DIR)" ] && ok "ARC=0's ALPHA and 10.0 vs 10: one directory each" \
    || fail "names: $(val fadrm.mk FADRM_DIR ARC=0 ALPHA=0.7)"
finish
