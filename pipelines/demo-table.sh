#!/usr/bin/env bash
# pipelines/demo-table.sh - the table `make demo` prints (called by demo.mk with the paths in the
# environment). Reads evaltrain's summary lines, the *.sec files the stages wrote, and file sizes.
# A result that is missing (or a last line without a numeric top-1) reads "-" in its cell and is named
# on stderr; the table is still printed whole, and the exit status is then 1 (demo.mk keeps the last
# good table.txt).
set -euo pipefail
export LC_ALL=C   # numbers with a decimal point, whatever the caller's locale
bad=0
last() { tail -n 1 "$1" 2>/dev/null || true; }   # the last line of a result, or nothing
# a result's last line must hold a numeric final_top1: else said (the file named), exit status 1
check() {
    if [ ! -s "$1" ]; then echo "demo-table.sh: $1: missing or empty" >&2; bad=1
    elif [ "$(num "$(last "$1")" final_top1)" = - ]; then echo "demo-table.sh: $1: last line has no numeric final_top1" >&2; bad=1; fi
}
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"; }
# the *.sec files: "WALL USER SYS" (older ones: "WALL")
sec() { awk '{ printf "%.1f\n", $1 }' "$1.sec" 2>/dev/null || echo "?"; }                     # wall s
cpu() { awk '{ if (NF > 2) printf "%.1f\n", $2 + $3; else print "?" }' "$1.sec" 2>/dev/null || echo "?"; }  # CPU s
add() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?" || b == "?") print "?"; else printf "%.1f\n", a + b }'; }
size() { stat -c %s "$1" 2>/dev/null || echo "?"; }
num() { local v; v=$(field "$1" "$2"); [[ $v =~ ^-?[0-9.]+([eE][-+]?[0-9]+)?$ ]] && echo "$v" || echo -; }

fmt='%-8s %-21s %6s %6s %9s %9s %11s %9s\n'
row() {   # method, protocol, eval jsonl, distill wall, distill cpu, label bytes, label+train wall
    local j; j=$(last "$3")
    check "$3"
    printf "$fmt" "$1" "$2" "$(num "$j" final_top1)" "$(num "$j" best_top1)" "$4" "$5" "$6" "$7"
}
fkd() {   # method, dir, stage files that made the images...
    local e=$2/eval-$EVAL_ID.jsonl l=$2/labels-$LABEL_ID.tsr m=$1 w=0 c=0 f; shift 2
    for f in "$@"; do w=$(add "$w" "$(sec "$f")"); c=$(add "$c" "$(cpu "$f")"); done
    row "$m" "FKD labels (relabel)" "$e" "$w" "$c" "$(size "$l")" "$(add "$(sec "$l")" "$(sec "$e")")"
}

t=$(last "$TEACHER_EVAL")   # the teacher on this validation set (evaltrain --eval-only: "top1")
[ "$(num "$t" top1)" != - ] || { echo "demo-table.sh: $TEACHER_EVAL: missing, or no numeric top1" >&2; bad=1; }
records() { "$BIN"/tsinfo --json "$1" | sed -n 's/.*"records": *\([0-9]*\).*/\1/p' | head -n 1; }
ntrain=$(records "$TRAIN")
echo
echo "Fashion-MNIST, IPC $IPC ($(records "$DIR_FADRM/distilled.tsr") images), seed $SEED; student $STUDENT from scratch, $EPOCHS epochs,"
echo "top-1 % on the $(records "$VAL") test images: final = last epoch, best = max over the evaluations"
echo "(every $EVAL_EVERY epochs and the last). distill_s / dist_cpu_s = wall / CPU seconds of the stages"
echo "that make the images (patchsel; + recover for SRe2L++ and FADRM); label_bytes = the FKD label"
echo "stream as stored (0: RDED's online teacher stores none; INFER: its static labels' share of the set);"
echo "l+train_s = relabel + student, wall."
echo
printf "$fmt" method protocol final best distill_s dist_cpu_s label_bytes l+train_s
fkd random "$DIR_RANDOM" "$DIR_RANDOM/distilled.tsr"
fkd RDED "$DIR_RDED" "$DIR_RDED/distilled.tsr"
fkd SRe2L++ "$DIR_SRE2LPP" "$DIR_RDED/distilled.tsr" "$DIR_SRE2LPP/distilled.tsr"
fkd FADRM "$DIR_FADRM" "$DIR_RDED/distilled.tsr" "$DIR_FADRM/distilled.tsr"
row RDED "online teacher (own)" "$ONLINE" "$(sec "$DIR_RDED/distilled.tsr")" "$(cpu "$DIR_RDED/distilled.tsr")" 0 "$(sec "$ONLINE")"
row INFER "static labels (own)" "$INFER_EVAL" "$(add "$(sec "$INFER_INIT")" "$(sec "$DIR_INFER/distilled.tsr")")" \
    "$(add "$(cpu "$INFER_INIT")" "$(cpu "$DIR_INFER/distilled.tsr")")" \
    "$(awk -v a="$(size "$DIR_INFER/static.tsr")" -v b="$(size "$DIR_INFER/distilled.tsr")" \
        'BEGIN { if (a == "?" || b == "?") print "?"; else print a - b }')" \
    "$(add "$(sec "$DIR_INFER/static.tsr")" "$(sec "$INFER_EVAL")")"
