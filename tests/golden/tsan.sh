# tsan: the CPU backend's worker pool (libcommon/nn/cpu/pool.c) under ThreadSanitizer: test_pool's
# jobs (back to back, slow items, sleeping workers, pauses) with every access of the pool's and
# the jobs' memory checked for races. Its plain build (build/tests/test_pool) never showed the race
# the pool had between one job's end and the next's start; this build showed it on every run.
# SKIP where the compiler could not build it, or the kernel's address layout is one TSan refuses.
source "$TESTS/golden/lib.sh"
bin=$TESTS/../$BUILD/tests/tsan/test_pool
[ -x "$bin" ] || { fail "$bin not built (make)"; finish; }
rc=0; "$bin" >out.txt 2>&1 || rc=$?
if [ $rc = 77 ]; then tail -n 1 out.txt; exit 77; fi
if grep -q "FATAL: ThreadSanitizer: unexpected memory mapping" out.txt; then
    echo "SKIP: ThreadSanitizer cannot run here: $(grep -m1 FATAL out.txt)"; exit 77
fi
if [ $rc = 0 ] && ! grep -q "WARNING: ThreadSanitizer" out.txt; then ok "test_pool under ThreadSanitizer: no race, every check held"
else cat out.txt | head -n 40; fail "test_pool under ThreadSanitizer: exit $rc"; fi
finish
