/*
 * backoff.c - the retry schedule: quick at first, since most failures
 * are brief (a deploy, a restart) and most deliveries that fail once
 * succeed within three tries; then spreading out to about a week, so a
 * partner that is down over a long weekend still gets everything.
 * Jitter keeps the retries of one outage from arriving all at once.
 */
#include "whk.h"

#define S	1000LL
#define M	(60 * S)
#define H	(60 * M)

/* The wait after failed attempt n, n = 1 the first attempt. */
static const int64_t schedule[] = {
	5 * S, 30 * S, 2 * M, 10 * M, 30 * M, 1 * H, 3 * H, 6 * H, 12 * H,
	24 * H, 24 * H, 24 * H, 24 * H, 24 * H, 24 * H,
};

#define NSCHEDULE ((int64_t)(sizeof(schedule) / sizeof(schedule[0])))

int
whk_backoff_attempts(void)
{
	return (int)NSCHEDULE + 1;
}

int64_t
whk_backoff_ms(int64_t attempt, uint64_t seed)
{
	int64_t base;
	uint64_t x;

	if (attempt < 1 || attempt > NSCHEDULE)
		return -1;
	base = schedule[attempt - 1];
	/* splitmix64: a deterministic spread of up to 10% either way. */
	x = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)attempt;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return base - base / 10 + (int64_t)(x % (uint64_t)(base / 5 + 1));
}
