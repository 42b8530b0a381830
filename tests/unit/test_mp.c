/* SPDX-License-Identifier: Apache-2.0 */
/* test_mp.c - the bounded msgpack cursor refuses lies about sizes and depth
 * before trusting them, reads every type msgpack-c writes, and the mp_buf
 * sink records overflow instead of growing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "sl/limits.h"
#include "sl/mp.h"

static uint8_t big[1u << 18];
static uint8_t tmp[1u << 18];

/* ---- hostile headers ---- */

static void test_hostile_8_bytes(void **state)
{
    (void)state;
    const uint8_t in[] = {0x09, 0xdf, 0xdf, 0xdf, 0xdf, 0xdf, 0x10, 0x2b};
    struct mp_cur c;
    struct mp_item it;
    mp_cur_init(&c, in, sizeof in);
    assert_int_equal(mp_next(&c, &it), 0);
    assert_int_equal(it.type, MP_UINT);
    assert_int_equal(it.u, 9);
    /* A map32 of 0xdfdfdfdf pairs with 2 bytes left: refused, cursor kept. */
    const uint8_t *at = c.p;
    assert_int_equal(mp_next(&c, &it), -1);
    assert_ptr_equal(c.p, at);
    assert_int_equal(mp_skip(&c, SL_MP_MAX_DEPTH), -1);
    assert_ptr_equal(c.p, at);
    assert_int_equal(mp_check(in, sizeof in, SL_MP_MAX_DEPTH), -1);
    assert_int_equal(mp_check(in + 1, sizeof in - 1, SL_MP_MAX_DEPTH), -1);
}

static void test_map32_huge(void **state)
{
    (void)state;
    const uint8_t in[] = {0xdf, 0xdf, 0xdf, 0xdf, 0xdf};
    struct mp_cur c;
    struct mp_item it;
    mp_cur_init(&c, in, sizeof in);
    assert_int_equal(mp_next(&c, &it), -1);
    assert_ptr_equal(c.p, in);
    assert_int_equal(mp_check(in, sizeof in, SL_MP_MAX_DEPTH), -1);
    /* Truncated length field. */
    assert_int_equal(mp_check(in, 3, SL_MP_MAX_DEPTH), -1);
}

static void test_declared_sizes(void **state)
{
    (void)state;
    struct mp_cur c;
    struct mp_item it;

    /* str32 of 16 bytes with 2 present; then exactly 2 declared. */
    const uint8_t s_bad[] = {0xdb, 0, 0, 0, 16, 'a', 'b'};
    const uint8_t s_ok[] = {0xdb, 0, 0, 0, 2, 'a', 'b'};
    assert_int_equal(mp_check(s_bad, sizeof s_bad, 32), -1);
    mp_cur_init(&c, s_ok, sizeof s_ok);
    assert_int_equal(mp_next(&c, &it), 0);
    assert_int_equal(it.type, MP_STR);
    assert_int_equal(it.data.n, 2);
    assert_ptr_equal(it.data.p, s_ok + 5);
    assert_int_equal(mp_cur_left(&c), 0);

    /* str32 claiming 4 GiB - 1. */
    const uint8_t s_huge[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    assert_int_equal(mp_check(s_huge, sizeof s_huge, 32), -1);

    /* bin32 */
    const uint8_t b_bad[] = {0xc6, 0, 0, 1, 0, 1, 2, 3};
    const uint8_t b_ok[] = {0xc6, 0, 0, 0, 3, 1, 2, 3};
    assert_int_equal(mp_check(b_bad, sizeof b_bad, 32), -1);
    assert_int_equal(mp_check(b_ok, sizeof b_ok, 32), 0);

    /* ext32: length counts data only, the type byte must be there too. */
    const uint8_t e_bad[] = {0xc9, 0, 0, 0, 2, 7, 1};
    const uint8_t e_ok[] = {0xc9, 0, 0, 0, 2, 7, 1, 2};
    const uint8_t e_notype[] = {0xc9, 0, 0, 0, 0};
    assert_int_equal(mp_check(e_bad, sizeof e_bad, 32), -1);
    assert_int_equal(mp_check(e_ok, sizeof e_ok, 32), 0);
    assert_int_equal(mp_check(e_notype, sizeof e_notype, 32), -1);

    /* array32 of 5 with 4 elements left: refused at the header. */
    const uint8_t a_bad[] = {0xdd, 0, 0, 0, 5, 1, 2, 3, 4};
    const uint8_t a_ok[] = {0xdd, 0, 0, 0, 5, 1, 2, 3, 4, 5};
    mp_cur_init(&c, a_bad, sizeof a_bad);
    assert_int_equal(mp_next(&c, &it), -1);
    assert_int_equal(mp_check(a_ok, sizeof a_ok, 32), 0);
    const uint8_t a_huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0};
    assert_int_equal(mp_check(a_huge, sizeof a_huge, 32), -1);

    /* map of 2 pairs needs 4 bytes; 3 are left. */
    const uint8_t m_bad[] = {0xdf, 0, 0, 0, 2, 1, 2, 3};
    assert_int_equal(mp_check(m_bad, sizeof m_bad, 32), -1);
    mp_cur_init(&c, m_bad, sizeof m_bad);
    assert_int_equal(mp_next(&c, &it), -1);
    /* fixmap 0x82 over 3 bytes: the same bound on the short form. */
    const uint8_t fm_bad[] = {0x82, 1, 2, 3};
    mp_cur_init(&c, fm_bad, sizeof fm_bad);
    assert_int_equal(mp_next(&c, &it), -1);
    /* The header check is a bound, not a proof: 2 pairs in 4 bytes that
     * are themselves truncated fail later, in mp_skip. */
    const uint8_t m_trunc[] = {0x82, 1, 2, 3, 0xcd};
    assert_int_equal(mp_check(m_trunc, sizeof m_trunc, 32), -1);
}

