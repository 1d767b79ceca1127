# cudaload: the CUDA backend is a library of its own (build/lib/libddpipe-cuda.so) that a program opens
# when -d cuda is asked (libcommon/nn/cudaload/load.c). No program links a CUDA library; each program
# that takes -d opens the library and gets as far as the device (exit 3 naming the CUDA call where there
# is none: the library loaded, its symbols resolved against the program) - which golden-cuda, a SKIP
# without a device, cannot tell from a library that failed to load; DD_CUDA_LIB and its errors; a
# program copied elsewhere finds the build tree's library.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
so=$TESTS/../$BUILD/lib/libddpipe-cuda.so
[ -f "$so" ] || { echo "SKIP: built without CUDA (no $BUILD/lib/libddpipe-cuda.so)"; exit 77; }
linked=
for p in "$BIN"/* "$TESTS/../$BUILD"/bench/* "$TESTS/../$BUILD"/tests/test_*; do
    ldd "$p" 2>/dev/null | grep -qE 'libcudnn|libcublas|libcudart' && linked="$linked $(basename "$p")"
done
[ -z "$linked" ] && ldd "$so" | grep -q libcudnn && ok "no program links a CUDA library; the backend's library does" \
    || fail "CUDA libraries linked into:$linked"
fm_small 60
"$TESTS/../$BUILD/tests/parity/recover_tool" teacher t.safetensors convnet3:width=8 fm.tsr 1 >/dev/null
# on the device: exit 0; without one, exit 3 naming the CUDA call that found none (not a load error)
reached() {   # PROG ARGS...
    local p=$1 rc=0; shift
    "$BIN/$p" -d cuda "$@" >out.bin 2>err.txt || rc=$?
    if [ $rc = 0 ] || { [ $rc = 3 ] && grep -q "^$p: cuda: cuda[A-Za-z]*: " err.txt; }; then
        ok "$p -d cuda: the library opened, the device asked for (exit $rc$(head -c 120 err.txt | sed 's/^/: /'))"
    else fail "$p -d cuda: exit $rc: $(cat err.txt)"; fi
}
reached evaltrain --eval-only -w t.safetensors fm.tsr
reached patchsel -w t.safetensors --ipc 1 fm.tsr
reached recover -w t.safetensors --iters 1 --arc 0 fm.tsr
reached relabel -w t.safetensors --static fm.tsr
# DD_CUDA_LIB: a file that is not there, a file that is no library, a library without the entry point
for c in "$PWD/none.so:cuda: cannot load the CUDA backend: $PWD/none.so: cannot open shared object file" \
         "$PWD/fm.tsr:cuda: cannot load the CUDA backend: $PWD/fm.tsr:" \
         "/lib/x86_64-linux-gnu/libz.so.1:cuda: /lib/x86_64-linux-gnu/libz.so.1 is not this build's CUDA backend"; do
    [ -e "${c%%:*}" ] || [ "${c%%:*}" = "$PWD/none.so" ] || continue   # (no libz there: another layout)
    rc=0; DD_CUDA_LIB=${c%%:*} "$BIN/evaltrain" -d cuda --eval-only -w t.safetensors fm.tsr >out.bin 2>err.txt || rc=$?
    [ $rc = 3 ] && [ ! -s out.bin ] && grep -q "^evaltrain: ${c#*:}" err.txt && ok "DD_CUDA_LIB=${c%%:*}: $(cat err.txt)" \
        || fail "DD_CUDA_LIB=${c%%:*}: exit $rc: $(cat err.txt)"
done
rc=0; DD_CUDA_LIB=$PWD/none.so "$BIN/evaltrain" --eval-only -w t.safetensors fm.tsr >out.bin 2>err.txt || rc=$?
[ $rc = 0 ] && [ ! -s err.txt ] && ok "-d cpu (the default) opens no library" || fail "-d cpu with no library: exit $rc: $(cat err.txt)"
# a program copied away from the build tree still finds the tree's library (by its absolute path)
mkdir -p away/bin && cp "$BIN/evaltrain" away/bin/
rc=0; away/bin/evaltrain -d cuda --eval-only -w t.safetensors fm.tsr >out.bin 2>err.txt || rc=$?
[ $rc = 0 ] || { [ $rc = 3 ] && grep -q "^evaltrain: cuda: cuda[A-Za-z]*: " err.txt; } \
    && ok "a program copied elsewhere: the build tree's library (exit $rc)" || fail "copied program: exit $rc: $(cat err.txt)"
finish
