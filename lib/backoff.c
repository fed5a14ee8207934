/*
 * backoff.c - retry schedules: quick at first, since most failures are
 * brief (a deploy, a restart) and most deliveries that fail once succeed
 * within three tries; then spreading out to about a week, so a partner
 * that is down over a long weekend still gets everything.  Jitter keeps
 * the retries of one outage from arriving all at once; it is a function
 * of the webhook and the attempt, so two runs that schedule the same
 * failure agree on its time.
 */
#include <stdlib.h>
#include <string.h>

#include "whk.h"

#define STEP_MIN	1000LL			/* 1 s */
#define STEP_MAX	(30LL * 86400 * 1000)	/* 30 days */
#define STEPS_MAX	1000

void
whk_schedule_free(struct whk_schedule *s)
{
	free(s->steps);
	s->steps = NULL;
	s->n = 0;
}

/* "5s,1m,1d*6": durations, each repeated N times with "*N". */
int
whk_schedule_parse(const char *text, struct whk_schedule *s,
    struct whk_err *err)
{
	char *copy, *item, *next, *star;
	int64_t ms, times, k;
	int64_t *v;

	memset(s, 0, sizeof(*s));
	if (text == NULL || *text == '\0')
		return whk_error(err, WHK_EXIT_USAGE, "empty schedule");
	if ((copy = strdup(text)) == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	for (item = copy; item; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		times = 1;
		if ((star = strchr(item, '*')) != NULL) {
			*star++ = '\0';
			if (whk_parse_uint(star, 1, STEPS_MAX, &times,
			    err) == -1) {
				whk_error(err, WHK_EXIT_USAGE, "'%s': the "
				    "repeat after '*' must be 1 to %d", star,
				    STEPS_MAX);
				goto fail;
			}
		}
		if (*item == '\0') {
			whk_error(err, WHK_EXIT_USAGE, "an empty step");
			goto fail;
		}
		if (whk_parse_duration(item, &ms, err) == -1)
			goto fail;
		if (ms < STEP_MIN || ms > STEP_MAX) {
			whk_error(err, WHK_EXIT_USAGE, "step '%s' is out of "
			    "range (1s to 30d)", item);
			goto fail;
		}
		if ((int64_t)s->n + times > STEPS_MAX) {
			whk_error(err, WHK_EXIT_USAGE, "more than %d steps",
			    STEPS_MAX);
			goto fail;
		}
		if ((v = reallocarray(s->steps, s->n + (size_t)times,
		    sizeof(*v))) == NULL) {
			whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
			goto fail;
		}
		s->steps = v;
		for (k = 0; k < times; k++)
			s->steps[s->n++] = ms;
	}
	free(copy);
	return 0;
fail:
	free(copy);
	whk_schedule_free(s);
	return -1;
}

int64_t
whk_schedule_wait(const struct whk_schedule *s, int64_t attempt,
    uint64_t seed)
{
	int64_t base;
	uint64_t x;

	if (attempt < 1 || attempt > (int64_t)s->n)
		return -1;
	base = s->steps[attempt - 1];
	/* splitmix64: a deterministic spread of up to 20% either way. */
	x = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)attempt;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return base - base / 5 + (int64_t)(x % (uint64_t)(2 * (base / 5) + 1));
}
