/*
 * whk-log - what happened: events, webhooks, attempts and endpoints from
 * the store, one webhook or event in full, new attempts as they come,
 * Prometheus metrics, the service level, and pruning old history.
 *
 * Through a pipe every record is NDJSON with the field names the other
 * programs use, so "whk-log webhooks --status dead | whk-retry --now |
 * whk-deliver" resends; on a terminal, aligned tables.  It only reads,
 * except prune, which deletes delivered and dead history past a bound.
 *
 * It does not send, schedule or change anything else, and it never shows
 * a secret: endpoints are listed by name, URL and state only.
 */
#include <sys/select.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define FOLLOW_MS	250
#define CELL_MAX	48		/* a table cell's width at most */
#define DAY_MS		(86400LL * 1000)

static const char usage[] =
"usage: whk-log events|webhooks|attempts|endpoints [-s store] [filters]\n"
"               [--format json|table|tsv] [--jq filter] [-l n]\n"
"       whk-log show [-s store] [--format json|table] id\n"
"       whk-log follow [-s store] [--endpoint name] [--format f] [--jq filter]\n"
"       whk-log metrics [-s store]\n"
"       whk-log slo [-s store] [--target pct] [--within duration]\n"
"               [--since time] [--endpoint name]\n"
"       whk-log stats [-s store] [--since time] [--endpoint name]\n"
"               [--format json|table]\n"
"       whk-log prune [-s store] --before duration [--dry-run]\n";

static const char help[] =
"\n"
"Filters (those that apply to the listing):\n"
"      --endpoint NAME      an endpoint's\n"
"      --tenant T           events of tenant T\n"
"      --type T             events of type T\n"
"      --status S           events: routed, unrouted; webhooks: pending,\n"
"                           failed, delivered, dead; attempts: delivered,\n"
"                           failed; endpoints: enabled, disabled\n"
"      --since TIME         at or after TIME (Unix seconds, RFC 3339, or\n"
"                           a duration ago: 1h, 7d)\n"
"      --until TIME         before TIME\n"
"      --event ID           the event, the webhooks holding it, their attempts\n"
"      --key K              the same, by the event's key\n"
"      --webhook ID         the webhook, its events, its attempts\n"
"Output:\n"
"      --format F           json (NDJSON), table or tsv (default: table on a\n"
"                           terminal, json otherwise)\n"
"      --jq FILTER          apply a jq filter to each record\n"
"  -l, --limit N            at most N records, newest first (0: all)\n"
"  -f                       the same as follow\n"
"slo, stats and prune:\n"
"      --target PCT         the share to meet, percent (default 99.9)\n"
"      --within DUR         the bound from event to delivery (default 5m)\n"
"      --before DUR         prune: history older than this\n"
"  -n, --dry-run            prune: count, remove nothing\n"
"  -s, --store PATH         the store (default $WHK_STORE)\n"
"  -h, --help               show this help\n"
"  -V, --version            show the version\n"
"\n"
"Exit: 0 done, 1 an SLO not met or no such id, 2 usage, 3 store\n"
"unavailable, 4 system error.  See whk-log(1).\n";

enum {
	O_FORMAT = 256, O_JQ, O_ENDPOINT, O_TENANT, O_TYPE, O_STATUS, O_SINCE,
	O_UNTIL, O_EVENT, O_WEBHOOK, O_KEY, O_TARGET, O_WITHIN, O_BEFORE
};

static const struct option longopts[] = {
	{ "format",	required_argument, NULL, O_FORMAT },
	{ "jq",		required_argument, NULL, O_JQ },
	{ "endpoint",	required_argument, NULL, O_ENDPOINT },
	{ "tenant",	required_argument, NULL, O_TENANT },
	{ "type",	required_argument, NULL, O_TYPE },
	{ "status",	required_argument, NULL, O_STATUS },
	{ "since",	required_argument, NULL, O_SINCE },
	{ "until",	required_argument, NULL, O_UNTIL },
	{ "event",	required_argument, NULL, O_EVENT },
	{ "webhook",	required_argument, NULL, O_WEBHOOK },
	{ "key",	required_argument, NULL, O_KEY },
	{ "target",	required_argument, NULL, O_TARGET },
	{ "within",	required_argument, NULL, O_WITHIN },
	{ "before",	required_argument, NULL, O_BEFORE },
	{ "limit",	required_argument, NULL, 'l' },
	{ "dry-run",	no_argument,	   NULL, 'n' },
	{ "store",	required_argument, NULL, 's' },
	{ "help",	no_argument,	   NULL, 'h' },
	{ "version",	no_argument,	   NULL, 'V' },
	{ NULL,		0,		   NULL, 0 }
};

enum { F_JSON, F_TABLE, F_TSV };

/* Rows kept for a table, whose widths need them all. */
struct table {
	char		**cells;	/* rows * ncols */
	char		**names;
	size_t		 rows, cap;
	int		 ncols;
};

struct logger {
	struct whk_store	*store;
	int			 format;
	struct whk_jq		*jq;
	struct whk_buf		 out;
	struct table		 t;
	int64_t			 last_seq;	/* follow */
	int64_t			 count;
	int			 bad_jq;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
vwarnx(const char *fmt, va_list ap)
{
	fputs("whk-log: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void
warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
}

static void
usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2),
    noreturn));

static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
	exit(WHK_EXIT_USAGE);
}

static int
is_time(const char *name)
{
	size_t n = strlen(name);

	return (n > 3 && strcmp(name + n - 3, "_at") == 0) ||
	    strcmp(name, "retry_after") == 0;
}

