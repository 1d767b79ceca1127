/* test_base.c - the base module: Philox known-answer vectors, RNG distributions, overflow checks,
 * half-precision conversions, progress lines on a terminal (a pseudo-terminal as stderr), the
 * signal-safe removal of a temporary tree, the temporaries removed at exit (any number), an exit that ends
 * past a library exit handler that never returns. */
#include "libcommon/base/base.h"
#include "libcommon/tensor/tensor.h"
#include "tests/unit/check.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* The progress line on a terminal: drawn, erased before a warning (so the warning starts at the
 * left margin), drawn again at the next update, and closed by a "done" line; a progress too short
 * to draw a line writes nothing at all. stderr is a
 * pseudo-terminal for the while; its bytes are compared. 0 where no pseudo-terminal can be had. */
static int test_progress_tty(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) return 0;
    int s = open(ptsname(m), O_RDWR | O_NOCTTY), saved = dup(STDERR_FILENO);
    if (s < 0 || saved < 0) return 0;
    struct termios t;
    if (tcgetattr(s, &t) == 0) { /* bytes as written: no \n -> \r\n */
        t.c_oflag &= ~(tcflag_t)OPOST;
        tcsetattr(s, TCSANOW, &t);
    }
    fflush(stderr);
    dup2(s, STDERR_FILENO);
    dd_prog_init("test_base");
    DdProgress p;
    dd_progress_start(&p, "steps", 4, 0);
    int tty = p.tty;
    p.last -= 1;                       /* as if 1 s had passed: the next update draws */
    dd_progress_update(&p, 1);
    dd_warn("a warning");              /* the line erased first */
    dd_progress_update(&p, 2);         /* drawn again at once */
    dd_progress_update(&p, 3);         /* within 0.25 s of the last: not drawn */
    dd_progress_end(&p);
    dd_progress_break();               /* nothing shown now: writes nothing */
    DdProgress q;                      /* a run too short to draw a line: no "done" line either */
    dd_progress_start(&q, "records", -1, 0);
    dd_progress_update(&q, 1);
    dd_progress_end(&q);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(s);
    char buf[1024];
    ssize_t n = 0, r;
    fcntl(m, F_SETFL, O_NONBLOCK);
    while (n < (ssize_t)sizeof buf - 1 && (r = read(m, buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += r;
    close(m);
    buf[n < 0 ? 0 : n] = 0;
    CHECK(tty);
    /* the transcript, numbers (rates, ETAs, seconds) aside */
    static const char *const seq[] = {"\rtest_base: steps 1/4 ", "/s ETA ",
                                      "s   \r\033[Ktest_base: a warning\n\rtest_base: steps 2/4 ", "/s ETA ",
                                      "s   \rtest_base: steps 3 done in ", "s\033[K\n"};
    const char *at = buf;
    int ok = 1;
    for (size_t i = 0; ok && i < sizeof seq / sizeof seq[0]; i++) {
        const char *f = strstr(at, seq[i]);
        ok = f != NULL;
        for (; ok && at < f; at++) ok = (*at >= '0' && *at <= '9') || *at == '.';
        if (ok) at = f + strlen(seq[i]);
    }
    CHECK_MSG(ok && !*at, "progress transcript: '%s'", buf);
    return 1;
}

/* dd_remove_tree: a tree deeper than one level, a directory of more entries than one read of
 * getdents returns (2 KiB), a link to a directory outside that must be removed, not followed,
 * and a chain deeper than it goes. */
/* A fresh directory under TMPDIR (else /tmp) into root. */
static void make_root(char *root, size_t size)
{
    snprintf(root, size, "%s/test_base.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(root) != NULL);
}

static void test_remove_tree(void)
{
    char root[200], p[256];
    make_root(root, sizeof root);
    snprintf(p, sizeof p, "%s/out", root);
    CHECK(mkdir(p, 0777) == 0);
    snprintf(p, sizeof p, "%s/out/keep", root);
    FILE *f = fopen(p, "w");
    CHECK(f && fclose(f) == 0);
    snprintf(p, sizeof p, "%s/t", root);
    CHECK(mkdir(p, 0777) == 0);
    for (int d = 0; d < 3; d++) {
        snprintf(p, sizeof p, "%s/t/class_%d", root, d);
        CHECK(mkdir(p, 0777) == 0);
        for (int i = 0; i < 200; i++) {
            snprintf(p, sizeof p, "%s/t/class_%d/a_rather_long_record_key_%06d.png", root, d, i);
            f = fopen(p, "w");
            CHECK(f && fputs("x", f) >= 0 && fclose(f) == 0);
        }
    }
    snprintf(p, sizeof p, "%s/t/class_1/deeper/still", root);
    CHECK(mkdir(p, 0777) < 0); /* not yet: deeper first */
    snprintf(p, sizeof p, "%s/t/class_1/deeper", root);
    CHECK(mkdir(p, 0777) == 0);
    snprintf(p, sizeof p, "%s/t/class_1/deeper/still", root);
    CHECK(mkdir(p, 0777) == 0);
    char target[256];
    snprintf(target, sizeof target, "%s/out", root);
    snprintf(p, sizeof p, "%s/t/link", root);
    CHECK(symlink(target, p) == 0);
    snprintf(p, sizeof p, "%s/t", root);
    dd_remove_tree(p);
    CHECK_MSG(access(p, F_OK) < 0, "%s is still there", p);
    snprintf(p, sizeof p, "%s/out/keep", root);
    CHECK_MSG(access(p, F_OK) == 0, "the link was followed: %s removed", p);
    /* a chain deeper than the 16 levels removed: the call ends (it did not: the level above the
     * deepest kept finding the entry it could not remove), leaving the chain, files above it gone */
    snprintf(p, sizeof p, "%s/deep", root);
    CHECK(mkdir(p, 0777) == 0);
    size_t len = strlen(p);
    for (int d = 0; d < 20; d++) {
        len += (size_t)snprintf(p + len, sizeof p - len, "/d");
        CHECK(mkdir(p, 0777) == 0);
    }
    snprintf(p, sizeof p, "%s/deep/d/f", root);
    f = fopen(p, "w");
    CHECK(f && fclose(f) == 0);
    snprintf(p, sizeof p, "%s/deep", root);
    dd_remove_tree(p);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/deep/d/f", root);
    CHECK_MSG(access(p, F_OK) < 0, "%s was left", p);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/deep'", root);
    CHECK(system(cmd) == 0);
    dd_remove_tree(root);
    CHECK(access(root, F_OK) < 0);
    dd_remove_tree(root); /* a path that is not there: nothing */
}

/* Temporaries listed by dd_atomic_open go at exit before a commit, however many are open (the
 * list was a table of 64, and tscat --shards keeps one per shard until the set is whole); a
 * commit unlists its own, an abort removes it, and unlisted slots are reused. In a child, whose
 * exit runs the handler. */
static void test_atomic_many(void)
{
    char root[200], p[256];
    make_root(root, sizeof root);
    enum { N = 150 };
    pid_t pid = fork();
    if (pid == 0) {
        static DdAtomicFile a[N];
        for (int i = 0; i < N; i++) {
            snprintf(p, sizeof p, "%s/f%03d", root, i);
            if (dd_atomic_open(&a[i], p) || fputs("x", a[i].f) < 0 || dd_atomic_finish(&a[i])) _exit(2);
        }
        if (dd_atomic_commit(&a[0])) _exit(3);   /* f000 stays */
        dd_atomic_abort(&a[1]);                  /* f001's temporary goes now */
        DdAtomicFile b;                          /* a reused slot, committed: stays */
        snprintf(p, sizeof p, "%s/g", root);
        if (dd_atomic_open(&b, p) || dd_atomic_commit(&b)) _exit(4);
        exit(0);                                 /* the other 148 temporaries: the exit handler */
    }
    int st = -1;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    snprintf(p, sizeof p, "ls -A '%s' | tr '\\n' ' '", root);
    FILE *ls = popen(p, "r");
    char got[256] = "";
    CHECK(ls && fgets(got, sizeof got, ls) != NULL && pclose(ls) == 0);
    CHECK_MSG(!strcmp(got, "f000 g "), "left: %s", got);
    dd_remove_tree(root);
}

/* Output kinds: a directory fails at open; a FIFO is written in place (no temporary, no rename
 * that would replace it: devices such as /dev/null take the same path, not tried here, where a
 * broken build run as root would replace the machine's); a link stays a link and its file is
 * replaced, a dangling one's file made where it points; dd_atomic_check opens no FIFO (it would
 * wait for a reader). */
static int put_commit(const char *path, const char *text)
{
    DdAtomicFile a;
    if (dd_atomic_open(&a, path)) return -1;
    fputs(text, a.f);
    return dd_atomic_commit(&a);
}

static int file_is(const char *path, const char *text)
{
    char got[64] = "";
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(got, 1, sizeof got - 1, f) : 0;
    if (f) fclose(f);
    got[n] = 0;
    return !strcmp(got, text);
}

static void test_atomic_kinds(void)
{
    char root[200], p[300], q[320];
    struct stat st;
    make_root(root, sizeof root);
    CHECK(put_commit(root, "x") < 0 && strstr(dd_errmsg(), "is a directory")); /* a directory */
    CHECK(dd_atomic_check(root) < 0);
    snprintf(p, sizeof p, "%s/fifo", root);
    CHECK(mkfifo(p, 0666) == 0);
    CHECK(dd_atomic_check(p) == 0); /* no reader: it must not open */
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "cat '%s' > '%s.got'", p, p);
        _exit(system(cmd) == 0 ? 0 : 1);
    }
    CHECK(put_commit(p, "through") == 0);
    int rc = -1;
    CHECK(waitpid(pid, &rc, 0) == pid && WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    CHECK(stat(p, &st) == 0 && S_ISFIFO(st.st_mode));
    snprintf(q, sizeof q, "%s.got", p);
    CHECK(file_is(q, "through"));
    snprintf(p, sizeof p, "%s/real", root); /* a link to a file: the file replaced, the link kept */
    snprintf(q, sizeof q, "%s/link", root);
    CHECK(put_commit(p, "old") == 0 && symlink("real", q) == 0);
    CHECK(put_commit(q, "new") == 0 && lstat(q, &st) == 0 && S_ISLNK(st.st_mode) && file_is(p, "new"));
    snprintf(p, sizeof p, "%s/sub", root); /* a dangling link, relative to its own directory */
    CHECK(mkdir(p, 0777) == 0);
    snprintf(q, sizeof q, "%s/sub/dangling", root);
    CHECK(symlink("../made", q) == 0);
    CHECK(put_commit(q, "made") == 0 && lstat(q, &st) == 0 && S_ISLNK(st.st_mode));
    snprintf(p, sizeof p, "%s/made", root);
    CHECK(file_is(p, "made"));
    dd_remove_tree(root);
}

/* The default thread count: the cgroup quota's text, and the affinity mask (on one CPU of this
 * thread's mask, 1; on the whole mask, its CPUs unless a cgroup quota allows fewer). */
static void test_threads_default(void)
{
    CHECK(dd_cgroup_cpus("max 100000") == 0);
    CHECK(dd_cgroup_cpus("-1 100000") == 0);
    CHECK(dd_cgroup_cpus("150000 100000") == 2);
    CHECK(dd_cgroup_cpus("200000 100000\n") == 2);
    CHECK(dd_cgroup_cpus("50000 100000") == 1);
    CHECK(dd_cgroup_cpus("100000 0") == 0 && dd_cgroup_cpus("") == 0 && dd_cgroup_cpus("12x 100") == 0);
    CHECK(dd_cgroup_cpus(NULL) == 0 && dd_cgroup_cpus("max") == 0);
    CHECK(dd_cgroup_cpus("999999999999 1") == DD_MAX_THREADS);
    CHECK(dd_cgroup_cpus("9223372036854775806 100000") == DD_MAX_THREADS);
    CHECK(dd_cgroup_cpus("99999999999999999999 1") == 0); /* out of range: not a limit we can read */
    unsetenv("DD_THREADS");
    cpu_set_t all, one;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0);
    int n = CPU_COUNT(&all), first = 0;
    while (!CPU_ISSET(first, &all)) first++;
    int dflt = dd_threads_default();
    CHECK_MSG(dflt >= 1 && dflt <= n, "default %d, mask of %d", dflt, n);
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    CHECK_MSG(dd_threads_default() == 1, "on one CPU: %d", dd_threads_default());
    CHECK(sched_setaffinity(0, sizeof all, &all) == 0);
    setenv("DD_THREADS", "3", 1);
    CHECK(dd_threads_default() == 3);
    unsetenv("DD_THREADS");
}

/* the DD_* switches: unset, "" and "0" are off (DD_NN_MEMSTATS=0 used to turn its line on) */
static void test_env_on(void)
{
    unsetenv("DD_TEST_SWITCH");
    CHECK(!dd_env_on("DD_TEST_SWITCH"));
    static const char *const off[] = {"", "0"}, *const on[] = {"1", "yes", "00", " 0"};
    for (int i = 0; i < 2; i++) {
        setenv("DD_TEST_SWITCH", off[i], 1);
        CHECK_MSG(!dd_env_on("DD_TEST_SWITCH"), "'%s'", off[i]);
    }
    for (int i = 0; i < 4; i++) {
        setenv("DD_TEST_SWITCH", on[i], 1);
        CHECK_MSG(dd_env_on("DD_TEST_SWITCH"), "'%s'", on[i]);
    }
    unsetenv("DD_TEST_SWITCH");
}

/* A library's exit handler that never returns, as OpenBLAS's does when it joins a thread that spins for ever
 * retrying a buffer it cannot map (ulimit -v): registered before dd_prog_init, as a library's is before main.
 * The program still ends, by return from main (with its status, stdout flushed) and by dd_die. Run first:
 * the child must not inherit an earlier dd_prog_init's handler, registered before the stuck one. 1 when both
 * end; -1 under the sanitizers, where exit runs whole (their reports come then). */
static pthread_t stuck;
static void *stuck_main(void *a)
{
    (void)a;
    for (;;) pause();
    return NULL;
}
static void join_stuck(void) { pthread_join(stuck, NULL); }

static int test_exit_past_stuck_handler(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return -1;
#endif
    int ok = 1;
    for (int die = 0; die < 2; die++) {
        int fd[2];
        if (pipe(fd)) return 0;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            dup2(fd[1], STDOUT_FILENO);
            dup2(fd[1], STDERR_FILENO);
            atexit(join_stuck);
            pthread_create(&stuck, NULL, stuck_main, NULL);
            dd_prog_init("stuck");
            printf("buffered");        /* stdout is a pipe: fully buffered until the exit flushes it */
            if (die) dd_die(DD_EXIT_DATA, "dying");
            exit(7);
        }
        close(fd[1]);
        int st = 0, done = 0;
        for (int i = 0; i < 1000 && !done; i++) { /* 10 s */
            done = waitpid(pid, &st, WNOHANG) == pid;
            if (!done) usleep(10000);
        }
        if (!done) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        char buf[128] = {0};
        ssize_t n = read(fd[0], buf, sizeof buf - 1), k;
        while (n > 0 && (size_t)n < sizeof buf - 1 && (k = read(fd[0], buf + n, sizeof buf - 1 - (size_t)n)) > 0)
            n += k;
        close(fd[0]);
        const char *want = die ? "stuck: dying\nbuffered" : "buffered";
        int good = done && WIFEXITED(st) && WEXITSTATUS(st) == (die ? DD_EXIT_DATA : 7) && !strcmp(buf, want);
        if (!good)
            fprintf(stderr, "exit past a stuck handler (%s): %s, status %d, output '%s'\n", die ? "dd_die" : "exit",
                    done ? "ended" : "hung (killed after 10 s)", st, buf);
        ok &= good;
    }
    return ok;
}

