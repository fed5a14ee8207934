/*
 * receiver.c - test-receiver, the HTTP server the bats suites and the
 * benchmarks deliver webhooks to.
 *
 * What it does:
 *   - listens on 127.0.0.1 (or --bind ADDR, e.g. ::1), port 0 unless
 *     --port is given, and writes "PORT\n" to --port-file atomically
 *     (temporary file, then rename) once it is listening;
 *   - serves each connection in its own small detached thread,
 *     HTTP/1.1 with keep-alive and pipelining, Content-Length and
 *     chunked bodies, "Expect: 100-continue";
 *   - plays a different endpoint for each request path (/ok, /fail,
 *     /status/NNN, /slow, /never, /reset, /close (hangs up without a
 *     word), /garbage, /huge, /redirect,
 *     /redirect-loop, /retry-after, /fail-first, /flaky, /slowfail,
 *     /sometimes-never, /slow-body; anything else is 404); the query
 *     string carries the parameters, and "ms=N" delays any answer by N
 *     milliseconds;
 *   - /slow-body sends its status line and headers at once, then a body
 *     of "bytes=N" bytes (64 unless given) one byte each "every=N"
 *     milliseconds (1000 unless given): an answer that trickles in;
 *     "status=NNN" (200 unless given) there and on /huge;
 *   - checks Standard Webhooks signatures against every --secret;
 *   - appends one NDJSON line per request it read completely to --log,
 *     with a single write(2) before the answer is sent, so a client that
 *     has its answer can read the line at once;
 *   - counts, per webhook-id, the attempts seen and the requests being
 *     handled at the same time ("concurrent"), and the requests being
 *     handled at the same time in all ("inflight");
 *   - logs whether the request asked for "100 Continue" ("expect");
 *   - logs the webhook-signature header as received ("signature", the
 *     values of several such headers joined by ", "), so a test can check
 *     it independently;
 *   - stops on SIGTERM or SIGINT: closes every connection, waits for the
 *     threads and exits 0.
 *
 * What it does not do: TLS, HTTP/2, percent-decoding of the query,
 * timeouts on idle connections (a client may hold one for ever),
 * folded header lines (400), request bodies over 32 MiB (413) or header
 * blocks over 64 KiB (431).  It is a test tool: it trusts its operator,
 * never its clients.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define HDR_MAX		(64 * 1024)		/* request line and headers */
#define BODY_MAX	(32 * 1024 * 1024)
#define BODY_LOG_MAX	(64 * 1024)		/* body bytes kept in the log */
#define LINE_MAX_CHUNK	1024			/* chunk-size and trailer lines */
#define MAX_SIGHDR	16			/* webhook-signature headers */
#define MAX_XHDR	64			/* x-* headers logged */
#define MAX_SECRETS	16
#define HUGE_DEFAULT	(10ULL * 1024 * 1024)
#define DELAY_MAX	(3600ULL * 1000)
#define STOP_WAIT_MS	5000

#if defined(__SANITIZE_ADDRESS__)
#define STACK_SIZE	(512 * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_SIZE	(512 * 1024)
#endif
#endif
#ifndef STACK_SIZE
#define STACK_SIZE	(64 * 1024)
#endif

struct conn {
	struct conn	*prev, *next;	/* the registry, under reg_lock */
	int		 fd;
	unsigned long	 serial;
	char		*buf;		/* bytes read, not yet used: [off, len) */
	size_t		 cap, off, len;
	size_t		 scan;		/* header search resumes here */
};

struct req {
	char		*hdr;		/* copy of the header block */
	const char	*method, *target, *path, *query;
	int		 minor;		/* HTTP/1.minor */
	const char	*id, *ts, *ua, *ct;
	const char	*sighdr[MAX_SIGHDR];
	int		 nsighdr;
	const char	*xname[MAX_XHDR], *xval[MAX_XHDR];
	int		 nx;
	int		 has_clen, chunked, close, keepalive, expect;
	unsigned long long clen;
	char		*body;
	size_t		 blen, bcap;
	struct timespec	 t;
};

struct entry {				/* per webhook-id */
	struct entry	*next;
	char		*id;
	uint64_t	 hash;
	unsigned long	 attempts;
	unsigned long	 inflight;
};

struct sb {				/* string builder */
	char	*p;
	size_t	 len, cap;
	int	 err;
};

enum action {
	A_RESPOND, A_NEVER, A_RESET, A_CLOSE, A_GARBAGE, A_HUGE, A_SLOW_BODY
};

static struct {
	unsigned char	 key[MAX_SECRETS][128];
	size_t		 keylen[MAX_SECRETS];
	int		 n;
} secrets;

static EVP_MAC		*hmac;
static int		 logfd = -1;
static pthread_mutex_t	 log_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t	 map_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry	**map;
static size_t		 map_size, map_count;
static struct entry	 noid;		/* requests without a webhook-id */
static unsigned long	 all_inflight;	/* requests being handled, in all */

static pthread_mutex_t	 reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 reg_cond = PTHREAD_COND_INITIALIZER;
static struct conn	*reg_head;
static unsigned long	 reg_count;
static int		 stop_pipe[2] = { -1, -1 };

static char		 huge_chunk[64 * 1024];

static const char	*progname = "test-receiver";

static void
usage(FILE *f)
{
	fprintf(f, "usage: %s [--port-file FILE] [--log FILE] "
	    "[--secret whsec_...]... [--bind ADDR] [--port N]\n", progname);
}

