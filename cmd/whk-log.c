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
#define FOLLOW_ROWS	1000	/* attempts read at once by follow */
#define CELL_MAX	48		/* a table cell's width at most */
#define DAY_MS		(86400LL * 1000)

static const char usage[] =
"usage: whk-log events|webhooks|attempts|endpoints [-s store] [filters]\n"
"               [--format json|table|tsv] [--jq filter] [-l n]\n"
"       whk-log show [-s store] [--format json|table] id...\n"
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
	int			 following;	/* a header once, not each poll */
	int			 headed;
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

/*
 * Text for a terminal, on one line: tab, newline, carriage return and
 * backslash as \t \n \r \\, any other control (C0, DEL, C1 in UTF-8) as
 * \xNN or \u00NN, so that no event and no receiver's answer can send the
 * terminal a control sequence.  out holds at least 6 * n bytes; returns
 * the length written.
 */
static size_t
escape(char *out, const char *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\t' || c == '\n' || c == '\r' || c == '\\') {
			*p++ = '\\';
			*p++ = c == '\t' ? 't' : c == '\n' ? 'n' :
			    c == '\r' ? 'r' : '\\';
		} else if (c < 0x20 || c == 0x7f) {
			*p++ = '\\';
			*p++ = 'x';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		} else if (c == 0xc2 && i + 1 < n &&
		    (unsigned char)v[i + 1] >= 0x80 &&
		    (unsigned char)v[i + 1] <= 0x9f) {
			c = (unsigned char)v[++i];
			memcpy(p, "\\u00", 4);
			p += 4;
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		} else
			*p++ = (char)c;
	}
	return (size_t)(p - out);
}

/* One column's value as a table or TSV cell: plain text, one line. */
static char *
cell(const struct whk_col *c, int tsv)
{
	char t[64], *s, *p;
	size_t n;

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
	n = c->len;
	if (!tsv && n > CELL_MAX)
		n = CELL_MAX;
	if ((s = malloc(6 * n + 4)) == NULL)
		return NULL;
	p = s + escape(s, c->s, n);
	if (n < c->len)
		*p++ = '~';	/* cut short */
	*p = '\0';
	return s;
}

static int
table_names(struct table *t, const struct whk_col *cols, int n)
{
	int i, k;

	if ((t->names = calloc((size_t)n, sizeof(*t->names))) == NULL)
		return -1;
	for (i = k = 0; i < n; i++)
		if (cols[i].name[0] != '_' &&
		    (t->names[k++] = strdup(cols[i].name)) == NULL)
			return -1;
	t->ncols = k;
	return 0;
}