static void test_reserved_c1(void **state)
{
    (void)state;
    struct mp_cur c;
    struct mp_item it;
    const uint8_t a[] = {0xc1};
    mp_cur_init(&c, a, 1);
    assert_int_equal(mp_next(&c, &it), -1);
    assert_ptr_equal(c.p, a);
    const uint8_t nested[] = {0x92, 0x01, 0xc1};
    assert_int_equal(mp_check(nested, sizeof nested, 32), -1);
    assert_int_equal(mp_check((const uint8_t *)"", 0, 32), -1);
}

static size_t nested(uint8_t *out, size_t depth)
{
    memset(out, 0x91, depth);
    out[depth] = 0xc0;
    return depth + 1;
}

static void test_depth_cap(void **state)
{
    (void)state;
    uint8_t in[2 * SL_MP_MAX_DEPTH + 1];
    size_t n = nested(in, SL_MP_MAX_DEPTH);
    assert_int_equal(mp_check(in, n, SL_MP_MAX_DEPTH), 0);
    n = nested(in, SL_MP_MAX_DEPTH + 1);
    assert_int_equal(mp_check(in, n, SL_MP_MAX_DEPTH), -1);
    /* Maps count as well: 0x81 key 0x01 value <next map>. */
    size_t k = 0;
    for (unsigned d = 0; d < SL_MP_MAX_DEPTH; d++) {
        in[k++] = 0x81;
        in[k++] = 0x01;
    }
    in[k++] = 0xc0;
    assert_int_equal(mp_check(in, k, SL_MP_MAX_DEPTH), 0);
    assert_int_equal(mp_check(in, k, SL_MP_MAX_DEPTH - 1), -1);
    /* A scalar is depth 0; an empty array depth 1. */
    assert_int_equal(mp_check((const uint8_t *)"\x01", 1, 0), 0);
    assert_int_equal(mp_check((const uint8_t *)"\x90", 1, 0), -1);
    assert_int_equal(mp_check((const uint8_t *)"\x90", 1, 1), 0);
    /* Siblings do not add depth: [[...32 deep], [...]] at depth 2. */
    uint8_t s[8] = {0x92, 0x91, 0x90, 0x91, 0x90};
    assert_int_equal(mp_check(s, 5, 3), 0);
    assert_int_equal(mp_check(s, 5, 2), -1);
}

static void test_60k_nested(void **state)
{
    (void)state;
    size_t n = 60 * 1024;
    memset(big, 0x91, n);
    big[n - 1] = 0xc0;
    assert_int_equal(mp_check(big, n, SL_MP_MAX_DEPTH), -1);
    /* Even with the largest depth the skipper can track. */
    assert_int_equal(mp_check(big, n, 1000000u), -1);
    struct mp_cur c;
    mp_cur_init(&c, big, n);
    assert_int_equal(mp_skip(&c, SL_MP_MAX_DEPTH), -1);
    assert_ptr_equal(c.p, big);
    /* 60 KB of maps nested the same way. */
    for (size_t i = 0; i + 1 < n; i += 2) {
        big[i] = 0x81;
        big[i + 1] = 0xa0;
    }
    assert_int_equal(mp_check(big, n, SL_MP_MAX_DEPTH), -1);
}

