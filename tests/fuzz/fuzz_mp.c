/* fuzz_mp.c - the bounded msgpack cursor (proto/mp.c): mp_next, mp_skip,
 * mp_check, against two independent readers.
 *
 * Input: raw bytes, read as msgpack.
 *
 * Properties:
 * - mp_next never declares more than remains: a str/bin/ext payload lies
 *   inside the input, an array of n needs n bytes left, a map of n 2n;
 * - mp_check(p, n, d) holds exactly when a plain recursive reader (below,
 *   written from the msgpack spec) finds one complete object spanning all
 *   n bytes and nesting at most d deep; a failed mp_skip leaves the
 *   cursor where it was, a good one stops where the reference does;
 * - msgpack is prefix-free: no proper prefix of an accepted object is
 *   accepted;
 * - whatever mp_check accepts (depth <= 32), msgpack-c's own unpacker
 *   also reads, consuming exactly n bytes, with the same types, values
 *   and bytes as mp_next reports item by item. msgpack-c is only called
 *   on accepted input: on anything else it may allocate what a header
 *   claims (docs/internals.md). */
#include <math.h>
#include <string.h>

#include <msgpack.h>

#include "fuzz.h"
#include "sl/limits.h"
#include "sl/mp.h"

/* Deeper than any max_depth the tests ask for; the reference stops there
 * so its recursion stays shallow. */
#define REF_DEPTH_CAP 70u

struct ref {
    const uint8_t *p;
    size_t n, pos;
    unsigned deepest; /* nesting of the deepest container seen */
};

static uint64_t be(const uint8_t *p, unsigned w)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < w; i++)
        v = v << 8 | p[i];
    return v;
}

/* Read one object at r->pos whose containers sit at depth + 1. 0 or -1. */
static int ref_obj(struct ref *r, unsigned depth)
{
    if (r->pos >= r->n)
        return -1;
    uint8_t b = r->p[r->pos++];
    size_t left = r->n - r->pos;
    uint64_t payload = 0, items = 0;
    unsigned w = 0;

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b >= 0xa0 && b <= 0xbf) {
        payload = b & 0x1fu;
    } else if (b >= 0x90 && b <= 0x9f) {
        items = b & 0x0fu;
        goto container;
    } else if (b >= 0x80 && b <= 0x8f) {
        items = 2u * (b & 0x0fu);
        goto container;
    } else {
        switch (b) {
        case 0xc4:
        case 0xc5:
        case 0xc6: /* bin 8/16/32 */
        case 0xd9:
        case 0xda:
        case 0xdb: /* str 8/16/32 */
            w = b >= 0xd9 ? 1u << (b - 0xd9) : 1u << (b - 0xc4);
            if (left < w)
                return -1;
            payload = be(r->p + r->pos, w);
            r->pos += w;
            left -= w;
            break;
        case 0xc7:
        case 0xc8:
        case 0xc9: /* ext 8/16/32: length, then type */
            w = 1u << (b - 0xc7);
            if (left < w + 1u)
                return -1;
            payload = be(r->p + r->pos, w);
            r->pos += w + 1u;
            left -= w + 1u;
            break;
        /* fixext 1..16: the type byte, then the data */
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8: payload = 1u + (1u << (b - 0xd4)); break;
        case 0xca: payload = 4; break;
        case 0xcb: payload = 8; break;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf: payload = 1u << (b - 0xcc); break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: payload = 1u << (b - 0xd0); break;
        case 0xdc:
        case 0xdd:
            w = 2u << (b - 0xdc);
            if (left < w)
                return -1;
            items = be(r->p + r->pos, w);
            r->pos += w;
            goto container;
        case 0xde:
        case 0xdf:
            w = 2u << (b - 0xde);
            if (left < w)
                return -1;
            items = 2u * be(r->p + r->pos, w);
            r->pos += w;
            goto container;
        default: return -1; /* 0xc1 */
        }
    }
    if (payload > left)
        return -1;
    r->pos += payload;
    return 0;

container:
    if (depth + 1 > r->deepest)
        r->deepest = depth + 1;
    if (depth + 1 > REF_DEPTH_CAP)
        return -1;
    for (uint64_t i = 0; i < items; i++)
        if (ref_obj(r, depth + 1) != 0)
            return -1;
    return 0;
}

