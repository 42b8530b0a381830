/* SPDX-License-Identifier: Apache-2.0 */
/* test_api_route.c - the operator API's paths, methods, ids and query
 * parameters (api/route.c): what each path is, 404 vs 405 vs 400, ids
 * outside the alphabet (including what a decoded %2F or ".." looks like),
 * limits, cursors, timestamps in both forms. Pure: no HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static void test_match(void **state)
{
    (void)state;
    struct route r;
    assert_int_equal(route_match("GET", "/v1/devices", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_DEVICES);
    assert_int_equal(r.scope, ROUTE_READ);
    assert_int_equal(route_match("GET", "/v1/devices/pump-0042", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_DEVICE);
    assert_string_equal(r.arg, "pump-0042");
    assert_int_equal(route_match("GET", "/v1/devices/a.b:c_d-e/telemetry", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_TELEMETRY);
    assert_string_equal(r.arg, "a.b:c_d-e");
    assert_int_equal(route_match("DELETE", "/v1/devices/x/data", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_DATA);
    assert_int_equal(r.scope, ROUTE_WRITE);
    assert_int_equal(route_match("DELETE", "/v1/devices/x/connection", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_CONNECTION);
    assert_int_equal(r.scope, ROUTE_WRITE);
    assert_int_equal(route_match("POST", "/v1/devices/x/commands", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_SUBMIT);
    assert_int_equal(r.scope, ROUTE_WRITE);
    assert_int_equal(route_match("GET", "/v1/commands/c-1", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_COMMAND);
    assert_string_equal(r.arg, "c-1");
    assert_int_equal(route_match("GET", "/healthz", &r), ROUTE_OK);
    assert_int_equal(r.scope, ROUTE_OPEN);
    assert_int_equal(route_match("GET", "/metrics", &r), ROUTE_OK);
    assert_int_equal(r.scope, ROUTE_OPEN);
    assert_int_equal(route_match("HEAD", "/readyz", &r), ROUTE_OK);
    assert_int_equal(r.id, ROUTE_READYZ);

    /* wrong method: 405, and the route is known for the Allow header */
    assert_int_equal(route_match("POST", "/v1/devices", &r), ROUTE_BAD_METHOD);
    assert_int_equal(r.id, ROUTE_DEVICES);
    assert_string_equal(route_method(r.id), "GET");
    assert_int_equal(route_match("GET", "/v1/devices/x/data", &r), ROUTE_BAD_METHOD);
    assert_string_equal(route_method(r.id), "DELETE");
    assert_int_equal(route_match("HEAD", "/v1/devices/x/commands", &r), ROUTE_BAD_METHOD);

    /* no such path */
    assert_int_equal(route_match("GET", "/v1/devices/", &r), ROUTE_BAD_ID); /* empty id */
    assert_int_equal(route_match("GET", "/v1/devices/x/", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "/v1/devices/x/telemetry/", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "/v1/devices/x/y", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "/v1/device", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "/v1/devicesx", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "/", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match("GET", "/v1/commands/a/b", &r), ROUTE_NOT_FOUND);

    /* ids outside the alphabet (a decoded %20, %2F, ..) or too long */
    assert_int_equal(route_match("GET", "/v1/devices/a b", &r), ROUTE_BAD_ID);
    assert_int_equal(route_match("GET", "/v1/devices/../telemetry", &r), ROUTE_OK); /* ".." is an id here */
    assert_string_equal(r.arg, "..");
    assert_int_equal(route_match("GET", "/v1/devices/a'b", &r), ROUTE_BAD_ID);
    assert_int_equal(route_match("GET", "/v1/commands/%2F", &r), ROUTE_BAD_ID);
    char path[128] = "/v1/devices/";
    memset(path + 12, 'a', 64);
    path[76] = '\0';
    assert_int_equal(route_match("GET", path, &r), ROUTE_OK);
    assert_int_equal(strlen(r.arg), 64);
    strcat(path, "a");
    assert_int_equal(route_match("GET", path, &r), ROUTE_BAD_ID);
}

/* A query string as key=value pairs: k[i], v[i]. */
struct args {
    const char *k[6], *v[6];
};

static const char *get(void *ud, const char *key)
{
    const struct args *a = ud;
    for (int i = 0; i < 6 && a->k[i]; i++)
        if (!strcmp(a->k[i], key))
            return a->v[i];
    return NULL;
}

