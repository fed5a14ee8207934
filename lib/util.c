/*
 * util.c - errors, buffers, durations and times, ids, text checks,
 * private addresses and the store's default path.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "whk.h"

int
whk_error(struct whk_err *err, int status, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->status = status;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int
buf_grow(struct whk_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return -1;
	if (b->len + more + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	if ((p = realloc(b->data, cap)) == NULL) {
		b->oom = 1;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void
whk_buf_add(struct whk_buf *b, const void *p, size_t n)
{
	if (buf_grow(b, n) == -1)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
whk_buf_puts(struct whk_buf *b, const char *s)
{
	whk_buf_add(b, s, strlen(s));
}

void
whk_buf_printf(struct whk_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	/* Most fit in what is free already: format once. */
	if (buf_grow(b, 64) == -1)
		return;
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->data[b->len] = '\0';
		return;
	}
	if ((size_t)n >= room) {
		if (buf_grow(b, (size_t)n) == -1)
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

/* An integer in decimal: routing writes millions, printf is slow. */
void
whk_buf_int(struct whk_buf *b, int64_t v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	whk_buf_add(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* A time as a JSON string in RFC 3339, or null for 0 ("none"). */
void
whk_buf_json_time(struct whk_buf *b, int64_t ms)
{
	char t[64];

	if (ms == 0) {
		whk_buf_puts(b, "null");
		return;
	}
	whk_format_time(ms, t, sizeof(t));
	whk_buf_json_str(b, t);
}

void
whk_buf_json_strn(struct whk_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run;

	whk_buf_add(b, "\"", 1);
	for (i = 0; i < n; i += run) {
		unsigned char c = (unsigned char)s[i];
		char esc[6];

		for (run = 0; i + run < n; run++) {
			c = (unsigned char)s[i + run];
			if (c < 0x20 || c == '"' || c == '\\')
				break;
		}
		if (run > 0) {
			whk_buf_add(b, s + i, run);
			continue;
		}
		run = 1;
		esc[0] = '\\';
		switch (c) {
		case '"':  esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			whk_buf_add(b, esc, 6);
			continue;
		}
		whk_buf_add(b, esc, 2);
	}
	whk_buf_add(b, "\"", 1);
}

void
whk_buf_json_str(struct whk_buf *b, const char *s)
{
	if (s == NULL)
		whk_buf_puts(b, "null");
	else
		whk_buf_json_strn(b, s, strlen(s));
}

void
whk_buf_reset(struct whk_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
whk_buf_free(struct whk_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/*
 * Durations: an integer and a unit, or several ("1h30m").  A bare number
 * is refused: "5" could mean anything.
 */
int
whk_parse_duration(const char *s, int64_t *ms, struct whk_err *err)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 }, { "w", 604800000 },
	};
	const char *p = s;
	int64_t total = 0;
	size_t i;

	if (*p == '\0')
		goto bad;
	while (*p) {
		int64_t n = 0;
		const char *start = p;

		while (isdigit((unsigned char)*p)) {
			if (n > INT64_MAX / 10 - 10)
				goto bad;
			n = n * 10 + (*p++ - '0');
		}
		if (p == start)
			goto bad;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t ul = strlen(units[i].unit);

			if (strncmp(p, units[i].unit, ul) == 0 &&
			    !isalpha((unsigned char)p[ul]))
				break;
		}
		if (i == sizeof(units) / sizeof(units[0]))
			goto bad;
		if (n > (INT64_MAX / 4 - total) / units[i].ms)
			goto bad;
		total += n * units[i].ms;
		p += strlen(units[i].unit);
	}
	*ms = total;
	return 0;
bad:
	return whk_error(err, WHK_EXIT_USAGE,
	    "invalid duration '%s' (use 500ms, 5s, 10m, 2h, 7d)", s);
}

int
whk_parse_size(const char *s, int64_t *bytes, struct whk_err *err)
{
	char *end;
	long long n;
	int64_t mul = 1;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		goto bad;
	n = strtoll(s, &end, 10);
	if (errno)
		goto bad;
	if (*end == 'K' || *end == 'k')
		mul = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mul = 1024 * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mul = 1024LL * 1024 * 1024, end++;
	if (mul > 1 && (*end == 'i' || *end == 'I'))
		end++;
	if (mul > 1 && (*end == 'B' || *end == 'b'))
		end++;
	if (*end != '\0' || n > INT64_MAX / mul)
		goto bad;
	*bytes = n * mul;
	return 0;
bad:
	return whk_error(err, WHK_EXIT_USAGE,
	    "invalid size '%s' (use bytes, or 64K, 1M)", s);
}

int
whk_parse_uint(const char *s, int64_t min, int64_t max, int64_t *out,
    struct whk_err *err)
{
	char *end;
	long long n;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		goto bad;
	n = strtoll(s, &end, 10);
	if (errno || *end != '\0' || n < min || n > max)
		goto bad;
	*out = n;
	return 0;
bad:
	return whk_error(err, WHK_EXIT_USAGE,
	    "invalid number '%s' (expected %lld to %lld)", s,
	    (long long)min, (long long)max);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no timegm games). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The n characters at s as a decimal number; -1 unless all are digits. */
static int
digits(const char *s, int n)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * Times: Unix seconds (with an optional fraction, to the nearest ms),
 * RFC 3339 ("2026-11-23T10:00:00Z", an offset, or a date alone), or, for
 * --since and friends, a duration meaning that long ago.  Each field is
 * read digit by digit: strtod(3) and scanf(3) would take "1e9", "+1" or
 * " 1", and a day past the end of its month is refused rather than
 * carried into the next.
 */
int
whk_parse_time(const char *s, int64_t *ms, struct whk_err *err)
{
	static const int mdays[] =
	    { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h = 0, mi = 0, sec = 0, oh, om, i;
	const char *p, *q, *f;
	int64_t frac = 0, t = 0;

	for (p = s; isdigit((unsigned char)*p); p++)
		;
	if (p != s && (*p == '\0' || *p == '.')) {
		/* At most 10^14 s: 15 digits once leading zeros are gone. */
		for (q = s; *q == '0' && q + 1 < p; q++)
			;
		if (p - q > 15)
			goto bad;
		for (; q < p; q++)
			t = t * 10 + (*q - '0');
		if (*p == '.') {
			for (f = ++p; isdigit((unsigned char)*p); p++)
				;
			if (p == f || *p != '\0')
				goto bad;
			for (i = 0; i < 3; i++)
				frac = frac * 10 + (f + i < p ? f[i] - '0' : 0);
			if (p - f > 3 && f[3] >= '5')
				frac++;
			if (t == 100000000000000LL &&
			    strspn(f, "0") != (size_t)(p - f))
				goto bad;
		}
		if (t > 100000000000000LL)
			goto bad;
		*ms = t * 1000 + frac;
		return 0;
	}
	if ((y = digits(s, 4)) == -1 || s[4] != '-' ||
	    (mo = digits(s + 5, 2)) == -1 || s[7] != '-' ||
	    (d = digits(s + 8, 2)) == -1)
		goto bad;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 &&
	    !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
		goto bad;
	p = s + 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		if ((h = digits(p + 1, 2)) == -1 || p[3] != ':' ||
		    (mi = digits(p + 4, 2)) == -1 || p[6] != ':' ||
		    (sec = digits(p + 7, 2)) == -1 ||
		    h > 23 || mi > 59 || sec > 60)
			goto bad;
		p += 9;
		if (*p == '.') {
			for (f = ++p; isdigit((unsigned char)*p); p++)
				if (p - f < 3)
					frac = frac * 10 + (*p - '0');
			if (p == f)
				goto bad;
			for (i = (int)(p - f); i < 3; i++)
				frac *= 10;
		}
		t = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
		    sec) * 1000 + frac;
		if (*p == 'Z' || *p == 'z')
			p++;
		else if (*p == '+' || *p == '-') {
			if ((oh = digits(p + 1, 2)) == -1 || p[3] != ':' ||
			    (om = digits(p + 4, 2)) == -1 || oh > 23 || om > 59)
				goto bad;
			t += (*p == '+' ? -60000 : 60000) *
			    ((int64_t)oh * 60 + om);
			p += 6;
		}
	} else
		t = days_from_civil(y, mo, d) * 86400000;
	if (*p != '\0')
		goto bad;
	*ms = t;
	return 0;
bad:
	return whk_error(err, WHK_EXIT_USAGE,
	    "invalid time '%s' (use Unix seconds or RFC 3339)", s);
}

