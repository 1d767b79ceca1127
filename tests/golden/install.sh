# install: make install DESTDIR=... PREFIX=/usr puts the programs, the man pages and the make
# fragments in place; the installed fragments find the installed programs by themselves (no BIN)
# and run a method (RDED on 300 Fashion-MNIST images, a 1-epoch teacher, IPC 2). BIN is taken out
# of the environment (lib.sh sets it), as a make variable from there would be used. A plain make
# without a library's headers (or with a link that fails) stops with one line naming what to install.
source "$TESTS/golden/lib.sh"
[ -d "$fmnist" ] || { echo "Fashion-MNIST not installed at $fmnist"; exit 77; }
root=$PWD/root
make -C "$TESTS/.." --no-print-directory install BUILD="$BUILD" DESTDIR="$root" PREFIX=/usr >log.install 2>&1 \
    || fail "make install: $(tail -n 3 log.install)"
progs=(tsimport tsinfo tscat tsexport tscmp resample arcmerge patchsel recover relabel evaltrain)
n=0; for p in "${progs[@]}"; do [ -x "$root/usr/bin/$p" ] && n=$((n + 1)); done
[ "$n" = ${#progs[@]} ] && "$root/usr/bin/recover" --version >/dev/null \
    && ok "the ${#progs[@]} programs in PREFIX/bin" || fail "programs: $(ls "$root/usr/bin")"
# the CUDA backend's library, where the installed programs look first (PREFIX/lib/ddpipe)
if [ -f "$TESTS/../$BUILD/lib/libddpipe-cuda.so" ]; then
    [ -f "$root/usr/lib/ddpipe/libddpipe-cuda.so" ] || fail "no PREFIX/lib/ddpipe/libddpipe-cuda.so"
    if command -v strace >/dev/null && strace -o st.txt true 2>/dev/null; then
        "$root/usr/bin/tsimport" --limit 20 "$fmnist" >f20.tsr
        rc=0; strace -f -e trace=openat -o st.txt "$root/usr/bin/evaltrain" -d cuda -m convnet3 --epochs 1 f20.tsr \
            >/dev/null 2>err.txt || rc=$?
        grep -q "openat(.*\"$root/usr/bin/../lib/ddpipe/libddpipe-cuda.so\"" st.txt \
            && ok "the installed evaltrain opens PREFIX/lib/ddpipe/libddpipe-cuda.so (exit $rc)" \
            || fail "installed evaltrain's library: $(grep libddpipe-cuda st.txt | head -n 2) $(cat err.txt)"
    else echo "note: no strace here: which library the installed evaltrain opens is not checked"; fi
fi
for m in man1/tsexport.1 man1/recover.1 man5/ddpipe-stream.5 man7/ddpipe.7 man7/ddpipe-cuda.7 man7/ddpipe-method.7; do
    [ -f "$root/usr/share/man/$m" ] || fail "no $m"
done
P=$root/usr/share/ddpipe/pipelines
for f in common.mk fadrm.mk rded.mk demo.mk demo-table.sh recover-loss.gp torch2safetensors.py; do
    [ -f "$P/$f" ] || fail "no pipelines/$f in $P"
done
[ -x "$P/torch2safetensors.py" ] || fail "torch2safetensors.py not executable"
bin=$(env -u BIN make --no-print-directory -s -f "$P/rded.mk" print-BIN)
[ "$bin" = "$root/usr/bin" ] && ok "installed fragments: BIN is PREFIX/bin ($bin)" || fail "installed BIN: $bin"
bin=$(env -u BIN make --no-print-directory -s -f "$TESTS/../pipelines/rded.mk" print-BIN)
[ "$bin" = "$(cd "$TESTS/.." && pwd)/build/bin" ] && ok "the source tree's fragments: BIN is build/bin" \
    || fail "source tree BIN: $bin"
tiny=(OUT=out TRAIN_N=300 VAL_N=100 TEACHER_EPOCHS=1 IPC=2 CANDIDATES=20 CROPS=2 EPOCHS=1 EVAL_EVERY=1 THREADS=1)
if env -u BIN make --no-print-directory -f "$P/rded.mk" "${tiny[@]}" >log.rded 2>&1 \
    && grep -q "$root/usr/bin/patchsel" log.rded && grep -q final_top1 out/fmnist/*/rded/*/online-*.jsonl; then
    ok "rded.mk from PREFIX/share/ddpipe/pipelines with PREFIX/bin: $(tail -n 1 log.rded | cut -c1-80)"
else fail "installed rded.mk: $(tail -n 3 log.rded)"; fi
# a plain make on a machine without a library's headers, or whose link fails: one line naming what
# to install, before any compile (a fresh build directory; the header and library are made up)
rc=0; make -C "$TESTS/.." --no-print-directory BUILD="$PWD/nodeps" \
    BUILD_HEADERS="jansson.h:libjansson-dev ddpipe_absent.h:libddpipe-absent-dev" >log.nodeps 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "^make: headers missing; install the Debian packages: libddpipe-absent-dev (as root: make deps)$" \
    log.nodeps && [ -z "$(find nodeps -name '*.o' 2>/dev/null)" ] \
    && ok "missing headers: $(head -n 1 log.nodeps)" || fail "missing headers: exit $rc: $(head -n 3 log.nodeps)"
rc=0; make -C "$TESTS/.." --no-print-directory BUILD="$PWD/nolib" LDLIBS="-lddpipe_absent" >log.nolib 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "^make: linking with '-lddpipe_absent' fails" log.nolib && grep -q "cannot find -lddpipe_absent" log.nolib \
    && [ -z "$(find nolib -name '*.o' 2>/dev/null)" ] && ok "a library missing: $(head -n 1 log.nolib)" \
    || fail "missing library: exit $rc: $(head -n 3 log.nolib)"
finish