/* One column's value as JSON. */
static void
json_value(struct whk_buf *b, const struct whk_col *c)
{
	if (c->type == WHK_COL_NULL)
		whk_buf_puts(b, "null");
	else if (is_time(c->name) && c->type == WHK_COL_INT)
		whk_buf_json_time(b, c->i);
	else if (strcmp(c->name, "routed") == 0 || strcmp(c->name, "ok") == 0)
		whk_buf_puts(b, c->i ? "true" : "false");
	else if (strcmp(c->name, "body") == 0 && c->type == WHK_COL_TEXT)
		whk_buf_add(b, c->s, c->len);	/* stored as valid JSON */
	else if (c->type == WHK_COL_INT)
		whk_buf_int(b, c->i);
	else if (c->type == WHK_COL_REAL)
		whk_buf_printf(b, "%.15g", c->r);
	else
		whk_buf_json_strn(b, c->s, c->len);
}

static void
json_row(struct whk_buf *b, const struct whk_col *cols, int n)
{
	int i, first = 1;

	whk_buf_puts(b, "{");
	for (i = 0; i < n; i++) {
		if (cols[i].name[0] == '_')
			continue;
		if (!first)
			whk_buf_puts(b, ",");
		first = 0;
		whk_buf_json_str(b, cols[i].name);
		whk_buf_puts(b, ":");
		json_value(b, &cols[i]);
	}
	whk_buf_puts(b, "}");
}

/* One column's value as a table or TSV cell: plain text, one line. */
static char *
cell(const struct whk_col *c, int tsv)
{
	char t[64], *s, *p;
	size_t i, n;
	const char *v;

	if (c->type == WHK_COL_NULL)
		return strdup(tsv ? "" : "-");
	if (is_time(c->name) && c->type == WHK_COL_INT) {
		whk_format_time(c->i, t, sizeof(t));
		return strdup(t);
	}
	if (strcmp(c->name, "routed") == 0 || strcmp(c->name, "ok") == 0)
		return strdup(c->i ? "yes" : "no");
	if (c->type == WHK_COL_INT) {
		snprintf(t, sizeof(t), "%lld", (long long)c->i);
		return strdup(t);
	}
	if (c->type == WHK_COL_REAL) {
		snprintf(t, sizeof(t), "%.2f", c->r);
		return strdup(t);
	}
	v = c->s;
	n = c->len;
	if (!tsv && n > CELL_MAX)
		n = CELL_MAX;
	if ((s = p = malloc(2 * n + 4)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (v[i] == '\t' || v[i] == '\n' || v[i] == '\r' ||
		    v[i] == '\\') {
			*p++ = '\\';
			*p++ = v[i] == '\t' ? 't' : v[i] == '\n' ? 'n' :
			    v[i] == '\r' ? 'r' : '\\';
		} else
			*p++ = v[i];
	}
	if (n < c->len)
		*p++ = '~';	/* cut short */
	*p = '\0';
	return s;
}

static int
table_add(struct table *t, const struct whk_col *cols, int n, int tsv)
{
	char **v;
	int i, k;

	if (t->names == NULL) {
		if ((t->names = calloc((size_t)n, sizeof(*t->names))) == NULL)
			return -1;
		for (i = k = 0; i < n; i++)
			if (cols[i].name[0] != '_' &&
			    (t->names[k++] = strdup(cols[i].name)) == NULL)
				return -1;
		t->ncols = k;
	}
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;

		if ((v = reallocarray(t->cells, cap * (size_t)t->ncols,
		    sizeof(*v))) == NULL)
			return -1;
		t->cells = v;
		t->cap = cap;
	}
	for (i = k = 0; i < n; i++)
		if (cols[i].name[0] != '_' &&
		    (t->cells[t->rows * (size_t)t->ncols + (size_t)k++] =
		    cell(&cols[i], tsv)) == NULL)
			return -1;
	t->rows++;
	return 0;
}

/* Aligned columns; numbers to the right. */
static void
table_print(struct table *t, struct whk_buf *b)
{
	size_t *w, r, len;
	int c;

	if (t->ncols == 0)
		return;
	if ((w = calloc((size_t)t->ncols, sizeof(*w))) == NULL) {
		b->oom = 1;
		return;
	}
	for (c = 0; c < t->ncols; c++) {
		w[c] = strlen(t->names[c]);
		for (r = 0; r < t->rows; r++) {
			len = strlen(t->cells[r * (size_t)t->ncols +
			    (size_t)c]);
			if (len > w[c])
				w[c] = len;
		}
	}
	for (c = 0; c < t->ncols; c++)
		whk_buf_printf(b, "%s%-*s", c ? "  " : "",
		    c + 1 < t->ncols ? (int)w[c] : 0, t->names[c]);
	whk_buf_puts(b, "\n");
	for (r = 0; r < t->rows; r++) {
		for (c = 0; c < t->ncols; c++) {
			const char *v = t->cells[r * (size_t)t->ncols +
			    (size_t)c];
			int num = *v && strspn(v, "0123456789.-") == strlen(v);

			whk_buf_printf(b, num ? "%s%*s" : "%s%-*s",
			    c ? "  " : "", c + 1 < t->ncols || num ?
			    (int)w[c] : 0, v);
		}
		whk_buf_puts(b, "\n");
	}
	free(w);
}

static void
table_free(struct table *t)
{
	size_t i;
	int c;

	for (i = 0; i < t->rows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	for (c = 0; c < t->ncols; c++)
		free(t->names[c]);
	free(t->cells);
	free(t->names);
	memset(t, 0, sizeof(*t));
}

static int
flush_out(struct logger *l)
{
	if (l->out.oom)
		return -1;
	if (l->out.len > 0 && fwrite(l->out.data, 1, l->out.len, stdout) !=
	    l->out.len)
		return -1;
	whk_buf_reset(&l->out);
	return 0;
}

/* A record: to the table, or out as a line (through --jq when given). */
static int
emit_row(const struct whk_col *cols, int n, void *arg)
{
	struct logger *l = arg;
	struct whk_buf rec = { 0 };
	struct whk_err err;
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(cols[i].name, "_seq") == 0 && cols[i].i > l->last_seq)
			l->last_seq = cols[i].i;
	l->count++;
	if (l->jq) {
		json_row(&rec, cols, n);
		if (rec.oom)
			return -1;
		if (whk_jq_each(l->jq, rec.data, rec.len, &l->out,
		    &err) == -1) {
			whk_buf_free(&rec);
			if (err.status != WHK_EXIT_PARTIAL)
				return -1;
			warnx_("%s", err.msg);
			l->bad_jq = 1;
			return 0;
		}
		whk_buf_free(&rec);
	} else if (l->format == F_JSON) {
		json_row(&l->out, cols, n);
		whk_buf_puts(&l->out, "\n");
	} else if (table_add(&l->t, cols, n, l->format == F_TSV) == -1)
		return -1;
	if (l->out.len > 65536 && flush_out(l) == -1)
		return -1;
	return l->out.oom ? -1 : 0;
}