void
whk_format_duration(int64_t ms, char *out, size_t n)
{
	if (ms % 86400000 == 0 && ms)
		snprintf(out, n, "%lldd", (long long)(ms / 86400000));
	else if (ms % 3600000 == 0 && ms)
		snprintf(out, n, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0 && ms)
		snprintf(out, n, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(out, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(out, n, "%lldms", (long long)ms);
}

void
whk_format_time(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/*
 * The clock.  WHK_NOW pins it, so that a test can put a store a week into
 * the future without waiting a week.
 */
static int64_t pinned_now = -1;

int
whk_now_init(struct whk_err *err)
{
	const char *s = getenv("WHK_NOW");

	pinned_now = -1;
	if (s == NULL || *s == '\0')
		return 0;
	/* Before 1970 cannot be pinned (-1 is "not pinned"), nor be in ids. */
	if (whk_parse_time(s, &pinned_now, err) == -1 || pinned_now < 0) {
		pinned_now = -1;
		return whk_error(err, WHK_EXIT_USAGE,
		    "invalid WHK_NOW '%s' (use Unix seconds or RFC 3339)", s);
	}
	return 0;
}

int64_t
whk_now_ms(void)
{
	struct timespec ts;

	if (pinned_now >= 0)
		return pinned_now;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* For waiting: never pinned, never stepped. */
int64_t
whk_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Ids are ULIDs behind a type prefix: 48 bits of milliseconds and 80
 * random bits, in Crockford's base32, so they sort by time as strings.
 * Within one process they are monotonic: a second id in the same
 * millisecond increments the random part instead of drawing anew.
 */
static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void
id_encode(const char *prefix, int64_t ms, const unsigned char rnd[10],
    char out[WHK_ID_LEN])
{
	unsigned char b[16];
	int i, bit;
	size_t pl = strlen(prefix);

	for (i = 0; i < 6; i++)
		b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
	memcpy(b + 6, rnd, 10);
	memcpy(out, prefix, pl);
	out[pl] = '_';
	/* 26 symbols of 5 bits over 130 bits; the top 2 bits are zero. */
	for (i = 0; i < 26; i++) {
		int v = 0, k;

		for (k = 0; k < 5; k++) {
			bit = i * 5 + k - 2;
			v <<= 1;
			if (bit >= 0)
				v |= (b[bit / 8] >> (7 - bit % 8)) & 1;
		}
		out[pl + 1 + i] = crockford[v];
	}
	out[pl + 27] = '\0';
}

int
whk_id_new(const char *prefix, char out[WHK_ID_LEN], struct whk_err *err)
{
	static int64_t last_ms = -1;
	static unsigned char rnd[10];
	int64_t ms = whk_now_ms();
	int i;

	if (ms > last_ms) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return whk_error(err, WHK_EXIT_SYSTEM,
			    "cannot get random bytes");
		rnd[0] &= 0x7f;	/* leave room to increment */
		last_ms = ms;
	} else {
		for (i = 9; i >= 0 && ++rnd[i] == 0; i--)
			;
	}
	id_encode(prefix, last_ms, rnd, out);
	return 0;
}

void
whk_id_floor(const char *prefix, int64_t ms, char out[WHK_ID_LEN])
{
	static const unsigned char zero[10];

	id_encode(prefix, ms < 0 ? 0 : ms, zero, out);
}

/* Strict UTF-8: no overlongs, no surrogates, nothing past U+10FFFF. */
int
whk_utf8_valid(const char *s, size_t n, size_t *bad)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t len, k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			goto bad;
		if (i + len > n)
			goto bad;
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			goto bad;
		i += len;
	}
	return 1;
bad:
	if (bad)
		*bad = i;
	return 0;
}

int
whk_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '-' || s[0] == '.')
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("._-", s[i]) == NULL)
			return 0;
	return 1;
}

