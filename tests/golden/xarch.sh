# xarch: pipelines/xarch.mk (the cross-architecture table) on a tiny Fashion-MNIST problem: 300
# training and 100 test images, 1-epoch teachers, FADRM+ with 2 teachers of different
# architectures (convnet3, mobilenet_v2m), IPC 2, 8 recover steps, 2 students of different
# architectures (convnet3, mobilenet_v2m) trained 2 epochs. Checks: the table has a header with
# the 4 method columns and one row per student, each cell "final (best)" numbers; a re-run runs
# no program (make -q, and no $BIN command in make xarch's output); adding a student to STUDENTS
# plans and runs only that student's 4 evaluations; a cell without a number fails the table
# (exit 1, the file named) and leaves the previous table file in place. About 30 s on 2 cores.
source "$TESTS/golden/lib.sh"
[ -d "$fmnist" ] || { echo "Fashion-MNIST not installed at $fmnist"; exit 77; }
P=$TESTS/../pipelines
tiny=(BIN="$BIN" OUT=out TRAIN_N=300 VAL_N=100 TEACHER_EPOCHS=1 IPC=2 CANDIDATES=20 CROPS=2 ITERS=8
      EPOCHS=2 EVAL_EVERY=1 METRICS_EVERY=1 TEACHER=convnet3 "TEACHERS=convnet3 mobilenet_v2m" JOBS=2)
two=("STUDENTS=convnet3 mobilenet_v2m")
three=("STUDENTS=convnet3 mobilenet_v2m shufflenet_v2_x0_5m")
mk() { make --no-print-directory -f "$P/xarch.mk" "${tiny[@]}" "$@"; }
methods="RDED SRe2L++ FADRM FADRM+"

# check_table FILE STUDENT...: the header row names the 4 methods; one row per student, in order,
# with 4 cells "N (N)"; nothing else in the table block
check_table() {
    local f=$1 hdr rows; shift
    hdr=$(grep -m 1 '^student ' "$f" || true)
    [ "$(echo $hdr)" = "student $methods" ] || { fail "$f: header row '$hdr'"; return; }
    rows=$(sed -n '/^student /,/^$/p' "$f" | sed '1d;/^$/d')
    [ "$(wc -l <<<"$rows")" = $# ] || fail "$f: $(wc -l <<<"$rows") rows for $# students: $rows"
    local num='[0-9]+(\.[0-9]+)?' s i=0
    for s in "$@"; do
        i=$((i + 1))
        sed -n "${i}p" <<<"$rows" | grep -Eq "^$s( +$num \($num\)){4}$" \
            && ok "table row $s: 4 numeric cells" || fail "$f: row $i for $s: '$(sed -n "${i}p" <<<"$rows")'"
    done
}

if mk "${two[@]}" >log.run 2>&1; then ok "xarch.mk: 4 methods x 2 students, table printed"
else fail "xarch.mk: $(tail -n 5 log.run)"; fi
table=$(mk -s "${two[@]}" print-XA_TABLE)
[ -s "$table" ] && check_table "$table" convnet3 mobilenet_v2m || fail "no table file $table"
grep -q "IPC 2 (20 images per set)" "$table" && grep -q "first 300 training images" "$table" \
    && grep -q "first 100 test images" "$table" && grep -q "convnet3 mobilenet_v2m round robin" "$table" \
    && grep -q "recover: 8 steps" "$table" && grep -q "2 epochs of FKD labels" "$table" \
    && ok "table header states IPC, train/val sizes, teachers, steps, epochs" \
    || fail "table header: $(sed -n 2,12p "$table")"
n=$(grep -c -F "$BIN/evaltrain" log.run || true)
[ "$n" = 12 ] && [ "$(grep -c -F -- "--eval-only" log.run)" = 2 ] \
    && ok "12 evaltrain runs: 2 teachers, their evaluations on the test images + 4 methods x 2 students" \
    || fail "$n evaltrain runs, want 12"

# a re-run does nothing
mk -q "${two[@]}" xarch-all && ok "re-run: make -q xarch-all: up to date" || fail "re-run: make -q says out of date"
mk "${two[@]}" >log.again 2>&1 || fail "re-run failed: $(tail -n 3 log.again)"
grep -q -F "$BIN/" log.again && fail "re-run ran: $(grep -F "$BIN/" log.again | head -n 2 | cut -c1-160)" \
    || ok "re-run: no program run, table printed again"
check_table log.again convnet3 mobilenet_v2m

# a third student: only its evaluations, one per method
plan=$(mk -n "${three[@]}" xarch-all 2>&1 | grep -F "$BIN/" || true)
new=$(grep -c -E "$BIN/evaltrain .* -m shufflenet_v2_x0_5m --labels" <<<"$plan" || true)
[ "$new" = 4 ] && [ "$(wc -l <<<"$plan")" = 4 ] && ok "STUDENTS + shufflenet_v2_x0_5m: make -n plans its 4 evaluations only" \
    || fail "STUDENTS + shufflenet_v2_x0_5m plans: $(cut -c1-160 <<<"$plan")"
if mk "${three[@]}" >log.three 2>&1; then
    n=$(grep -c -F "$BIN/" log.three || true)
    [ "$n" = 4 ] && ok "STUDENTS + shufflenet_v2_x0_5m: ran 4 programs" || fail "ran $n programs, want 4"
    # its own table file (tables of other settings are kept), the two-student one unchanged
    table3=$(mk -s "${three[@]}" print-XA_TABLE)
    [ "$table3" != "$table" ] && check_table "$table3" convnet3 mobilenet_v2m shufflenet_v2_x0_5m \
        && check_table "$table" convnet3 mobilenet_v2m || fail "three students' table $table3"
else fail "3 students: $(tail -n 5 log.three)"; fi

# a cell without a number fails the table, naming the file; the last good table stays
e=$(mk -s "${three[@]}" print-FADRM_DIR)/eval-$(mk -s "${three[@]}" print-EVAL_ID | sed 's/^convnet3/mobilenet_v2m/').jsonl
[ -s "$e" ] || fail "no $e"
cp -p "$e" saved.jsonl
sed -i '$ s/"final_top1":[^,]*/"final_top1":null/' "$e"
touch -r saved.jsonl "$e"
rc=0; mk "${three[@]}" xarch-table >log.bad 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "xarch-table.sh: $e: last line has no numeric" log.bad \
    && grep -Eq "^mobilenet_v2m( +[^ ]+ \([^ ]+\)){2} +- " log.bad \
    && ok "a null cell: exit $rc, the file named, '-' in its cell" || fail "a null cell: exit $rc: $(tail -n 4 log.bad)"
check_table "$table3" convnet3 mobilenet_v2m shufflenet_v2_x0_5m
mv saved.jsonl "$e"
finish
