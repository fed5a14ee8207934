/*
 * Fuzz target: the value syntaxes of the command lines and environment.
 * The input is one argument (no NUL), given to each parser in turn:
 *
 *	whk_parse_duration	--window, --timeout, --disable-after ...
 *	whk_parse_time		--since, --until, and WHK_NOW (whk_now_init)
 *	whk_parse_size		--max-bytes, --batch-bytes
 *	whk_schedule_parse	--schedule, and whk_schedule_wait on it
 *
 * Each answer is checked against the syntax whk(7) and the manuals give,
 * as judged by a second implementation written here (exact arithmetic in
 * 128 bits, timegm(3) for dates), and against the library's formatters:
 * a duration or a time printed back parses to the same value, a schedule
 * printed back is the same schedule.  A disagreement aborts.
 *
 * WHK_FUZZ_BREAK in the environment adds 1 ms to every duration the
 * library parses before checking it: a bug put in on purpose, to show
 * that the checks can fail.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "whk.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

typedef __int128 big;

#define DURATION_MAX	(INT64_MAX / 4)	/* the library's bound, and ours */
#define STEP_MIN	1000
#define STEP_MAX	(30LL * 86400000)
#define STEPS_MAX	1000
#define TIME_MAX_MS	253402300799999LL	/* 9999-12-31T23:59:59.999Z */

static const char *cur;		/* the argument being judged */
static int broken;

static void
fail(int where, const char *fmt, ...)
{
	va_list ap;
	const char *p;

	fprintf(stderr, "fuzz-duration: property violated (duration.c:%d): ",
	    where);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nargument: ", stderr);
	for (p = cur; p != NULL && *p && p - cur < 400; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			fputc(*p, stderr);
		else
			fprintf(stderr, "\\x%02x", (unsigned char)*p);
	}
	fputc('\n', stderr);
	abort();
}

#define CHECK(cond, ...) do {						\
	if (!(cond))							\
		fail(__LINE__, __VA_ARGS__);				\
} while (0)

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Digits s[0..n) as a number, held at 2^80 (times 2^30 still fits). */
static big
number(const char *s, size_t n)
{
	big v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		v = v * 10 + (s[i] - '0');
		if (v > ((big)1 << 80))
			v = (big)1 << 80;
	}
	return v;
}

/* --- the reference judges ------------------------------------------------- */

/*
 * "Durations are an integer and a unit, ms, s, m, h, d or w ... or
 * several together as in 1h30m.  A bare number is refused."  A unit is
 * the whole run of letters after the digits.
 */
static int
ref_duration(const char *s, int64_t *ms)
{
	static const struct { const char *name; int64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 }, { "w", 604800000 },
	};
	big total = 0, n;
	size_t i, k, u, j;

	if (*s == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i = u) {
		for (k = i; is_digit(s[k]); k++)
			;
		if (k == i)
			return 0;
		n = number(s + i, k - i);
		for (u = k; is_alpha(s[u]); u++)
			;
		for (j = 0; j < sizeof(units) / sizeof(units[0]); j++)
			if (strlen(units[j].name) == u - k &&
			    memcmp(units[j].name, s + k, u - k) == 0)
				break;
		if (j == sizeof(units) / sizeof(units[0]))
			return 0;
		total += n * units[j].ms;
		if (total > DURATION_MAX)
			return 0;
	}
	*ms = (int64_t)total;
	return 1;
}

/* Does s start with pat, where 'd' is any digit? */
static int
shape(const char *s, const char *pat)
{
	for (; *pat; s++, pat++)
		if (*pat == 'd' ? !is_digit(*s) : *s != *pat)
			return 0;
	return 1;
}