echo
tw=${TEACHER_LOG%.jsonl}.safetensors
echo "teacher: $TEACHER, hard labels on all $ntrain training images, $TEACHER_EPOCHS epoch(s),"
dflt="evaltrain's hard-label defaults (SGD lr 0.05, batch 128, flip)"
echo "  ${TEACHER_OPTS:-$dflt}: top-1 $(num "$t" top1) % (on the same test images)"
echo "  (trained in $(sec "$tw") s wall, $(cpu "$tw") s CPU)"
echo "full-data accuracy: $(num "$t" top1) % = the same run: a $STUDENT trained on the whole training set"
echo "  with hard labels instead of a distilled set (the teacher is that model)."
echo "recover: $ITERS steps; FADRM with $ARC merges, alpha $ALPHA; SRe2L++ without merges."
echo "INFER: $IPC_INIT random real images per class and their copies with one compensator per ipc index"
echo "  ($(records "$DIR_INFER/distilled.tsr") images: IPC $IPC by INFER's count, the compensators shared by the classes),"
ufc_steps="$INFER_ITERS steps"
[ -n "$INFER_ITERS" ] || ufc_steps="its default steps (1000 below 128 px)"
echo "  recover --ufc $ufc_steps; static labels, MixUp 0.8, T $INFER_T, batch 64, $INFER_EPOCHS epochs"
echo "  (its own protocol)."
echo
echo "contact sheets (one row per class):"
for d in "$DIR_RANDOM" "$DIR_RDED" "$DIR_SRE2LPP" "$DIR_FADRM" "$DIR_INFER"; do echo "  $d/sheet.png"; done
echo "recover loss curves: $LOSS"
echo
echo "stage timings (wall s, CPU s) from the *.sec files:"
for f in "$tw" "$DIR_RANDOM"/*.sec "$DIR_RDED"/*.sec "$DIR_SRE2LPP"/*.sec "$DIR_FADRM"/*.sec "$INFER_INIT.sec" "$DIR_INFER"/*.sec; do
    f=${f%.sec}
    # a stage's time only beside its output (not an interrupted run's)
    if [ -f "$f.sec" ] && [ -e "$f" ]; then printf '  %9s %9s  %s\n' "$(sec "$f")" "$(cpu "$f")" "$f"; fi
done
now=$(date +%s.%N)
cpu_all="?"   # (the times make demo wrote after its stages: none after demo-all alone)
[ -f "$TIMES" ] && cpu_all=$(sed -n 2p "$TIMES" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] } printf "%.0f", t }')
echo
printf 'demo wall time: %.0f s for this run (make -j%s; stages already made are not re-run),\n' \
    "$(awk -v a="$DEMO_T0" -v b="$now" 'BEGIN { print b - a }')" "$JOBS"
echo "  CPU time of its stages: $cpu_all s; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $bad
