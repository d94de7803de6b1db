/* Unit tests of request framing checks: smuggling cases, Host, size bounds. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/framing.h"
#include "unit_util.h"

/* Headers per table row. */
#define FT_ROW_HEADERS 5

/* A header from two string literals (embedded NULs count). */
#define H(n, v)                            \
    {                                      \
        n, sizeof(n) - 1, v, sizeof(v) - 1 \
    }
#define HOST H("Host", "example.com")

typedef struct ft_row {
    const char *label;
    bool http11;
    kg_err_t want;
    kg_header_t h[FT_ROW_HEADERS]; /* ends at the first NULL name */
} ft_row_t;

#define BAD KG_ERR_BAD_REQUEST
#define OK  KG_OK

/* A row for an HTTP/1.1 request. */
#define R11(label, want, ...) \
    {                         \
        label, true, want,    \
        {                     \
            __VA_ARGS__       \
        }                     \
    }
/* A row for an HTTP/1.0 request. */
#define R10(label, want, ...) \
    {                         \
        label, false, want,   \
        {                     \
            __VA_ARGS__       \
        }                     \
    }

static const ft_row_t ft_rows[] = {
    /* Plain requests. */
    R11("host only", OK, HOST),
    R10("no headers, HTTP/1.0", OK, {NULL, 0, NULL, 0}),
    R10("host, HTTP/1.0", OK, HOST),
    R11("host any case", OK, H("hOsT", "x")),
    R11("empty host", OK, H("Host", "")),
    R11("content-length 0", OK, HOST, H("Content-Length", "0")),
    R11("content-length 42", OK, HOST, H("content-length", "42")),
    R11("content-length leading zeros", OK, HOST, H("Content-Length", "007")),
    R11("content-length 18 digits", OK, HOST,
        H("Content-Length", "999999999999999999")),
    R10("content-length, HTTP/1.0", OK, H("Content-Length", "5")),
    R11("chunked", OK, HOST, H("Transfer-Encoding", "chunked")),
    R11("Chunked", OK, HOST, H("transfer-encoding", "Chunked")),
    R11("CHUNKED", OK, HOST, H("TRANSFER-ENCODING", "CHUNKED")),

    R11("all tchars in a name", OK, HOST, H("X-!#$%&'*+-.^_`|~09azAZ", "v")),
    R11("value with tab, high bytes, DEL", OK, HOST,
        H("X-V", "a\tb \x80\xff\x7f")),
    R11("many ordinary headers", OK, HOST, H("Accept", "*/*"),
        H("Content-Type", "application/json"), H("Content-Length", "2"),
        H("User-Agent", "t")),

    /* Content-Length with Transfer-Encoding. */
    R11("CL + TE", BAD, HOST, H("Content-Length", "5"),
        H("Transfer-Encoding", "chunked")),
    R11("TE + CL", BAD, HOST, H("Transfer-Encoding", "chunked"),
        H("content-length", "0")),
    R10("CL + TE, HTTP/1.0", BAD, H("Content-Length", "5"),
        H("Transfer-Encoding", "chunked")),

    /* Content-Length itself. */
    R11("CL, CL equal", BAD, HOST, H("Content-Length", "5"),
        H("Content-Length", "5")),
    R11("CL, CL different", BAD, HOST, H("Content-Length", "5"),
        H("Content-Length", "6")),
    R11("CL, CL other case", BAD, HOST, H("Content-Length", "5"),
        H("CONTENT-LENGTH", "5")),
    R11("CL +1", BAD, HOST, H("Content-Length", "+1")),
    R11("CL -1", BAD, HOST, H("Content-Length", "-1")),
    R11("CL ' 1'", BAD, HOST, H("Content-Length", " 1")),
    R11("CL '1 '", BAD, HOST, H("Content-Length", "1 ")),
    R11("CL '1 1'", BAD, HOST, H("Content-Length", "1 1")),
    R11("CL 1,1", BAD, HOST, H("Content-Length", "1,1")),
    R11("CL '1, 1'", BAD, HOST, H("Content-Length", "1, 1")),
    R11("CL empty", BAD, HOST, H("Content-Length", "")),
    R11("CL hex", BAD, HOST, H("Content-Length", "0x10")),
    R11("CL decimal point", BAD, HOST, H("Content-Length", "1.0")),
    R11("CL 19 digits", BAD, HOST, H("Content-Length", "1000000000000000000")),
    R11("CL overflow", BAD, HOST, H("Content-Length", "18446744073709551617")),
    R11("CL tab", BAD, HOST, H("Content-Length", "\t1")),

    /* Transfer-Encoding other than chunked, or repeated. */
    R11("TE gzip", BAD, HOST, H("Transfer-Encoding", "gzip")),
    /*
     * Whitespace around "chunked": refused, because libmicrohttpd keeps
     * trailing whitespace and then reads the body until close instead of
     * decoding chunks, so accepting would let the two disagree.
     */
    R11("TE ' Chunked '", BAD, HOST, H("Transfer-Encoding", " Chunked ")),
    R11("TE 'chunked '", BAD, HOST, H("Transfer-Encoding", "chunked ")),
    R11("TE ' chunked'", BAD, HOST, H("Transfer-Encoding", " chunked")),
    R11("TE tabs around chunked", BAD, HOST,
        H("Transfer-Encoding", "\tchunked \t")),
    R11("TE gzip, chunked", BAD, HOST, H("Transfer-Encoding", "gzip, chunked")),
    R11("TE chunked, chunked", BAD, HOST,
        H("Transfer-Encoding", "chunked, chunked")),
    R11("TE chunked,", BAD, HOST, H("Transfer-Encoding", "chunked,")),
    R11("TE identity", BAD, HOST, H("Transfer-Encoding", "identity")),
    R11("TE empty", BAD, HOST, H("Transfer-Encoding", "")),
    R11("TE blank", BAD, HOST, H("Transfer-Encoding", " \t ")),
    R11("TE chunke", BAD, HOST, H("Transfer-Encoding", "chunke")),
    R11("TE chunkedx", BAD, HOST, H("Transfer-Encoding", "chunkedx")),
    R11("TE chunkes", BAD, HOST, H("Transfer-Encoding", "chunkes")),
    R11("TE xhunked", BAD, HOST, H("Transfer-Encoding", "xhunked")),
    R11("TE chunked;x=1", BAD, HOST, H("Transfer-Encoding", "chunked;x=1")),
    R11("TE 'chun ked'", BAD, HOST, H("Transfer-Encoding", "chun ked")),
    R11("TE quoted", BAD, HOST, H("Transfer-Encoding", "\"chunked\"")),
    R11("TE twice", BAD, HOST, H("Transfer-Encoding", "chunked"),
        H("Transfer-Encoding", "chunked")),
    R11("TE gzip then chunked", BAD, HOST, H("Transfer-Encoding", "gzip"),
        H("Transfer-Encoding", "chunked")),
    R10("TE in HTTP/1.0", BAD, H("Transfer-Encoding", "chunked")),

    /* Host. */
    R11("HTTP/1.1 without Host", BAD, H("Accept", "*/*")),
    R11("HTTP/1.1 without headers", BAD, {NULL, 0, NULL, 0}),
    R11("two Hosts", BAD, HOST, H("host", "other")),
    R11("two equal Hosts", BAD, HOST, HOST),
    R10("two Hosts, HTTP/1.0", BAD, HOST, HOST),
    R11("Host with space before colon", BAD, H("Host ", "x")),

    /* CR, LF, NUL in a value. */
    R11("CR in value", BAD, HOST, H("X-A", "a\rb")),
    R11("LF in value", BAD, HOST, H("X-A", "a\nb")),
    R11("CRLF in value", BAD, HOST, H("X-A", "a\r\nX-B: c")),
    R11("NUL in value", BAD, HOST, H("X-A", "a\0b")),
    R11("NUL ending a value", BAD, HOST, H("X-A", "ab\0")),
    R11("LF in Host", BAD, H("Host", "a\nb")),
    R11("CR in content-length", BAD, HOST, H("Content-Length", "1\r")),
    R10("LF in HTTP/1.0", BAD, H("X-A", "\n")),

    /* Header names. */
    R11("empty name", BAD, HOST, H("", "v")),
    R11("space in name", BAD, HOST, H("X Foo", "v")),
    R11("tab in name", BAD, HOST, H("X\tFoo", "v")),
    R11("colon in name", BAD, HOST, H("X-Foo:", "v")),
    R11("parenthesis in name", BAD, HOST, H("X(Foo)", "v")),
    R11("slash in name", BAD, HOST, H("X/Foo", "v")),
    R11("quote in name", BAD, HOST, H("X\"Foo", "v")),
    R11("high byte in name", BAD, HOST, H("X\x80", "v")),
    R11("NUL in name", BAD, HOST, H("X\0Y", "v")),
    R11("CR in name", BAD, HOST, H("X\r", "v")),
    R11("DEL in name", BAD, HOST, H("X\x7f", "v")),
    R11("Content-Length with trailing space", BAD, HOST,
        H("Content-Length ", "5")),
    R11("Transfer-Encoding with leading space", BAD, HOST,
        H(" Transfer-Encoding", "chunked")),
};

