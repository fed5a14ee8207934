/*
 * whk-endpoint - say who receives what.
 *
 * Adds, changes, lists, disables and removes the endpoints that webhooks
 * are sent to: their URL and signing secret, which tenant's events and
 * which types they take, a jq filter, how events are grouped, timeouts,
 * concurrency and extra headers.  Every value is checked when given: a
 * bad URL, a jq expression that does not compile, a private address
 * without --allow-private is refused at once, not at delivery.
 *
 * It does not send anything, and it never prints a secret (nor a header
 * value, which may hold one) unless asked with --show-secret.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define DEFAULT_GRACE_MS	(24 * 3600 * 1000LL)

static const char usage[] =
"usage: whk-endpoint [-s store] add name url [options]\n"
"       whk-endpoint [-s store] set name [options]\n"
"       whk-endpoint [-s store] list [--show-secret] [--format fmt]\n"
"       whk-endpoint [-s store] show name [--show-secret]\n"
"       whk-endpoint [-s store] disable name [--reason text]\n"
"       whk-endpoint [-s store] enable name\n"
"       whk-endpoint [-s store] rotate-secret name [--secret s | --secret-file f]\n"
"                [--grace dur]\n"
"       whk-endpoint [-s store] rm name\n";

static const char help[] =
"Manage the endpoints that receive webhooks.\n"
"\n"
"Options of add and set:\n"
"      --url URL            where to POST (set only; add takes it as argument)\n"
"      --secret whsec_...   signing secret (default: 32 random bytes)\n"
"      --secret-file FILE   read it from FILE's one line ('-': stdin), not\n"
"                           from the command line, where others may see it\n"
"      --tenant T           only events of tenant T ('' for all tenants)\n"
"      --types LIST         comma-separated types, globs allowed (a.*,b)\n"
"      --filter JQ          send only events for which JQ is true\n"
"      --group-by JQ        one webhook holds only events with equal keys\n"
"      --template JQ        shape the body (the event, or the array of them)\n"
"      --batch N            events per webhook (default 1)\n"
"      --batch-bytes SIZE   bytes per webhook (default 256K)\n"
"      --window DUR         keep a group open this long (default 0s)\n"
"      --timeout DUR        request timeout (default 15s)\n"
"      --concurrency N      requests in flight to it (default 8)\n"
"      --rate N             at most N requests a second to it (0: no cap)\n"
"      --schedule LIST      its retry steps for whk-retry ('' for the default)\n"
"      --header 'K: V'      extra request header, repeatable ('K:' removes)\n"
"      --allow-private      allow private, loopback and link-local hosts\n"
"      --no-allow-private   refuse them again (set only)\n"
"Other options:\n"
"      --show-secret        print secrets and header values\n"
"      --format json|table  output format (default: table on a terminal)\n"
"      --reason TEXT        why an endpoint is disabled\n"
"      --grace DUR          how long the old secret stays valid (24h)\n"
"  -s, --store PATH         the store (default $WHK_STORE)\n"
"  -h, --help               show this help\n"
"  -V, --version            show the version\n"
"\n"
"Exit: 0 done, 1 no such endpoint or it already exists, 2 usage,\n"
"3 store unavailable, 4 system error.  See whk-endpoint(1).\n";

enum {
	O_URL = 256, O_SECRET, O_SECRET_FILE, O_TENANT, O_TYPES, O_FILTER, O_GROUP_BY,
	O_TEMPLATE, O_RATE, O_SCHEDULE,
	O_BATCH, O_BATCH_BYTES, O_WINDOW, O_TIMEOUT, O_CONCURRENCY, O_HEADER,
	O_ALLOW_PRIVATE, O_NO_ALLOW_PRIVATE, O_SHOW_SECRET, O_FORMAT,
	O_REASON, O_GRACE
};

static const struct option longopts[] = {
	{ "store",		required_argument, NULL, 's' },
	{ "url",		required_argument, NULL, O_URL },
	{ "secret",		required_argument, NULL, O_SECRET },
	{ "secret-file",	required_argument, NULL, O_SECRET_FILE },
	{ "tenant",		required_argument, NULL, O_TENANT },
	{ "types",		required_argument, NULL, O_TYPES },
	{ "filter",		required_argument, NULL, O_FILTER },
	{ "group-by",		required_argument, NULL, O_GROUP_BY },
	{ "template",		required_argument, NULL, O_TEMPLATE },
	{ "rate",		required_argument, NULL, O_RATE },
	{ "schedule",		required_argument, NULL, O_SCHEDULE },
	{ "batch",		required_argument, NULL, O_BATCH },
	{ "batch-bytes",	required_argument, NULL, O_BATCH_BYTES },
	{ "window",		required_argument, NULL, O_WINDOW },
	{ "timeout",		required_argument, NULL, O_TIMEOUT },
	{ "concurrency",	required_argument, NULL, O_CONCURRENCY },
	{ "header",		required_argument, NULL, O_HEADER },
	{ "allow-private",	no_argument,	   NULL, O_ALLOW_PRIVATE },
	{ "no-allow-private",	no_argument,	   NULL, O_NO_ALLOW_PRIVATE },
	{ "show-secret",	no_argument,	   NULL, O_SHOW_SECRET },
	{ "format",		required_argument, NULL, O_FORMAT },
	{ "reason",		required_argument, NULL, O_REASON },
	{ "grace",		required_argument, NULL, O_GRACE },
	{ "help",		no_argument,	   NULL, 'h' },
	{ "version",		no_argument,	   NULL, 'V' },
	{ NULL,			0,		   NULL, 0 }
};

/* What the command line asked to change; NULL fields stay as they are. */
struct changes {
	const char	*url, *secret, *tenant, *types, *filter, *group_by;
	const char	*secret_option;	/* where the secret came from */
	const char	*template, *rate, *schedule;
	const char	*batch, *batch_bytes, *window, *timeout, *concurrency;
	const char	*headers[64];
	int		 nheaders;
	int		 allow_private;	/* -1 unchanged */
	int		 any;
};