static void
finish_table(struct logger *l)
{
	size_t r;
	int c;

	if (l->format == F_TABLE)
		table_print(&l->t, &l->out);
	else if (l->format == F_TSV && l->t.ncols > 0) {
		for (c = 0; c < l->t.ncols; c++)
			whk_buf_printf(&l->out, "%s%s", c ? "\t" : "",
			    l->t.names[c]);
		whk_buf_puts(&l->out, "\n");
		for (r = 0; r < l->t.rows; r++) {
			for (c = 0; c < l->t.ncols; c++)
				whk_buf_printf(&l->out, "%s%s", c ? "\t" : "",
				    l->t.cells[r * (size_t)l->t.ncols +
				    (size_t)c]);
			whk_buf_puts(&l->out, "\n");
		}
	}
	table_free(&l->t);
}

/* TIME: Unix seconds, RFC 3339, or a duration meaning that long ago. */
static int64_t
time_arg(const char *s, const char *opt)
{
	struct whk_err err;
	int64_t t;

	if (whk_parse_time(s, &t, &err) == 0)
		return t;
	if (whk_parse_duration(s, &t, &err) == 0)
		return whk_now_ms() - t;
	usage_error("%s: '%s' is not a time (Unix seconds, RFC 3339, or a "
	    "duration ago such as 1h)", opt, s);
}

static int64_t
duration_arg(const char *s, const char *opt)
{
	struct whk_err err;
	int64_t ms;

	if (whk_parse_duration(s, &ms, &err) == -1)
		usage_error("%s: %s", opt, err.msg);
	return ms;
}

/* --- show ---------------------------------------------------------------- */

struct collect {
	struct whk_buf	*b;
	int		 n;
};

static int
collect_json(const struct whk_col *cols, int n, void *arg)
{
	struct collect *c = arg;

	if (c->n++ > 0)
		whk_buf_puts(c->b, ",");
	json_row(c->b, cols, n);
	return c->b->oom ? -1 : 0;
}

/* The first (only) row's fields, without the closing brace. */
static int
collect_open(const struct whk_col *cols, int n, void *arg)
{
	struct collect *c = arg;

	json_row(c->b, cols, n);
	if (c->b->len > 0)
		c->b->len--;	/* reopen: more fields follow */
	c->n++;
	return 1;
}

static int
collect_id(const struct whk_col *cols, int n, void *arg)
{
	struct collect *c = arg;

	(void)n;
	if (c->n++ > 0)
		whk_buf_puts(c->b, ",");
	whk_buf_json_strn(c->b, cols[1].s, cols[1].len);	/* the id */
	return c->b->oom ? -1 : 0;
}

static int
show(struct logger *l, const char *id, struct whk_err *err)
{
	struct whk_log_query q;
	struct whk_webhook w;
	struct whk_buf body = { 0 };
	struct collect c = { &l->out, 0 };
	int rc;

	memset(&q, 0, sizeof(q));
	/* An event? */
	q.kind = WHK_LOG_EVENTS;
	q.event = id;
	q.limit = 1;
	if (whk_store_log(l->store, &q, collect_open, &c, err) == -1)
		return -1;
	if (c.n > 0) {
		memset(&q, 0, sizeof(q));
		q.kind = WHK_LOG_WEBHOOKS;
		q.event = id;
		q.oldest_first = 1;
		whk_buf_puts(&l->out, ",\"webhooks\":[");
		c.n = 0;
		if (whk_store_log(l->store, &q, collect_json, &c, err) == -1)
			return -1;
		whk_buf_puts(&l->out, "]}\n");
		return 0;
	}
	/* A webhook? */
	if ((rc = whk_store_webhook_find(l->store, id, &w, err)) == -1)
		return -1;
	if (rc == 1)
		return whk_error(err, WHK_EXIT_PARTIAL, "no event or webhook "
		    "'%s'", id);
	q.kind = WHK_LOG_WEBHOOKS;
	q.event = NULL;
	q.webhook = id;
	c.n = 0;
	if (whk_store_log(l->store, &q, collect_open, &c, err) == -1)
		return -1;
	memset(&q, 0, sizeof(q));
	q.kind = WHK_LOG_EVENTS;
	q.webhook = id;
	q.oldest_first = 1;
	whk_buf_puts(&l->out, ",\"event_ids\":[");
	c.n = 0;
	if (whk_store_log(l->store, &q, collect_id, &c, err) == -1)
		return -1;
	whk_buf_puts(&l->out, "],\"body\":");
	if (whk_store_webhook_body(l->store, w.seq, &body, err) == -1)
		return -1;
	if (body.len > 0)
		whk_buf_add(&l->out, body.data, body.len);
	else
		whk_buf_puts(&l->out, "null");
	whk_buf_free(&body);
	memset(&q, 0, sizeof(q));
	q.kind = WHK_LOG_ATTEMPTS;
	q.webhook = id;
	q.oldest_first = 1;
	q.with_response = 1;
	whk_buf_puts(&l->out, ",\"attempts\":[");
	c.n = 0;
	if (whk_store_log(l->store, &q, collect_json, &c, err) == -1)
		return -1;
	whk_buf_puts(&l->out, "]}\n");
	return 0;
}