static void test_trailing(void **state)
{
    (void)state;
    assert_int_equal(mp_check((const uint8_t *)"\x80\x00", 2, 32), -1);
    assert_int_equal(mp_check((const uint8_t *)"\x80", 1, 32), 0);
}

/* ---- every type, as msgpack-c writes it ---- */

struct packed {
    struct mp_buf b;
    msgpack_packer pk;
};

static void pk_begin(struct packed *p)
{
    mp_buf_init(&p->b, big, sizeof big);
    msgpack_packer_init(&p->pk, &p->b, mp_buf_write);
}

/* Read one item from the packed bytes, check every strict prefix is
 * refused (truncation anywhere), and check mp_check accepts the whole. */
static struct mp_item read_one(struct packed *p, size_t expect_len)
{
    struct mp_cur c;
    struct mp_item it;
    assert_false(p->b.overflow);
    if (expect_len)
        assert_int_equal(p->b.len, expect_len);
    mp_cur_init(&c, big, p->b.len);
    assert_int_equal(mp_next(&c, &it), 0);
    if (it.type != MP_ARRAY && it.type != MP_MAP) {
        assert_int_equal(mp_cur_left(&c), 0);
        assert_int_equal(mp_check(big, p->b.len, 32), 0);
        /* Every prefix is truncated; sample when long. */
        size_t step = p->b.len > 4096 ? 997 : 1;
        for (size_t k = 0; k < p->b.len; k += step)
            assert_int_equal(mp_check(big, k, 32), -1);
    }
    return it;
}

