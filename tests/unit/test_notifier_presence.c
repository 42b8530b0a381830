/* test_notifier_presence.c - session fencing with events out of order:
 * a late disconnect of an older session never takes a moved device
 * offline, duplicates change nothing, ties break by edge id, kicks name
 * exactly the superseded connection, the table recycles offline entries
 * when full, and silent workers take their devices offline. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "presence.h"

static struct sl_slice S(const char *s) {
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

struct fx {
    struct presence *p;
    uint32_t wa, wb;
};

static int setup(void **state)
{
    static struct fx f;
    f.p = presence_new(4, 8);
    assert_non_null(f.p);
    f.wa = presence_worker(f.p, S("edge-a"), 111, S("edge-a/0"), 0, true);
    f.wb = presence_worker(f.p, S("edge-b"), 222, S("edge-b/0"), 0, true);
    assert_int_not_equal(f.wa, PRESENCE_NONE);
    assert_int_not_equal(f.wb, f.wa);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    presence_destroy(&f->p);
    assert_null(f->p);
    return 0;
}

static struct presence_session ses(uint64_t epoch, const char *edge, uint32_t w, uint32_t slot, uint32_t gen)
{
    return (struct presence_session){.epoch = epoch, .edge = S(edge), .worker = w, .slot = slot, .gen = gen};
}

static void test_late_disconnect_after_move(void **state)
{
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session a = ses(100, "edge-a", f->wa, 1, 1), b = ses(200, "edge-b", f->wb, 5, 9);
    presence_connect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_false(c.kick);
    presence_connect(f->p, S("d"), &b, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_true(c.kick); /* A still held it: close exactly A's connection */
    assert_int_equal(c.old_worker, f->wa);
    assert_int_equal(c.old_slot, 1);
    assert_int_equal(c.old_gen, 1);
    presence_disconnect(f->p, S("d"), &a, &c); /* late, older */
    assert_int_equal(c.verdict, PRESENCE_STALE);
    presence_connect(f->p, S("d"), &a, &c); /* duplicate of the old connect */
    assert_int_equal(c.verdict, PRESENCE_STALE);
    struct presence_dev *d = presence_get(f->p, S("d"));
    assert_true(d->online);
    assert_int_equal(d->worker, f->wb);
    assert_int_equal(d->slot, 5);
    assert_string_equal(d->edge, "edge-b");
    assert_int_equal(presence_online(f->p), 1);
}

static void test_disconnect_before_connect(void **state)
{
    /* B's events overtake A's: B connect, A disconnect, A connect (all late). */
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session a = ses(100, "edge-a", f->wa, 1, 1), b = ses(200, "edge-b", f->wb, 5, 9);
    presence_connect(f->p, S("d"), &b, &c);
    presence_disconnect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_STALE);
    presence_connect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_STALE);
    assert_true(presence_get(f->p, S("d"))->online);

    /* a session's disconnect before its own connect: stays offline */
    struct presence_session b2 = ses(300, "edge-b", f->wb, 6, 1);
    presence_disconnect(f->p, S("d"), &b2, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_true(c.kick); /* the older connection (5,9) is superseded */
    assert_false(presence_get(f->p, S("d"))->online);
    presence_connect(f->p, S("d"), &b2, &c);
    assert_int_equal(c.verdict, PRESENCE_DUP);
    assert_false(presence_get(f->p, S("d"))->online);
}

static void test_duplicates(void **state)
{
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session a = ses(100, "edge-a", f->wa, 1, 1);
    presence_connect(f->p, S("d"), &a, &c);
    presence_connect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_DUP);
    assert_false(c.kick);
    presence_disconnect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_true(c.was_online);
    presence_disconnect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_DUP);
    assert_int_equal(presence_online(f->p), 0);
}

static void test_ties_by_edge_id(void **state)
{
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session a = ses(100, "edge-a", f->wa, 1, 1), b = ses(100, "edge-b", f->wb, 2, 2);
    presence_connect(f->p, S("d"), &b, &c);
    presence_connect(f->p, S("d"), &a, &c); /* same epoch, "edge-a" < "edge-b": older */
    assert_int_equal(c.verdict, PRESENCE_STALE);
    presence_disconnect(f->p, S("d"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_STALE);
    assert_int_equal(presence_get(f->p, S("d"))->worker, f->wb);
    assert_true(presence_cmp(5, S("ab"), 5, "abc") < 0);
    assert_true(presence_cmp(5, S("abc"), 5, "ab") > 0);
    assert_true(presence_cmp(6, S("a"), 5, "b") > 0);
    assert_int_equal(presence_cmp(5, S("x"), 5, "x"), 0);
}

static void test_a_b_a(void **state)
{
    /* A -> B -> A: the kick on the way back names B's connection, and a
     * late kick-induced disconnect of the first A session changes nothing. */
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session a1 = ses(100, "edge-a", f->wa, 1, 1), b = ses(200, "edge-b", f->wb, 2, 1),
                            a2 = ses(300, "edge-a", f->wa, 1, 2);
    presence_connect(f->p, S("d"), &a1, &c);
    presence_connect(f->p, S("d"), &b, &c);
    presence_connect(f->p, S("d"), &a2, &c);
    assert_true(c.kick);
    assert_int_equal(c.old_worker, f->wb);
    assert_int_equal(c.old_slot, 2);
    presence_disconnect(f->p, S("d"), &a1, &c);
    assert_int_equal(c.verdict, PRESENCE_STALE);
    presence_disconnect(f->p, S("d"), &b, &c);
    assert_int_equal(c.verdict, PRESENCE_STALE);
    struct presence_dev *d = presence_get(f->p, S("d"));
    assert_true(d->online);
    assert_int_equal(d->gen, 2);
}

static void test_full_recycles_offline(void **state)
{
    struct fx *f = *state;
    struct presence_change c;
    char name[8];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "d%d", i);
        struct presence_session s = ses(100 + (uint64_t)i, "edge-a", f->wa, (uint32_t)i, 1);
        presence_connect(f->p, S(name), &s, &c);
        assert_int_equal(c.verdict, PRESENCE_APPLIED);
    }
    struct presence_session s = ses(500, "edge-a", f->wa, 9, 1);
    presence_connect(f->p, S("new"), &s, &c);
    assert_int_equal(c.verdict, PRESENCE_FULL); /* all online: nothing to recycle */
    struct presence_session s1 = ses(101, "edge-a", f->wa, 1, 1);
    presence_disconnect(f->p, S("d1"), &s1, &c);
    presence_get(f->p, S("d2"))->pending = 0;
    presence_connect(f->p, S("new"), &s, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_null(presence_get(f->p, S("d1"))); /* the offline one was recycled */
    assert_non_null(presence_get(f->p, S("d0")));
    assert_int_equal(presence_size(f->p), 4);
}