static int
two(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/*
 * "Unix seconds or an RFC 3339 time", or a date alone (midnight, UTC).
 * Unix seconds may have a fraction, kept to the nearest millisecond, up
 * to 10^14 s; an RFC 3339 time keeps its first three digits of fraction,
 * may use 't', 'z' or a space as RFC 3339 allows, and without an offset
 * is UTC.  Leap seconds count as the next second, as in the library.
 */
static int
ref_time(const char *s, int64_t *ms)
{
	struct tm tm, back;
	size_t k, f;
	big secs;
	time_t t;
	int64_t v, frac = 0, off = 0;
	int sec = 0, i;

	for (k = 0; is_digit(s[k]); k++)
		;
	if (k > 0 && (s[k] == '\0' || s[k] == '.')) {
		secs = number(s, k);
		v = 0;
		if (s[k] == '.') {
			for (f = k + 1; is_digit(s[f]); f++)
				;
			if (f == k + 1 || s[f] != '\0')
				return 0;
			for (i = 0; i < 3; i++)
				v = v * 10 + (k + 1 + i < f ?
				    s[k + 1 + i] - '0' : 0);
			if (f > k + 4 && s[k + 4] >= '5')
				v++;
			for (i = (int)k + 1; i < (int)f; i++)
				if (s[i] != '0' && secs >= 100000000000000LL)
					return 0;
		}
		if (secs > 100000000000000LL)
			return 0;
		*ms = (int64_t)(secs * 1000 + v);
		return 1;
	}
	if (!shape(s, "dddd-dd-dd"))
		return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = two(s + 5) - 1;
	tm.tm_mday = two(s + 8);
	s += 10;
	if (*s == 'T' || *s == 't' || *s == ' ') {
		if (!shape(s + 1, "dd:dd:dd"))
			return 0;
		tm.tm_hour = two(s + 1);
		tm.tm_min = two(s + 4);
		sec = two(s + 7);
		if (tm.tm_hour > 23 || tm.tm_min > 59 || sec > 60)
			return 0;
		s += 9;
		if (*s == '.') {
			for (f = 1; is_digit(s[f]); f++)
				if (f <= 3)
					frac += (s[f] - '0') *
					    (f == 1 ? 100 : f == 2 ? 10 : 1);
			if (f == 1)
				return 0;
			s += f;
		}
		if (*s == 'Z' || *s == 'z')
			s++;
		else if ((*s == '+' || *s == '-') && shape(s + 1, "dd:dd")) {
			if (two(s + 1) > 23 || two(s + 4) > 59)
				return 0;
			off = (two(s + 1) * 60 + two(s + 4)) * 60000LL;
			if (*s == '+')
				off = -off;
			s += 6;
		}
	}
	if (*s != '\0')
		return 0;
	/* A real day: timegm(3) would carry 2026-02-30 into March. */
	back = tm;
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    (t = timegm(&back)) == (time_t)-1 || back.tm_mday != tm.tm_mday ||
	    back.tm_mon != tm.tm_mon)
		return 0;
	*ms = ((int64_t)t + sec) * 1000 + frac + off;
	return 1;
}

/* "Sizes are bytes, or a number followed by K, M or G" (and KiB, KB). */
static int
ref_size(const char *s, int64_t *bytes)
{
	size_t k;
	big n, mul = 1;

	for (k = 0; is_digit(s[k]); k++)
		;
	if (k == 0)
		return 0;
	n = number(s, k);
	s += k;
	if (*s != '\0' && strchr("KkMmGg", *s) != NULL) {
		mul = *s == 'K' || *s == 'k' ? 1024 :
		    *s == 'M' || *s == 'm' ? 1024 * 1024 : 1024 * 1024 * 1024;
		s++;
		if (*s == 'i' || *s == 'I')
			s++;
		if (*s == 'B' || *s == 'b')
			s++;
	}
	if (*s != '\0' || n * mul > INT64_MAX)
		return 0;
	*bytes = (int64_t)(n * mul);
	return 1;
}