static size_t ft_count(const kg_header_t *h)
{
    size_t n = 0;

    while (n < FT_ROW_HEADERS && h[n].name != NULL) {
        n++;
    }
    return n;
}

START_TEST(test_framing_row)
{
    const ft_row_t *row = &ft_rows[_i];
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    rc = kg_framing_check(row->h, ft_count(row->h), row->http11, &diag);
    ck_assert_msg(rc == row->want, "%s: got %s, want %s (%s)", row->label,
                  kg_err_name(rc), kg_err_name(row->want), diag.msg);
    if (rc != KG_OK) {
        ck_assert_msg(diag.msg[0] != '\0', "%s: no diag", row->label);
    }
    /* The same headers without a diag give the same answer. */
    ck_assert_int_eq(
        kg_framing_check(row->h, ft_count(row->h), row->http11, NULL), rc);
}
END_TEST

/* Diagnostics never echo names or values. */
START_TEST(test_framing_diag_no_echo)
{
    static const kg_header_t rows[][2] = {
        {HOST, H("Content-Length", "canary")},
        {HOST, H("Transfer-Encoding", "canary")},
        {HOST, H("X-A", "canary\r")},
        {HOST, H("canary name", "v")},
        {H("Host", "canary"), H("Host", "canary")},
    };

    for (size_t i = 0; i < UT_NROWS(rows); i++) {
        kg_diag_t diag = {{0}};

        ck_assert_int_eq(kg_framing_check(rows[i], 2, true, &diag),
                         KG_ERR_BAD_REQUEST);
        ck_assert_ptr_null(strstr(diag.msg, "canary"));
    }
}
END_TEST