/* show on a terminal: the same record, laid out by jq's own printer. */
static int
show_table(struct logger *l, struct whk_err *err)
{
	struct whk_buf in = l->out;
	int rc;

	memset(&l->out, 0, sizeof(l->out));
	rc = whk_json_pretty(in.data, in.len, &l->out, err);
	whk_buf_free(&in);
	return rc;
}

/* --- metrics ------------------------------------------------------------- */

/* A label value: backslash, quote and newline escaped. */
static void
label(struct whk_buf *b, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\' || s[i] == '"')
			whk_buf_printf(b, "\\%c", s[i]);
		else if (s[i] == '\n')
			whk_buf_puts(b, "\\n");
		else
			whk_buf_add(b, s + i, 1);
	}
}

struct series {
	struct whk_buf	 b[8];		/* one per metric family */
	int64_t		 now;
	/* The endpoint being summed, for the histograms and pending. */
	char		 ep[256];
	int64_t		 hist[2][WHK_BUCKETS + 2];	/* buckets, n, sum */
	int64_t		 pending, oldest;
	int		 have;
};

enum { M_ATTEMPTS, M_WEBHOOKS, M_PENDING, M_OLDEST, M_FIRST, M_DELIVERY,
	M_ENABLED };

static void
hist_out(struct whk_buf *b, const char *name, const char *ep,
    const int64_t *h)
{
	const int64_t *ms = whk_buckets_ms();
	int i;

	for (i = 0; i < WHK_BUCKETS; i++) {
		whk_buf_printf(b, "%s_bucket{endpoint=\"", name);
		label(b, ep, strlen(ep));
		whk_buf_printf(b, "\",le=\"%g\"} %lld\n", (double)ms[i] / 1000.0,
		    (long long)h[i]);
	}
	whk_buf_printf(b, "%s_bucket{endpoint=\"", name);
	label(b, ep, strlen(ep));
	whk_buf_printf(b, "\",le=\"+Inf\"} %lld\n", (long long)h[WHK_BUCKETS]);
	whk_buf_printf(b, "%s_sum{endpoint=\"", name);
	label(b, ep, strlen(ep));
	whk_buf_printf(b, "\"} %.3f\n", (double)h[WHK_BUCKETS + 1] / 1000.0);
	whk_buf_printf(b, "%s_count{endpoint=\"", name);
	label(b, ep, strlen(ep));
	whk_buf_printf(b, "\"} %lld\n", (long long)h[WHK_BUCKETS]);
}

/* Rows come grouped by endpoint: what one endpoint summed is put out. */
static void
series_close(struct series *m)
{
	if (!m->have)
		return;
	hist_out(&m->b[M_FIRST], "whk_first_attempt_latency_seconds", m->ep,
	    m->hist[0]);
	hist_out(&m->b[M_DELIVERY], "whk_delivery_latency_seconds", m->ep,
	    m->hist[1]);
	whk_buf_puts(&m->b[M_PENDING], "whk_pending_webhooks{endpoint=\"");
	label(&m->b[M_PENDING], m->ep, strlen(m->ep));
	whk_buf_printf(&m->b[M_PENDING], "\"} %lld\n", (long long)m->pending);
	whk_buf_puts(&m->b[M_OLDEST], "whk_oldest_pending_age_seconds"
	    "{endpoint=\"");
	label(&m->b[M_OLDEST], m->ep, strlen(m->ep));
	whk_buf_printf(&m->b[M_OLDEST], "\"} %.3f\n", m->oldest > 0 &&
	    m->now > m->oldest ? (double)(m->now - m->oldest) / 1000.0 : 0.0);
	memset(m->hist, 0, sizeof(m->hist));
	m->pending = m->oldest = 0;
	m->have = 0;
}

static void
series_switch(struct series *m, const struct whk_col *ep)
{
	if (m->have && strlen(m->ep) == ep->len &&
	    memcmp(m->ep, ep->s, ep->len) == 0)
		return;
	series_close(m);
	snprintf(m->ep, sizeof(m->ep), "%.*s", (int)ep->len, ep->s);
	m->have = 1;
}

/* name, outcome|state, count, n, sum, buckets...[, oldest waiting] */
static void
hist_add(int64_t *h, const struct whk_col *c)
{
	int i;

	for (i = 0; i < WHK_BUCKETS; i++)
		h[i] += c[5 + i].i;
	h[WHK_BUCKETS] += c[3].i;
	h[WHK_BUCKETS + 1] += c[4].i;
}

/*
 * Attempts come first, then webhooks, each by endpoint; the histograms
 * of one endpoint are complete when the webhooks move on, so attempts'
 * first-attempt sums are kept per endpoint in a small list meanwhile.
 */
struct first_sum {
	char	 ep[256];
	int64_t	 h[WHK_BUCKETS + 2];
};

struct metrics {
	struct series	 m;
	struct first_sum *first;
	size_t		 nfirst;
};

static int
metrics_attempt(const struct whk_col *c, int n, void *arg)
{
	struct metrics *x = arg;
	struct first_sum *v;
	size_t i;

	(void)n;
	whk_buf_puts(&x->m.b[M_ATTEMPTS], "whk_attempts_total{endpoint=\"");
	label(&x->m.b[M_ATTEMPTS], c[0].s, c[0].len);
	whk_buf_puts(&x->m.b[M_ATTEMPTS], "\",outcome=\"");
	label(&x->m.b[M_ATTEMPTS], c[1].s, c[1].len);
	whk_buf_printf(&x->m.b[M_ATTEMPTS], "\"} %lld\n", (long long)c[2].i);
	for (i = 0; i < x->nfirst; i++)
		if (strlen(x->first[i].ep) == c[0].len &&
		    memcmp(x->first[i].ep, c[0].s, c[0].len) == 0)
			break;
	if (i == x->nfirst) {
		if ((v = reallocarray(x->first, x->nfirst + 1,
		    sizeof(*v))) == NULL)
			return -1;
		x->first = v;
		memset(&v[i], 0, sizeof(v[i]));
		snprintf(v[i].ep, sizeof(v[i].ep), "%.*s", (int)c[0].len,
		    c[0].s);
		x->nfirst++;
	}
	hist_add(x->first[i].h, c);
	return 0;
}

