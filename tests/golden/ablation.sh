# ablation: pipelines/ablation.mk (FADRM's ablations) on a tiny Fashion-MNIST problem: 300
# training and 100 test images, a 1-epoch teacher, IPC 2, 8 recover steps, 2 student epochs, three
# configurations (k3-a0.5, k0 = SRe2L++, k1-a0.3-f2 = one merge at alpha 0.3 from 2x2 patches) x
# 2 seeds. Checks: each run's recover has its configuration's options; the table has one row per
# configuration with a "final (best)" cell per seed and the means; the k3-a0.5 run of seed 0 is
# the one fadrm.mk makes with those parameters (same directory, not re-run); a re-run runs no
# program; a bad configuration name is an error; a cell without a number fails the table (exit
# 1, the file named) and keeps the last good table.
source "$TESTS/golden/lib.sh"
[ -d "$fmnist" ] || { echo "Fashion-MNIST not installed at $fmnist"; exit 77; }
P=$TESTS/../pipelines
tiny=(BIN="$BIN" OUT=out TRAIN_N=300 VAL_N=100 TEACHER_EPOCHS=1 IPC=2 CANDIDATES=20 CROPS=2 ITERS=8 EPOCHS=2
      EVAL_EVERY=1 METRICS_EVERY=1 JOBS=2 "ABLATION=k3-a0.5 k0 k1-a0.3-f2" "SEEDS=0 1")
mk() { make --no-print-directory -f "$P/ablation.mk" "${tiny[@]}" "$@"; }
num='[0-9]+(\.[0-9]+)?'

# fadrm.mk's own run first: the ablation must find it made
make --no-print-directory -f "$P/fadrm.mk" "${tiny[@]}" fadrm >log.fadrm 2>&1 || fail "fadrm.mk: $(tail -n 3 log.fadrm)"
fd=$(make --no-print-directory -s -f "$P/fadrm.mk" "${tiny[@]}" print-FADRM_DIR)
if mk >log.run 2>&1; then ok "ablation.mk: 3 configurations x 2 seeds, table printed"
else fail "ablation.mk: $(tail -n 5 log.run)"; fi
n=$(grep -c -F "$BIN/recover " log.run || true)
[ "$n" = 5 ] && ok "5 recover runs (fadrm.mk's k3-a0.5 seed 0 reused)" || fail "$n recover runs, want 5"
grep -q -F -- "--iters 8 --arc 0 " log.run && grep -Eq -- "--iters 8 --arc 1 --alpha 0.3 .*-s 1 .*-f2-it8-k1-a0.3-s1/" log.run \
    && grep -Eq -- "/patchsel .*-f 2 -s 1 " log.run && ok "each configuration's options reach patchsel and recover" \
    || fail "options: $(grep -E '/(patchsel|recover) ' log.run | cut -c1-200)"
table=$(mk -s print-AB_TABLE)
[ -s "$table" ] || fail "no table file $table"
rows=$(sed -n '/^config /,/^$/p' "$table" | sed '1d;/^$/d')
cell="$num \($num\)"
grep -Eq "^k3-a0.5 +3 +0.5 +1x1 +$cell +$cell +$num +$num$" <<<"$rows" \
    && grep -Eq "^k0 +0 +- +1x1 +$cell +$cell +$num +$num$" <<<"$rows" \
    && grep -Eq "^k1-a0.3-f2 +1 +0.3 +2x2 +$cell +$cell +$num +$num$" <<<"$rows" && [ "$(wc -l <<<"$rows")" = 3 ] \
    && ok "table: a row per configuration, a cell per seed, means" || fail "table rows: $rows"
f0=$(tail -n 1 "$fd/eval-$(mk -s print-EVAL_ID).jsonl" | sed -n 's/.*"final_top1":\([0-9.]*\).*/\1/p')
grep -Eq "^k3-a0.5 +3 +0.5 +1x1 +$f0 \(" <<<"$rows" && ok "k3-a0.5 seed 0 is fadrm.mk's run ($f0)" \
    || fail "k3-a0.5 seed 0: want $f0: $(head -n 1 <<<"$rows")"
grep -q "IPC 2, teacher convnet3" "$table" && grep -q "recover 8 steps" "$table" && grep -q "on the 100 test images" "$table" \
    && ok "table header states IPC, teacher, steps, test images" || fail "table header: $(sed -n 2,6p "$table")"

# a re-run runs nothing and prints the table again
mk >log.again 2>&1 || fail "re-run failed: $(tail -n 3 log.again)"
grep -q -F "$BIN/" log.again && fail "re-run ran: $(grep -F "$BIN/" log.again | head -n 2 | cut -c1-160)" \
    || ok "re-run: no program run"
grep -q "^k1-a0.3-f2 " log.again && ok "re-run: table printed" || fail "re-run: no table"

rc=0; mk "ABLATION=a0.5" >log.badcfg 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "configuration 'a0.5' has no kK field" log.badcfg && ok "a configuration without k: error" \
    || fail "ABLATION=a0.5: exit $rc: $(tail -n 2 log.badcfg)"

# a cell without a number fails the table, naming the file; the last good table stays
e=$(make --no-print-directory -s -f "$P/sre2lpp.mk" "${tiny[@]}" SEED=1 print-SRE2LPP_DIR)/eval-$(mk -s SEED=1 print-EVAL_ID).jsonl
[ -s "$e" ] || fail "no $e"
cp -p "$e" saved.jsonl && cp -p "$table" table.saved
sed -i '$ s/"final_top1":[^,]*/"final_top1":null/' "$e"
touch -r saved.jsonl "$e"
rc=0; mk ablation-table >log.bad 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "ablation-table.sh: $e: last line has no numeric" log.bad \
    && grep -Eq "^k0 +0 +- +1x1 +$cell +- +- +-$" log.bad && cmp -s "$table" table.saved \
    && ok "a null cell: exit $rc, the file named, '-' in its cell, the last table kept" \
    || fail "a null cell: exit $rc: $(tail -n 6 log.bad)"
mv saved.jsonl "$e"
# the table's file is named by its runs (every parameter of every stage): other CROPS, another file, and
# the first table stays; a configuration without aA shows the runs' ALPHA, not 0.5
t3=$(mk -s CROPS=3 print-AB_TABLE)
[ "$t3" != "$table" ] && [ "$(mk -s print-AB_TABLE)" = "$table" ] && ok "CROPS=3: another table file" \
    || fail "table names: $table and $t3"
if mk "ABLATION=k1" "SEEDS=0" ALPHA=0.7 >log.alpha 2>&1; then
    grep -Eq "^k1 +1 +0.7 +1x1 " log.alpha && ok "ALPHA=0.7, config k1: alpha 0.7 in the table" \
        || fail "alpha column: $(grep '^k1 ' log.alpha)"
else fail "ABLATION=k1 ALPHA=0.7: $(tail -n 3 log.alpha)"; fi
finish