static void test_scalars(void **state)
{
    (void)state;
    struct packed p;
    struct mp_item it;

    pk_begin(&p);
    msgpack_pack_nil(&p.pk);
    it = read_one(&p, 1);
    assert_int_equal(it.type, MP_NIL);

    pk_begin(&p);
    msgpack_pack_true(&p.pk);
    it = read_one(&p, 1);
    assert_int_equal(it.type, MP_BOOL);
    assert_true(it.b);
    pk_begin(&p);
    msgpack_pack_false(&p.pk);
    it = read_one(&p, 1);
    assert_int_equal(it.type, MP_BOOL);
    assert_false(it.b);

    /* Unsigned of each width msgpack-c chooses. */
    const struct {
        uint64_t v;
        size_t len;
    } us[] = {{0, 1},         {127, 1},        {128, 2},
              {255, 2},       {256, 3},        {65535, 3},
              {65536, 5},     {UINT32_MAX, 5}, {(uint64_t)UINT32_MAX + 1, 9},
              {UINT64_MAX, 9}};
    for (size_t k = 0; k < sizeof us / sizeof us[0]; k++) {
        pk_begin(&p);
        msgpack_pack_uint64(&p.pk, us[k].v);
        it = read_one(&p, us[k].len);
        assert_int_equal(it.type, MP_UINT);
        assert_true(it.u == us[k].v);
        if (us[k].v <= INT64_MAX)
            assert_true(it.i == (int64_t)us[k].v);
    }
    /* Negative of each width. */
    const struct {
        int64_t v;
        size_t len;
    } is[] = {{-1, 1},       {-32, 1},       {-33, 2},
              {-128, 2},     {-129, 3},      {-32768, 3},
              {-32769, 5},   {INT32_MIN, 5}, {(int64_t)INT32_MIN - 1, 9},
              {INT64_MIN, 9}};
    for (size_t k = 0; k < sizeof is / sizeof is[0]; k++) {
        pk_begin(&p);
        msgpack_pack_int64(&p.pk, is[k].v);
        it = read_one(&p, is[k].len);
        assert_int_equal(it.type, MP_INT);
        assert_true(it.i == is[k].v);
    }
    /* Signed encodings of non-negative values read as MP_UINT. */
    const uint8_t sp[][9] = {{0xd0, 0x05},
                             {0xd1, 0x01, 0x00},
                             {0xd2, 0, 0, 1, 0},
                             {0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    const size_t spn[] = {2, 3, 5, 9};
    const uint64_t spv[] = {5, 256, 256, INT64_MAX};
    for (size_t k = 0; k < 4; k++) {
        struct mp_cur c;
        mp_cur_init(&c, sp[k], spn[k]);
        assert_int_equal(mp_next(&c, &it), 0);
        assert_int_equal(it.type, MP_UINT);
        assert_true(it.u == spv[k]);
        assert_true(it.i == (int64_t)spv[k]);
    }

    pk_begin(&p);
    msgpack_pack_float(&p.pk, 1.5f);
    it = read_one(&p, 5);
    assert_int_equal(it.type, MP_FLOAT);
    assert_true(it.f32);
    assert_true(it.f == 1.5);
    pk_begin(&p);
    msgpack_pack_double(&p.pk, 21.5);
    it = read_one(&p, 9);
    assert_int_equal(it.type, MP_FLOAT);
    assert_false(it.f32);
    assert_true(it.f == 21.5);
    pk_begin(&p);
    msgpack_pack_double(&p.pk, -INFINITY);
    it = read_one(&p, 9);
    assert_true(isinf(it.f) && it.f < 0);
    pk_begin(&p);
    msgpack_pack_double(&p.pk, NAN);
    it = read_one(&p, 9);
    assert_true(isnan(it.f));
}

static void test_str_bin_ext(void **state)
{
    (void)state;
    struct packed p;
    struct mp_item it;
    const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
    const size_t hdr_str[] = {1, 1, 1, 2, 2, 3, 3, 5, 5};
    const size_t hdr_bin[] = {2, 2, 2, 2, 2, 3, 3, 5, 5};

    for (size_t k = 0; k < sizeof tmp; k++)
        tmp[k] = (uint8_t)(k * 31 + 7);
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t n = lens[k];
        pk_begin(&p);
        msgpack_pack_str_with_body(&p.pk, tmp, n);
        it = read_one(&p, hdr_str[k] + n);
        assert_int_equal(it.type, MP_STR);
        assert_int_equal(it.data.n, n);
        assert_ptr_equal(it.data.p, big + hdr_str[k]);
        if (n)
            assert_memory_equal(it.data.p, tmp, n);

        pk_begin(&p);
        msgpack_pack_bin_with_body(&p.pk, tmp, n);
        it = read_one(&p, hdr_bin[k] + n);
        assert_int_equal(it.type, MP_BIN);
        assert_int_equal(it.data.n, n);
        if (n)
            assert_memory_equal(it.data.p, tmp, n);
    }

    /* ext: fixext 1/2/4/8/16 and ext8/16/32. */
    const size_t elens[] = {1, 2, 4, 8, 16, 3, 0, 255, 256, 65536};
    const size_t ehdr[] = {2, 2, 2, 2, 2, 3, 3, 3, 4, 6};
    for (size_t k = 0; k < sizeof elens / sizeof elens[0]; k++) {
        size_t n = elens[k];
        pk_begin(&p);
        msgpack_pack_ext_with_body(&p.pk, tmp, n, (int8_t)-5);
        it = read_one(&p, ehdr[k] + n);
        assert_int_equal(it.type, MP_EXT);
        assert_int_equal(it.ext_type, -5);
        assert_int_equal(it.data.n, n);
        if (n)
            assert_memory_equal(it.data.p, tmp, n);
    }
}

static void test_containers(void **state)
{
    (void)state;
    struct packed p;
    struct mp_item it;
    const uint32_t ns[] = {0, 15, 16, 65535, 65536};

    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        uint32_t n = ns[k];
        pk_begin(&p);
        msgpack_pack_array(&p.pk, n);
        for (uint32_t i = 0; i < n; i++)
            msgpack_pack_uint32(&p.pk, i % 100);
        it = read_one(&p, 0);
        assert_int_equal(it.type, MP_ARRAY);
        assert_int_equal(it.n, n);
        assert_int_equal(mp_check(big, p.b.len, 1), 0);
        assert_int_equal(mp_check(big, p.b.len - 1, 1), -1);

        pk_begin(&p);
        msgpack_pack_map(&p.pk, n);
        for (uint32_t i = 0; i < n; i++) {
            msgpack_pack_uint32(&p.pk, i % 100);
            msgpack_pack_nil(&p.pk);
        }
        it = read_one(&p, 0);
        assert_int_equal(it.type, MP_MAP);
        assert_int_equal(it.n, n);
        assert_int_equal(mp_check(big, p.b.len, 1), 0);
        if (n)
            assert_int_equal(mp_check(big, p.b.len - 1, 1), -1);
    }

    /* A mixed tree, walked item by item. */
    pk_begin(&p);
    msgpack_pack_map(&p.pk, 2);
    msgpack_pack_str_with_body(&p.pk, "a", 1);
    msgpack_pack_array(&p.pk, 3);
    msgpack_pack_int64(&p.pk, -7);
    msgpack_pack_bin_with_body(&p.pk, "\x00\x01", 2);
    msgpack_pack_map(&p.pk, 0);
    msgpack_pack_uint8(&p.pk, 9);
    msgpack_pack_double(&p.pk, 0.25);
    struct mp_cur c;
    mp_cur_init(&c, big, p.b.len);
    const enum mp_type want[] = {MP_MAP, MP_STR, MP_ARRAY, MP_INT, MP_BIN, MP_MAP, MP_UINT, MP_FLOAT};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        assert_int_equal(mp_next(&c, &it), 0);
        assert_int_equal(it.type, want[k]);
    }
    assert_int_equal(mp_cur_left(&c), 0);
    /* mp_skip walks the same tree in one call. */
    mp_cur_init(&c, big, p.b.len);
    assert_int_equal(mp_skip(&c, 3), 0); /* map > array > map */
    assert_int_equal(mp_cur_left(&c), 0);
    mp_cur_init(&c, big, p.b.len);
    assert_int_equal(mp_skip(&c, 2), -1);
    assert_ptr_equal(c.p, big);
}