static int
metrics_webhook(const struct whk_col *c, int n, void *arg)
{
	struct metrics *x = arg;
	size_t i;

	(void)n;
	if (!x->m.have || strlen(x->m.ep) != c[0].len ||
	    memcmp(x->m.ep, c[0].s, c[0].len) != 0) {
		series_switch(&x->m, &c[0]);
		for (i = 0; i < x->nfirst; i++)
			if (strcmp(x->first[i].ep, x->m.ep) == 0)
				memcpy(x->m.hist[0], x->first[i].h,
				    sizeof(x->m.hist[0]));
	}
	whk_buf_puts(&x->m.b[M_WEBHOOKS], "whk_webhooks{endpoint=\"");
	label(&x->m.b[M_WEBHOOKS], c[0].s, c[0].len);
	whk_buf_puts(&x->m.b[M_WEBHOOKS], "\",state=\"");
	label(&x->m.b[M_WEBHOOKS], c[1].s, c[1].len);
	whk_buf_printf(&x->m.b[M_WEBHOOKS], "\"} %lld\n", (long long)c[2].i);
	hist_add(x->m.hist[1], c);
	if (c[1].len == 7 && (memcmp(c[1].s, "pending", 7) == 0))
		x->m.pending += c[2].i;
	if (c[1].len == 6 && memcmp(c[1].s, "failed", 6) == 0)
		x->m.pending += c[2].i;
	if (c[5 + WHK_BUCKETS].type == WHK_COL_INT &&
	    (x->m.oldest == 0 || c[5 + WHK_BUCKETS].i < x->m.oldest))
		x->m.oldest = c[5 + WHK_BUCKETS].i;
	return 0;
}

static int
metrics_endpoint(const struct whk_col *c, int n, void *arg)
{
	struct metrics *x = arg;
	size_t i;

	(void)n;
	whk_buf_puts(&x->m.b[M_ENABLED], "whk_endpoint_enabled{endpoint=\"");
	label(&x->m.b[M_ENABLED], c[0].s, c[0].len);
	whk_buf_printf(&x->m.b[M_ENABLED], "\"} %lld\n", (long long)c[1].i);
	/* An endpoint without webhooks still has its series. */
	for (i = 0; i < x->nfirst; i++)
		if (strlen(x->first[i].ep) == c[0].len &&
		    memcmp(x->first[i].ep, c[0].s, c[0].len) == 0)
			return 0;
	return 0;
}

static int
metrics(struct logger *l, struct whk_err *err)
{
	static const char *head[] = {
		[M_ATTEMPTS] = "# HELP whk_attempts_total Attempts recorded, by "
		    "endpoint and outcome.\n# TYPE whk_attempts_total counter\n",
		[M_WEBHOOKS] = "# HELP whk_webhooks Webhooks, by endpoint and "
		    "state.\n# TYPE whk_webhooks gauge\n",
		[M_PENDING] = "# HELP whk_pending_webhooks Webhooks not yet "
		    "delivered nor dead.\n# TYPE whk_pending_webhooks gauge\n",
		[M_OLDEST] = "# HELP whk_oldest_pending_age_seconds Age of the "
		    "oldest event waiting in a pending or failed webhook.\n"
		    "# TYPE whk_oldest_pending_age_seconds gauge\n",
		[M_FIRST] = "# HELP whk_first_attempt_latency_seconds From the "
		    "event stored to its webhook's first attempt ended.\n"
		    "# TYPE whk_first_attempt_latency_seconds histogram\n",
		[M_DELIVERY] = "# HELP whk_delivery_latency_seconds From the "
		    "event stored to its webhook delivered.\n"
		    "# TYPE whk_delivery_latency_seconds histogram\n",
		[M_ENABLED] = "# HELP whk_endpoint_enabled 1 while the endpoint "
		    "is enabled.\n# TYPE whk_endpoint_enabled gauge\n",
	};
	struct metrics x;
	size_t i;
	int k, rc = -1;

	memset(&x, 0, sizeof(x));
	x.m.now = whk_now_ms();
	if (whk_store_begin_read(l->store, err) == -1)
		return -1;
	if (whk_store_agg(l->store, WHK_AGG_ATTEMPTS, NULL, 0, 0,
	    metrics_attempt, &x, err) == -1 ||
	    whk_store_agg(l->store, WHK_AGG_WEBHOOKS, NULL, 0, 0,
	    metrics_webhook, &x, err) == -1 ||
	    whk_store_agg(l->store, WHK_AGG_ENDPOINTS, NULL, 0, 0,
	    metrics_endpoint, &x, err) == -1)
		goto out;
	series_close(&x.m);
	for (k = M_ATTEMPTS; k <= M_ENABLED; k++) {
		whk_buf_puts(&l->out, head[k]);
		if (x.m.b[k].len > 0)
			whk_buf_add(&l->out, x.m.b[k].data, x.m.b[k].len);
	}
	rc = 0;
out:
	whk_store_rollback(l->store);
	for (k = 0; k < 8; k++)
		whk_buf_free(&x.m.b[k]);
	(void)i;
	free(x.first);
	return rc;
}

/* --- slo and stats ------------------------------------------------------- */

struct slo {
	struct logger	*l;
	double		 target;
	int64_t		 within;
	int		 missed_target;
};