/* The specific reasons, for the log and the public 400 detail. */
START_TEST(test_framing_diag_reasons)
{
    static const struct {
        kg_header_t h[3];
        bool http11;
        const char *want;
    } rows[] = {
        {{HOST, H("Content-Length", "1"), H("Transfer-Encoding", "chunked")},
         true,
         "Content-Length together with Transfer-Encoding"},
        {{HOST, H("Content-Length", "1"), H("Content-Length", "1")},
         true,
         "repeated Content-Length"},
        {{HOST, H("Content-Length", "-1")}, true, "Content-Length is not"},
        {{HOST, H("Transfer-Encoding", "gzip")}, true, "other than chunked"},
        {{HOST, H("Transfer-Encoding", "chunked"),
          H("Transfer-Encoding", "chunked")},
         true,
         "repeated Transfer-Encoding"},
        {{H("Transfer-Encoding", "chunked")}, false, "HTTP/1.0"},
        {{H("X", "y")}, true, "without Host"},
        {{HOST, HOST}, true, "repeated Host"},
        {{HOST, H("X", "\0")}, true, "CR, LF or NUL"},
        {{HOST, H("X Y", "1")}, true, "invalid header field name"},
    };

    for (size_t i = 0; i < UT_NROWS(rows); i++) {
        kg_diag_t diag = {{0}};
        size_t n = 0;

        while (n < 3 && rows[i].h[n].name != NULL) {
            n++;
        }
        ck_assert_int_eq(kg_framing_check(rows[i].h, n, rows[i].http11, &diag),
                         KG_ERR_BAD_REQUEST);
        ck_assert_msg(strstr(diag.msg, rows[i].want) != NULL,
                      "row %zu: %s lacks %s", i, diag.msg, rows[i].want);
    }
}
END_TEST

/* KG_MAX_HEADERS fields pass, one more is 431. */
START_TEST(test_framing_header_count)
{
    kg_header_t h[KG_MAX_HEADERS + 1];
    kg_diag_t diag = {{0}};

    for (size_t i = 0; i < UT_NROWS(h); i++) {
        kg_header_t x = H("X-A", "v");
        h[i] = x;
    }
    h[0].name = "Host";
    h[0].name_len = 4;
    ck_assert_int_eq(kg_framing_check_size(h, KG_MAX_HEADERS, &diag), KG_OK);
    ck_assert_int_eq(kg_framing_check(h, KG_MAX_HEADERS, true, &diag), KG_OK);
    ck_assert_int_eq(kg_framing_check_size(h, KG_MAX_HEADERS + 1, &diag),
                     KG_ERR_HEADERS_TOO_LARGE);
    ck_assert_int_eq(kg_framing_check(h, KG_MAX_HEADERS + 1, true, &diag),
                     KG_ERR_HEADERS_TOO_LARGE);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_HEADERS_TOO_LARGE), 431);
    ck_assert_ptr_nonnull(strstr(diag.msg, "header fields"));
}
END_TEST

