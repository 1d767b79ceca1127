# parity/resample.sh - resample (plain and --antialias, up and down) and arcmerge against PyTorch's
# F.interpolate(mode='bilinear', align_corners=False[, antialias=True]) on the same random data.
# Tolerance 1e-6 for both (values in [0,1]; measured: bitwise equal for C=3 plain bilinear, within
# 1-2 float32 ulps elsewhere, where PyTorch's summation order depends on its build's FMA use).
source "$TESTS/golden/lib.sh"
have_torch || { echo "SKIP: python3 torch is not importable ($PYTHON)"; exit 77; }
ref() { "$PYTHON" "$TESTS/parity/resample_ref.py" "$@"; }
TOL=1e-6
case_() {  # name N C H W OH OW
    local n=$1; shift
    ref gen "src_$n" "$1" "$2" "$3" "$4" 7 && "$BIN/tsimport" --format npy "src_$n" >"src_$n.tsr"
    for aa in 0 1; do
        local flag=; [ $aa = 1 ] && flag=--antialias
        rm -rf "out_${n}_$aa"
        "$BIN/resample" $flag --size "$5x$6" "src_$n.tsr" | "$BIN/tsexport" --npy "out_${n}_$aa" - \
            && ref check "out_${n}_$aa" "src_$n" "$5" "$6" $aa $TOL || fail "resample $n antialias=$aa"
    done
}
case_ fm_down 6 1 28 28 20 20
case_ fm_up 6 1 28 28 37 37
case_ rgb_down 2 3 224 224 200 200
case_ rgb_up 2 3 200 200 224 224
case_ odd 3 3 30 17 13 41
case_ tiny 2 2 9 9 3 2
# arcmerge: P at 28 px, x at 20 px (P resampled), and at the same size.
ref gen P 6 3 28 28 1 && ref gen X 6 3 20 20 2 && ref gen X28 6 3 28 28 3
for d in P X X28; do "$BIN/tsimport" --format npy $d >$d.tsr; done
"$BIN/arcmerge" --alpha 0.5 P.tsr <X.tsr | "$BIN/tsexport" --npy M - && ref merge M X P 0.5 $TOL || fail "arcmerge resampled"
"$BIN/arcmerge" --alpha 0.3 P.tsr <X28.tsr | "$BIN/tsexport" --npy M28 - && ref merge M28 X28 P 0.3 $TOL || fail "arcmerge same size"
finish