static int
table_add(struct table *t, const struct whk_col *cols, int n, int tsv)
{
	char **v;
	int i, k;

	if (t->names == NULL && table_names(t, cols, n) == -1)
		return -1;
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
table_print(struct table *t, struct whk_buf *b, int headless)
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
	for (c = 0; c < t->ncols && !headless; c++)
		whk_buf_printf(b, "%s%-*s", c ? "  " : "",
		    c + 1 < t->ncols ? (int)w[c] : 0, t->names[c]);
	if (!headless)
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

/* The names, before any record: a table's or TSV's header. */
static int
head_row(const struct whk_col *cols, int n, void *arg)
{
	struct logger *l = arg;

	if (l->jq || l->format == F_JSON || l->t.names)
		return 0;
	return table_names(&l->t, cols, n);
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
	/*
	 * Not while following: its reader may be slow, and a write that
	 * waits for it here would hold the query's snapshot, and with it
	 * the WAL, which then grows with every commit of every writer.
	 */
	if (!l->following && l->out.len > 65536 && flush_out(l) == -1)
		return -1;
	return l->out.oom ? -1 : 0;
}

static void
finish_table(struct logger *l)
{
	size_t r;
	int c;

	if (l->following && l->t.rows == 0) {
		/* Nothing new: the header waits for the first record. */
		table_free(&l->t);
		return;
	}
	if (l->format == F_TABLE)
		table_print(&l->t, &l->out, l->headed);
	else if (l->format == F_TSV && l->t.ncols > 0) {
		for (c = 0; c < l->t.ncols && !l->headed; c++)
			whk_buf_printf(&l->out, "%s%s%s", c ? "\t" : "",
			    l->t.names[c], c + 1 < l->t.ncols ? "" : "\n");
		for (r = 0; r < l->t.rows; r++) {
			for (c = 0; c < l->t.ncols; c++)
				whk_buf_printf(&l->out, "%s%s", c ? "\t" : "",
				    l->t.cells[r * (size_t)l->t.ncols +
				    (size_t)c]);
			whk_buf_puts(&l->out, "\n");
		}
	}
	l->headed = l->following;
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

/*
 * One walk over the parts of an event or a webhook, said either as one
 * JSON record or, on a terminal, as fields a line each and lists as
 * tables.
 */
struct shower {
	struct logger		*l;
	int			 text;
	int			 n;	/* rows said in this part */
	const char *const	*keep;	/* only these columns, in this order */
	const char *const	*drop;	/* all but these */
};

/* The columns a part says: keep's, or all but drop's. */
static int
pick(const struct shower *s, const struct whk_col *cols, int n,
    struct whk_col *v)
{
	int i, k, m = 0;

	if (s->keep) {
		for (k = 0; s->keep[k]; k++)
			for (i = 0; i < n; i++)
				if (strcmp(cols[i].name, s->keep[k]) == 0)
					v[m++] = cols[i];
		return m;
	}
	for (i = 0; i < n; i++) {
		for (k = 0; s->drop && s->drop[k]; k++)
			if (strcmp(cols[i].name, s->drop[k]) == 0)
				break;
		if (s->drop == NULL || s->drop[k] == NULL)
			v[m++] = cols[i];
	}
	return m;
}

/* The record itself; in JSON left open, since more fields follow. */
static int
show_record(const struct whk_col *cols, int n, void *arg)
{
	struct shower *s = arg;
	struct whk_buf *b = &s->l->out;
	struct whk_col v[WHK_COLS_MAX];
	char *t;
	int i, m = pick(s, cols, n, v);

	s->n++;
	if (!s->text) {
		json_row(b, v, m);
		b->len--;	/* the closing brace comes last */
		return b->oom ? -1 : 1;
	}
	for (i = 0; i < m; i++) {
		if (v[i].name[0] == '_')
			continue;
		if ((t = cell(&v[i], 1)) == NULL)
			return -1;
		whk_buf_printf(b, "%-13s %s\n", v[i].name,
		    v[i].type == WHK_COL_NULL ? "-" : t);
		free(t);
	}
	return b->oom ? -1 : 1;
}

/* A row of a list: a JSON object, or a line of a table. */
static int
show_row(const struct whk_col *cols, int n, void *arg)
{
	struct shower *s = arg;
	struct whk_col v[WHK_COLS_MAX];
	int m = pick(s, cols, n, v);

	if (s->text)
		return table_add(&s->l->t, v, m, 0);
	if (s->n++ > 0)
		whk_buf_puts(&s->l->out, ",");
	json_row(&s->l->out, v, m);
	return s->l->out.oom ? -1 : 0;
}

/* An id of a list (column 1 of a listing). */
static int
show_id(const struct whk_col *cols, int n, void *arg)
{
	struct shower *s = arg;

	(void)n;
	if (s->text)
		whk_buf_printf(&s->l->out, " %.*s", (int)cols[1].len,
		    cols[1].s);
	else {
		if (s->n++ > 0)
			whk_buf_puts(&s->l->out, ",");
		whk_buf_json_strn(&s->l->out, cols[1].s, cols[1].len);
	}
	return s->l->out.oom ? -1 : 0;
}

/*
 * A list: its name (on a terminal, label), then its rows through fn,
 * then its end.
 */
static int
show_list(struct shower *s, const char *name, const char *label,
    struct whk_log_query *q, whk_row_fn fn, struct whk_err *err)
{
	struct whk_buf *b = &s->l->out;

	s->n = 0;
	if (s->text)
		whk_buf_printf(b, fn == show_id ? "%-13s" : "\n%s\n", label);
	else
		whk_buf_printf(b, ",\"%s\":[", name);
	if (whk_store_log(s->l->store, q, fn, s, err) == -1)
		return -1;
	if (!s->text)
		whk_buf_puts(b, "]");
	else if (fn == show_id)
		whk_buf_puts(b, "\n");
	else {
		table_print(&s->l->t, b, 0);
		table_free(&s->l->t);
	}
	return 0;
}

static int
show(struct logger *l, const char *id, struct whk_err *err)
{
	/* An event's webhooks, in brief. */
	static const char *const brief[] = { "webhook", "endpoint", "state",
	    "attempts", "last_status", NULL };
	/* In JSON a webhook's counts give way to the lists they count. */
	static const char *const counts[] = { "events", "attempts", NULL };
	/* On a terminal, attempts need not repeat what the block says. */
	static const char *const said[] = { "webhook", "endpoint", NULL };
	struct shower s = { l, l->format == F_TABLE, 0, NULL, NULL };
	struct whk_log_query q;
	struct whk_webhook w;
	struct whk_buf body = { 0 };
	int rc;

	memset(&q, 0, sizeof(q));
	q.kind = WHK_LOG_EVENTS;
	q.event = id;
	q.limit = 1;
	if (whk_store_log(l->store, &q, show_record, &s, err) == -1)
		return -1;
	if (s.n > 0) {
		memset(&q, 0, sizeof(q));
		q.kind = WHK_LOG_WEBHOOKS;
		q.event = id;
		q.oldest_first = 1;
		s.keep = brief;
		if (show_list(&s, "webhooks", "webhooks", &q, show_row, err) == -1)
			return -1;
		if (!s.text)
			whk_buf_puts(&l->out, "}\n");
		return l->out.oom ? whk_error(err, WHK_EXIT_SYSTEM,
		    "out of memory") : 0;
	}
	if ((rc = whk_store_webhook_find(l->store, id, &w, err)) == -1)
		return -1;
	if (rc == 1)
		return whk_error(err, WHK_EXIT_PARTIAL, "no event or webhook "
		    "'%s'", id);
	memset(&q, 0, sizeof(q));
	q.kind = WHK_LOG_WEBHOOKS;
	q.webhook = id;
	s.drop = s.text ? NULL : counts;
	if (whk_store_log(l->store, &q, show_record, &s, err) == -1)
		return -1;
	memset(&q, 0, sizeof(q));
	q.kind = WHK_LOG_EVENTS;
	q.webhook = id;
	q.oldest_first = 1;
	if (show_list(&s, "events", "event ids", &q, show_id, err) == -1 ||
	    whk_store_webhook_body(l->store, w.seq, &body, err) == -1)
		return -1;
	if (s.text) {
		char *t;

		if ((t = malloc(6 * body.len + 1)) == NULL) {
			whk_buf_free(&body);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
		whk_buf_printf(&l->out, "%-13s %.*s\n", "body",
		    (int)escape(t, body.data ? body.data : "", body.len), t);
		free(t);
	}
	else if (body.len > 0) {
		whk_buf_puts(&l->out, ",\"body\":");
		whk_buf_add(&l->out, body.data, body.len);
	} else
		whk_buf_puts(&l->out, ",\"body\":null");
	whk_buf_free(&body);
	memset(&q, 0, sizeof(q));
	q.kind = WHK_LOG_ATTEMPTS;
	q.webhook = id;
	q.oldest_first = 1;
	q.with_response = 1;
	s.drop = s.text ? said : NULL;
	if (show_list(&s, "attempts", "attempts", &q, show_row, err) == -1)
		return -1;
	if (!s.text)
		whk_buf_puts(&l->out, "}\n");
	return l->out.oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") :
	    0;
}

/*
 * Each id in turn, from one snapshot.  An id that names nothing is said
 * and skipped, as a bad line is elsewhere; the rest are shown.
 */
static int
show_all(struct logger *l, int argc, char **argv, int *status,
    struct whk_err *err)
{
	int i, shown = 0;

	for (i = 0; i < argc; i++) {
		if (shown && l->format == F_TABLE)
			whk_buf_puts(&l->out, "\n");
		if (show(l, argv[i], err) == -1) {
			if (err->status != WHK_EXIT_PARTIAL)
				return -1;
			warnx_("%s", err->msg);
			*status = WHK_EXIT_PARTIAL;
			whk_buf_reset(&l->out);	/* no block: no space */
		} else
			shown = 1;
		if (flush_out(l) == -1)
			return whk_error(err, WHK_EXIT_SYSTEM, "write error: %s",
			    strerror(errno));
	}
	return 0;
}

/* --- metrics and stats: sums per endpoint -------------------------------- */

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

struct epsum {
	int64_t		 id;
	char		 name[256];
	int		 enabled;
	int64_t		 delivered, failed;		/* attempts */
	int64_t		 first[WHK_BUCKETS + 2];	/* buckets, n, sum */
	int64_t		 delivery[WHK_BUCKETS + 2];
	int64_t		 pending, oldest;
	int64_t		 states[4];	/* pending failed delivered dead */
	int64_t		*lat;				/* stats: every one */
	size_t		 nlat, caplat;
};

struct sums {
	struct epsum	*eps;
	size_t		 n;
	size_t		*by_id;		/* id -> index + 1 */
	int64_t		 max_id;
	int		 keep;		/* keep every latency (stats) */
	int		 oom;
};

static int
sums_endpoint(const struct whk_col *c, int n, void *arg)
{
	struct sums *x = arg;
	struct epsum *v;

	(void)n;
	if ((v = reallocarray(x->eps, x->n + 1, sizeof(*v))) == NULL)
		return -1;
	x->eps = v;
	v = &x->eps[x->n++];
	memset(v, 0, sizeof(*v));
	v->id = c[0].i;
	snprintf(v->name, sizeof(v->name), "%.*s", (int)c[1].len, c[1].s);
	v->enabled = (int)c[2].i;
	if (v->id > x->max_id)
		x->max_id = v->id;
	return 0;
}

static struct epsum *
sums_of(struct sums *x, int64_t id)
{
	size_t k;

	if (id < 0 || id > x->max_id || (k = x->by_id[id]) == 0)
		return NULL;
	return &x->eps[k - 1];
}

static void
bucket_add(int64_t *h, int64_t ms)
{
	const int64_t *le = whk_buckets_ms();
	int i;

	for (i = 0; i < WHK_BUCKETS; i++)
		if (ms <= le[i])
			h[i]++;
	h[WHK_BUCKETS]++;
	h[WHK_BUCKETS + 1] += ms;
}

static void
sums_attempt(int64_t id, int delivered, int64_t lat, void *arg)
{
	struct sums *x = arg;
	struct epsum *e = sums_of(x, id);
	int64_t *v;

	if (e == NULL)
		return;		/* a removed endpoint's */
	if (delivered)
		e->delivered++;
	else
		e->failed++;
	if (lat < 0)
		return;
	bucket_add(e->first, lat);
	if (!x->keep)
		return;
	if (e->nlat == e->caplat) {
		size_t cap = e->caplat ? e->caplat * 2 : 256;

		if ((v = reallocarray(e->lat, cap, sizeof(*v))) == NULL) {
			x->oom = 1;
			return;
		}
		e->lat = v;
		e->caplat = cap;
	}
	e->lat[e->nlat++] = lat;
}

static void
sums_webhook(int64_t id, const char *state, int64_t lat, int64_t first,
    void *arg)
{
	static const char *states[] = { "pending", "failed", "delivered",
	    "dead" };
	struct epsum *e = sums_of(arg, id);
	int k;

	if (e == NULL)
		return;
	for (k = 0; k < 4; k++)
		if (strcmp(state, states[k]) == 0)
			break;
	if (k < 4)
		e->states[k]++;
	if (lat >= 0)
		bucket_add(e->delivery, lat);
	if (k < 2) {	/* pending or failed: still to deliver */
		e->pending++;
		if (e->oldest == 0 || first < e->oldest)
			e->oldest = first;
	}
}

static void
sums_free(struct sums *x)
{
	size_t k;

	for (k = 0; k < x->n; k++)
		free(x->eps[k].lat);
	free(x->eps);
	free(x->by_id);
}

/*
 * The endpoints, then one pass over the attempts, then the webhooks by
 * endpoint and state: all in one read snapshot.
 */
static int
sums_load(struct logger *l, struct sums *x, const char *endpoint,
    int64_t since, int webhooks, struct whk_err *err)
{
	size_t k;
	int rc = -1;

	if (whk_store_begin_read(l->store, err) == -1)
		return -1;
	if (whk_store_agg(l->store, WHK_AGG_ENDPOINTS, endpoint, 0, 0,
	    sums_endpoint, x, err) == -1)
		goto out;
	if ((x->by_id = calloc((size_t)x->max_id + 1,
	    sizeof(*x->by_id))) == NULL) {
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		goto out;
	}
	for (k = 0; k < x->n; k++)
		x->by_id[x->eps[k].id] = k + 1;
	if (whk_store_attempts_scan(l->store, since, endpoint, sums_attempt,
	    x, err) == -1 ||
	    (webhooks && whk_store_webhooks_scan(l->store, since, endpoint,
	    sums_webhook, x, err) == -1))
		goto out;
	if (x->oom) {
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	whk_store_rollback(l->store);
	return rc;
}

static void
hist_out(struct whk_buf *b, const char *name, const char *ep,
    const int64_t *h)
{
	const int64_t *ms = whk_buckets_ms();
	int i;

	for (i = 0; i <= WHK_BUCKETS; i++) {
		whk_buf_printf(b, "%s_bucket{endpoint=\"", name);
		label(b, ep, strlen(ep));
		if (i < WHK_BUCKETS)
			whk_buf_printf(b, "\",le=\"%g\"} %lld\n",
			    (double)ms[i] / 1000.0, (long long)h[i]);
		else
			whk_buf_printf(b, "\",le=\"+Inf\"} %lld\n",
			    (long long)h[i]);
	}
	whk_buf_printf(b, "%s_sum{endpoint=\"", name);
	label(b, ep, strlen(ep));
	whk_buf_printf(b, "\"} %.3f\n", (double)h[WHK_BUCKETS + 1] / 1000.0);
	whk_buf_printf(b, "%s_count{endpoint=\"", name);
	label(b, ep, strlen(ep));
	whk_buf_printf(b, "\"} %lld\n", (long long)h[WHK_BUCKETS]);
}

/* One family: its help, its type, a series per endpoint. */
static void
family(struct whk_buf *b, const char *name, const char *type,
    const char *helptext)
{
	whk_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, helptext, name,
	    type);
}

static void
series(struct whk_buf *b, const char *name, const char *ep, const char *fmt,
    double v)
{
	whk_buf_printf(b, "%s{endpoint=\"", name);
	label(b, ep, strlen(ep));
	whk_buf_puts(b, "\"} ");
	whk_buf_printf(b, fmt, v);
	whk_buf_puts(b, "\n");
}

static int
metrics(struct logger *l, struct whk_err *err)
{
	struct whk_buf *b = &l->out;
	struct sums x;
	struct epsum *e;
	int64_t now = whk_now_ms();
	size_t k;

	memset(&x, 0, sizeof(x));
	if (sums_load(l, &x, NULL, 0, 1, err) == -1) {
		sums_free(&x);
		return -1;
	}
	family(b, "whk_attempts_total", "counter",
	    "Attempts recorded, by endpoint and outcome.");
	for (k = 0; k < x.n; k++) {
		e = &x.eps[k];
		whk_buf_puts(b, "whk_attempts_total{endpoint=\"");
		label(b, e->name, strlen(e->name));
		whk_buf_printf(b, "\",outcome=\"delivered\"} %lld\n",
		    (long long)e->delivered);
		whk_buf_puts(b, "whk_attempts_total{endpoint=\"");
		label(b, e->name, strlen(e->name));
		whk_buf_printf(b, "\",outcome=\"failed\"} %lld\n",
		    (long long)e->failed);
	}
	family(b, "whk_webhooks", "gauge", "Webhooks, by endpoint and state.");
	for (k = 0; k < x.n; k++) {
		static const char *states[] = { "pending", "failed",
		    "delivered", "dead" };
		int i;

		for (i = 0; i < 4; i++) {
			whk_buf_puts(b, "whk_webhooks{endpoint=\"");
			label(b, x.eps[k].name, strlen(x.eps[k].name));
			whk_buf_printf(b, "\",state=\"%s\"} %lld\n", states[i],
			    (long long)x.eps[k].states[i]);
		}
	}
	family(b, "whk_pending_webhooks", "gauge",
	    "Webhooks not yet delivered nor dead.");
	for (k = 0; k < x.n; k++)
		series(b, "whk_pending_webhooks", x.eps[k].name, "%.0f",
		    (double)x.eps[k].pending);
	family(b, "whk_oldest_pending_age_seconds", "gauge",
	    "Age of the oldest event waiting in a pending or failed webhook.");
	for (k = 0; k < x.n; k++) {
		e = &x.eps[k];
		series(b, "whk_oldest_pending_age_seconds", e->name, "%.3f",
		    e->oldest > 0 && now > e->oldest ?
		    (double)(now - e->oldest) / 1000.0 : 0.0);
	}
	family(b, "whk_first_attempt_latency_seconds", "histogram",
	    "From the event stored to its webhook's first attempt ended.");
	for (k = 0; k < x.n; k++)
		hist_out(b, "whk_first_attempt_latency_seconds",
		    x.eps[k].name, x.eps[k].first);
	family(b, "whk_delivery_latency_seconds", "histogram",
	    "From the event stored to its webhook delivered.");
	for (k = 0; k < x.n; k++)
		hist_out(b, "whk_delivery_latency_seconds", x.eps[k].name,
		    x.eps[k].delivery);
	family(b, "whk_endpoint_enabled", "gauge",
	    "1 while the endpoint is enabled.");
	for (k = 0; k < x.n; k++)
		series(b, "whk_endpoint_enabled", x.eps[k].name, "%.0f",
		    (double)x.eps[k].enabled);
	sums_free(&x);
	return b->oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") : 0;
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

static int
cmp_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void
stats_one(struct logger *l, struct epsum *e)
{
	const int64_t *ms = whk_buckets_ms();
	struct whk_buf *b = &l->out;
	int64_t prev = 0, most = 1, v, p50 = -1, p95 = -1;
	int64_t attempts = e->delivered + e->failed;
	int i, bar;

	if (e->nlat > 0) {
		qsort(e->lat, e->nlat, sizeof(*e->lat), cmp_int64);
		p50 = e->lat[(e->nlat - 1) / 2];
		p95 = e->lat[(e->nlat * 95 - 1) / 100];
	}
	if (l->format != F_TABLE) {
		whk_buf_puts(b, "{\"endpoint\":");
		whk_buf_json_str(b, e->name);
		whk_buf_printf(b, ",\"attempts\":%lld,\"delivered\":%lld,"
		    "\"failed\":%lld,\"success\":", (long long)attempts,
		    (long long)e->delivered, (long long)e->failed);
		if (attempts > 0)
			whk_buf_printf(b, "%.2f", 100.0 * (double)e->delivered /
			    (double)attempts);
		else
			whk_buf_puts(b, "null");
		whk_buf_puts(b, ",\"p50_ms\":");
		if (p50 >= 0)
			whk_buf_int(b, p50);
		else
			whk_buf_puts(b, "null");
		whk_buf_puts(b, ",\"p95_ms\":");
		if (p95 >= 0)
			whk_buf_int(b, p95);
		else
			whk_buf_puts(b, "null");
		whk_buf_puts(b, ",\"histogram\":[");
		for (i = 0; i < WHK_BUCKETS; i++) {
			whk_buf_printf(b, "%s{\"le_ms\":%lld,\"count\":%lld}",
			    i ? "," : "", (long long)ms[i],
			    (long long)(e->first[i] - prev));
			prev = e->first[i];
		}
		whk_buf_printf(b, ",{\"le_ms\":null,\"count\":%lld}]}\n",
		    (long long)(e->first[WHK_BUCKETS] - prev));
		return;
	}
	whk_buf_printf(b, "%s: %lld attempts, ", e->name, (long long)attempts);
	if (attempts > 0)
		whk_buf_printf(b, "%.1f%% delivered", 100.0 *
		    (double)e->delivered / (double)attempts);
	else
		whk_buf_puts(b, "none delivered");
	if (p50 >= 0)
		whk_buf_printf(b, "; first attempts p50 %lld ms, p95 %lld ms",
		    (long long)p50, (long long)p95);
	whk_buf_puts(b, "\n");
	for (i = 0, prev = 0; i <= WHK_BUCKETS; i++) {
		v = e->first[i] - prev;
		prev = e->first[i];
		if (v > most)
			most = v;
	}
	for (i = 0, prev = 0; i <= WHK_BUCKETS; i++) {
		char lab[32];

		v = e->first[i] - prev;
		prev = e->first[i];
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

/* Per endpoint: success, and a histogram of first-attempt latency. */
static int
stats(struct logger *l, const char *endpoint, int64_t since,
    struct whk_err *err)
{
	struct sums x;
	size_t k;

	memset(&x, 0, sizeof(x));
	x.keep = 1;
	if (sums_load(l, &x, endpoint, since, 0, err) == -1) {
		sums_free(&x);
		return -1;
	}
	for (k = 0; k < x.n; k++)
		stats_one(l, &x.eps[k]);
	sums_free(&x);
	return l->out.oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") :
	    0;
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
	int64_t n;

	/* From now on: the newest attempt so far marks the start. */
	last.limit = 1;
	last.oldest_first = 0;
	last.head = NULL;
	l->last_seq = 0;
	if (whk_store_log(l->store, &last, seq_only, l, err) == -1)
		return -1;
	q->oldest_first = 1;
	/* A bounded chunk a query, written once the query is over. */
	q->limit = FOLLOW_ROWS;
	l->following = 1;
	while (!stop) {
		/* 0: there was none at the start, so every one is new. */
		q->after = l->last_seq;
		n = l->count;
		if (whk_store_log(l->store, q, emit_row, l, err) == -1)
			return -1;
		if (l->format != F_JSON && !l->jq)
			finish_table(l);
		if (flush_out(l) == -1 || fflush(stdout) == EOF)
			return whk_error(err, WHK_EXIT_SYSTEM, "write error: "
			    "%s", strerror(errno));
		/* A full chunk: more may be waiting already. */
		if (!stop && l->count - n < FOLLOW_ROWS)
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
	whk_buf_puts(&l->out, "}\n");
	return 0;
}

static const char *const commands[] = {
	"events", "webhooks", "attempts", "endpoints", "show", "follow",
	"metrics", "slo", "stats", "prune", NULL
};

/* Each option's bit in "given": its O_ value less O_FORMAT. */
#define G(o)		(1u << ((o) - O_FORMAT))
#define G_LIMIT		(1u << 20)
#define G_FILTERS	(G(O_ENDPOINT) | G(O_TENANT) | G(O_TYPE) | \
			    G(O_STATUS) | G(O_SINCE) | G(O_UNTIL) | \
			    G(O_EVENT) | G(O_WEBHOOK) | G(O_KEY))

/* What each command takes; anything else is a usage error, named. */
static void
check_options(const char *cmd, unsigned given, const char *format)
{
	static const struct {
		const char	*cmd;
		unsigned	 takes;
		const char	*formats;
	} t[] = {
		{ "events", G(O_FORMAT) | G(O_JQ) | G_FILTERS | G_LIMIT,
		    " json table tsv " },
		{ "webhooks", G(O_FORMAT) | G(O_JQ) | G_FILTERS | G_LIMIT,
		    " json table tsv " },
		{ "attempts", G(O_FORMAT) | G(O_JQ) | G_FILTERS | G_LIMIT,
		    " json table tsv " },
		{ "endpoints", G(O_FORMAT) | G(O_JQ) | G_FILTERS | G_LIMIT,
		    " json table tsv " },
		{ "show", G(O_FORMAT), " json table " },
		{ "follow", G(O_FORMAT) | G(O_JQ) | G(O_ENDPOINT),
		    " json table tsv " },
		{ "metrics", 0, "" },
		{ "slo", G(O_FORMAT) | G(O_TARGET) | G(O_WITHIN) |
		    G(O_SINCE) | G(O_ENDPOINT), " json table " },
		{ "stats", G(O_FORMAT) | G(O_SINCE) | G(O_ENDPOINT),
		    " json table " },
		{ "prune", G(O_BEFORE), "" },
	};
	const struct option *o;
	char pad[32];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(t[i].cmd, cmd) == 0)
			break;
	if (i == sizeof(t) / sizeof(t[0]))
		return;
	if (given & G_LIMIT & ~t[i].takes)
		usage_error("--limit does not go with %s", cmd);
	for (o = longopts; o->name; o++)
		if (o->val >= O_FORMAT && o->val <= O_BEFORE &&
		    (given & G(o->val) & ~t[i].takes))
			usage_error("--%s does not go with %s", o->name, cmd);
	snprintf(pad, sizeof(pad), " %s ", format ? format : "");
	if (format && (strlen(format) > 10 ||
	    strstr(t[i].formats, pad) == NULL))
		usage_error("--format: %s takes%s", cmd, *t[i].formats ?
		    t[i].formats : " no format ");
}

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
		usage_error("--%s does not apply to endpoints", q->since ?
		    "since" : q->until ? "until" : q->event ? "event" : q->key ?
		    "key" : "webhook");
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
	unsigned given = 0;
	double target = 99.9;
	int64_t within = 5 * 60 * 1000, before = 0;

	memset(&l, 0, sizeof(l));
	memset(&q, 0, sizeof(q));
	while ((ch = getopt_long(argc, argv, "s:l:nfhV", longopts,
	    NULL)) != -1) {
		if (ch >= O_FORMAT && ch <= O_BEFORE)
			given |= 1u << (ch - O_FORMAT);
		else if (ch == 'l')
			given |= G_LIMIT;
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
	if (strcmp(cmd, "show") == 0 ? argc < 1 : argc != 0)
		usage_error(strcmp(cmd, "show") == 0 ? "show takes an id" :
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
	check_options(cmd, given, format);
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
	q.head = head_row;
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
			rc = show_all(&l, argc, argv, &status, &err);
			whk_store_rollback(l.store);
		}
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
		if (l.format == F_TSV)
			l.format = F_JSON;
		rc = stats(&l, q.endpoint, since_opt ? q.since : whk_now_ms() -
		    DAY_MS, &err);
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