static int
slo_row(const struct whk_col *c, int n, void *arg)
{
	struct slo *s = arg;
	struct whk_col cols[8];
	int64_t met = c[1].i, missed = c[2].i;
	double share = met + missed > 0 ? 100.0 * (double)met /
	    (double)(met + missed) : 0;
	int ok = met + missed == 0 || share >= s->target;

	(void)n;
	if (!ok)
		s->missed_target = 1;
	memset(cols, 0, sizeof(cols));
	cols[0] = c[0];
	cols[1].name = "events";
	cols[1].type = WHK_COL_INT;
	cols[1].i = met + missed;
	cols[2].name = "met";
	cols[2].type = WHK_COL_INT;
	cols[2].i = met;
	cols[3].name = "missed";
	cols[3].type = WHK_COL_INT;
	cols[3].i = missed;
	cols[4].name = "share";
	cols[4].type = met + missed > 0 ? WHK_COL_REAL : WHK_COL_NULL;
	cols[4].r = share;
	cols[5].name = "target";
	cols[5].type = WHK_COL_REAL;
	cols[5].r = s->target;
	cols[6].name = "within_ms";
	cols[6].type = WHK_COL_INT;
	cols[6].i = s->within;
	cols[7].name = "ok";
	cols[7].type = WHK_COL_INT;
	cols[7].i = ok;
	return emit_row(cols, 8, s->l);
}

struct stats {
	struct logger	*l;
	struct whk_err	*err;
	int64_t		 since;
	/* Per endpoint, from the attempts rows. */
	char		 ep[256];
	int64_t		 attempts, delivered, failed;
	int64_t		 h[WHK_BUCKETS + 2];
	int		 have;
	int64_t		 p50, p95, nlat, seen;
};

static int
percentile_row(const struct whk_col *c, int n, void *arg)
{
	struct stats *s = arg;

	(void)n;
	if (s->seen == (s->nlat - 1) / 2)
		s->p50 = c[0].i;
	if (s->seen == (s->nlat * 95 - 1) / 100) {
		s->p95 = c[0].i;
		return 1;
	}
	s->seen++;
	return 0;
}

static int
stats_flush(struct stats *s)
{
	const int64_t *ms = whk_buckets_ms();
	struct whk_buf *b = &s->l->out;
	int64_t prev = 0, most = 1, v;
	int i, bar;

	if (!s->have)
		return 0;
	s->nlat = s->h[WHK_BUCKETS];
	s->seen = 0;
	s->p50 = s->p95 = -1;
	if (s->nlat > 0 && whk_store_agg(s->l->store, WHK_AGG_LATENCIES, s->ep,
	    s->since, 0, percentile_row, s, s->err) == -1)
		return -1;
	if (s->l->format != F_TABLE) {
		whk_buf_puts(b, "{\"endpoint\":");
		whk_buf_json_str(b, s->ep);
		whk_buf_printf(b, ",\"attempts\":%lld,\"delivered\":%lld,"
		    "\"failed\":%lld,\"success\":", (long long)s->attempts,
		    (long long)s->delivered, (long long)s->failed);
		if (s->attempts > 0)
			whk_buf_printf(b, "%.2f", 100.0 * (double)s->delivered /
			    (double)s->attempts);
		else
			whk_buf_puts(b, "null");
		whk_buf_puts(b, ",\"p50_ms\":");
		if (s->p50 >= 0)
			whk_buf_int(b, s->p50);
		else
			whk_buf_puts(b, "null");
		whk_buf_puts(b, ",\"p95_ms\":");
		if (s->p95 >= 0)
			whk_buf_int(b, s->p95);
		else
			whk_buf_puts(b, "null");
		whk_buf_puts(b, ",\"histogram\":[");
		for (i = 0; i < WHK_BUCKETS; i++) {
			whk_buf_printf(b, "%s{\"le_ms\":%lld,\"count\":%lld}",
			    i ? "," : "", (long long)ms[i],
			    (long long)(s->h[i] - prev));
			prev = s->h[i];
		}
		whk_buf_printf(b, ",{\"le_ms\":null,\"count\":%lld}]}\n",
		    (long long)(s->h[WHK_BUCKETS] - prev));
	} else {
		whk_buf_printf(b, "%s: %lld attempts, %.1f%% delivered; first "
		    "attempts p50 %lld ms, p95 %lld ms\n", s->ep,
		    (long long)s->attempts, s->attempts > 0 ? 100.0 *
		    (double)s->delivered / (double)s->attempts : 0.0,
		    (long long)s->p50, (long long)s->p95);
		for (i = 0, prev = 0; i <= WHK_BUCKETS; i++) {
			v = s->h[i] - prev;
			prev = s->h[i];
			if (v > most)
				most = v;
		}
		for (i = 0, prev = 0; i <= WHK_BUCKETS; i++) {
			char lab[32];

			v = s->h[i] - prev;
			prev = s->h[i];
			if (i < WHK_BUCKETS)
				snprintf(lab, sizeof(lab), "<= %gs",
				    (double)ms[i] / 1000.0);
			else
				snprintf(lab, sizeof(lab), "more");
			whk_buf_printf(b, "  %9s %8lld ", lab, (long long)v);
			for (bar = 0; bar < (int)(40 * v / most); bar++)
				whk_buf_puts(b, "\xe2\x96\x88");
			whk_buf_puts(b, "\n");
		}
	}
	memset(s->h, 0, sizeof(s->h));
	s->attempts = s->delivered = s->failed = 0;
	s->have = 0;
	return 0;
}

static int
stats_row(const struct whk_col *c, int n, void *arg)
{
	struct stats *s = arg;

	(void)n;
	if (s->have && (strlen(s->ep) != c[0].len ||
	    memcmp(s->ep, c[0].s, c[0].len) != 0) && stats_flush(s) == -1)
		return -1;
	if (!s->have) {
		snprintf(s->ep, sizeof(s->ep), "%.*s", (int)c[0].len, c[0].s);
		s->have = 1;
	}
	s->attempts += c[2].i;
	if (c[1].len == 9 && memcmp(c[1].s, "delivered", 9) == 0)
		s->delivered += c[2].i;
	else
		s->failed += c[2].i;
	hist_add(s->h, c);
	return 0;
}

/* --- follow -------------------------------------------------------------- */

