/* Wall-clock time with a seam that tests can set. */
#include "keygate/clock.h"

#include <stdatomic.h>
#include <time.h>

static _Atomic int64_t clock_fake_seconds;

int64_t kg_clock_now(void)
{
    int64_t fake =
        atomic_load_explicit(&clock_fake_seconds, memory_order_relaxed);
    struct timespec ts;

    if (fake != 0) {
        return fake;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t kg_clock_now_ms(void)
{
    int64_t fake =
        atomic_load_explicit(&clock_fake_seconds, memory_order_relaxed);
    struct timespec ts;

    if (fake != 0) {
        return fake * 1000;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kg_clock_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void kg_clock_set_fake(int64_t unix_seconds)
{
    atomic_store_explicit(&clock_fake_seconds, unix_seconds,
                          memory_order_relaxed);
}