static void test_query(void **state)
{
    (void)state;
    struct route_query q;
    const char *why;
    struct args none = {{NULL}, {NULL}};
    assert_int_equal(route_query_parse(ROUTE_DEVICES, get, &none, &q, &why), ROUTE_OK);
    assert_int_equal(q.limit, ROUTE_LIMIT_DEFAULT);
    assert_int_equal(q.online, -1);
    assert_string_equal(q.after, "");

    struct args a = {{"limit", "after", "prefix", "online", "junk"}, {"1000", "pump-9", "pu", "false", "x"}};
    assert_int_equal(route_query_parse(ROUTE_DEVICES, get, &a, &q, &why), ROUTE_OK);
    assert_int_equal(q.limit, 1000);
    assert_string_equal(q.after, "pump-9");
    assert_string_equal(q.prefix, "pu");
    assert_int_equal(q.online, 0);

    const char *bad[][2] = {{"limit", "0"},   {"limit", "1001"}, {"limit", "-1"},
                            {"limit", "1x"},  {"limit", ""},     {"online", "1"},
                            {"after", "a b"}, {"prefix", "p%"},  {"online", "TRUE"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct args b = {{bad[i][0]}, {bad[i][1]}};
        assert_int_equal(route_query_parse(ROUTE_DEVICES, get, &b, &q, &why), ROUTE_BAD_QUERY);
        assert_non_null(why);
    }
    /* telemetry takes from, to, before */
    struct args t = {{"from", "to", "before", "limit"},
                     {"1764358200000", "2025-11-28T19:31:00.5+01:00", "42", "7"}};
    assert_int_equal(route_query_parse(ROUTE_TELEMETRY, get, &t, &q, &why), ROUTE_OK);
    assert_true(q.has_from && q.has_to && q.has_before);
    assert_int_equal(q.from_us, 1764358200000000LL);
    assert_int_equal(q.to_us, 1764358200000000LL - 3600000000LL + 60000000LL + 500000LL);
    assert_int_equal(q.before, 42);
    assert_int_equal(q.limit, 7);
    struct args tb = {{"before"}, {"0"}};
    assert_int_equal(route_query_parse(ROUTE_TELEMETRY, get, &tb, &q, &why), ROUTE_BAD_QUERY);
    struct args tf = {{"from"}, {"yesterday"}};
    assert_int_equal(route_query_parse(ROUTE_TELEMETRY, get, &tf, &q, &why), ROUTE_BAD_QUERY);
    /* a route without parameters ignores them */
    assert_int_equal(route_query_parse(ROUTE_DEVICE, get, &tf, &q, &why), ROUTE_OK);
}

static void test_time(void **state)
{
    (void)state;
    int64_t us;
    assert_true(route_parse_time("2025-11-28T19:30:00Z", &us));
    assert_int_equal(us, 1764358200000000LL);
    assert_true(route_parse_time("2025-11-28t19:30:00.123456789z", &us));
    assert_int_equal(us, 1764358200123456LL);
    assert_true(route_parse_time("2025-11-28T20:30:00+01:00", &us));
    assert_int_equal(us, 1764358200000000LL);
    assert_true(route_parse_time("2025-11-28T18:00:00-01:30", &us));
    assert_int_equal(us, 1764358200000000LL);
    assert_true(route_parse_time("0", &us));
    assert_int_equal(us, 0);
    assert_true(route_parse_time("-1000", &us));
    assert_int_equal(us, -1000000);
    const char *bad[] = {"",
                         "2025-11-28",
                         "2025-11-28T19:30:00",      /* no zone */
                         "2025-11-28T19:30:00.Z",    /* empty fraction */
                         "2025-13-28T19:30:00Z",     /* month */
                         "2025-02-30T19:30:00Z",     /* no such day */
                         "2025-11-28T24:00:00Z",     /* hour */
                         "2025-11-28T19:30:00+0100", /* offset without colon */
                         "2025-11-28T19:30:00Zx",    /* trailing */
                         "1e6",
                         "99999999999999999999",
                         "2025-11-28T19:30:00.1234567890Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(route_parse_time(bad[i], &us));
}

static void test_int(void **state)
{
    (void)state;
    int64_t v;
    assert_true(route_parse_int("9223372036854775807", 0, INT64_MAX, &v));
    assert_int_equal(v, INT64_MAX);
    assert_false(route_parse_int("9223372036854775808", 0, INT64_MAX, &v));
    assert_false(route_parse_int("+1", 0, 10, &v));
    assert_false(route_parse_int("-", -10, 10, &v));
    assert_false(route_parse_int(" 1", 0, 10, &v));
    assert_false(route_parse_int(NULL, 0, 10, &v));
    assert_true(route_parse_int("-10", -10, 10, &v));
    assert_int_equal(v, -10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