static int
seq_only(const struct whk_col *cols, int n, void *arg)
{
	struct logger *l = arg;
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(cols[i].name, "_seq") == 0)
			l->last_seq = cols[i].i;
	return 0;
}

static int
follow(struct logger *l, struct whk_log_query *q, struct whk_err *err)
{
	struct whk_log_query last = *q;

	/* From now on: the newest attempt so far marks the start. */
	last.limit = 1;
	last.oldest_first = 0;
	l->last_seq = 0;
	if (whk_store_log(l->store, &last, seq_only, l, err) == -1)
		return -1;
	q->oldest_first = 1;
	while (!stop) {
		/* 0: there was none at the start, so every one is new. */
		q->after = l->last_seq;
		if (whk_store_log(l->store, q, emit_row, l, err) == -1)
			return -1;
		if (l->format != F_JSON && !l->jq)
			finish_table(l);
		if (flush_out(l) == -1 || fflush(stdout) == EOF)
			return whk_error(err, WHK_EXIT_SYSTEM, "write error: "
			    "%s", strerror(errno));
		if (!stop)
			usleep(FOLLOW_MS * 1000);
	}
	return 0;
}

/* --- prune --------------------------------------------------------------- */

static int
prune(struct logger *l, int64_t before, int dry_run, struct whk_err *err)
{
	struct whk_pruned p;

	if (whk_store_prune(l->store, before, dry_run, &p, err) == -1)
		return -1;
	whk_buf_printf(&l->out, "{\"pruned\":{\"webhooks\":%lld,\"attempts\":"
	    "%lld,\"events\":%lld},\"before\":", (long long)p.webhooks,
	    (long long)p.attempts, (long long)p.events);
	whk_buf_json_time(&l->out, before);
	whk_buf_printf(&l->out, ",\"dry_run\":%s}\n", dry_run ? "true" :
	    "false");
	return 0;
}

static const char *const commands[] = {
	"events", "webhooks", "attempts", "endpoints", "show", "follow",
	"metrics", "slo", "stats", "prune", NULL
};

/* Which filters each listing takes, and its states. */
static void
check_filters(int kind, const struct whk_log_query *q, const char *cmd)
{
	static const char *states[] = {
		[WHK_LOG_EVENTS] = " routed unrouted ",
		[WHK_LOG_WEBHOOKS] = " pending failed delivered dead ",
		[WHK_LOG_ATTEMPTS] = " delivered failed ",
		[WHK_LOG_ENDPOINTS] = " enabled disabled ",
	};
	char pad[64];

	if ((q->tenant || q->type) && kind != WHK_LOG_EVENTS)
		usage_error("--%s does not apply to %s", q->tenant ? "tenant" :
		    "type", cmd);
	if (kind == WHK_LOG_ENDPOINTS && (q->since || q->until || q->event ||
	    q->key || q->webhook))
		usage_error("--since, --until, --event, --key and --webhook do "
		    "not apply to endpoints");
	if (q->status) {
		snprintf(pad, sizeof(pad), " %s ", q->status);
		if (strlen(q->status) > 20 || strstr(states[kind], pad) == NULL)
			usage_error("--status: '%s' is not a state of %s (%.*s)",
			    q->status, cmd, (int)strlen(states[kind]) - 2,
			    states[kind] + 1);
	}
}