/* One step of a schedule, "5m" or "1d*6", appended to steps[*n...]. */
static int
ref_step(char *item, int64_t *steps, size_t *n)
{
	char *star;
	size_t k;
	big times = 1;
	int64_t ms;

	if ((star = strchr(item, '*')) != NULL) {
		for (k = 1; is_digit(star[k]); k++)
			;
		if (k == 1 || star[k] != '\0')
			return 0;
		times = number(star + 1, k - 1);
		if (times < 1 || times > STEPS_MAX)
			return 0;
		*star = '\0';
	}
	if (!ref_duration(item, &ms) || ms < STEP_MIN || ms > STEP_MAX ||
	    *n + times > STEPS_MAX)
		return 0;
	while (times-- > 0)
		steps[(*n)++] = ms;
	return 1;
}

/*
 * whk-retry(1): a schedule is steps separated by commas, each a
 * duration from 1s to 30d, repeated N times (1 to 1000) with "*N"; at
 * most 1000 steps in all.
 */
static int
ref_schedule(const char *s, int64_t *steps, size_t *n)
{
	const char *comma;
	char *item;
	int ok;

	*n = 0;
	if (*s == '\0')
		return 0;
	for (;;) {
		comma = strchr(s, ',');
		item = strndup(s, comma ? (size_t)(comma - s) : strlen(s));
		if (item == NULL)
			abort();
		ok = ref_step(item, steps, n);
		free(item);
		if (!ok)
			return 0;
		if (comma == NULL)
			return 1;
		s = comma + 1;
	}
}

/* --- the library against them ------------------------------------------- */

static void
check_duration(const char *s)
{
	struct whk_err err;
	char out[64];
	int64_t ms, want = 0, again;
	int rc, ok;

	rc = whk_parse_duration(s, &ms, &err);
	if (broken && rc == 0)
		ms++;
	ok = ref_duration(s, &want);
	CHECK(rc == (ok ? 0 : -1), "whk_parse_duration %s it",
	    rc == 0 ? "took" : "refused");
	if (!ok) {
		CHECK(err.status == WHK_EXIT_USAGE, "an error of status %d",
		    err.status);
		return;
	}
	CHECK(ms == want, "whk_parse_duration read %lld ms, not %lld",
	    (long long)ms, (long long)want);
	whk_format_duration(ms, out, sizeof(out));
	CHECK(whk_parse_duration(out, &again, &err) == 0 && again == ms,
	    "%lld ms is printed as '%s', which does not read back",
	    (long long)ms, out);
}

static char now_env[8 + 4096 + 1] = "WHK_NOW=";

static void
check_time(const char *s)
{
	struct whk_err err;
	char out[64];
	int64_t ms, want = 0, again;
	int rc, ok;

	rc = whk_parse_time(s, &ms, &err);
	ok = ref_time(s, &want);
	CHECK(rc == (ok ? 0 : -1), "whk_parse_time %s it",
	    rc == 0 ? "took" : "refused");
	if (ok) {
		CHECK(ms == want, "whk_parse_time read %lld ms, not %lld",
		    (long long)ms, (long long)want);
		if (ms >= 0 && ms <= TIME_MAX_MS) {
			whk_format_time(ms, out, sizeof(out));
			CHECK(whk_parse_time(out, &again, &err) == 0 &&
			    again == ms, "%lld ms is printed as '%s', which "
			    "does not read back", (long long)ms, out);
		}
	} else
		CHECK(err.status == WHK_EXIT_USAGE, "an error of status %d",
		    err.status);

	/* WHK_NOW: the same syntax, and no time before the epoch. */
	if (strlen(s) > sizeof(now_env) - 9)
		return;
	strcpy(now_env + 8, s);
	rc = whk_now_init(&err);
	if (*s == '\0')
		CHECK(rc == 0, "an empty WHK_NOW is refused");
	else if (ok && want >= 0)
		CHECK(rc == 0 && whk_now_ms() == want, "WHK_NOW gives %lld, "
		    "not %lld", rc == 0 ? (long long)whk_now_ms() : -1LL,
		    (long long)want);
	else
		CHECK(rc == -1 && err.status == WHK_EXIT_USAGE,
		    "WHK_NOW is taken");
}