/* Compare msgpack-c's object with what mp_next reads at c, recursively. */
static void same_as_msgpack_c(struct mp_cur *c, const msgpack_object *o)
{
    struct mp_item it;
    FUZZ_CHECK(mp_next(c, &it) == 0);
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: FUZZ_CHECK(it.type == MP_NIL); break;
    case MSGPACK_OBJECT_BOOLEAN: FUZZ_CHECK(it.type == MP_BOOL && it.b == o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        FUZZ_CHECK(it.type == MP_UINT && it.u == o->via.u64);
        FUZZ_CHECK(it.i == (o->via.u64 <= (uint64_t)INT64_MAX ? (int64_t)o->via.u64 : 0));
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        FUZZ_CHECK(it.type == MP_INT && it.i == o->via.i64 && it.i < 0);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        FUZZ_CHECK(it.type == MP_FLOAT && it.f32 == (o->type == MSGPACK_OBJECT_FLOAT32));
        FUZZ_CHECK(memcmp(&it.f, &o->via.f64, sizeof it.f) == 0 || (isnan(it.f) && isnan(o->via.f64)));
        break;
    case MSGPACK_OBJECT_STR:
        FUZZ_CHECK(it.type == MP_STR && it.data.n == o->via.str.size);
        FUZZ_CHECK(it.data.n == 0 || memcmp(it.data.p, o->via.str.ptr, it.data.n) == 0);
        break;
    case MSGPACK_OBJECT_BIN:
        FUZZ_CHECK(it.type == MP_BIN && it.data.n == o->via.bin.size);
        FUZZ_CHECK(it.data.n == 0 || memcmp(it.data.p, o->via.bin.ptr, it.data.n) == 0);
        break;
    case MSGPACK_OBJECT_EXT:
        FUZZ_CHECK(it.type == MP_EXT && it.ext_type == o->via.ext.type && it.data.n == o->via.ext.size);
        FUZZ_CHECK(it.data.n == 0 || memcmp(it.data.p, o->via.ext.ptr, it.data.n) == 0);
        break;
    case MSGPACK_OBJECT_ARRAY:
        FUZZ_CHECK(it.type == MP_ARRAY && it.n == o->via.array.size);
        for (uint32_t i = 0; i < it.n; i++)
            same_as_msgpack_c(c, &o->via.array.ptr[i]);
        break;
    case MSGPACK_OBJECT_MAP:
        FUZZ_CHECK(it.type == MP_MAP && it.n == o->via.map.size);
        for (uint32_t i = 0; i < it.n; i++) {
            same_as_msgpack_c(c, &o->via.map.ptr[i].key);
            same_as_msgpack_c(c, &o->via.map.ptr[i].val);
        }
        break;
    default: fuzz_fail("msgpack-c object type unknown to the test", __FILE__, __LINE__);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Item by item: declared sizes always fit in what remains. */
    struct mp_cur c;
    mp_cur_init(&c, data, size);
    for (;;) {
        struct mp_item it;
        const uint8_t *before = c.p;
        if (mp_next(&c, &it) != 0) {
            FUZZ_CHECK(c.p == before);
            break;
        }
        FUZZ_CHECK(c.p > before && c.p <= data + size);
        size_t left = mp_cur_left(&c);
        if (it.type == MP_STR || it.type == MP_BIN || it.type == MP_EXT)
            FUZZ_CHECK(fuzz_within(it.data, data, size) && it.data.p + it.data.n == c.p);
        if (it.type == MP_ARRAY)
            FUZZ_CHECK(it.n <= left);
        if (it.type == MP_MAP)
            FUZZ_CHECK(2u * (uint64_t)it.n <= left);
    }

    /* The reference: `one` complete object first, `whole` if nothing follows. */
    struct ref r = {.p = data, .n = size};
    bool one = ref_obj(&r, 0) == 0;
    bool whole = one && r.pos == size;
    size_t end = r.pos;
    unsigned deepest = r.deepest;
    const unsigned depths[] = {0, 1, 2, SL_MP_MAX_DEPTH - 1, SL_MP_MAX_DEPTH, 64};
    for (size_t k = 0; k < sizeof depths / sizeof depths[0]; k++) {
        unsigned d = depths[k];
        FUZZ_CHECK((mp_check(data, size, d) == 0) == (whole && deepest <= d));
        mp_cur_init(&c, data, size);
        if (mp_skip(&c, d) == 0)
            FUZZ_CHECK(one && deepest <= d && c.p == data + end);
        else
            FUZZ_CHECK(c.p == data && (!one || deepest > d));
    }
    if (!whole || deepest > SL_MP_MAX_DEPTH)
        return 0;

    /* Prefix-free: no shorter prefix is one whole object. */
    FUZZ_CHECK(size == 0 || mp_check(data, size - 1, 64) != 0);
    FUZZ_CHECK(size < 2 || mp_check(data, size / 2, 64) != 0);

    /* msgpack-c agrees, item by item. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, (const char *)data, size, &off);
    FUZZ_CHECK(ur == MSGPACK_UNPACK_SUCCESS && off == size);
    mp_cur_init(&c, data, size);
    same_as_msgpack_c(&c, &u.data);
    FUZZ_CHECK(mp_cur_left(&c) == 0);
    msgpack_unpacked_destroy(&u);
    return 0;
}