static int show_secret;
static int table;

static void
die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3),
    noreturn));

static void
die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("whk-endpoint: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static char *
dup_or_null(const char *s)
{
	char *d;

	if (s == NULL || *s == '\0')
		return NULL;
	if ((d = strdup(s)) == NULL)
		die(WHK_EXIT_SYSTEM, "out of memory");
	return d;
}

static void
replace(char **field, const char *value)
{
	free(*field);
	*field = dup_or_null(value);
}

/* Every value is printed back as JSON: it must be UTF-8 text. */
static void
check_text(const char *s, const char *what)
{
	size_t bad;

	if (s && !whk_utf8_valid(s, strlen(s), &bad))
		die(WHK_EXIT_USAGE, "%s: invalid UTF-8 at byte %zu", what,
		    bad + 1);
}

/*
 * A header's value may be a credential: an error about a header shows
 * its name only.  The library's message is taken for a copy with the
 * value masked; if that copy is valid, the value itself was refused.
 */
static void
check_header(const char *h)
{
	struct whk_err err, merr;
	struct whk_buf m = { 0 };
	const char *colon = strchr(h, ':');

	check_text(h, "--header");
	if (whk_header_valid(h, &err) == 0)
		return;
	if (colon)
		whk_buf_add(&m, h, (size_t)(colon - h));
	whk_buf_puts(&m, colon ? ": ********" : "********");
	if (m.oom)
		die(WHK_EXIT_SYSTEM, "out of memory");
	if (whk_header_valid(m.data, &merr) == -1)
		die(merr.status, "--header: %s", merr.msg);
	die(err.status, "--header: invalid value for header '%.*s' (a line "
	    "break or control character)", colon ? (int)(colon - h) : 0, h);
}

/*
 * A URL may hold a password: in an error about it, whatever stands
 * between "scheme://" and the last '@' is masked.  That may mask more
 * than the user information (an '@' in the path, a password holding a
 * '/'), which costs an error message a little detail and nothing else.
 */
static void
check_url(const char *url, int allow_private)
{
	struct whk_err err;
	struct whk_buf b = { 0 };
	const char *start = strstr(url, "://"), *at = strrchr(url, '@');
	const char *p, *q;
	size_t n;

	if (whk_url_check(url, allow_private, &err) == 0)
		return;
	start = start ? start + 3 : url;
	if (at == NULL || at <= start)
		die(err.status, "%s", err.msg);
	n = (size_t)(at - start);
	for (p = err.msg; (q = memmem(p, strlen(p), start, n)) != NULL;
	    p = q + n) {
		whk_buf_add(&b, p, (size_t)(q - p));
		whk_buf_puts(&b, "********");
	}
	whk_buf_puts(&b, p);
	if (b.oom)
		die(WHK_EXIT_SYSTEM, "out of memory");
	die(err.status, "%s", b.data);
}

static void
check_jq(const char *expr, const char *what)
{
	struct whk_err err;
	struct whk_jq *q;

	if (*expr == '\0')
		return;
	if ((q = whk_jq_compile(expr, what, &err)) == NULL)
		die(err.status, "%s", err.msg);
	whk_jq_free(q);
}

static int64_t
number(const char *s, const char *what, int64_t min, int64_t max)
{
	struct whk_err err;
	int64_t v;

	if (whk_parse_uint(s, min, max, &v, &err) == -1)
		die(WHK_EXIT_USAGE, "%s: %s", what, err.msg);
	return v;
}

static int64_t
duration(const char *s, const char *what, int64_t min, int64_t max)
{
	struct whk_err err;
	int64_t v;
	char lo[32], hi[32];

	if (whk_parse_duration(s, &v, &err) == -1)
		die(WHK_EXIT_USAGE, "%s: %s", what, err.msg);
	if (v < min || v > max) {
		whk_format_duration(min, lo, sizeof(lo));
		whk_format_duration(max, hi, sizeof(hi));
		die(WHK_EXIT_USAGE, "%s: '%s' is not between %s and %s", what,
		    s, lo, hi);
	}
	return v;
}

/* Set or replace one header line; "Name:" with no value removes it. */
static void
set_header(struct whk_endpoint *e, const char *h)
{
	struct whk_buf b = { 0 };
	const char *p, *colon = strchr(h, ':');
	size_t n = (size_t)(colon - h);
	const char *value = colon + 1;

	while (*value == ' ' || *value == '\t')
		value++;
	for (p = e->headers; p && *p; ) {
		size_t len = strcspn(p, "\n");

		if (!(len > n && p[n] == ':' && strncasecmp(p, h, n) == 0)) {
			if (b.len)
				whk_buf_add(&b, "\n", 1);
			whk_buf_add(&b, p, len);
		}
		p += len + (p[len] == '\n');
	}
	if (*value) {
		if (b.len)
			whk_buf_add(&b, "\n", 1);
		whk_buf_add(&b, h, n);
		whk_buf_puts(&b, ": ");
		whk_buf_puts(&b, value);
	}
	if (b.oom)
		die(WHK_EXIT_SYSTEM, "out of memory");
	free(e->headers);
	e->headers = b.len ? b.data : (free(b.data), NULL);
}

/*
 * Check every value given, before the store is touched: a usage error is
 * one whatever the store holds.  Only whether the URL's host may be
 * private waits for the endpoint's own setting, in apply().
 */
static void
check_changes(const struct changes *c)
{
	struct whk_err err;
	int64_t v;
	int i;

	if (c->url) {
		check_text(c->url, "--url");
		check_url(c->url, 1);
	}
	if (c->secret && whk_secret_valid(c->secret, &err) == -1)
		die(err.status, "%s: %s", c->secret_option, err.msg);
	check_text(c->tenant, "--tenant");
	check_text(c->types, "--types");
	if (c->types && *c->types &&
	    whk_glob_list_valid(c->types, &err) == -1)
		die(err.status, "--types: %s", err.msg);
	if (c->filter) {
		check_text(c->filter, "--filter");
		check_jq(c->filter, "--filter");
	}
	if (c->group_by) {
		check_text(c->group_by, "--group-by");
		check_jq(c->group_by, "--group-by");
	}
	if (c->template) {
		check_text(c->template, "--template");
		check_jq(c->template, "--template");
	}
	if (c->rate)
		(void)number(c->rate, "--rate", 0, 100000);
	if (c->schedule && *c->schedule) {
		struct whk_schedule sch;

		if (whk_schedule_parse(c->schedule, &sch, &err) == -1)
			die(err.status, "--schedule: %s", err.msg);
		whk_schedule_free(&sch);
	}
	if (c->batch)
		(void)number(c->batch, "--batch", 1, 10000);
	if (c->batch_bytes) {
		if (whk_parse_size(c->batch_bytes, &v, &err) == -1)
			die(err.status, "--batch-bytes: %s", err.msg);
		if (v < 1 || v > 64 * 1024 * 1024)
			die(WHK_EXIT_USAGE, "--batch-bytes: '%s' is not between "
			    "1 and 64M", c->batch_bytes);
	}
	if (c->window)
		(void)duration(c->window, "--window", 0, 86400000);
	if (c->timeout)
		(void)duration(c->timeout, "--timeout", 100, 600000);
	if (c->concurrency)
		(void)number(c->concurrency, "--concurrency", 1, 1000);
	for (i = 0; i < c->nheaders; i++)
		check_header(c->headers[i]);
}

/* Apply changes that check_changes() accepted. */
static void
apply(struct whk_endpoint *e, const struct changes *c)
{
	struct whk_err err;
	int i;

	if (c->url)
		replace(&e->url, c->url);
	if (c->secret)
		replace(&e->secret, c->secret);
	if (c->tenant)
		replace(&e->tenant, c->tenant);
	if (c->types)
		replace(&e->types, c->types);
	if (c->filter)
		replace(&e->filter, c->filter);
	if (c->group_by)
		replace(&e->group_by, c->group_by);
	if (c->template)
		replace(&e->template, c->template);
	if (c->rate)
		e->rate = number(c->rate, "--rate", 0, 100000);
	if (c->schedule)
		replace(&e->schedule, c->schedule);
	if (c->batch)
		e->batch = number(c->batch, "--batch", 1, 10000);
	if (c->batch_bytes &&
	    whk_parse_size(c->batch_bytes, &e->batch_bytes, &err) == -1)
		die(err.status, "--batch-bytes: %s", err.msg);
	if (c->window)
		e->window_ms = duration(c->window, "--window", 0, 86400000);
	if (c->timeout)
		e->timeout_ms = duration(c->timeout, "--timeout", 100, 600000);
	if (c->concurrency)
		e->concurrency = number(c->concurrency, "--concurrency", 1,
		    1000);
	for (i = 0; i < c->nheaders; i++)
		set_header(e, c->headers[i]);
	if (c->allow_private != -1)
		e->allow_private = c->allow_private;
	/* Whatever changed, the destination must still be allowed. */
	check_url(e->url, e->allow_private);
}

static void
put_ms(struct whk_buf *b, const char *key, int64_t ms)
{
	whk_buf_printf(b, ",\"%s\":", key);
	whk_buf_json_time(b, ms);
}

static int
print_json(const struct whk_endpoint *e, void *arg)
{
	struct whk_buf b = { 0 };
	char red[64];
	const char *p;
	int64_t now = whk_now_ms();
	int rotating = e->old_secret && e->old_secret_until > now;

	(void)arg;
	whk_buf_puts(&b, "{\"endpoint\":");
	whk_buf_json_str(&b, e->name);
	whk_buf_puts(&b, ",\"url\":");
	whk_buf_json_str(&b, e->url);
	whk_buf_puts(&b, ",\"secret\":");
	whk_secret_redact(e->secret, red, sizeof(red));
	whk_buf_json_str(&b, show_secret ? e->secret : red);
	if (rotating && show_secret) {
		whk_buf_puts(&b, ",\"old_secret\":");
		whk_buf_json_str(&b, e->old_secret);
	}
	put_ms(&b, "rotation_until", rotating ? e->old_secret_until : 0);
	whk_buf_puts(&b, ",\"state\":");
	whk_buf_json_str(&b, e->disabled_at ? "disabled" : "enabled");
	whk_buf_puts(&b, ",\"disabled_reason\":");
	whk_buf_json_str(&b, e->disabled_reason);
	put_ms(&b, "disabled_at", e->disabled_at);
	whk_buf_puts(&b, ",\"tenant\":");
	whk_buf_json_str(&b, e->tenant);
	whk_buf_puts(&b, ",\"types\":");
	if (e->types == NULL)
		whk_buf_puts(&b, "null");
	else {
		whk_buf_puts(&b, "[");
		for (p = e->types; ; ) {
			size_t n = strcspn(p, ",");

			whk_buf_json_strn(&b, p, n);
			if (p[n] == '\0')
				break;
			whk_buf_puts(&b, ",");
			p += n + 1;
		}
		whk_buf_puts(&b, "]");
	}
	whk_buf_puts(&b, ",\"filter\":");
	whk_buf_json_str(&b, e->filter);
	whk_buf_puts(&b, ",\"group_by\":");
	whk_buf_json_str(&b, e->group_by);
	whk_buf_puts(&b, ",\"template\":");
	whk_buf_json_str(&b, e->template);
	whk_buf_printf(&b, ",\"batch\":%lld,\"batch_bytes\":%lld,"
	    "\"window_ms\":%lld,\"timeout_ms\":%lld,\"concurrency\":%lld,"
	    "\"rate\":%lld",
	    (long long)e->batch, (long long)e->batch_bytes,
	    (long long)e->window_ms, (long long)e->timeout_ms,
	    (long long)e->concurrency, (long long)e->rate);
	whk_buf_puts(&b, ",\"schedule\":");
	whk_buf_json_str(&b, e->schedule);
	whk_buf_puts(&b, ",\"headers\":[");
	for (p = e->headers; p && *p; ) {
		size_t len = strcspn(p, "\n"), n = strcspn(p, ":");

		if (p != e->headers)
			whk_buf_puts(&b, ",");
		if (show_secret)
			whk_buf_json_strn(&b, p, len);
		else {
			struct whk_buf h = { 0 };

			whk_buf_add(&h, p, n);
			whk_buf_puts(&h, ": ********");
			whk_buf_json_str(&b, h.data);
			whk_buf_free(&h);
		}
		p += len + (p[len] == '\n');
	}
	whk_buf_printf(&b, "],\"allow_private\":%s",
	    e->allow_private ? "true" : "false");
	put_ms(&b, "created_at", e->created_at);
	put_ms(&b, "updated_at", e->updated_at);
	whk_buf_puts(&b, "}\n");
	if (b.oom)
		die(WHK_EXIT_SYSTEM, "out of memory");
	fwrite(b.data, 1, b.len, stdout);
	whk_buf_free(&b);
	return 0;
}

static void
print_removed(const char *name, int kept)
{
	struct whk_buf b = { 0 };

	whk_buf_puts(&b, "{\"endpoint\":");
	whk_buf_json_str(&b, name);
	whk_buf_printf(&b, ",\"removed\":true,\"history_kept\":%s}\n",
	    kept ? "true" : "false");
	if (b.oom)
		die(WHK_EXIT_SYSTEM, "out of memory");
	fwrite(b.data, 1, b.len, stdout);
	whk_buf_free(&b);
}

struct rows {
	struct whk_endpoint	*e;
	size_t			 n, cap;
};

static int
collect(const struct whk_endpoint *e, void *arg)
{
	struct rows *r = arg;
	struct whk_endpoint *c;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		if ((c = reallocarray(r->e, r->cap, sizeof(*c))) == NULL)
			die(WHK_EXIT_SYSTEM, "out of memory");
		r->e = c;
	}
	c = &r->e[r->n++];
	*c = *e;
	/* Take the strings: the caller clears the row it lent us. */
	c->name = dup_or_null(e->name);
	c->url = dup_or_null(e->url);
	c->tenant = dup_or_null(e->tenant);
	c->types = dup_or_null(e->types);
	c->secret = c->old_secret = c->filter = c->group_by = NULL;
	c->template = c->schedule = NULL;
	c->headers = c->disabled_reason = NULL;
	return 0;
}

