/* Unit tests of the connection limits shared by every event loop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include "keygate/connlimit.h"
#include "unit_util.h"

static struct sockaddr_in ut_v4(const char *ip)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 ut_v6(const char *ip)
{
    struct sockaddr_in6 a;

    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

#define UT_SA(a) ((const struct sockaddr *)&(a)), sizeof(a)

START_TEST(test_per_ip_limit)
{
    kg_connlimit_t *cl = NULL;
    struct sockaddr_in a = ut_v4("127.0.0.1");
    struct sockaddr_in b = ut_v4("127.0.0.2");
    kg_connlimit_slot_t *s[3];
    size_t from = 0;

    ck_assert_int_eq(kg_connlimit_new(100, 2, &cl), KG_OK);
    s[0] = kg_connlimit_acquire(cl, UT_SA(a));
    s[1] = kg_connlimit_acquire(cl, UT_SA(a));
    ck_assert_ptr_nonnull(s[0]);
    ck_assert_ptr_nonnull(s[1]);
    /* The third from one address is refused; another address is not. */
    ck_assert_ptr_null(kg_connlimit_acquire(cl, UT_SA(a)));
    s[2] = kg_connlimit_acquire(cl, UT_SA(b));
    ck_assert_ptr_nonnull(s[2]);
    ck_assert_uint_eq(kg_connlimit_count(cl, UT_SA(a), &from), 3);
    ck_assert_uint_eq(from, 2);
    /* A closed connection frees its place. */
    kg_connlimit_release(cl, s[0]);
    s[0] = kg_connlimit_acquire(cl, UT_SA(a));
    ck_assert_ptr_nonnull(s[0]);
    for (int i = 0; i < 3; i++) {
        kg_connlimit_release(cl, s[i]);
    }
    ck_assert_uint_eq(kg_connlimit_count(cl, UT_SA(a), &from), 0);
    ck_assert_uint_eq(from, 0);
    kg_connlimit_release(cl, NULL); /* nothing */
    kg_connlimit_free(&cl);
    ck_assert_ptr_null(cl);
}
END_TEST

START_TEST(test_total_limit_and_unlimited_per_ip)
{
    kg_connlimit_t *cl = NULL;
    struct sockaddr_in a = ut_v4("10.0.0.1");
    kg_connlimit_slot_t *s[4];

    ck_assert_int_eq(kg_connlimit_new(4, 0, &cl), KG_OK);
    for (int i = 0; i < 4; i++) {
        s[i] = kg_connlimit_acquire(cl, UT_SA(a));
        ck_assert_ptr_nonnull(s[i]);
    }
    ck_assert_ptr_null(kg_connlimit_acquire(cl, UT_SA(a)));
    kg_connlimit_release(cl, s[3]);
    s[3] = kg_connlimit_acquire(cl, UT_SA(a));
    ck_assert_ptr_nonnull(s[3]);
    /* Freed with connections still counted: no leak (ASan checks). */
    kg_connlimit_free(&cl);
}
END_TEST

START_TEST(test_v4_mapped_counts_as_v4)
{
    kg_connlimit_t *cl = NULL;
    struct sockaddr_in a = ut_v4("192.0.2.7");
    struct sockaddr_in6 m = ut_v6("::ffff:192.0.2.7");
    struct sockaddr_in6 other = ut_v6("2001:db8::7");
    kg_connlimit_slot_t *s1;
    kg_connlimit_slot_t *s2;

    ck_assert_int_eq(kg_connlimit_new(10, 1, &cl), KG_OK);
    s1 = kg_connlimit_acquire(cl, UT_SA(a));
    ck_assert_ptr_nonnull(s1);
    ck_assert_ptr_null(kg_connlimit_acquire(cl, UT_SA(m)));
    s2 = kg_connlimit_acquire(cl, UT_SA(other));
    ck_assert_ptr_nonnull(s2);
    kg_connlimit_release(cl, s1);
    kg_connlimit_release(cl, s2);
    kg_connlimit_free(&cl);
}
END_TEST

/* Several threads take and give back places; the counts end at zero. */
static kg_connlimit_t *ut_shared;

static void *ut_churn(void *arg)
{
    struct sockaddr_in a = ut_v4((const char *)arg);

    for (int i = 0; i < 20000; i++) {
        kg_connlimit_slot_t *s = kg_connlimit_acquire(ut_shared, UT_SA(a));

        ck_assert_ptr_nonnull(s);
        kg_connlimit_release(ut_shared, s);
    }
    return NULL;
}

START_TEST(test_threads)
{
    pthread_t t[4];
    const char *ips[4] = {"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3"};
    struct sockaddr_in a = ut_v4("127.0.0.1");
    size_t from = 1;

    ck_assert_int_eq(kg_connlimit_new(64, 8, &ut_shared), KG_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_create(&t[i], NULL, ut_churn, (void *)ips[i]),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    ck_assert_uint_eq(kg_connlimit_count(ut_shared, UT_SA(a), &from), 0);
    ck_assert_uint_eq(from, 0);
    kg_connlimit_free(&ut_shared);
}
END_TEST

static Suite *connlimit_suite(void)
{
    Suite *s = suite_create("connlimit");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_per_ip_limit);
    tcase_add_test(tc, test_total_limit_and_unlimited_per_ip);
    tcase_add_test(tc, test_v4_mapped_counts_as_v4);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(connlimit_suite());
}
