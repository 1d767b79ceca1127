# DD_NN_PROFILE: the per-kernel time table. A profiled run gives the same bytes as an unprofiled
# one; the table adds up, counts what the run did (a small recover: 2 batches x 40 steps of a
# frozen convnet3 teacher, so every convolution runs forward and backward-data 80 times and never
# backward-filter); it goes to stderr for 1, is added to a file for a path, and a file that cannot be
# written is said on one line without failing the run; the op tests pass through the profiled table
# (every kernel's arguments passed on: finite differences of every op), and together call every
# slot the CPU backend fills.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 300
tool=$TESTS/../$BUILD/tests/parity/recover_tool
"$tool" teacher t.safetensors convnet3:width=16 fm.tsr 1
"$BIN/patchsel" -q -w t.safetensors --ipc 2 --candidates 8 --crops 2 fm.tsr >init.tsr
R=("$BIN/recover" -q -w t.safetensors --iters 40 --arc 3 --alpha 0.5 init.tsr)

"${R[@]}" >plain.tsr 2>plain.err
DD_NN_PROFILE=$PWD/p.txt "${R[@]}" >prof.tsr 2>prof.err
"$BIN/tscmp" --exact plain.tsr prof.tsr >/dev/null && ok "profiled output == unprofiled (tscmp --exact)" \
    || fail "profiling changed the output"
[ ! -s plain.err ] && [ ! -s prof.err ] && ok "-q: nothing on stderr with the table in a file" || fail "stderr: $(cat prof.err)"
"$PYTHON" - p.txt <<'PY' && ok "table: sums, order, 80 forward and backward-data calls a layer, no weight gradient; FLOPs" \
    || fail "table"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
m = re.match(r"nn profile: cpu: recover \(pid [0-9]+\): ([0-9.]+) s in ([0-9]+) kernel calls, of ([0-9.]+) s "
             r"from nn_new to nn_free", lines[0])
assert m, lines[0]
secs, calls, wall = float(m[1]), int(m[2]), float(m[3])
assert lines[1].split() == ["share", "total", "ms", "calls", "ms/call", "GFLOP/s", "kernel", "shape"], lines[1]
m = re.fullmatch(r"convolutions and linear layers: ([0-9.]+) GFLOP \(two a multiply-add\) in ([0-9.]+) s, "
                 r"([0-9.]+) GFLOP/s", lines[-1])
assert m, lines[-1]
gflop, fsecs, frate = float(m[1]), float(m[2]), float(m[3])
rows, rates = [], []
for l in lines[2:-1]:
    f = l.split(None, 6)
    rows.append((float(f[0].rstrip("%")), float(f[1]), int(f[2]), float(f[3]), f[5], f[6] if len(f) > 6 else ""))
    rates.append(f[4])
assert 0 < secs <= wall and len(rows) > 10, (secs, wall, len(rows))
assert sum(r[2] for r in rows) == calls, (sum(r[2] for r in rows), calls)
assert abs(sum(r[1] for r in rows) / 1e3 - secs) < 1e-3 + 1e-6 * len(rows), secs
assert abs(sum(r[0] for r in rows) - 100) < 0.05 * len(rows), sum(r[0] for r in rows)
assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True), "not by total time"
for r in rows:
    assert abs(r[3] * r[2] - r[1]) <= 5e-4 + 5e-5 * r[2] + 1e-3 * r[1], r   # printed to 3 and 4 places
assert len({(r[4], r[5]) for r in rows}) == len(rows), "a kernel and shape twice"
conv = {(r[4], r[5]): r[2] for r in rows if r[4].startswith("conv2d")}
shapes = ["n10 1x28x28 -> 16x28x28 k3x3 s1 p1 d1 g1", "n10 16x14x14 -> 16x14x14 k3x3 s1 p1 d1 g1",
          "n10 16x7x7 -> 16x7x7 k3x3 s1 p1 d1 g1"]
want = {(k, s): 80 for s in shapes for k in ("conv2d_fwd", "conv2d_bwd_data")}
assert conv == want, conv
assert not any(r[4] == "conv2d_bwd_filter" for r in rows)
lin = {r[4]: (r[5], r[2]) for r in rows if r[4].startswith("linear")}
assert lin == {"linear_fwd": ("n10 144 -> 10", 80), "linear_bwd": ("n10 144 -> 10", 80)}, lin
# FLOPs from the shapes: 2 N Cout OH OW Cin KH KW a convolution pass, 2 N in out a linear one (its
# backward the input gradient alone: the teacher is frozen); a rate where there are FLOPs, "-" elsewhere
want, secs_f = 0, 0.0
for r, rate in zip(rows, rates):
    c = re.fullmatch(r"n(\d+) (\d+)x\d+x\d+ -> (\d+)x(\d+)x(\d+) k(\d+)x(\d+) s1 p1 d1 g1", r[5])
    l = re.fullmatch(r"n(\d+) (\d+) -> (\d+)", r[5])
    if r[4].startswith("conv2d"):
        n, cin, cout, oh, ow, kh, kw = map(int, c.groups())
        f = 2 * n * cout * oh * ow * cin * kh * kw * r[2]
    elif r[4].startswith("linear"):
        n, i, o = map(int, l.groups())
        f = 2 * n * i * o * r[2]
    else:
        assert rate == "-", (r, rate)
        continue
    want += f
    secs_f += r[1] / 1e3
    # the time is printed to 3 places in ms and the rate to 1: the rate must lie within what the rounded
    # time allows (a 0.113 ms row is 0.1125 to 0.1135 ms, a spread of 0.9% in its rate)
    lo, hi = f / ((r[1] + 5e-4) / 1e3) / 1e9, f / (max(r[1] - 5e-4, 1e-9) / 1e3) / 1e9
    assert r[1] > 0 and lo - 0.05 - 1e-6 <= float(rate) <= hi + 0.05 + 1e-6, (r, rate, lo, hi)