int main(void)
{
    int stuck_ok = test_exit_past_stuck_handler();
    if (stuck_ok < 0) printf("SKIP: exit past a stuck exit handler: a sanitizer build runs exit whole\n");
    else CHECK(stuck_ok == 1);

    /* Known-answer tests of Random123 (kat_vectors): philox4x32 10 rounds. Our key/counter packing:
     * key = k0 | k1<<32, ctr_lo = c0 | c1<<32, ctr_hi = c2 | c3<<32. */
    uint32_t o[4];
    dd_philox4x32(0, 0, 0, o);
    CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u);
    dd_philox4x32(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull, o);
    CHECK(o[0] == 0x408f276du && o[1] == 0x41c83b0eu && o[2] == 0xa20bc7c6u && o[3] == 0x6d5451fdu);
    dd_philox4x32(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, o);
    CHECK(o[0] == 0xd16cfe09u && o[1] == 0x94fdccebu && o[2] == 0x5001e420u && o[3] == 0x24126ea1u);

    /* Reproducibility and independence of (seed, stream, index). */
    DdRng a, b;
    dd_rng_init(&a, 7, 1, 42);
    dd_rng_init(&b, 7, 1, 42);
    for (int i = 0; i < 100; i++) CHECK(dd_rng_u32(&a) == dd_rng_u32(&b));
    dd_rng_init(&b, 7, 2, 42);
    dd_rng_init(&a, 7, 1, 42);
    int same = 0;
    for (int i = 0; i < 100; i++) same += dd_rng_u32(&a) == dd_rng_u32(&b);
    CHECK(same < 3);

    /* Uniform mean and int range. */
    double s = 0;
    int lo_hit = 0, hi_hit = 0;
    dd_rng_init(&a, 1, 0, 0);
    for (int i = 0; i < 100000; i++) {
        double u = dd_rng_uniform(&a);
        CHECK(u >= 0 && u < 1);
        s += u;
        int64_t k = dd_rng_int(&a, -3, 3);
        CHECK(k >= -3 && k <= 3);
        lo_hit |= k == -3;
        hi_hit |= k == 3;
    }
    CHECK_CLOSE(s / 100000, 0.5, 0.01, 0);
    CHECK(lo_hit && hi_hit);
    double bs = 0;
    for (int i = 0; i < 20000; i++) bs += dd_rng_beta(&a, 0.8, 0.8);
    CHECK_CLOSE(bs / 20000, 0.5, 0.02, 0);
    int64_t perm[50], seen[50] = {0};
    dd_rng_perm(&a, perm, 50);
    for (int i = 0; i < 50; i++) seen[perm[i]]++;
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1);

    /* Overflow checks. */
    size_t r;
    CHECK(dd_mul_ok(SIZE_MAX / 2, 3, &r) == -1);
    CHECK(dd_mul_ok(1000, 1000, &r) == 0 && r == 1000000);
    CHECK(dd_add_ok(SIZE_MAX, 1, &r) == -1);

    /* Half precision: exact values, rounding, subnormals, inf. */
    CHECK(dd_f32_to_f16(1.0f) == 0x3c00);
    CHECK(dd_f32_to_f16(-2.0f) == 0xc000);
    CHECK(dd_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(dd_f32_to_f16(1e6f) == 0x7c00);
    CHECK(dd_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    CHECK(dd_f32_to_f16(5.9604644775390625e-08f) == 0x0001);
    for (uint32_t h = 0; h < 0x7c00; h++) CHECK(dd_f32_to_f16(dd_f16_to_f32((uint16_t)h)) == h);
    CHECK(dd_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(dd_bf16_to_f32(0x4049) == 3.140625f);

    /* Dtype tables. */
    CHECK(dd_dtype_parse("F32") == DD_F32 && dd_dtype_parse("BF16") == DD_BF16 && dd_dtype_parse("X") == -1);
    CHECK(dd_dtype_from_npy("<f4") == DD_F32 && dd_dtype_from_npy("|u1") == DD_U8 && dd_dtype_from_npy("<u1") == DD_U8);
    Tensor t = tensor_newv(DD_F32, 3, (int64_t)1, (int64_t)28, (int64_t)28);
    char buf[64];
    CHECK(!strcmp(tensor_describe(&t, buf, sizeof buf), "F32[1,28,28]"));
    CHECK(tensor_nbytes(&t) == 3136);
    tensor_free(&t);
    Tensor big = {.dtype = DD_F32, .ndim = 3, .shape = {INT64_MAX / 2, 4, 4}};
    CHECK(tensor_nbytes(&big) == -1);

    test_remove_tree();
    test_atomic_many();
    test_atomic_kinds();
    test_threads_default();
    test_env_on();
    if (!test_progress_tty()) printf("no pseudo-terminal: progress on a terminal not checked\n");
    return check_done("test_base");
}