static void
fatal(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* Small helpers. */

static int
ms_since(const struct timespec *a)
{
	struct timespec b;
	long long d;

	clock_gettime(CLOCK_MONOTONIC, &b);
	d = (long long)(b.tv_sec - a->tv_sec) * 1000 +
	    (b.tv_nsec - a->tv_nsec) / 1000000;
	return d > INT_MAX ? INT_MAX : (int)d;
}

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int
send_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	ssize_t w;

	while (n > 0) {
		w = send(fd, s, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* String builder; an allocation failure only loses the log line. */

static void
sb_grow(struct sb *b, size_t more)
{
	size_t ncap;
	char *np;

	if (b->err || b->len + more + 1 <= b->cap)
		return;
	ncap = b->cap ? b->cap : 512;
	while (ncap < b->len + more + 1)
		ncap *= 2;
	if ((np = realloc(b->p, ncap)) == NULL) {
		b->err = 1;
		return;
	}
	b->p = np;
	b->cap = ncap;
}

static void
sb_putn(struct sb *b, const char *s, size_t n)
{
	sb_grow(b, n);
	if (b->err)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_puts(struct sb *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void
sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	char tmp[128];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->err = 1;
		return;
	}
	sb_putn(b, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t c;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return len;
}

/* The inside of a JSON string; bytes that are not UTF-8 become U+FFFD. */
static void
sb_jesc(struct sb *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k, run;

	sb_grow(b, n + 2);
	while (i < n) {
		run = i;
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 &&
		    p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			sb_putn(b, s + i, run - i);
			i = run;
			continue;
		}
		switch (p[i]) {
		case '"':
			sb_putn(b, "\\\"", 2);
			break;
		case '\\':
			sb_putn(b, "\\\\", 2);
			break;
		case '\n':
			sb_putn(b, "\\n", 2);
			break;
		case '\r':
			sb_putn(b, "\\r", 2);
			break;
		case '\t':
			sb_putn(b, "\\t", 2);
			break;
		default:
			if (p[i] < 0x20) {
				sb_printf(b, "\\u%04x", p[i]);
				break;
			}
			if ((k = utf8_len(p + i, n - i)) == 0) {
				sb_putn(b, "\\ufffd", 6);
				break;
			}
			sb_putn(b, s + i, k);
			i += k;
			continue;
		}
		i++;
	}
}

static void
sb_jstr(struct sb *b, const char *s, size_t n)
{
	sb_putn(b, "\"", 1);
	sb_jesc(b, s, n);
	sb_putn(b, "\"", 1);
}

static void
sb_jstr_or_null(struct sb *b, const char *s)
{
	if (s == NULL)
		sb_puts(b, "null");
	else
		sb_jstr(b, s, strlen(s));
}

static void
sb_time(struct sb *b, const struct timespec *t)
{
	if (t == NULL)
		sb_puts(b, "null");
	else
		sb_printf(b, "%lld.%03ld", (long long)t->tv_sec,
		    t->tv_nsec / 1000000);
}

/* The per-webhook-id map. */

static struct entry *
map_get(const char *id)
{
	struct entry *e, **nm;
	uint64_t h;
	size_t i, nsize;

	if (id == NULL)
		return &noid;
	h = fnv1a(id);
	if (map_size > 0)
		for (e = map[h & (map_size - 1)]; e != NULL; e = e->next)
			if (e->hash == h && strcmp(e->id, id) == 0)
				return e;
	if (map_count >= map_size) {
		nsize = map_size ? map_size * 2 : 1024;
		if ((nm = calloc(nsize, sizeof(*nm))) == NULL)
			return &noid;
		for (i = 0; i < map_size; i++)
			while ((e = map[i]) != NULL) {
				map[i] = e->next;
				e->next = nm[e->hash & (nsize - 1)];
				nm[e->hash & (nsize - 1)] = e;
			}
		free(map);
		map = nm;
		map_size = nsize;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return &noid;
	if ((e->id = strdup(id)) == NULL) {
		free(e);
		return &noid;
	}
	e->hash = h;
	e->next = map[h & (map_size - 1)];
	map[h & (map_size - 1)] = e;
	map_count++;
	return e;
}

static void
map_free(void)
{
	struct entry *e;
	size_t i;

	for (i = 0; i < map_size; i++)
		while ((e = map[i]) != NULL) {
			map[i] = e->next;
			free(e->id);
			free(e);
		}
	free(map);
	map = NULL;
	map_size = map_count = 0;
}

/* Reading from a connection. */

/* Read more; 1 read something, 0 EOF, -1 error, -2 buffer full. */
static int
conn_fill(struct conn *c, size_t max)
{
	ssize_t r;
	size_t ncap;
	char *nb;

	if (c->off == c->len) {
		c->off = c->len = 0;
		c->scan = 0;
	} else if (c->len == c->cap && c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len == c->cap) {
		if (c->cap >= max)
			return -2;
		ncap = c->cap * 2 > max ? max : c->cap * 2;
		if ((nb = realloc(c->buf, ncap)) == NULL)
			return -1;
		c->buf = nb;
		c->cap = ncap;
	}
	for (;;) {
		r = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	if (r < 0)
		return -1;
	if (r == 0)
		return 0;
	c->len += (size_t)r;
	return 1;
}

/* Append n body bytes to r->body; 0 or -1. */
static int
read_body(struct conn *c, struct req *r, size_t n)
{
	size_t take, ncap;
	ssize_t got;
	char *nb;

	if (r->blen + n > BODY_MAX)
		return -1;
	while (n > 0) {
		if (r->blen + 1 >= r->bcap) {
			ncap = r->bcap ? r->bcap * 2 : 16 * 1024;
			while (ncap < r->blen + (n > 65536 ? 65536 : n) + 1)
				ncap *= 2;
			if (ncap > BODY_MAX + 1)
				ncap = BODY_MAX + 1;
			if ((nb = realloc(r->body, ncap)) == NULL)
				return -1;
			r->body = nb;
			r->bcap = ncap;
		}
		take = r->bcap - 1 - r->blen;
		if (take > n)
			take = n;
		if (c->off < c->len) {
			if (take > c->len - c->off)
				take = c->len - c->off;
			memcpy(r->body + r->blen, c->buf + c->off, take);
			c->off += take;
			got = (ssize_t)take;
		} else {
			got = read(c->fd, r->body + r->blen, take);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				return -1;
		}
		r->blen += (size_t)got;
		n -= (size_t)got;
	}
	r->body[r->blen] = '\0';
	return 0;
}

/* A line from the buffer, without its end; NULL on EOF, error, too long. */
static char *
read_line(struct conn *c, size_t *lenp)
{
	char *p, *nl;
	size_t n;

	for (;;) {
		p = c->buf + c->off;
		n = c->len - c->off;
		if ((nl = memchr(p, '\n', n)) != NULL) {
			c->off += (size_t)(nl - p) + 1;
			n = (size_t)(nl - p);
			if (n > 0 && p[n - 1] == '\r')
				n--;
			p[n] = '\0';
			*lenp = n;
			return p;
		}
		if (n > LINE_MAX_CHUNK)
			return NULL;
		if (conn_fill(c, HDR_MAX) != 1)
			return NULL;
	}
}

static int
read_chunked(struct conn *c, struct req *r)
{
	unsigned long long size;
	char *line, *end;
	size_t n;

	for (;;) {
		if ((line = read_line(c, &n)) == NULL)
			return 400;
		if (!isxdigit((unsigned char)line[0]))
			return 400;
		errno = 0;
		size = strtoull(line, &end, 16);
		if (errno != 0 || (*end != '\0' && *end != ';' &&
		    *end != ' ' && *end != '\t'))
			return 400;
		if (size == 0)
			break;
		if (size > BODY_MAX || r->blen + size > BODY_MAX)
			return 413;
		if (read_body(c, r, (size_t)size) != 0)
			return -1;
		if ((line = read_line(c, &n)) == NULL || n != 0)
			return 400;
	}
	do {					/* trailers */
		if ((line = read_line(c, &n)) == NULL)
			return 400;
	} while (n != 0);
	return 0;
}

static int
is_tchar(int ch)
{
	return isalnum(ch) || (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch));
}

static int
has_token(const char *v, const char *tok)
{
	size_t n = strlen(tok);

	while (*v != '\0') {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (strncasecmp(v, tok, n) == 0 &&
		    (v[n] == '\0' || v[n] == ',' || v[n] == ' ' ||
		    v[n] == '\t'))
			return 1;
		while (*v != '\0' && *v != ',')
			v++;
	}
	return 0;
}

/* Parse the header block r->hdr in place; 0 or an HTTP status. */
static int
parse_head(struct req *r)
{
	char *p, *line, *next, *colon, *v, *e, *end;
	unsigned long long n;
	size_t i;

	line = r->hdr;
	if ((next = strchr(line, '\n')) != NULL)
		*next++ = '\0';
	i = strlen(line);
	if (i > 0 && line[i - 1] == '\r')
		line[--i] = '\0';

	/* Request line. */
	r->method = line;
	for (p = line; is_tchar((unsigned char)*p); p++)
		;
	if (p == line || *p != ' ')
		return 400;
	*p++ = '\0';
	r->target = p;
	for (; *p != ' ' && *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return 400;
	if (p == r->target || *p != ' ')
		return 400;
	*p++ = '\0';
	if (strncmp(p, "HTTP/", 5) != 0 || !isdigit((unsigned char)p[5]) ||
	    p[6] != '.' || !isdigit((unsigned char)p[7]) || p[8] != '\0')
		return 400;
	if (p[5] != '1')
		return 505;
	r->minor = p[7] - '0';
	r->path = r->target;
	if (strncasecmp(r->path, "http://", 7) == 0 ||
	    strncasecmp(r->path, "https://", 8) == 0) {
		r->path = strchr(r->path, ':') + 3;
		if ((r->path = strchr(r->path, '/')) == NULL)
			r->path = "/";
	}
	if (r->path[0] != '/' && strcmp(r->path, "*") != 0)
		return 400;

	/* Header fields. */
	for (line = next; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		i = strlen(line);
		if (i > 0 && line[i - 1] == '\r')
			line[--i] = '\0';
		if (i == 0)
			break;
		if ((colon = strchr(line, ':')) == NULL || colon == line)
			return 400;
		for (p = line; p < colon; p++) {
			if (!is_tchar((unsigned char)*p))
				return 400;
			*p = (char)tolower((unsigned char)*p);
		}
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (e = v + strlen(v); e > v && (e[-1] == ' ' ||
		    e[-1] == '\t'); e--)
			;
		*e = '\0';
		for (p = v; p < e; p++)
			if (((unsigned char)*p < 0x20 && *p != '\t') ||
			    *p == 0x7f)
				return 400;

		if (strcmp(line, "content-length") == 0) {
			if (!isdigit((unsigned char)*v))
				return 400;
			errno = 0;
			n = strtoull(v, &end, 10);
			if (errno != 0 || *end != '\0')
				return n > BODY_MAX ? 413 : 400;
			if (r->has_clen && n != r->clen)
				return 400;
			r->has_clen = 1;
			r->clen = n;
		} else if (strcmp(line, "transfer-encoding") == 0) {
			if (strcasecmp(v, "chunked") != 0)
				return 501;
			r->chunked = 1;
		} else if (strcmp(line, "connection") == 0) {
			if (has_token(v, "close"))
				r->close = 1;
			if (has_token(v, "keep-alive"))
				r->keepalive = 1;
		} else if (strcmp(line, "expect") == 0) {
			if (strcasecmp(v, "100-continue") == 0)
				r->expect = 1;
		} else if (strcmp(line, "webhook-id") == 0) {
			if (r->id == NULL)
				r->id = v;
		} else if (strcmp(line, "webhook-timestamp") == 0) {
			if (r->ts == NULL)
				r->ts = v;
		} else if (strcmp(line, "webhook-signature") == 0) {
			if (r->nsighdr < MAX_SIGHDR)
				r->sighdr[r->nsighdr++] = v;
		} else if (strcmp(line, "user-agent") == 0) {
			if (r->ua == NULL)
				r->ua = v;
		} else if (strcmp(line, "content-type") == 0) {
			if (r->ct == NULL)
				r->ct = v;
		} else if (line[0] == 'x' && line[1] == '-') {
			if (r->nx < MAX_XHDR) {
				r->xname[r->nx] = line;
				r->xval[r->nx++] = v;
			}
		}
	}
	if (r->chunked && r->has_clen)
		return 400;
	if (r->has_clen && r->clen > BODY_MAX)
		return 413;
	if (r->minor == 0 && !r->keepalive)
		r->close = 1;
	if ((p = strchr(r->target, '?')) != NULL) {
		r->query = p + 1;
		*p = '\0';		/* r->target keeps the query (below) */
	}
	return 0;
}

static void
req_free(struct req *r)
{
	free(r->hdr);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Find the end of the header block: index past the blank line, or 0. */
static size_t
head_end(const char *p, size_t n, size_t from)
{
	const char *nl;
	size_t i = from;

	while (i < n && (nl = memchr(p + i, '\n', n - i)) != NULL) {
		i = (size_t)(nl - p) + 1;
		if (i < n && p[i] == '\n')
			return i + 1;
		if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
			return i + 2;
	}
	return 0;
}

/*
 * Read one request: 1 done, 0 clean EOF or I/O error (just close),
 * or the HTTP status of an error to answer before closing.
 */
static int
read_request(struct conn *c, struct req *r)
{
	size_t end, avail;
	int rc;
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	for (;;) {
		/* Ignore empty lines before a request. */
		while (c->off < c->len && (c->buf[c->off] == '\n' ||
		    (c->buf[c->off] == '\r' && c->off + 1 < c->len &&
		    c->buf[c->off + 1] == '\n'))) {
			c->off += c->buf[c->off] == '\r' ? 2 : 1;
			c->scan = 0;
		}
		avail = c->len - c->off;
		if (avail > 0 && (end = head_end(c->buf + c->off, avail,
		    c->scan)) != 0)
			break;
		c->scan = avail > 3 ? avail - 3 : 0;
		if (avail >= HDR_MAX)
			return 431;
		rc = conn_fill(c, HDR_MAX + 1024);
		if (rc == -2)
			return 431;
		if (rc <= 0)
			return avail > 0 && rc == 0 ? 400 : 0;
	}
	if (end > HDR_MAX)
		return 431;
	clock_gettime(CLOCK_REALTIME, &r->t);
	if ((r->hdr = malloc(end + 1)) == NULL)
		return 0;
	memcpy(r->hdr, c->buf + c->off, end);
	r->hdr[end] = '\0';
	c->off += end;
	c->scan = 0;
	if (memchr(r->hdr, '\0', end) != NULL)
		return 400;
	if ((rc = parse_head(r)) != 0)
		return rc;
	if (r->expect && r->minor >= 1 && (r->chunked ||
	    (r->has_clen && r->clen > c->len - c->off)))
		if (send_all(c->fd, cont, sizeof(cont) - 1) != 0)
			return 0;
	if (r->chunked) {
		rc = read_chunked(c, r);
		if (rc != 0)
			return rc < 0 ? 0 : rc;
	} else if (r->has_clen && r->clen > 0) {
		if (read_body(c, r, (size_t)r->clen) != 0)
			return 0;
	}
	return 1;
}

/* Signatures. */

/* 1 if a v1 signature verifies, 0 if none does, -1 for "unknown". */
static int
verify(const struct req *r, int *nsigs)
{
	unsigned char mac[EVP_MAX_MD_SIZE], b64[4 * EVP_MAX_MD_SIZE / 3 + 8];
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;
	const char *p, *tok;
	size_t maclen, toklen, b64len;
	int i, k, ok = 0;

	*nsigs = 0;
	for (i = 0; i < r->nsighdr; i++)
		for (p = r->sighdr[i]; *p != '\0';) {
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '\0')
				break;
			(*nsigs)++;
			while (*p != '\0' && *p != ' ' && *p != '\t')
				p++;
		}
	if (secrets.n == 0 || r->nsighdr == 0)
		return -1;
	if (r->id == NULL || r->ts == NULL || hmac == NULL)
		return 0;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	for (k = 0; k < secrets.n && !ok; k++) {
		if ((ctx = EVP_MAC_CTX_new(hmac)) == NULL)
			return 0;
		if (EVP_MAC_init(ctx, secrets.key[k], secrets.keylen[k],
		    params) != 1 ||
		    EVP_MAC_update(ctx, (const unsigned char *)r->id,
		    strlen(r->id)) != 1 ||
		    EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
		    EVP_MAC_update(ctx, (const unsigned char *)r->ts,
		    strlen(r->ts)) != 1 ||
		    EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
		    (r->blen > 0 && EVP_MAC_update(ctx,
		    (const unsigned char *)r->body, r->blen) != 1) ||
		    EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) != 1) {
			EVP_MAC_CTX_free(ctx);
			return 0;
		}
		EVP_MAC_CTX_free(ctx);
		b64len = (size_t)EVP_EncodeBlock(b64, mac, (int)maclen);
		for (i = 0; i < r->nsighdr && !ok; i++)
			for (p = r->sighdr[i]; *p != '\0';) {
				while (*p == ' ' || *p == '\t')
					p++;
				tok = p;
				while (*p != '\0' && *p != ' ' && *p != '\t')
					p++;
				toklen = (size_t)(p - tok);
				if (toklen == 3 + b64len &&
				    strncmp(tok, "v1,", 3) == 0 &&
				    CRYPTO_memcmp(tok + 3, b64, b64len) == 0) {
					ok = 1;
					break;
				}
			}
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok;
}

static void
add_secret(const char *s)
{
	char tmp[200];
	size_t n, pad = 0;
	int len;

	if (secrets.n >= MAX_SECRETS)
		fatal(2, "too many secrets (at most %d)", MAX_SECRETS);
	if (strncmp(s, "whsec_", 6) == 0)
		s += 6;
	n = strlen(s);
	if (n == 0 || n + 4 >= sizeof(tmp) ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/=") != n)
		fatal(2, "invalid secret: must be 'whsec_' and base64");
	memcpy(tmp, s, n);
	while (n % 4 != 0)		/* accept missing padding */
		tmp[n++] = '=';
	tmp[n] = '\0';
	while (pad < 2 && tmp[n - 1 - pad] == '=')
		pad++;
	if (strcspn(tmp, "=") < n - pad)
		fatal(2, "invalid secret: must be 'whsec_' and base64");
	len = EVP_DecodeBlock(secrets.key[secrets.n],
	    (const unsigned char *)tmp, (int)n);
	if (len < 0 || (size_t)len < pad || len - (int)pad == 0)
		fatal(2, "invalid secret: must be 'whsec_' and base64");
	secrets.keylen[secrets.n++] = (size_t)len - pad;
}

/* Query parameters: 1 found, 0 absent, -1 malformed. */
static int
param(const char *q, const char *name, unsigned long long max,
    unsigned long long *out)
{
	const char *p;
	size_t n = strlen(name);
	unsigned long long v = 0;

	for (p = q; p != NULL && *p != '\0'; p = strchr(p, '&'),
	    p = p != NULL ? p + 1 : NULL) {
		if (strncmp(p, name, n) != 0 || p[n] != '=')
			continue;
		p += n + 1;
		if (!isdigit((unsigned char)*p))
			return -1;
		for (; isdigit((unsigned char)*p); p++) {
			if (v > (max - (unsigned long long)(*p - '0')) / 10)
				return -1;
			v = v * 10 + (unsigned long long)(*p - '0');
		}
		if (*p != '\0' && *p != '&')
			return -1;
		*out = v;
		return 1;
	}
	return 0;
}

static const char *
reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Status";
	}
}

/* Answer with a status; extra is more header lines ("...\r\n") or "". */
static int
respond(int fd, int status, const char *extra, int close, int head)
{
	char buf[2048], body[64];
	int n, bn, nobody;

	nobody = status < 200 || status == 204 || status == 304;
	if (status == 200)
		bn = snprintf(body, sizeof(body), "{\"ok\":true}");
	else
		bn = snprintf(body, sizeof(body), "{\"ok\":false,\"status\":%d}",
		    status);
	if (nobody)
		n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n%s%s\r\n",
		    status, reason(status), extra,
		    close ? "Connection: close\r\n" : "");
	else
		n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n"
		    "Content-Type: application/json\r\n"
		    "Content-Length: %d\r\n%s%s\r\n%s",
		    status, reason(status), bn, extra,
		    close ? "Connection: close\r\n" : "", head ? "" : body);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return send_all(fd, buf, (size_t)n);
}

/*
 * Wait ms milliseconds (forever if ms < 0); 0 when the time is up, -1
 * when the client hung up or the server is stopping.
 */
static int
wait_ms(int fd, long long ms)
{
	struct pollfd pfd[2];
	struct timespec start;
	int left, rc;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (ms < 0)
			left = -1;
		else {
			left = ms > INT_MAX ? INT_MAX : (int)ms;
			left -= ms_since(&start);
			if (left <= 0)
				return 0;
		}
		pfd[0].fd = stop_pipe[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = fd;
		pfd[1].events = POLLRDHUP;
		pfd[0].revents = pfd[1].revents = 0;
		rc = poll(pfd, 2, left);
		if (rc < 0 && errno != EINTR)
			return -1;
		if (rc > 0)
			return -1;
	}
}

static void
log_line(const struct req *r, const struct timespec *done, int status,
    int sig, int nsigs, unsigned long concurrent, unsigned long inflight,
    unsigned long attempt, unsigned long serial)
{
	struct sb b = { NULL, 0, 0, 0 };
	const char *p;
	size_t blog, off;
	ssize_t w;
	int i;

	if (logfd < 0)
		return;
	blog = r->blen > BODY_LOG_MAX ? BODY_LOG_MAX : r->blen;
	for (i = 0; i < 3 && blog > 0 && blog < r->blen &&
	    ((unsigned char)r->body[blog] & 0xc0) == 0x80; i++)
		blog--;			/* do not cut a UTF-8 sequence */
	sb_grow(&b, 512 + blog + blog / 8);
	sb_puts(&b, "{\"t\":");
	sb_time(&b, &r->t);
	sb_puts(&b, ",\"done\":");
	sb_time(&b, done);
	sb_puts(&b, ",\"path\":\"");
	sb_jesc(&b, r->path, strlen(r->path));
	if (r->query != NULL) {
		sb_putn(&b, "?", 1);
		sb_jesc(&b, r->query, strlen(r->query));
	}
	sb_puts(&b, "\",\"method\":");
	sb_jstr(&b, r->method, strlen(r->method));
	sb_puts(&b, ",\"id\":");
	sb_jstr_or_null(&b, r->id);
	sb_puts(&b, ",\"timestamp\":");
	sb_jstr_or_null(&b, r->ts);
	sb_puts(&b, sig < 0 ? ",\"sig\":null" : sig ? ",\"sig\":true" :
	    ",\"sig\":false");
	sb_puts(&b, ",\"signature\":");
	if (r->nsighdr == 0)
		sb_puts(&b, "null");
	else {
		sb_putn(&b, "\"", 1);
		for (i = 0; i < r->nsighdr; i++) {
			if (i > 0)
				sb_putn(&b, ", ", 2);
			sb_jesc(&b, r->sighdr[i], strlen(r->sighdr[i]));
		}
		sb_putn(&b, "\"", 1);
	}
	sb_printf(&b, ",\"sigs\":%d,\"bytes\":%zu,\"status\":", nsigs,
	    r->blen);
	if (status < 0)
		sb_puts(&b, "null");
	else
		sb_printf(&b, "%d", status);
	sb_printf(&b, ",\"concurrent\":%lu,\"inflight\":%lu,\"attempt\":%lu,"
	    "\"conn\":%lu", concurrent, inflight, attempt, serial);
	sb_puts(&b, ",\"ua\":");
	sb_jstr_or_null(&b, r->ua);
	sb_puts(&b, ",\"ct\":");
	sb_jstr_or_null(&b, r->ct);
	sb_puts(&b, r->expect ? ",\"expect\":true" : ",\"expect\":false");
	sb_puts(&b, ",\"headers\":{");
	for (i = 0; i < r->nx; i++) {
		if (i > 0)
			sb_putn(&b, ",", 1);
		sb_jstr(&b, r->xname[i], strlen(r->xname[i]));
		sb_putn(&b, ":", 1);
		sb_jstr(&b, r->xval[i], strlen(r->xval[i]));
	}
	sb_puts(&b, "},\"body\":");
	if (r->body != NULL)
		sb_jstr(&b, r->body, blog);
	else
		sb_puts(&b, "\"\"");
	sb_puts(&b, "}\n");
	if (b.err) {
		free(b.p);
		return;
	}
	pthread_mutex_lock(&log_lock);
	for (p = b.p, off = 0; off < b.len; off += (size_t)w) {
		w = write(logfd, p + off, b.len - off);
		if (w < 0 && errno == EINTR) {
			w = 0;
			continue;
		}
		if (w <= 0)
			break;
	}
	pthread_mutex_unlock(&log_lock);
	free(b.p);
}

static void
http_date(char *buf, size_t n, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

enum { KEEP, CLOSE, CLOSE_RESET, CLOSE_LINGER };

static int
send_huge(int fd, int status, unsigned long long n, const char *extra,
    int head, int close)
{
	char buf[2048];
	size_t k;
	int len;

	len = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Content-Length: %llu\r\n%s%s\r\n", status, reason(status), n,
	    extra, close ? "Connection: close\r\n" : "");
	if (len < 0 || (size_t)len >= sizeof(buf) || send_all(fd, buf, (size_t)len) != 0)
		return -1;
	if (head)
		return 0;
	while (n > 0) {
		k = n > sizeof(huge_chunk) ? sizeof(huge_chunk) : (size_t)n;
		if (send_all(fd, huge_chunk, k) != 0)
			return -1;
		n -= k;
	}
	return 0;
}

/*
 * The headers at once, then the body a byte at a time, every ms apart:
 * -1 when the client hung up (it gave up waiting) or we are stopping.
 */
static int
send_slow_body(int fd, int status, unsigned long long n,
    unsigned long long every, const char *extra, int head, int close)
{
	char buf[2048];
	int len;

	len = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Content-Length: %llu\r\n%s%s\r\n", status, reason(status), n,
	    extra, close ? "Connection: close\r\n" : "");
	if (len < 0 || (size_t)len >= sizeof(buf) ||
	    send_all(fd, buf, (size_t)len) != 0)
		return -1;
	if (head)
		return 0;
	for (; n > 0; n--)
		if (wait_ms(fd, (long long)every) != 0 ||
		    send_all(fd, huge_chunk, 1) != 0)
			return -1;
	return 0;
}

/* Serve one request that was read completely; KEEP or how to close. */
static int
serve(struct conn *c, struct req *r)
{
	static const char garbage[] = "garbage\r\n\r\nthis is not HTTP\r\n"
	    "\x01\x02\x03\xff\xfe\r\n";
	struct linger lg = { 1, 0 };
	struct timespec done;
	struct entry *e;
	enum action act = A_RESPOND;
	unsigned long long ms = 0, v, d = 0, pct = 50, huge = HUGE_DEFAULT;
	unsigned long long every = 1000;
	unsigned long attempt, concurrent, inflight;
	uint64_t h;
	const char *q = r->query != NULL ? r->query : "", *p = r->path;
	char extra[1024], date[64];
	int status = 200, head, close = r->close, sig, nsigs, bad = 0;
	int has_ms, rc;

	extra[0] = '\0';
	head = strcmp(r->method, "HEAD") == 0;
	sig = verify(r, &nsigs);
	pthread_mutex_lock(&map_lock);
	e = map_get(r->id);
	attempt = ++e->attempts;
	concurrent = ++e->inflight;
	inflight = ++all_inflight;
	pthread_mutex_unlock(&map_lock);
	h = mix64(e->hash ^ mix64(attempt));

	if ((has_ms = param(q, "ms", DELAY_MAX, &ms)) < 0)
		bad = 1;
	if (param(q, "p", 100, &pct) < 0)
		bad = 1;
	if (strcmp(p, "/ok") == 0)
		;
	else if (strcmp(p, "/fail") == 0)
		status = 500;
	else if (strncmp(p, "/status/", 8) == 0) {
		if (isdigit((unsigned char)p[8]) &&
		    isdigit((unsigned char)p[9]) &&
		    isdigit((unsigned char)p[10]) && p[11] == '\0' &&
		    p[8] != '0')
			status = atoi(p + 8);
		else
			bad = 1;
	} else if (strcmp(p, "/slow") == 0) {
		if (!has_ms)
			ms = 1000;
		if ((rc = param(q, "status", 999, &v)) < 0 ||
		    (rc == 1 && v < 100))
			bad = 1;
		else if (rc == 1)
			status = (int)v;
	} else if (strcmp(p, "/never") == 0)
		act = A_NEVER;
	else if (strcmp(p, "/reset") == 0)
		act = A_RESET;
	else if (strcmp(p, "/close") == 0)
		act = A_CLOSE;
	else if (strcmp(p, "/garbage") == 0)
		act = A_GARBAGE;
	else if (strcmp(p, "/huge") == 0 || strcmp(p, "/slow-body") == 0) {
		act = p[1] == 'h' ? A_HUGE : A_SLOW_BODY;
		if (act == A_SLOW_BODY) {
			huge = 64;
			if (param(q, "every", DELAY_MAX, &every) < 0)
				bad = 1;
		}
		if (param(q, "bytes", 1ULL << 40, &huge) < 0)
			bad = 1;
		if ((rc = param(q, "status", 999, &v)) < 0 ||
		    (rc == 1 && v < 100))
			bad = 1;
		else if (rc == 1)
			status = (int)v;
	} else if (strcmp(p, "/redirect") == 0) {
		status = 302;
		snprintf(extra, sizeof(extra), "Location: /ok\r\n");
	} else if (strcmp(p, "/redirect-loop") == 0) {
		status = 302;
		if (strlen(q) < 900)
			snprintf(extra, sizeof(extra), "Location: "
			    "/redirect-loop%s%.900s\r\n",
			    r->query != NULL ? "?" : "", q);
		else
			snprintf(extra, sizeof(extra), "Location: "
			    "/redirect-loop\r\n");
	} else if (strcmp(p, "/retry-after") == 0) {
		status = 429;
		if ((rc = param(q, "status", 999, &v)) < 0 ||
		    (rc == 1 && v < 100))
			bad = 1;
		else if (rc == 1)
			status = (int)v;
		v = 1;
		if (param(q, "s", 1ULL << 32, &v) < 0)
			bad = 1;
		if (param(q, "date", 1, &d) < 0)
			bad = 1;
		if (d == 1) {
			http_date(date, sizeof(date), time(NULL) + (time_t)v);
			snprintf(extra, sizeof(extra), "Retry-After: %s\r\n",
			    date);
		} else
			snprintf(extra, sizeof(extra), "Retry-After: %llu\r\n",
			    v);
	} else if (strcmp(p, "/fail-first") == 0) {
		v = 1;
		if (param(q, "k", ULONG_MAX, &v) < 0)
			bad = 1;
		status = attempt <= v ? 500 : 200;
	} else if (strcmp(p, "/flaky") == 0)
		status = h % 100 < pct ? 500 : 200;
	else if (strcmp(p, "/slowfail") == 0) {
		if (!has_ms)
			ms = 100;
		status = h % 100 < pct ? 500 : 200;
	} else if (strcmp(p, "/sometimes-never") == 0) {
		if (h % 100 < pct)
			act = A_NEVER;
	} else
		status = 404;
	if (bad) {
		act = A_RESPOND;
		status = 400;
		ms = 0;
		extra[0] = '\0';
	}

	if (r->minor == 0 && !close)
		strcat(extra, "Connection: keep-alive\r\n");

	if (act == A_NEVER) {
		log_line(r, NULL, -1, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		wait_ms(c->fd, -1);
		rc = CLOSE;
		goto out;
	}
	if (ms > 0 && wait_ms(c->fd, (long long)ms) != 0) {
		/* The client hung up, or we are stopping: no answer. */
		pthread_mutex_lock(&map_lock);
		e->inflight--;
		all_inflight--;
		pthread_mutex_unlock(&map_lock);
		log_line(r, NULL, -1, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		return CLOSE;
	}

	/* Done before the answer, so a client with its answer sees it. */
	pthread_mutex_lock(&map_lock);
	e->inflight--;
	all_inflight--;
	pthread_mutex_unlock(&map_lock);
	clock_gettime(CLOCK_REALTIME, &done);
	switch (act) {
	case A_RESET:
		log_line(r, &done, -1, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		return CLOSE_RESET;
	case A_CLOSE:
		log_line(r, &done, -1, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		return CLOSE;
	case A_GARBAGE:
		log_line(r, &done, -1, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		send_all(c->fd, garbage, sizeof(garbage) - 1);
		return CLOSE;
	case A_HUGE:
		log_line(r, &done, status, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		if (send_huge(c->fd, status, huge, extra, head, close) != 0)
			return CLOSE;
		return close ? CLOSE : KEEP;
	case A_SLOW_BODY:
		log_line(r, &done, status, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		if (send_slow_body(c->fd, status, huge, every, extra, head,
		    close) != 0)
			return CLOSE;
		return close ? CLOSE : KEEP;
	default:
		log_line(r, &done, status, sig, nsigs, concurrent, inflight,
		    attempt, c->serial);
		if (respond(c->fd, status, extra, close, head) != 0)
			return CLOSE;
		return close ? CLOSE : KEEP;
	}
out:
	pthread_mutex_lock(&map_lock);
	e->inflight--;
	all_inflight--;
	pthread_mutex_unlock(&map_lock);
	return rc;
}

/* After an error answer: let the client read it before we close. */
static void
linger_close(int fd)
{
	struct pollfd pfd;
	struct timespec start;
	char tmp[4096];
	size_t total = 0;
	ssize_t n;
	int left;

	shutdown(fd, SHUT_WR);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (total < 4 * 1024 * 1024) {
		if ((left = 2000 - ms_since(&start)) <= 0)
			break;
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, left) <= 0)
			break;
		if ((n = read(fd, tmp, sizeof(tmp))) <= 0)
			break;
		total += (size_t)n;
	}
}

static void *
conn_main(void *arg)
{
	struct conn *c = arg;
	struct req r;
	int rc, how = CLOSE;

	for (;;) {
		memset(&r, 0, sizeof(r));
		rc = read_request(c, &r);
		if (rc == 0) {
			req_free(&r);
			break;
		}
		if (rc != 1) {
			respond(c->fd, rc, "", 1, 0);
			req_free(&r);
			how = CLOSE_LINGER;
			break;
		}
		how = serve(c, &r);
		req_free(&r);
		if (how != KEEP)
			break;
	}
	if (how == CLOSE_LINGER)
		linger_close(c->fd);

	pthread_mutex_lock(&reg_lock);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		reg_head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	close(c->fd);
	reg_count--;
	pthread_cond_signal(&reg_cond);
	pthread_mutex_unlock(&reg_lock);
	free(c->buf);
	free(c);
	return NULL;
}

static void
write_port_file(const char *file, int port)
{
	char tmp[PATH_MAX], line[16];
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		fatal(2, "port file name too long");
	n = snprintf(line, sizeof(line), "%d\n", port);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) < 0)
		fatal(4, "cannot create '%s': %s", tmp, strerror(errno));
	if (write(fd, line, (size_t)n) != n || close(fd) != 0)
		fatal(4, "cannot write '%s': %s", tmp, strerror(errno));
	if (rename(tmp, file) != 0)
		fatal(4, "cannot rename '%s': %s", tmp, strerror(errno));
}

static int
listen_on(const char *addr, const char *port)
{
	struct addrinfo hints, *res;
	char host[256];
	size_t n;
	int fd, one = 1, rc;

	n = strlen(addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']' &&
	    n - 2 < sizeof(host)) {
		memcpy(host, addr + 1, n - 2);
		host[n - 2] = '\0';
	} else
		snprintf(host, sizeof(host), "%s", addr);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		fatal(2, "invalid address '%s' port '%s': %s", addr, port,
		    gai_strerror(rc));
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0);
	if (fd < 0)
		fatal(4, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
		fatal(4, "cannot bind '%s': %s", addr, strerror(errno));
	freeaddrinfo(res);
	if (listen(fd, 4096) != 0)
		fatal(4, "listen: %s", strerror(errno));
	return fd;
}

static int
sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		fatal(4, "getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void
accept_one(int lfd, pthread_attr_t *attr)
{
	static unsigned long serial;
	struct conn *c;
	pthread_t tid;
	int fd, one = 1;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			poll(NULL, 0, 10);	/* let connections end */
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->buf = malloc(8192)) == NULL) {
		free(c);
		close(fd);
		return;
	}
	c->cap = 8192;
	c->fd = fd;
	c->serial = ++serial;
	pthread_mutex_lock(&reg_lock);
	c->next = reg_head;
	if (reg_head != NULL)
		reg_head->prev = c;
	reg_head = c;
	reg_count++;
	pthread_mutex_unlock(&reg_lock);
	if (pthread_create(&tid, attr, conn_main, c) != 0) {
		pthread_mutex_lock(&reg_lock);
		reg_head = c->next;
		if (c->next != NULL)
			c->next->prev = NULL;
		reg_count--;
		pthread_mutex_unlock(&reg_lock);
		close(fd);
		free(c->buf);
		free(c);
		poll(NULL, 0, 1);
	}
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "port-file",	required_argument,	NULL, 'f' },
		{ "log",	required_argument,	NULL, 'l' },
		{ "secret",	required_argument,	NULL, 's' },
		{ "bind",	required_argument,	NULL, 'b' },
		{ "port",	required_argument,	NULL, 'p' },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL,		0,			NULL, 0 }
	};
	struct pollfd pfd[2];
	struct signalfd_siginfo si;
	struct conn *c;
	struct timespec deadline;
	struct rlimit rl;
	pthread_attr_t attr;
	sigset_t set;
	const char *portfile = NULL, *logfile = NULL, *bind_addr = "127.0.0.1";
	const char *port = "0";
	ssize_t n;
	int ch, lfd, sfd, i, timedout = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			portfile = optarg;
			break;
		case 'l':
			logfile = optarg;
			break;
		case 's':
			add_secret(optarg);
			break;
		case 'b':
			bind_addr = optarg;
			break;
		case 'p':
			port = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
		fatal(4, "signalfd: %s", strerror(errno));
	if (pipe2(stop_pipe, O_CLOEXEC) != 0)
		fatal(4, "pipe: %s", strerror(errno));
	if (secrets.n > 0 && (hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) ==
	    NULL)
		fatal(4, "cannot fetch HMAC from libcrypto");
	if (logfile != NULL && (logfd = open(logfile, O_WRONLY | O_CREAT |
	    O_APPEND | O_CLOEXEC, 0644)) < 0)
		fatal(4, "cannot open '%s': %s", logfile, strerror(errno));
	memset(huge_chunk, 'x', sizeof(huge_chunk));

	lfd = listen_on(bind_addr, port);
	if (portfile != NULL)
		write_port_file(portfile, sock_port(lfd));

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_attr_setstacksize(&attr, STACK_SIZE) != 0)
		pthread_attr_setstacksize(&attr, 2 * STACK_SIZE);

	for (;;) {
		pfd[0].fd = sfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = lfd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fatal(4, "poll: %s", strerror(errno));
		}
		if (pfd[0].revents & POLLIN) {
			n = read(sfd, &si, sizeof(si));
			if (n == (ssize_t)sizeof(si))
				break;
		}
		if (pfd[1].revents & POLLIN)
			for (i = 0; i < 64; i++)
				accept_one(lfd, &attr);
	}

	/* Stop: wake every thread, wait for them, exit 0. */
	close(lfd);
	pthread_mutex_lock(&reg_lock);
	for (c = reg_head; c != NULL; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	(void)!write(stop_pipe[1], "x", 1);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += STOP_WAIT_MS / 1000;
	while (reg_count > 0 && !timedout)
		if (pthread_cond_timedwait(&reg_cond, &reg_lock, &deadline) ==
		    ETIMEDOUT)
			timedout = 1;
	pthread_mutex_unlock(&reg_lock);
	if (timedout) {
		fprintf(stderr, "%s: %lu connections did not end\n", progname,
		    reg_count);
		_exit(0);
	}
	pthread_attr_destroy(&attr);
	if (logfd >= 0)
		close(logfd);
	map_free();
	EVP_MAC_free(hmac);
	OPENSSL_cleanse(&secrets, sizeof(secrets));
	close(sfd);
	close(stop_pipe[0]);
	close(stop_pipe[1]);
	return 0;
}
