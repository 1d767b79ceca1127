#!/usr/bin/env bash
# pipelines/xarch-table.sh - the table `make xarch` prints (called by xarch.mk with the settings and
# paths in the environment): rows = the STUDENTS architectures, columns = RDED, SRe2L++, FADRM,
# FADRM+, each cell the student's top-1 % "final (best)" from the summary line (the last) of
# DIR/eval-ID.jsonl, ID the matching word of STUDENT_IDS. A cell without both numbers is printed
# as "-" and named on stderr (one line per cell: file and problem); the script then exits 1.
set -euo pipefail
export LC_ALL=C   # numbers with a decimal point, whatever the caller's locale
last() { tail -n 1 "$1"; }
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"; }
isnum() { [[ $1 =~ ^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
records() { "$BIN"/tsinfo --json "$1" | sed -n 's/.*"records": *\([0-9]*\).*/\1/p' | head -n 1; }
sec() { awk '{ printf "%.0f\n", $1 }' "$1.sec" 2>/dev/null || echo "?"; }   # wall s of a stage
add() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?" || b == "?") print "?"; else print a + b }'; }
me=xarch-table.sh

read -r -a students <<<"$STUDENTS"
read -r -a ids <<<"$STUDENT_IDS"
read -r -a teachers <<<"$TEACHERS"
read -r -a logs <<<"$TEACHER_LOGS"
[ "${#students[@]}" -gt 0 ] || { echo "$me: STUDENTS is empty" >&2; exit 2; }
[ "${#ids[@]}" = "${#students[@]}" ] || { echo "$me: ${#ids[@]} STUDENT_IDS for ${#students[@]} STUDENTS" >&2; exit 2; }
names=(RDED SRe2L++ FADRM FADRM+)
dirs=("$DIR_RDED" "$DIR_SRE2LPP" "$DIR_FADRM" "$DIR_PLUS")

# the teachers' accuracies on this validation set (evaltrain --eval-only's line beside each log: the
# log's own is on the set the teacher was trained beside)
acc=""
for l in "${logs[@]}"; do
    t=${l##*/}
    a=$(field "$(last "${l%.jsonl}-eval-$VAL_EVAL_ID.json" 2>/dev/null || true)" top1)
    acc+="${acc:+, }${t%%-e"$TEACHER_EPOCHS"*} ${a:-?}"
done

echo
echo "Cross-architecture table, Fashion-MNIST: IPC $IPC ($(records "$DIR_PLUS/distilled.tsr") images per set), seed $SEED."
echo "data: the first $(records "$TRAIN") training images (teachers, patch selection);"
echo "  top-1 % on the first $(records "$VAL") test images."
echo "teachers: $TEACHER (RDED, SRe2L++, FADRM); FADRM+: ${teachers[*]} round robin by step,"
echo "  its labels the mean of their logits. Each $TEACHER_EPOCHS epoch(s) of evaltrain's hard-label SGD"
echo "  (${TEACHER_OPTS:-defaults}); their top-1 %: $acc."
echo "recover: $ITERS steps from RDED's patches; SRe2L++ without merges, FADRM and FADRM+ with $ARC"
echo "  merges, alpha $ALPHA."
echo "students: from scratch, $EPOCHS epochs of FKD labels (relabel --bn $RELABEL_BN, one label set"
echo "  per method) replayed by evaltrain --labels, evaluated every $EVAL_EVERY epochs and at the last."
echo "cells: top-1 % final (best over the evaluations)."
echo

w=7
for s in "${students[@]}"; do [ ${#s} -gt $w ] && w=${#s}; done
# a row: the name, then cells 15 wide, two spaces apart, no trailing blanks
row() { local r; r=$(printf "%-${w}s" "$1"; shift; printf '  %-15s' "$@"); echo "${r%"${r##*[! ]}"}"; }
row student "${names[@]}"
bad=0
for i in "${!students[@]}"; do
    cells=()
    for d in "${dirs[@]}"; do
        f=$d/eval-${ids[i]}.jsonl cell=-
        if [ ! -s "$f" ]; then
            echo "$me: $f: missing or empty" >&2; bad=$((bad + 1))
        else
            l=$(last "$f"); fin=$(field "$l" final_top1); best=$(field "$l" best_top1)
            if isnum "$fin" && isnum "$best"; then cell="$fin ($best)"
            else echo "$me: $f: last line has no numeric final_top1 and best_top1" >&2; bad=$((bad + 1)); fi
        fi
        cells+=("$cell")
    done
    row "${students[i]}" "${cells[@]}"
done

echo
p=$(sec "$DIR_RDED/distilled.tsr")
printf "distillation wall s: RDED %s (patchsel), SRe2L++ %s, FADRM %s, FADRM+ %s (patchsel + recover)\n" "$p" \
    "$(add "$p" "$(sec "$DIR_SRE2LPP/distilled.tsr")")" "$(add "$p" "$(sec "$DIR_FADRM/distilled.tsr")")" \
    "$(add "$(sec "$PLUS_PATCHES")" "$(sec "$DIR_PLUS/distilled.tsr")")"
if [ -n "${XA_T0:-}" ]; then
    printf 'xarch wall time: %.0f s for this run (stages already made are not re-run)\n' \
        "$(awk -v a="$XA_T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
fi
if [ "$bad" -gt 0 ]; then echo "$me: $bad cell(s) without a number" >&2; exit 1; fi