/* "a.b,c.*": comma-separated fnmatch(3) patterns over event types. */
int
whk_glob_list_valid(const char *list, struct whk_err *err)
{
	const char *p = list;

	if (*list == '\0')
		return whk_error(err, WHK_EXIT_USAGE, "empty type list");
	for (;;) {
		size_t n = strcspn(p, ",");

		if (n == 0)
			return whk_error(err, WHK_EXIT_USAGE,
			    "empty type in list '%s'", list);
		for (size_t i = 0; i < n; i++)
			if (isspace((unsigned char)p[i]) ||
			    iscntrl((unsigned char)p[i]))
				return whk_error(err, WHK_EXIT_USAGE,
				    "blank or control character in type "
				    "list '%s'", list);
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
}

int
whk_glob_list_match(const char *list, const char *type)
{
	char pat[256];
	const char *p = list;

	if (list == NULL)
		return 1;
	if (type == NULL)
		return 0;
	for (;;) {
		size_t n = strcspn(p, ",");

		if (n < sizeof(pat)) {
			memcpy(pat, p, n);
			pat[n] = '\0';
			if (fnmatch(pat, type, 0) == 0)
				return 1;
		}
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
}

/* "Name: value" with a token name and no line breaks anywhere. */
int
whk_header_valid(const char *h, struct whk_err *err)
{
	static const char *reserved[] = {
		"webhook-id", "webhook-timestamp", "webhook-signature",
		"content-type", "content-length", "host",
		"transfer-encoding", "connection",
	};
	const char *colon = strchr(h, ':');
	size_t i, n;

	if (colon == NULL || colon == h)
		return whk_error(err, WHK_EXIT_USAGE,
		    "invalid header '%s' (use 'Name: value')", h);
	n = (size_t)(colon - h);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) &&
		    strchr("!#$%&'*+-.^_`|~", h[i]) == NULL)
			return whk_error(err, WHK_EXIT_USAGE,
			    "invalid header name in '%s'", h);
	for (i = 0; h[i]; i++)
		if (h[i] == '\r' || h[i] == '\n')
			return whk_error(err, WHK_EXIT_USAGE,
			    "line break in header '%.*s'", (int)n, h);
	for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strlen(reserved[i]) == n &&
		    strncasecmp(reserved[i], h, n) == 0)
			return whk_error(err, WHK_EXIT_USAGE,
			    "header '%.*s' is set by whk itself", (int)n, h);
	return 0;
}