static void
print_table(struct rows *r)
{
	size_t i, wn = 4, wu = 3, wt = 6;

	for (i = 0; i < r->n; i++) {
		struct whk_endpoint *e = &r->e[i];
		size_t l;

		if ((l = strlen(e->name)) > wn)
			wn = l;
		if ((l = strlen(e->url)) > wu)
			wu = l > 60 ? 60 : l;
		if (e->tenant && (l = strlen(e->tenant)) > wt)
			wt = l;
	}
	printf("%-*s  %-8s  %-*s  %-*s  %5s  %s\n", (int)wn, "NAME", "STATE",
	    (int)wu, "URL", (int)wt, "TENANT", "BATCH", "TYPES");
	for (i = 0; i < r->n; i++) {
		struct whk_endpoint *e = &r->e[i];

		printf("%-*s  %-8s  %-*.*s  %-*s  %5lld  %s\n", (int)wn,
		    e->name, e->disabled_at ? "disabled" : "enabled", (int)wu,
		    (int)wu, e->url, (int)wt, e->tenant ? e->tenant : "*",
		    (long long)e->batch, e->types ? e->types : "*");
		whk_endpoint_clear(e);
	}
	free(r->e);
}

/*
 * A secret given on the command line is seen by everyone who can list
 * processes; from a file or a pipe it is not.  The file holds one line,
 * the secret, as whk-endpoint show --show-secret prints it.
 */
