# options: every program's --help and --version, and its options documented in step: each long
# option its getopt table accepts is in --help and in its man page, and each one --help names is in
# the man page (a man page may name more: other programs' options in its examples).
source "$TESTS/golden/lib.sh"
src=$TESTS/../filters
man=$TESTS/../man/man1
# long option names: of a getopt_long table in C, of a --help text, of a man page
opts_src() { awk '/struct option lo\[\] = \{/,/\{0\}\}/' "$1" | grep -oE '\{"[a-z][a-z0-9-]*"' | sed 's/^{"/--/; s/"$//' | sort -u; }
opts_text() { sed 's/\\-/-/g' "$1" | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }
n=0
for c in "$src"/*.c; do
    p=$(basename "$c" .c)
    n=$((n + 1))
    rc=0
    "$BIN/$p" --help >help.txt 2>err.txt || rc=$?
    [ "$rc" = 0 ] && [ ! -s err.txt ] && head -n 1 help.txt | grep -q "^Usage: $p " \
        || { fail "$p --help: exit $rc, stderr '$(head -c 200 err.txt)', first line '$(head -n 1 help.txt)'"; continue; }
    "$BIN/$p" --version | grep -qx "$p (ddpipe) [0-9][0-9.]*" || fail "$p --version: $("$BIN/$p" --version)"
    for o in --help --version; do   # a text that did not reach stdout is a write error, not exit 0
        rc=0; "$BIN/$p" $o >/dev/full 2>err.txt || rc=$?
        [ $rc = 1 ] && grep -qx "$p: stdout: write error: No space left on device" err.txt \
            || fail "$p $o >/dev/full: exit $rc: $(cat err.txt)"
    done
    [ -f "$man/$p.1" ] || { fail "$p: no man page $man/$p.1"; continue; }
    opts_src "$c" >src.txt
    [ -s src.txt ] || { fail "$p: no getopt_long table found in $c"; continue; }
    opts_text help.txt >help_opts.txt
    opts_text "$man/$p.1" >man_opts.txt
    miss=$(comm -23 src.txt help_opts.txt | tr '\n' ' ')
    [ -z "$miss" ] || fail "$p accepts but --help does not name: $miss"
    miss=$(comm -23 src.txt man_opts.txt | tr '\n' ' ')
    [ -z "$miss" ] || fail "$p accepts but $p(1) does not name: $miss"
    miss=$(comm -23 help_opts.txt man_opts.txt | tr '\n' ' ')
    [ -z "$miss" ] || fail "$p --help names but $p(1) does not: $miss"
    # an unknown option, a missing argument, an argument where none is taken: one line naming the
    # program (not getopt's two, with argv[0]'s path), exit 2
    need=$(awk '/struct option lo\[\] = \{/,/\{0\}\}/' "$c" | { grep -oE '\{"[a-z][a-z0-9-]*", 1,' || true; } |
        sed 's/^{"/--/; s/",.*//' | sed -n 1p)   # none in tsinfo's
    for bad in --no-such-option -Z --quiet=1 $need; do
        rc=0; "$BIN/$p" "$bad" </dev/null >out.txt 2>err.txt || rc=$?
        [ "$rc" = 2 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "^$p: .*(try '$p --help')$" err.txt \
            || fail "$p $bad: exit $rc, stderr: $(cat err.txt)"
    done
done
[ "$n" -ge 11 ] || fail "only $n programs under $src"
[ "$fails" = 0 ] && ok "$n programs: --help, --version (a write error said), options in --help and man page, one-line option errors"
# no man page holds control characters (tscat(1) had form feeds where \f was meant)
bad=$(grep -lP '[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]' "$TESTS"/../man/man?/* 2>/dev/null || true)
[ -z "$bad" ] && ok "man pages: no control characters" || fail "control characters in: $bad"
finish