/* Unspecified, private, loopback, link-local, CGNAT, multicast, reserved. */
static int
v4_private(uint32_t a)
{
	return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
	    (a >> 16) == 0xa9fe || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 ||
	    (a >> 22) == (100 << 2 | 1) || (a >> 8) == 0xc00000 ||
	    (a >> 17) == (0xc612 >> 1) || (a >> 28) >= 0xe;
}

/* The IPv4 address at p, in network order. */
static uint32_t
v4_at(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static int
v6_private(const unsigned char *b)
{
	static const unsigned char mapped[12] =
	    { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const unsigned char nat64[12] =
	    { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const unsigned char zero[12];
	uint32_t v4 = v4_at(b + 12);

	if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 ||
	    memcmp(b, zero, 12) == 0)	/* mapped, NAT64, compatible, ::1 */
		return memcmp(b, zero, 12) == 0 ? 1 : v4_private(v4);
	/* IPv4-translated (::ffff:0:0:0/96): the last four bytes. */
	if (memcmp(b, zero, 8) == 0 && b[8] == 0xff && b[9] == 0xff &&
	    b[10] == 0 && b[11] == 0)
		return v4_private(v4);
	/* 6to4 (2002::/16): the IPv4 address after the prefix. */
	if (b[0] == 0x20 && b[1] == 0x02)
		return v4_private(v4_at(b + 2));
	/* Teredo (2001::/32): the server's, and the client's inverted. */
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
		return v4_private(v4_at(b + 4)) || v4_private(~v4);
	/* Local-use NAT64 (64:ff9b:1::/48) reaches what the site maps. */
	if (memcmp(b, nat64, 4) == 0 && b[4] == 0 && b[5] == 1)
		return 1;
	return (b[0] & 0xfe) == 0xfc ||			/* unique local */
	    (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||	/* link-local */
	    (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) ||	/* site-local */
	    b[0] == 0xff ||				/* multicast */
	    (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8);
}

int
whk_sockaddr_private(const void *sa)
{
	const struct sockaddr *s = sa;

	if (s->sa_family == AF_INET)
		return v4_private(ntohl(
		    ((const struct sockaddr_in *)sa)->sin_addr.s_addr));
	if (s->sa_family == AF_INET6)
		return v6_private(
		    ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
	return 1;
}

/*
 * Is host an address literal, and a private one?  Names such as
 * "localhost" count as loopback; other names are judged after DNS, when
 * a request connects.
 */
int
whk_ip_literal_private(const char *host, int *is_literal)
{
	char h[256];
	size_t n = strlen(host);
	struct in_addr a4;
	struct in6_addr a6;

	*is_literal = 0;
	if (n >= sizeof(h))
		return 0;
	memcpy(h, host, n + 1);
	if (n > 2 && h[0] == '[' && h[n - 1] == ']') {
		memmove(h, h + 1, n - 2);
		h[n - 2] = '\0';
	}
	if (strchr(h, '%'))
		*strchr(h, '%') = '\0';	/* zone id: link-local anyway */
	if (inet_pton(AF_INET, h, &a4) == 1) {
		*is_literal = 1;
		return v4_private(ntohl(a4.s_addr));
	}
	if (inet_pton(AF_INET6, h, &a6) == 1) {
		*is_literal = 1;
		return v6_private(a6.s6_addr);
	}
	n = strlen(h);
	while (n > 0 && h[n - 1] == '.')
		h[--n] = '\0';
	if (strcasecmp(h, "localhost") == 0 ||
	    (n > 10 && strcasecmp(h + n - 10, ".localhost") == 0)) {
		*is_literal = 1;
		return 1;
	}
	return 0;
}

static int
mkdir_p(char *path, struct whk_err *err)
{
	char *p;

	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			whk_error(err, WHK_EXIT_STORE,
			    "cannot create directory '%s': %s", path,
			    strerror(errno));
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	return 0;
}

int
whk_store_path(const char *opt, char *out, size_t n, struct whk_err *err)
{
	const char *env = getenv("WHK_STORE");
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	int len;

	if (opt && *opt)
		len = snprintf(out, n, "%s", opt);
	else if (env && *env)
		len = snprintf(out, n, "%s", env);
	else if (xdg && *xdg == '/')
		len = snprintf(out, n, "%s/whk/whk.db", xdg);
	else if (home && *home)
		len = snprintf(out, n, "%s/.local/share/whk/whk.db", home);
	else
		return whk_error(err, WHK_EXIT_USAGE,
		    "no store: use --store, WHK_STORE or HOME");
	if (len < 0 || (size_t)len >= n)
		return whk_error(err, WHK_EXIT_USAGE, "store path too long");
	if (!(opt && *opt) && !(env && *env))
		return mkdir_p(out, err);
	return 0;
}
