#!/usr/bin/env bash
# pipelines/ablation-table.sh RUNS - the table `make ablation` prints (called by ablation.mk with
# the settings in the environment). RUNS: a line "CONFIG SEED EVAL.jsonl" per run; each cell is
# "final (best)" top-1 % from evaltrain's last line. Exit 1 naming the file where a run's last
# line has no numeric top-1 (its cell reads "-").
set -euo pipefail
export LC_ALL=C   # numbers with a decimal point, whatever the caller's locale
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\)[,}].*/\1/p" <<<"$1"; }
records() { "$BIN"/tsinfo --json "$1" | sed -n 's/.*"records": *\([0-9]*\).*/\1/p' | head -n 1; }
arg() { tr '-' '\n' <<<"$1" | sed -n "s/^$2//p"; }
read -r -a seeds <<<"$SEEDS"
bad=0
t=$(tail -n 1 "$TEACHER_EVAL")   # the teacher's top-1 on this validation set (evaltrain --eval-only)
echo
echo "FADRM ablations: Fashion-MNIST ($(records "$TRAIN") training images), IPC $IPC, teacher $TEACHER ($TEACHER_EPOCHS epoch(s),"
echo "top-1 $(field "$t" top1) %), recover $ITERS steps; student $STUDENT from scratch on FKD labels, $EPOCHS epochs;"
echo "top-1 % on the $(records "$VAL") test images: final (best over the evaluations every $EVAL_EVERY epochs and the last)."
echo "k: ARC merges (k+1 stages; 0 = no residual, SRe2L++), alpha: the weight of x in a merge, patches:"
echo "patchsel's F x F crops per image."
echo
hdr=$(printf '%-14s %2s %5s %7s' config k alpha patches)
for s in "${seeds[@]}"; do hdr+=$(printf '  %-15s' "seed $s"); done
echo "$hdr  $(printf '%6s %6s' mean_f mean_b)"
for c in $ABLATION; do
    k=$(arg "$c" k); a=$(arg "$c" a); f=$(arg "$c" f)
    [ "$k" = 0 ] && a=- || a=${a:-$ALPHA}   # a configuration without aA: the run's ALPHA
    row=$(printf '%-14s %2s %5s %7s' "$c" "$k" "$a" "${f:-1}x${f:-1}")
    sf=0; sb=0; n=0
    for s in "${seeds[@]}"; do
        e=$(awk -v c="$c" -v s="$s" '$1 == c && $2 == s { print $3 }' "$1")
        l=$(tail -n 1 "$e" 2>/dev/null || true)
        fin=$(field "$l" final_top1); best=$(field "$l" best_top1)
        if [ -z "$fin" ] || [ -z "$best" ]; then
            echo "ablation-table.sh: $e: last line has no numeric final_top1/best_top1" >&2; bad=1
            row+=$(printf '  %-15s' -)
        else
            row+=$(printf '  %-15s' "$fin ($best)")
            sf=$(awk -v a="$sf" -v b="$fin" 'BEGIN { print a + b }'); sb=$(awk -v a="$sb" -v b="$best" 'BEGIN { print a + b }')
            n=$((n + 1))
        fi
    done
    if [ $n = ${#seeds[@]} ]; then row+=$(awk -v f="$sf" -v b="$sb" -v n="$n" 'BEGIN { printf "  %6.2f %6.2f", f / n, b / n }')
    else row+="       -      -"; fi
    echo "$row"
done
echo
echo "The FADRM paper's directions (ImageNet-1k, ResNet-18, ddpipe-method(7) section 6): alpha 0.5 best; ARC"
echo "over none +1.3 points at IPC 10; k = 3 best; 1x1 patches slightly better than 2x2."
exit $bad