/* KG_MAX_HEADER_BYTES on the wire pass, one more byte is 431. */
START_TEST(test_framing_header_bytes)
{
    /* Host: x (4 + 1 + 4 bytes) and X-Big: <value> (5 + len + 4). */
    const size_t fixed = (4 + 1 + 4) + (5 + 4);
    const size_t len = KG_MAX_HEADER_BYTES - fixed;
    char *value = malloc(len + 1);
    kg_header_t h[2] = {H("Host", "x"), {"X-Big", 5, NULL, 0}};
    kg_diag_t diag = {{0}};

    ck_assert_ptr_nonnull(value);
    memset(value, 'v', len + 1);
    h[1].value = value;
    h[1].value_len = len;
    ck_assert_int_eq(kg_framing_check_size(h, 2, &diag), KG_OK);
    ck_assert_int_eq(kg_framing_check(h, 2, true, &diag), KG_OK);
    h[1].value_len = len + 1;
    ck_assert_int_eq(kg_framing_check_size(h, 2, &diag),
                     KG_ERR_HEADERS_TOO_LARGE);
    ck_assert_int_eq(kg_framing_check(h, 2, true, &diag),
                     KG_ERR_HEADERS_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(diag.msg, "bytes"));
    free(value);
}
END_TEST

/* Lengths near SIZE_MAX cannot wrap the byte count. */
START_TEST(test_framing_header_bytes_wrap)
{
    kg_header_t h[2] = {H("Host", "x"), H("X-A", "v")};

    h[1].value_len = SIZE_MAX - 2;
    ck_assert_int_eq(kg_framing_check_size(h, 2, NULL),
                     KG_ERR_HEADERS_TOO_LARGE);
    h[1].value_len = 1;
    h[1].name_len = SIZE_MAX;
    ck_assert_int_eq(kg_framing_check(h, 2, true, NULL),
                     KG_ERR_HEADERS_TOO_LARGE);
    ck_assert_int_eq(kg_framing_check_size(NULL, 0, NULL), KG_OK);
    /* A NULL value is empty when its length is 0, bad otherwise. */
    h[1].name_len = 3;
    h[1].value = NULL;
    h[1].value_len = 0;
    ck_assert_int_eq(kg_framing_check(h, 2, true, NULL), KG_OK);
    h[1].value_len = 1;
    ck_assert_int_eq(kg_framing_check(h, 2, true, NULL), KG_ERR_BAD_REQUEST);
}
END_TEST

START_TEST(test_framing_name_is)
{
    kg_header_t a = H("Content-Length", "1");
    kg_header_t b = H("content-lengtH", "1");
    kg_header_t c = H("Content-Lengt", "1");
    kg_header_t d = H("Content-Length\0", "1");
    kg_header_t e = {NULL, 0, NULL, 0};
    kg_header_t f = H("Content-Lengtx", "1");

    ck_assert(kg_framing_name_is(&a, "content-length"));
    ck_assert(kg_framing_name_is(&b, "content-length"));
    ck_assert(kg_framing_name_is(&a, "CONTENT-LENGTH"));
    ck_assert(!kg_framing_name_is(&c, "content-length"));
    ck_assert(!kg_framing_name_is(&d, "content-length"));
    ck_assert(!kg_framing_name_is(&e, "content-length"));
    ck_assert(!kg_framing_name_is(&e, ""));
    ck_assert(!kg_framing_name_is(&f, "content-length"));
}
END_TEST

static Suite *framing_suite(void)
{
    Suite *s = suite_create("framing");
    TCase *tc = tcase_create("check");

    tcase_add_loop_test(tc, test_framing_row, 0, (int)UT_NROWS(ft_rows));
    tcase_add_test(tc, test_framing_diag_no_echo);
    tcase_add_test(tc, test_framing_diag_reasons);
    suite_add_tcase(s, tc);

    tc = tcase_create("size");
    tcase_add_test(tc, test_framing_header_count);
    tcase_add_test(tc, test_framing_header_bytes);
    tcase_add_test(tc, test_framing_header_bytes_wrap);
    suite_add_tcase(s, tc);

    tc = tcase_create("names");
    tcase_add_test(tc, test_framing_name_is);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(framing_suite());
}