assert abs(gflop - want / 1e9) <= 5e-4, (gflop, want)
assert abs(fsecs - secs_f) <= 1e-3 + 1e-6 * len(rows), (fsecs, secs_f)
assert want / (fsecs + 5e-4) / 1e9 - 0.05 - 1e-6 <= frate <= want / max(fsecs - 5e-4, 1e-9) / 1e9 + 0.05 + 1e-6, \
    (fsecs, frate, want)
PY
DD_NN_PROFILE=1 "${R[@]}" >one.tsr 2>one.err
"$BIN/tscmp" --exact plain.tsr one.tsr >/dev/null && grep -q "^nn profile: cpu: " one.err \
    && [ "$(grep -c . one.err)" = "$(grep -c . p.txt)" ] && ok "DD_NN_PROFILE=1: the table on stderr" || fail "=1"
DD_NN_PROFILE=$PWD/p.txt "${R[@]}" >/dev/null
[ "$(grep -c '^nn profile: ' p.txt)" = 2 ] && ok "a second run adds its table to the file" || fail "append"
DD_NN_PROFILE=0 "${R[@]}" >zero.tsr 2>zero.err
[ ! -s zero.err ] && "$BIN/tscmp" --exact plain.tsr zero.tsr >/dev/null && ok "DD_NN_PROFILE=0: off" || fail "=0"
rc=0; DD_NN_PROFILE=$PWD/no/such/dir/p.txt "${R[@]}" >bad.tsr 2>bad.err || rc=$?
if [ $rc = 0 ] && "$BIN/tscmp" --exact plain.tsr bad.tsr >/dev/null && [ "$(wc -l <bad.err)" = 1 ] \
    && grep -q "^nn: DD_NN_PROFILE: cannot write $PWD/no/such/dir/p.txt: No such file or directory$" bad.err; then
    ok "unwritable table file: said, the run unharmed ($(cat bad.err))"
else fail "unwritable: exit $rc $(cat bad.err)"; fi

# Tables of programs running at once, added to one file: each whole (one write per table, to the
# end of the file), every header's call count the sum of the rows that follow it. (Interleaving
# needs two tables written at the same moment: this checks the file, it cannot force the race.)
for i in 1 2 3; do DD_NN_PROFILE=$PWD/many.txt "${R[@]}" >/dev/null & done
DD_NN_PROFILE=$PWD/many.txt "$TESTS/../$BUILD/tests/test_nn_grad" >/dev/null 2>&1 &
wait
"$PYTHON" - many.txt <<'PY' && ok "tables of 4 programs at once, each whole in one file" || fail "concurrent tables"
import re, sys
tables, cur = [], None
for l in open(sys.argv[1]).read().splitlines():
    m = re.match(r"nn profile: cpu: (\S+) \(pid ([0-9]+)\): [0-9.]+ s in ([0-9]+) kernel calls", l)
    if m:
        cur = [m[1], int(m[3]), 0, -1]
        tables.append(cur)
    elif l.split()[:1] == ["share"]:
        assert cur and cur[3] == -1, l
        cur[3] = 0
    else:
        f = l.split(None, 6)
        if l.startswith("convolutions and linear layers: "):
            assert cur and cur[3] == 0, l
            cur[3] = 1
            continue
        assert cur and cur[3] == 0 and f[0].endswith("%") and len(f) >= 6, l
        cur[2] += int(f[2])
progs = sorted(t[0] for t in tables)
assert progs.count("recover") == 3 and progs.count("ddpipe") >= 3, progs   # unit tests: "ddpipe"
for t in tables:
    assert t[1] == t[2] and t[3] == 1, t
print(len(tables), "tables")
PY

# The op tests through the profiled table, and every CPU slot called by one of them
for t in test_nn_grad test_bn_fused test_nn_engine; do
    DD_NN_PROFILE=$PWD/ops.txt "$TESTS/../$BUILD/tests/$t" >"$t.log" 2>&1 && ok "$t passes profiled" \
        || { fail "$t profiled"; tail -n 5 "$t.log"; }
done
src=$TESTS/../libcommon/nn/cpu
slots=$(grep -hoE 'be->[a-z0-9_]+ = ' "$src"/*.c | sed 's/be->//; s/ = //' | sort -u \
    | grep -vxE 'alloc|alloc_uninit|free|destroy|device|impl|name')
called=$(awk '$1 ~ /%$/ && NF >= 6 {print $6}' ops.txt | sort -u)
missing=$(comm -23 <(echo "$slots") <(echo "$called"))
[ "$(echo "$slots" | wc -l)" -gt 45 ] && [ -z "$missing" ] && ok "all $(echo "$slots" | wc -l) timed CPU slots called" \
    || fail "CPU slots never called through the profile: $missing"
finish