/* Cross-check with msgpack-c's own unpacker on trusted, generated input:
 * both readers agree on scalar values. */
static void test_agrees_with_unpacker(void **state)
{
    (void)state;
    struct packed p;
    const int64_t vals[] = {0, 1, -1, 127, -32, -33, 200, -200, 70000, -70000, INT64_MAX, INT64_MIN};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        pk_begin(&p);
        msgpack_pack_int64(&p.pk, vals[k]);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, (const char *)big, p.b.len, NULL), MSGPACK_UNPACK_SUCCESS);
        struct mp_item it = read_one(&p, 0);
        if (u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            assert_int_equal(it.type, MP_UINT);
            assert_true(it.u == u.data.via.u64);
        } else {
            assert_int_equal(u.data.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
            assert_int_equal(it.type, MP_INT);
            assert_true(it.i == u.data.via.i64);
        }
        msgpack_unpacked_destroy(&u);
    }
}

static void test_buf_overflow(void **state)
{
    (void)state;
    uint8_t mem[8];
    struct mp_buf b;
    mp_buf_init(&b, mem, 4);
    assert_int_equal(mp_buf_write(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3);
    assert_false(b.overflow);
    assert_int_equal(mp_buf_write(&b, "de", 2), -1);
    assert_true(b.overflow);
    assert_int_equal(b.len, 3);
    /* Sticky: a later write that would fit is dropped too. */
    mp_buf_raw(&b, "f", 1);
    assert_int_equal(b.len, 3);
    assert_memory_equal(mem, "abc", 3);

    /* Exactly full is fine. */
    mp_buf_init(&b, mem, 4);
    mp_buf_raw(&b, "wxyz", 4);
    assert_false(b.overflow);
    assert_int_equal(b.len, 4);

    /* Through the packer: a str that does not fit. */
    msgpack_packer pk;
    mp_buf_init(&b, mem, sizeof mem);
    msgpack_packer_init(&pk, &b, mp_buf_write);
    msgpack_pack_str_with_body(&pk, "0123456789", 10);
    assert_true(b.overflow);
    assert_true(b.len <= sizeof mem);
    /* Zero capacity. */
    mp_buf_init(&b, NULL, 0);
    msgpack_packer_init(&pk, &b, mp_buf_write);
    msgpack_pack_nil(&pk);
    assert_true(b.overflow);
    assert_int_equal(b.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_8_bytes),
        cmocka_unit_test(test_map32_huge),
        cmocka_unit_test(test_declared_sizes),
        cmocka_unit_test(test_reserved_c1),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_60k_nested),
        cmocka_unit_test(test_trailing),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_str_bin_ext),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_agrees_with_unpacker),
        cmocka_unit_test(test_buf_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