int
main(int argc, char *argv[])
{
	struct logger l;
	struct whk_log_query q;
	struct whk_err err = { 0, "" };
	struct sigaction sa;
	const char *store_opt = NULL, *format = NULL, *jq = NULL, *cmd;
	const char *limit_opt = NULL, *target_opt = NULL, *within_opt = NULL;
	const char *before_opt = NULL, *since_opt = NULL, *until_opt = NULL;
	char path[4096], *end;
	int ch, i, kind = -1, dry_run = 0, status = WHK_EXIT_OK, rc = 0;
	int follow_flag = 0;
	double target = 99.9;
	int64_t within = 5 * 60 * 1000, before = 0;

	memset(&l, 0, sizeof(l));
	memset(&q, 0, sizeof(q));
	while ((ch = getopt_long(argc, argv, "s:l:nfhV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case O_FORMAT: format = optarg; break;
		case O_JQ: jq = optarg; break;
		case O_ENDPOINT: q.endpoint = optarg; break;
		case O_TENANT: q.tenant = optarg; break;
		case O_TYPE: q.type = optarg; break;
		case O_STATUS: q.status = optarg; break;
		case O_SINCE: since_opt = optarg; break;
		case O_UNTIL: until_opt = optarg; break;
		case O_EVENT: q.event = optarg; break;
		case O_WEBHOOK: q.webhook = optarg; break;
		case O_KEY: q.key = optarg; break;
		case O_TARGET: target_opt = optarg; break;
		case O_WITHIN: within_opt = optarg; break;
		case O_BEFORE: before_opt = optarg; break;
		case 'l': limit_opt = optarg; break;
		case 'n': dry_run = 1; break;
		case 'f': follow_flag = 1; break;
		case 's': store_opt = optarg; break;
		case 'h':
			fputs(usage, stdout);
			fputs(help, stdout);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		case 'V':
			printf("whk-log %s\n", WHK_VERSION);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		default:
			fputs(usage, stderr);
			return WHK_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (whk_now_init(&err) == -1) {
		warnx_("%s", err.msg);
		return err.status;
	}
	cmd = follow_flag ? "follow" : argc > 0 ? argv[0] : NULL;
	if (follow_flag && argc > 0 && strcmp(argv[0], "follow") != 0 &&
	    strcmp(argv[0], "attempts") != 0)
		usage_error("-f follows attempts: '%s' does not go with it",
		    argv[0]);
	if (cmd == NULL) {
		warnx_("no command (events, webhooks, attempts, endpoints, "
		    "show, follow, metrics, slo, stats, prune)");
		fputs(usage, stderr);
		return WHK_EXIT_USAGE;
	}
	for (i = 0; commands[i]; i++)
		if (strcmp(commands[i], cmd) == 0)
			break;
	if (commands[i] == NULL) {
		warnx_("unknown command '%s' (events, webhooks, attempts, "
		    "endpoints, show, follow, metrics, slo, stats, prune)", cmd);
		fputs(usage, stderr);
		return WHK_EXIT_USAGE;
	}
	kind = i <= 3 ? i : strcmp(cmd, "follow") == 0 ? WHK_LOG_ATTEMPTS : -1;
	if (!follow_flag || argc > 0) {
		argc--;
		argv++;
	}
	if (strcmp(cmd, "show") == 0 ? argc != 1 : argc != 0)
		usage_error(strcmp(cmd, "show") == 0 ? "show takes one id" :
		    "unexpected argument '%s'", argc > 0 ? argv[0] : "");
	if (format) {
		if (strcmp(format, "json") == 0)
			l.format = F_JSON;
		else if (strcmp(format, "table") == 0)
			l.format = F_TABLE;
		else if (strcmp(format, "tsv") == 0)
			l.format = F_TSV;
		else
			usage_error("--format: '%s' is not json, table or tsv",
			    format);
	} else
		l.format = isatty(STDOUT_FILENO) ? F_TABLE : F_JSON;
	if (limit_opt && whk_parse_uint(limit_opt, 0, INT64_MAX, &q.limit,
	    &err) == -1)
		usage_error("--limit: %s", err.msg);
	if (since_opt)
		q.since = time_arg(since_opt, "--since");
	if (until_opt)
		q.until = time_arg(until_opt, "--until");
	if (target_opt) {
		errno = 0;
		target = strtod(target_opt, &end);
		if (errno || end == target_opt || *end || !(target > 0) ||
		    target > 100)
			usage_error("--target: '%s' is not a percentage above 0 "
			    "and at most 100", target_opt);
	}
	if (within_opt)
		within = duration_arg(within_opt, "--within");
	if (kind >= 0)
		check_filters(kind, &q, cmd);
	else if ((strcmp(cmd, "slo") == 0 || strcmp(cmd, "stats") == 0 ||
	    strcmp(cmd, "metrics") == 0 || strcmp(cmd, "prune") == 0 ||
	    strcmp(cmd, "show") == 0) && (q.tenant || q.type || q.status ||
	    q.event || q.key || q.webhook || q.until))
		usage_error("%s takes no listing filters", cmd);
	if (strcmp(cmd, "prune") == 0 && before_opt == NULL)
		usage_error("prune needs --before (such as --before 90d)");
	if (before_opt)
		before = duration_arg(before_opt, "--before");
	if (before_opt && strcmp(cmd, "prune") != 0)
		usage_error("--before: only with prune");
	if (dry_run && strcmp(cmd, "prune") != 0)
		usage_error("--dry-run: only with prune");
	if (jq) {
		if ((l.jq = whk_jq_compile(jq, "--jq", &err)) == NULL) {
			warnx_("%s", err.msg);
			return WHK_EXIT_USAGE;
		}
		l.format = F_JSON;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (whk_store_path(store_opt, path, sizeof(path), &err) == -1 ||
	    (l.store = whk_store_open(path, &err)) == NULL) {
		warnx_("%s", err.msg);
		whk_jq_free(l.jq);
		return err.status;
	}
	q.kind = kind;
	if (strcmp(cmd, "follow") == 0)
		rc = follow(&l, &q, &err);
	else if (kind >= 0) {
		if (whk_store_begin_read(l.store, &err) == -1)
			rc = -1;
		else {
			rc = whk_store_log(l.store, &q, emit_row, &l, &err);
			whk_store_rollback(l.store);
		}
		if (rc == 0 && !l.jq && l.format != F_JSON)
			finish_table(&l);
	} else if (strcmp(cmd, "show") == 0) {
		if (whk_store_begin_read(l.store, &err) == -1)
			rc = -1;
		else {
			rc = show(&l, argv[0], &err);
			whk_store_rollback(l.store);
		}
		if (rc == 0 && l.format == F_TABLE && !l.jq)
			rc = show_table(&l, &err);
	} else if (strcmp(cmd, "metrics") == 0)
		rc = metrics(&l, &err);
	else if (strcmp(cmd, "slo") == 0) {
		struct slo s = { &l, target, within, 0 };

		if (since_opt == NULL)
			q.since = whk_now_ms() - DAY_MS;
		rc = whk_store_agg(l.store, WHK_AGG_SLO, q.endpoint, q.since,
		    within, slo_row, &s, &err);
		if (rc == 0 && !l.jq && l.format != F_JSON)
			finish_table(&l);
		if (rc == 0 && s.missed_target)
			status = WHK_EXIT_PARTIAL;
	} else if (strcmp(cmd, "stats") == 0) {
		struct stats s;

		memset(&s, 0, sizeof(s));
		s.l = &l;
		s.err = &err;
		s.since = since_opt ? q.since : whk_now_ms() - DAY_MS;
		if (l.format == F_TSV)
			l.format = F_JSON;
		rc = whk_store_agg(l.store, WHK_AGG_ATTEMPTS, q.endpoint,
		    s.since, 0, stats_row, &s, &err);
		if (rc == 0)
			rc = stats_flush(&s);
	} else
		rc = prune(&l, whk_now_ms() - before, dry_run, &err);
	if (rc == -1) {
		warnx_("%s", err.msg);
		status = err.status;
	} else if (l.bad_jq && status == WHK_EXIT_OK)
		status = WHK_EXIT_PARTIAL;
	if (flush_out(&l) == -1 && status == WHK_EXIT_OK)
		status = WHK_EXIT_SYSTEM;
	table_free(&l.t);
	whk_buf_free(&l.out);
	whk_jq_free(l.jq);
	whk_store_close(l.store);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warnx_("write error: %s", strerror(errno));
		return WHK_EXIT_SYSTEM;
	}
	return status;
}