static void
check_size(const char *s)
{
	struct whk_err err;
	int64_t bytes, want;
	int rc, ok;

	rc = whk_parse_size(s, &bytes, &err);
	ok = ref_size(s, &want);
	CHECK(rc == (ok ? 0 : -1), "whk_parse_size %s it",
	    rc == 0 ? "took" : "refused");
	if (ok)
		CHECK(bytes == want, "whk_parse_size read %lld, not %lld",
		    (long long)bytes, (long long)want);
	else
		CHECK(err.status == WHK_EXIT_USAGE, "an error of status %d",
		    err.status);
}

static void
check_schedule(const char *s, uint64_t seed)
{
	static int64_t want[STEPS_MAX];
	struct whk_schedule sch, again;
	struct whk_buf text = { 0 };
	struct whk_err err;
	char step[64];
	size_t n, k;
	int64_t w, base;
	int rc, ok;

	rc = whk_schedule_parse(s, &sch, &err);
	ok = ref_schedule(s, want, &n);
	CHECK(rc == (ok ? 0 : -1), "whk_schedule_parse %s it",
	    rc == 0 ? "took" : "refused");
	if (!ok) {
		CHECK(err.status == WHK_EXIT_USAGE, "an error of status %d",
		    err.status);
		CHECK(sch.steps == NULL && sch.n == 0, "a refused schedule "
		    "has steps");
		return;
	}
	CHECK(sch.n == n, "%zu steps, not %zu", sch.n, n);
	for (k = 0; k < n; k++)
		CHECK(sch.steps[k] == want[k], "step %zu is %lld ms, not %lld",
		    k + 1, (long long)sch.steps[k], (long long)want[k]);
	/* Each wait within 20% of its step, the same every time. */
	CHECK(whk_schedule_wait(&sch, 0, seed) == -1 &&
	    whk_schedule_wait(&sch, (int64_t)n + 1, seed) == -1,
	    "a wait outside the schedule");
	for (k = 0; k < n; k++) {
		base = sch.steps[k];
		w = whk_schedule_wait(&sch, (int64_t)k + 1, seed);
		CHECK(w > 0 && w >= base - base / 5 && w <= base + base / 5 &&
		    w == whk_schedule_wait(&sch, (int64_t)k + 1, seed),
		    "wait %zu is %lld ms for a step of %lld", k + 1,
		    (long long)w, (long long)base);
	}
	/* Printed back step by step, it is the same schedule. */
	for (k = 0; k < n; k++) {
		whk_format_duration(sch.steps[k], step, sizeof(step));
		if (k > 0)
			whk_buf_puts(&text, ",");
		whk_buf_puts(&text, step);
	}
	CHECK(!text.oom, "out of memory");
	CHECK(whk_schedule_parse(text.data, &again, &err) == 0 &&
	    again.n == n && memcmp(again.steps, sch.steps,
	    n * sizeof(*sch.steps)) == 0, "printed back as '%.200s', it "
	    "is another schedule", text.data);
	whk_schedule_free(&again);
	whk_schedule_free(&sch);
	whk_buf_free(&text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	uint64_t seed = 1469598103934665603ULL;
	char *s;
	size_t i;

	if (!ready) {
		putenv(now_env);
		broken = getenv("WHK_FUZZ_BREAK") != NULL;
		ready = 1;
	}
	/* An argument or an environment variable holds no NUL. */
	if (memchr(data, '\0', size) != NULL)
		return 0;
	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	cur = s;
	for (i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 1099511628211ULL;
	check_duration(s);
	check_time(s);
	check_size(s);
	check_schedule(s, seed);
	cur = NULL;
	free(s);
	return 0;
}