static int lost_n;
static void lost(void *ud, struct presence_dev *d, const struct presence_worker *w)
{
    (void)ud;
    assert_false(d->online);
    assert_string_equal(w->edge, "edge-a");
    lost_n++;
}

static void test_sweep(void **state)
{
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session a = ses(100, "edge-a", f->wa, 1, 1), b = ses(100, "edge-b", f->wb, 1, 1);
    presence_connect(f->p, S("x"), &a, &c);
    presence_connect(f->p, S("y"), &a, &c);
    presence_connect(f->p, S("z"), &b, &c);
    /* B keeps talking, A goes silent */
    assert_int_equal(presence_worker(f->p, S("edge-b"), 222, S("edge-b/0"), 9000, true), f->wb);
    lost_n = 0;
    assert_int_equal(presence_sweep(f->p, 5000, 10000, lost, NULL), 0);
    assert_int_equal(presence_sweep(f->p, 10001, 10000, lost, NULL), 2);
    assert_int_equal(lost_n, 2);
    assert_false(presence_get(f->p, S("x"))->online);
    assert_true(presence_get(f->p, S("z"))->online);
    assert_null(presence_worker_get(f->p, f->wa)); /* recycled: nothing routes there */
    /* a late duplicate connect of the lost session does not revive it */
    presence_connect(f->p, S("x"), &a, &c);
    assert_int_equal(c.verdict, PRESENCE_DUP);
    /* a retained status read back does not count as hearing from an edge */
    uint32_t w = presence_worker(f->p, S("edge-c"), 3, S("edge-c/0"), 20000, false);
    assert_int_not_equal(w, PRESENCE_NONE);
    assert_int_equal(presence_worker(f->p, S("edge-c"), 3, S("edge-c/0"), 29000, false), w);
    assert_int_equal(presence_worker_get(f->p, w)->last_ms, 20000);
    /* names too long are refused */
    char longname[200];
    memset(longname, 'e', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(presence_worker(f->p, S(longname), 1, S("r"), 0, true), PRESENCE_NONE);
}

/* A name with a NUL inside is refused: names are kept as C strings. Before,
 * a reply "a\0b" was hashed over its 3 bytes when added and over strlen()
 * when recycled, so the sweep's unlink ran off its chain (SIGSEGV in
 * w_free; issue 11, fuzz_envelope regress-reply-with-nul). */
static void test_names_with_nul(void **state)
{
    struct fx *f = *state;
    struct sl_slice reply = {(const uint8_t *)"a\0b", 3}, edge = {(const uint8_t *)"e\0x", 3};
    assert_int_equal(presence_worker(f->p, S("edge-c"), 1, reply, 0, true), PRESENCE_NONE);
    assert_int_equal(presence_worker(f->p, edge, 1, S("edge-c/0"), 0, true), PRESENCE_NONE);
    presence_sweep(f->p, 60000, 10000, NULL, NULL); /* recycles edge-a and edge-b, nothing else */
    assert_null(presence_worker_get(f->p, f->wa));
}

/* A session whose edge is nil (a batch header with edge nil): no copy from
 * a NULL pointer (UBSan; fuzz_envelope regress-nil-edge-disconnect). */
static void test_nil_edge(void **state)
{
    struct fx *f = *state;
    struct presence_change c;
    struct presence_session s = {.epoch = 1, .edge = {NULL, 0}, .worker = f->wa, .slot = 1, .gen = 1};
    presence_connect(f->p, S("d"), &s, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_string_equal(presence_get(f->p, S("d"))->edge, "");
    s.epoch = 2;
    presence_disconnect(f->p, S("d"), &s, &c);
    assert_int_equal(c.verdict, PRESENCE_APPLIED);
    assert_false(presence_get(f->p, S("d"))->online);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_late_disconnect_after_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_before_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ties_by_edge_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_b_a, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_recycles_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_with_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nil_edge, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