static char *
read_secret(const char *name)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int more;

	if (strcmp(name, "-") == 0)
		f = stdin;
	else if ((f = fopen(name, "re")) == NULL)
		die(WHK_EXIT_SYSTEM, "--secret-file: cannot open '%s': %s",
		    name, strerror(errno));
	if ((len = getline(&line, &cap, f)) == -1)
		len = 0;
	if (len && line[len - 1] == '\n')
		len--;
	if (len && line[len - 1] == '\r')
		len--;
	more = getc(f) != EOF;
	if (ferror(f))
		die(WHK_EXIT_SYSTEM, "--secret-file: cannot read '%s': %s",
		    name, strerror(errno));
	if (f != stdin)
		fclose(f);
	if (len == 0 || more || memchr(line, '\0', (size_t)len))
		die(WHK_EXIT_USAGE, "--secret-file: '%s' must hold one line, "
		    "the secret", name);
	line[len] = '\0';
	return line;
}

static void
need(int argc, int want, const char *cmd)
{
	if (argc != want) {
		fprintf(stderr, "whk-endpoint: %s: expected %d argument%s\n",
		    cmd, want - 1, want == 2 ? "" : "s");
		fputs(usage, stderr);
		exit(WHK_EXIT_USAGE);
	}
}

static void
need_name(const char *name)
{
	if (!whk_name_valid(name))
		die(WHK_EXIT_USAGE, "invalid endpoint name '%s' (letters, "
		    "digits, '.', '_' and '-', at most 64)", name);
}

static void
store_fail(struct whk_store *s, const struct whk_err *err)
{
	whk_store_rollback(s);
	die(err->status, "%s", err->msg);
}

static void
no_such(struct whk_store *s, const char *name)
{
	whk_store_rollback(s);
	die(WHK_EXIT_PARTIAL, "no endpoint '%s'", name);
}

int
main(int argc, char *argv[])
{
	struct changes c;
	struct whk_endpoint e;
	struct whk_store *s;
	struct whk_err err = { 0, "" };
	const char *store_opt = NULL, *reason = NULL, *grace = NULL;
	const char *format = NULL, *secret_file = NULL, *cmd;
	char *given = NULL;
	char path[4096], secret[128];
	int64_t grace_ms = DEFAULT_GRACE_MS;
	int ch, rc, kept;

	memset(&c, 0, sizeof(c));
	c.allow_private = -1;
	c.secret_option = "--secret";
	while ((ch = getopt_long(argc, argv, "s:hV", longopts, NULL)) != -1) {
		c.any |= ch >= O_URL && ch <= O_NO_ALLOW_PRIVATE;
		switch (ch) {
		case 's': store_opt = optarg; break;
		case O_URL: c.url = optarg; break;
		case O_SECRET: c.secret = optarg; break;
		case O_SECRET_FILE: secret_file = optarg; break;
		case O_TENANT: c.tenant = optarg; break;
		case O_TYPES: c.types = optarg; break;
		case O_FILTER: c.filter = optarg; break;
		case O_GROUP_BY: c.group_by = optarg; break;
		case O_TEMPLATE: c.template = optarg; break;
		case O_RATE: c.rate = optarg; break;
		case O_SCHEDULE: c.schedule = optarg; break;
		case O_BATCH: c.batch = optarg; break;
		case O_BATCH_BYTES: c.batch_bytes = optarg; break;
		case O_WINDOW: c.window = optarg; break;
		case O_TIMEOUT: c.timeout = optarg; break;
		case O_CONCURRENCY: c.concurrency = optarg; break;
		case O_HEADER:
			if (c.nheaders == (int)(sizeof(c.headers) /
			    sizeof(c.headers[0])))
				die(WHK_EXIT_USAGE, "too many --header");
			c.headers[c.nheaders++] = optarg;
			break;
		case O_ALLOW_PRIVATE: c.allow_private = 1; break;
		case O_NO_ALLOW_PRIVATE: c.allow_private = 0; break;
		case O_SHOW_SECRET: show_secret = 1; break;
		case O_FORMAT: format = optarg; break;
		case O_REASON: reason = optarg; break;
		case O_GRACE: grace = optarg; break;
		case 'h':
			fputs(usage, stdout);
			fputs(help, stdout);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM : 0;
		case 'V':
			printf("whk-endpoint %s\n", WHK_VERSION);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM : 0;
		default:
			fputs(usage, stderr);
			return WHK_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		fputs(usage, stderr);
		return WHK_EXIT_USAGE;
	}
	cmd = argv[0];

	/* Arguments: each command takes only what it can use. */
	if (strcmp(cmd, "add") == 0)
		need(argc, 3, cmd);
	else if (strcmp(cmd, "list") == 0)
		need(argc, 1, cmd);
	else if (strcmp(cmd, "show") == 0 || strcmp(cmd, "set") == 0 ||
	    strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0 ||
	    strcmp(cmd, "rm") == 0 || strcmp(cmd, "rotate-secret") == 0)
		need(argc, 2, cmd);
	else
		die(WHK_EXIT_USAGE, "unknown command '%s' (add, set, list, "
		    "show, disable, enable, rotate-secret, rm)", cmd);
	if (argc > 1)
		need_name(argv[1]);
	if (c.any && strcmp(cmd, "add") != 0 && strcmp(cmd, "set") != 0 &&
	    !(strcmp(cmd, "rotate-secret") == 0 && (c.secret || secret_file) &&
	    c.url == NULL &&
	    c.tenant == NULL && c.types == NULL && c.filter == NULL &&
	    c.group_by == NULL && c.template == NULL && c.rate == NULL &&
	    c.schedule == NULL &&
	    c.batch == NULL && c.batch_bytes == NULL &&
	    c.window == NULL && c.timeout == NULL && c.concurrency == NULL &&
	    c.nheaders == 0 && c.allow_private == -1))
		die(WHK_EXIT_USAGE, "%s: takes no endpoint options", cmd);
	if (strcmp(cmd, "add") == 0 && c.url)
		die(WHK_EXIT_USAGE, "add: the URL is an argument, not --url");
	if (reason && strcmp(cmd, "disable") != 0)
		die(WHK_EXIT_USAGE, "--reason: only with disable");
	if (grace && strcmp(cmd, "rotate-secret") != 0)
		die(WHK_EXIT_USAGE, "--grace: only with rotate-secret");
	if (format && strcmp(format, "json") != 0 && strcmp(format, "table"))
		die(WHK_EXIT_USAGE, "--format: '%s' is not json or table",
		    format);
	if (format && strcmp(cmd, "list") != 0)
		die(WHK_EXIT_USAGE, "--format: only with list");
	if (reason && (strlen(reason) > 1024 || strpbrk(reason, "\n\r")))
		die(WHK_EXIT_USAGE, "--reason: one line of at most 1024 bytes");
	check_text(reason, "--reason");
	if (strcmp(cmd, "add") == 0) {
		check_text(argv[2], "url");
		check_url(argv[2], c.allow_private == 1);
	}
	if (secret_file) {
		if (c.secret)
			die(WHK_EXIT_USAGE, "--secret and --secret-file: give "
			    "one or the other");
		c.secret = given = read_secret(secret_file);
		c.secret_option = "--secret-file";
	}
	check_changes(&c);
	if (grace)
		grace_ms = duration(grace, "--grace", 0, 30LL * 86400000);
	table = format ? strcmp(format, "table") == 0 : isatty(STDOUT_FILENO);

	/* Setup. */
	if (whk_now_init(&err) == -1 ||
	    whk_store_path(store_opt, path, sizeof(path), &err) == -1 ||
	    (s = whk_store_open(path, &err)) == NULL)
		die(err.status, "%s", err.msg);

	/* The command. */
	whk_endpoint_defaults(&e);
	if (strcmp(cmd, "list") == 0) {
		struct rows r = { 0 };

		if (whk_store_endpoint_each(s, table ? collect : print_json,
		    &r, &err) == -1)
			store_fail(s, &err);
		if (table)
			print_table(&r);
	} else if (strcmp(cmd, "show") == 0) {
		if ((rc = whk_store_endpoint_get(s, argv[1], &e, &err)) == -1)
			store_fail(s, &err);
		if (rc == 1)
			no_such(s, argv[1]);
		print_json(&e, NULL);
	} else if (strcmp(cmd, "add") == 0) {
		e.name = dup_or_null(argv[1]);
		e.url = dup_or_null(argv[2]);
		if (c.secret == NULL) {
			if (whk_secret_new(secret, sizeof(secret), &err) == -1)
				die(err.status, "%s", err.msg);
			e.secret = dup_or_null(secret);
		}
		apply(&e, &c);
		if (whk_store_begin(s, &err) == -1 ||
		    (rc = whk_store_endpoint_add(s, &e, &err)) == -1)
			store_fail(s, &err);
		if (rc == 1) {
			whk_store_rollback(s);
			die(WHK_EXIT_PARTIAL, "endpoint '%s' already exists",
			    argv[1]);
		}
		whk_endpoint_clear(&e);
		if (whk_store_commit(s, &err) == -1 ||
		    whk_store_endpoint_get(s, argv[1], &e, &err) != 0)
			store_fail(s, &err);
		print_json(&e, NULL);
	} else {
		/* Read, change, write: in one transaction. */
		if (whk_store_begin(s, &err) == -1 ||
		    (rc = whk_store_endpoint_get(s, argv[1], &e, &err)) == -1)
			store_fail(s, &err);
		if (rc == 1)
			no_such(s, argv[1]);
		if (strcmp(cmd, "rm") == 0) {
			if (whk_store_endpoint_remove(s, argv[1], &kept,
			    &err) != 0 || whk_store_commit(s, &err) == -1)
				store_fail(s, &err);
			print_removed(argv[1], kept);
		} else {
			if (strcmp(cmd, "set") == 0)
				apply(&e, &c);
			else if (strcmp(cmd, "disable") == 0) {
				if (e.disabled_at == 0)
					e.disabled_at = whk_now_ms();
				if (reason)
					replace(&e.disabled_reason, reason);
			} else if (strcmp(cmd, "enable") == 0) {
				e.disabled_at = 0;
				replace(&e.disabled_reason, NULL);
			} else {	/* rotate-secret */
				int64_t g = grace_ms;

				if (c.secret == NULL) {
					if (whk_secret_new(secret,
					    sizeof(secret), &err) == -1)
						die(err.status, "%s", err.msg);
				} else
					snprintf(secret, sizeof(secret), "%s",
					    c.secret);
				replace(&e.old_secret, g > 0 ? e.secret : NULL);
				e.old_secret_until = g > 0 ?
				    whk_now_ms() + g : 0;
				replace(&e.secret, secret);
			}
			if (whk_store_endpoint_update(s, &e, &err) != 0)
				store_fail(s, &err);
			whk_endpoint_clear(&e);
			if (whk_store_commit(s, &err) == -1 ||
			    whk_store_endpoint_get(s, argv[1], &e, &err) != 0)
				store_fail(s, &err);
			print_json(&e, NULL);
		}
	}

	whk_endpoint_clear(&e);
	whk_store_close(s);
	if (given) {
		explicit_bzero(given, strlen(given));
		free(given);
	}
	if (fflush(stdout) == EOF || ferror(stdout))
		die(WHK_EXIT_SYSTEM, "write error: %s", strerror(errno));
	return WHK_EXIT_OK;
}
