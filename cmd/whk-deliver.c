/*
 * whk-deliver - send webhooks: concurrent, signed HTTP POSTs, each
 * attempt recorded.
 *
 * Reads the records whk-batch and whk-retry print (lines with
 * "webhook"), or with --pending every webhook never attempted (the
 * first-attempt lane).  A webhook is claimed in the store (a lease, by a
 * conditional update) before it is sent, so two deliverers never send
 * one at the same time; requests then go out together on one libcurl
 * multi handle, at most --concurrency in flight, and at most each
 * endpoint's own concurrency and rate towards it, so a slow receiver
 * holds only its own slots.  Each attempt is recorded with the
 * webhook's new state in one transaction (many per transaction under
 * load), and printed after the commit.  The transactions run on a
 * thread of their own, the writer, so requests keep going out while a
 * commit reaches the disk; the store is the writer's while it works and
 * the main thread's otherwise, never both at once.
 *
 * It does not decide when to retry a failure, nor when to give up: a
 * failed webhook is left unscheduled for whk-retry, which owns the
 * schedule, and retries come back through it, in a process of their own,
 * so failing partners never slow the first attempts of everyone else.
 * It never follows redirects.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define DEFAULT_CONCURRENCY 64
#define MAX_CONCURRENCY	10000
#define FRESH_CHUNK	256	/* webhooks read at once per endpoint */
#define MAX_QUEUED	100000	/* stdin records held before input waits */
#define MAX_RECORD	(64 * 1024)
#define KEEP_BUF	(64 * 1024)	/* a spare job's buffer kept up to this */
#define RELOAD_MS	1000	/* how often endpoints are looked at again */
#define PROGRESS_MS	250
#define LEASE_MARGIN_MS	30000	/* a lease outlives its request by this */
#define CONNECT_MAX_MS	10000
#define RETRY_AFTER_MAX	(24 * 3600)	/* seconds of Retry-After heeded */
/*
 * An endpoint's claims in reserve, in turns of the writer: a claim made
 * now can start only once its commit lands, a turn from now, and must
 * then last until the next commit lands, a turn later; so two turns of
 * what it answered in the last, and one more for turns that run long.
 * With one turn, the slots of a fast endpoint stood empty for a third
 * of the time, waiting for claims.
 */
#define RESERVE_TURNS	3

static const char usage[] =
"usage: whk-deliver [-s store] [--pending] [--endpoint name] [--limit n]\n"
"                   [--concurrency n] [-q] [-v]\n";

static const char help[] =
"Send webhooks as signed HTTP POSTs, concurrently; print one record per\n"
"attempt.\n"
"\n"
"  -s, --store PATH        the store (default $WHK_STORE, else\n"
"                          $XDG_DATA_HOME/whk/whk.db)\n"
"  -p, --pending           take every webhook never attempted (after the\n"
"                          records on stdin when it is a pipe or a file)\n"
"  -e, --endpoint NAME     only webhooks of this endpoint\n"
"  -l, --limit N           at most N attempts\n"
"  -c, --concurrency N     requests in flight in all (default 64); each\n"
"                          endpoint's own --concurrency caps its share\n"
"  -q, --quiet             no progress line on a terminal\n"
"  -v, --verbose           a summary on stderr at the end\n"
"  -h, --help              show this help\n"
"  -V, --version           show the version\n"
"\n"
"Exit: 0 all delivered, 1 some attempts failed or records were rejected,\n"
"2 usage, 3 store unavailable, 4 system error.  See whk-deliver(1).\n";

static const struct option longopts[] = {
	{ "store",	 required_argument, NULL, 's' },
	{ "pending",	 no_argument,	    NULL, 'p' },
	{ "endpoint",	 required_argument, NULL, 'e' },
	{ "limit",	 required_argument, NULL, 'l' },
	{ "concurrency", required_argument, NULL, 'c' },
	{ "quiet",	 no_argument,	    NULL, 'q' },
	{ "verbose",	 no_argument,	    NULL, 'v' },
	{ "help",	 no_argument,	    NULL, 'h' },
	{ "version",	 no_argument,	    NULL, 'V' },
	{ NULL,		 0,		    NULL, 0 }
};

struct dep;

/*
 * What a request needs while it runs: its body, read at the claim; the
 * rest, made as it starts.
 */
struct flight {
	struct whk_buf		 body;
	struct whk_buf		 sig;
	struct whk_buf		 hdrs;		/* the endpoint's, copied */
	char			 h_id[WHK_ID_LEN + 16];
	char			 h_ts[48];
	const char		**headers;
	size_t			 headers_cap;
	struct whk_http_req	 req;
};

/* One webhook to attempt once; small while it waits in a queue. */
struct job {
	struct job		*next;
	struct dep		*ep;
	struct whk_webhook	 w;
	const char		*kind;
	int64_t			 n;		/* the attempt's number */
	int64_t			 lease_for;	/* ms, asked for the claim */
	int64_t			 lease;		/* until: the claim's */
	int64_t			 started_at;	/* wall clock, ms */
	struct flight		*f;
};

/* An endpoint as the deliverer sees it. */
struct dep {
	struct whk_endpoint	 e;
	char			*hbuf;		/* its headers, split */
	size_t			 hlen;
	const char		**hdr;
	size_t			 nhdr;
	struct whk_key		*key, *old_key;	/* NULL: an invalid secret */
	struct job		*head, *tail;	/* waiting for a claim */
	size_t			 queued;
	struct job		*rhead, *rtail;	/* claimed, waiting for a slot */
	size_t			 ready;
	size_t			 inflight;
	size_t			 ahead;		/* claims to hold in reserve */
	size_t			 finished;	/* in this turn */
	double			 tokens;	/* --rate's bucket */
	int64_t			 tokens_at;
	int			 gone;		/* disabled or removed */
	int			 unsignable;	/* its secret is damaged */
	int			 disabling;	/* the writer's: 410 recorded */
	int			 seen;
	int64_t			 after;		/* --pending: read so far */
	int			 drained;
};

/* One transaction's work, done by the writer. */
struct txn {
	struct job		*done;		/* finished: record */
	struct job		*release;	/* claims to give back */
	struct job		*claims;	/* to claim; then the claimed */
	struct job		*rejects;	/* not ours after all */
	struct job		*spent;		/* recorded or given back: reuse */
	int64_t			 delivered, failed, skipped;
	int			 rc;
	struct whk_err		 err;
};

struct writer {
	pthread_t		 thread;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	int			 running;	/* the thread exists */
	int			 busy;		/* t is the writer's */
	int			 finished;	/* ... and done */
	int			 quit;
	struct txn		 t;
};

struct deliver {
	struct whk_store	*store;
	struct whk_http		*http;
	struct dep		**eps;
	size_t			 neps;
	size_t			 rr;		/* where claiming starts */
	int64_t			 stamp;
	int64_t			 last_reload;
	const char		*only;		/* --endpoint */
	int			 pending;
	int64_t			 limit, claimed_total;
	size_t			 concurrency;
	size_t			 queued;
	size_t			 ready;		/* claimed, not yet started */
	int			 closing;	/* give claims back */
	char			 owner[128];
	struct job		*done, **done_tail;	/* to record */
	struct job		*stale;		/* leases too short: give back */
	struct writer		 wr;
	struct whk_buf		 out;		/* the writer's: lines awaiting commit */
	struct job		*spare;		/* jobs to reuse */
	size_t			 nspare, spare_max;
	struct whk_webhook	*fresh;		/* --pending's reads */
	int			 input_open;
	int			 progress;
	int64_t			 last_progress, started;
	int64_t			 last_scan;	/* stale_ready's */
	/* What happened. */
	int64_t			 sent, delivered, failed, rejected, skipped;
	int64_t			 lost;
	int64_t			 unsignable;	/* endpoints left for their secret */
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop++;
}

static void
warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fputs("whk-deliver: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
oom(struct whk_err *err)
{
	return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
}

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	if (j->f) {
		whk_buf_free(&j->f->body);
		whk_buf_free(&j->f->sig);
		whk_buf_free(&j->f->hdrs);
		whk_buf_free(&j->f->req.excerpt);
		free(j->f->headers);
		free(j->f);
	}
	free(j);
}

/*
 * Jobs are reused, each with its buffers: once the run is warm, a
 * webhook costs no allocation, and neither thread frees what the other
 * allocated (which made every allocation of the main thread take the
 * slow, locked path).  The spare jobs are the main thread's.
 */
static struct job *
job_new(struct deliver *d)
{
	struct job *j = d->spare;
	struct flight *f;

	if (j == NULL)
		return calloc(1, sizeof(*j));
	d->spare = j->next;
	d->nspare--;
	f = j->f;
	memset(j, 0, sizeof(*j));
	j->f = f;
	return j;
}

/* Keep a buffer for the next job unless it grew large or failed. */
static void
buf_keep(struct whk_buf *b)
{
	if (b->oom || b->cap > KEEP_BUF)
		whk_buf_free(b);
}

static void
job_put(struct deliver *d, struct job *j)
{
	if (j == NULL)
		return;
	if (d->nspare >= d->spare_max) {
		job_free(j);
		return;
	}
	if (j->f) {
		buf_keep(&j->f->body);
		buf_keep(&j->f->sig);
		buf_keep(&j->f->hdrs);
		buf_keep(&j->f->req.excerpt);
	}
	j->next = d->spare;
	d->spare = j;
	d->nspare++;
}

static void
dep_free(struct dep *ep)
{
	struct job *j;

	while ((j = ep->head) != NULL) {
		ep->head = j->next;
		job_free(j);
	}
	while ((j = ep->rhead) != NULL) {
		ep->rhead = j->next;
		job_free(j);
	}
	whk_endpoint_clear(&ep->e);
	whk_key_free(ep->key);
	whk_key_free(ep->old_key);
	free(ep->hbuf);
	free(ep->hdr);
	free(ep);
}

/* "K: V" lines, as whk-endpoint keeps them, into curl's list. */
static int
dep_headers(struct dep *ep)
{
	char *p, *nl;
	size_t n = 0;

	free(ep->hbuf);
	free(ep->hdr);
	ep->hbuf = NULL;
	ep->hdr = NULL;
	ep->nhdr = 0;
	if (ep->e.headers == NULL || *ep->e.headers == '\0')
		return 0;
	ep->hlen = strlen(ep->e.headers) + 1;
	if ((ep->hbuf = strdup(ep->e.headers)) == NULL)
		return -1;
	for (p = ep->hbuf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		n++;
	if ((ep->hdr = calloc(n, sizeof(*ep->hdr))) == NULL)
		return -1;
	for (p = ep->hbuf; p && *p; p = nl) {
		if ((nl = strchr(p, '\n')) != NULL)
			*nl++ = '\0';
		if (*p)
			ep->hdr[ep->nhdr++] = p;
	}
	return 0;
}

static struct dep *
dep_by_id(struct deliver *d, int64_t id)
{
	size_t i;

	for (i = 0; i < d->neps; i++)
		if (d->eps[i]->e.id == id)
			return d->eps[i];
	return NULL;
}

/*
 * A secret's key; an invalid secret leaves none, and is said when a
 * webhook is to be signed with it.
 */
static int
dep_key(const char *secret, struct whk_key **key)
{
	struct whk_err err;

	if ((*key = whk_key_new(secret, &err)) == NULL &&
	    err.status != WHK_EXIT_PARTIAL)
		return -1;
	return 0;
}

static int
collect(const struct whk_endpoint *e, void *arg)
{
	struct deliver *d = arg;
	struct dep *ep, **v;

	if ((ep = dep_by_id(d, e->id)) == NULL) {
		if ((v = reallocarray(d->eps, d->neps + 1, sizeof(*v))) ==
		    NULL || (ep = calloc(1, sizeof(*ep))) == NULL)
			return -1;
		d->eps = v;
		d->eps[d->neps++] = ep;
		ep->tokens = -1;
	}
	whk_endpoint_clear(&ep->e);
	ep->e = *e;
	/* The row's strings are the store's: keep copies. */
	ep->e.name = e->name ? strdup(e->name) : NULL;
	ep->e.url = e->url ? strdup(e->url) : NULL;
	ep->e.secret = e->secret ? strdup(e->secret) : NULL;
	ep->e.old_secret = e->old_secret ? strdup(e->old_secret) : NULL;
	ep->e.headers = e->headers ? strdup(e->headers) : NULL;
	ep->e.tenant = ep->e.types = ep->e.filter = ep->e.group_by = NULL;
	ep->e.template = ep->e.disabled_reason = ep->e.schedule = NULL;
	ep->seen = 1;
	ep->gone = e->disabled_at != 0;
	if (ep->e.name == NULL || ep->e.url == NULL || ep->e.secret == NULL ||
	    (e->old_secret && ep->e.old_secret == NULL) ||
	    (e->headers && ep->e.headers == NULL) || dep_headers(ep) == -1)
		return -1;
	whk_key_free(ep->key);
	whk_key_free(ep->old_key);
	ep->key = ep->old_key = NULL;
	if (dep_key(ep->e.secret, &ep->key) == -1 || (ep->e.old_secret &&
	    dep_key(ep->e.old_secret, &ep->old_key) == -1))
		return -1;
	/*
	 * A secret the store holds damaged signs nothing: the endpoint's
	 * webhooks are left as they are, and everyone else's go on.
	 */
	if (ep->key == NULL || (ep->e.old_secret && ep->old_key == NULL &&
	    ep->e.old_secret_until > whk_now_ms())) {
		if (!ep->unsignable && !ep->gone)
			warnx_("endpoint '%s': invalid secret; its webhooks are "
			    "left pending", ep->e.name);
		if (!ep->gone)
			d->unsignable++;
		ep->unsignable = ep->gone = 1;
	} else
		ep->unsignable = 0;
	return 0;
}

/* Endpoints are kept by id: queued and running work points at them. */
static int
endpoints_load(struct deliver *d, struct whk_err *err)
{
	size_t i;
	int rc;

	if (whk_store_endpoints_stamp(d->store, &d->stamp, err) == -1)
		return -1;
	d->last_reload = whk_mono_ms();
	for (i = 0; i < d->neps; i++)
		d->eps[i]->seen = 0;
	if ((rc = whk_store_endpoint_each(d->store, collect, d, err)) != 0)
		return rc == -1 && err->msg[0] ? -1 : oom(err);
	for (i = 0; i < d->neps; i++)
		if (!d->eps[i]->seen)
			d->eps[i]->gone = 1;	/* removed */
	if (d->only) {
		for (i = 0; i < d->neps; i++)
			if (strcmp(d->eps[i]->e.name, d->only) == 0)
				break;
		if (i == d->neps)
			return whk_error(err, WHK_EXIT_USAGE,
			    "no endpoint '%s'", d->only);
	}
	return 0;
}

static int
endpoints_check(struct deliver *d, struct whk_err *err)
{
	int64_t stamp;

	if (whk_mono_ms() - d->last_reload < RELOAD_MS)
		return 0;
	d->last_reload = whk_mono_ms();
	if (whk_store_endpoints_stamp(d->store, &stamp, err) == -1)
		return -1;
	return stamp == d->stamp ? 0 : endpoints_load(d, err);
}

static int
wanted(const struct deliver *d, const struct dep *ep)
{
	return d->only == NULL || strcmp(ep->e.name, d->only) == 0;
}

static void
enqueue(struct deliver *d, struct dep *ep, struct job *j)
{
	j->ep = ep;
	j->next = NULL;
	if (ep->tail)
		ep->tail->next = j;
	else
		ep->head = j;
	ep->tail = j;
	ep->queued++;
	d->queued++;
}

static struct job *
dequeue(struct deliver *d, struct dep *ep)
{
	struct job *j = ep->head;

	if (j == NULL)
		return NULL;
	if ((ep->head = j->next) == NULL)
		ep->tail = NULL;
	ep->queued--;
	d->queued--;
	j->next = NULL;
	return j;
}

static void
reject(struct deliver *d, int64_t lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reject(struct deliver *d, int64_t lineno, const char *fmt, ...)
{
	va_list ap;

	d->rejected++;
	fprintf(stderr, "whk-deliver: line %lld: ", (long long)lineno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* One record from stdin: find its webhook and queue it to its endpoint. */
static int
one_record(struct deliver *d, const char *line, size_t len, int64_t lineno,
    struct whk_err *err)
{
	struct whk_err why;
	struct job *j;
	struct dep *ep;
	char id[256];
	int rc;

	if ((rc = whk_record_field(line, len, "webhook", id, sizeof(id),
	    &why)) == -1) {
		if (why.status != WHK_EXIT_PARTIAL) {
			*err = why;
			return -1;
		}
		reject(d, lineno, "%s", why.msg);
		return 0;
	}
	if (rc == 0) {
		reject(d, lineno, "no \"webhook\" id in the record");
		return 0;
	}
	if ((j = job_new(d)) == NULL)
		return oom(err);
	if ((rc = whk_store_webhook_find(d->store, id, &j->w, err)) != 0) {
		job_put(d, j);
		if (rc == 1)
			reject(d, lineno, "no webhook '%s' in the store", id);
		return rc == 1 ? 0 : -1;
	}
	if ((ep = dep_by_id(d, j->w.endpoint_id)) == NULL) {
		/* Made since we looked. */
		d->last_reload = 0;
		d->stamp = -1;
		if (endpoints_check(d, err) == -1) {
			job_put(d, j);
			return -1;
		}
		ep = dep_by_id(d, j->w.endpoint_id);
	}
	if (ep == NULL || !wanted(d, ep)) {
		d->skipped++;
		job_put(d, j);
		return 0;
	}
	enqueue(d, ep, j);
	return 0;
}

/* --pending: top up each endpoint's queue from the first-attempt lane. */
static int
fill_pending(struct deliver *d, struct whk_err *err)
{
	struct whk_webhook *w;
	struct job *j;
	size_t i, k, n, max;
	int rc = 0;

	if ((w = d->fresh) == NULL &&
	    (w = d->fresh = calloc(FRESH_CHUNK, sizeof(*w))) == NULL)
		return oom(err);
	for (i = 0; i < d->neps && rc == 0; i++) {
		struct dep *ep = d->eps[i];

		if (ep->drained || ep->gone || !wanted(d, ep) ||
		    ep->queued >= (size_t)ep->e.concurrency)
			continue;
		/* Enough to keep its slots busy, not its whole backlog. */
		max = 2 * (size_t)ep->e.concurrency;
		if (max > FRESH_CHUNK)
			max = FRESH_CHUNK;
		if ((rc = whk_store_webhooks_fresh(d->store, ep->e.id,
		    ep->after, w, max, &n, err)) == -1)
			break;
		if (n < max)
			ep->drained = 1;
		for (k = 0; k < n; k++) {
			if ((j = job_new(d)) == NULL) {
				rc = oom(err);
				break;
			}
			j->w = w[k];
			ep->after = w[k].seq;
			enqueue(d, ep, j);
		}
	}
	return rc;
}

static int
input_done(const struct deliver *d)
{
	size_t i;

	if (stop || (d->limit > 0 && d->claimed_total >= d->limit))
		return 1;
	if (d->input_open)
		return 0;
	if (!d->pending)
		return 1;
	for (i = 0; i < d->neps; i++)
		if (!d->eps[i]->drained && !d->eps[i]->gone &&
		    wanted(d, d->eps[i]))
			return 0;
	return 1;
}

/* --rate: a bucket of up to one second's requests. */
static int
rate_allows(struct dep *ep, int64_t now)
{
	if (ep->e.rate <= 0)
		return 1;
	if (ep->tokens < 0) {
		ep->tokens = (double)ep->e.rate;
		ep->tokens_at = now;
	}
	ep->tokens += (double)(now - ep->tokens_at) * (double)ep->e.rate /
	    1000.0;
	ep->tokens_at = now;
	if (ep->tokens > (double)ep->e.rate)
		ep->tokens = (double)ep->e.rate;
	return ep->tokens >= 1.0;
}

/* Milliseconds until a rate-capped endpoint with work may send again. */
static int
rate_wait(struct deliver *d)
{
	int64_t w, best = -1;
	size_t i;

	for (i = 0; i < d->neps; i++) {
		struct dep *ep = d->eps[i];

		if (ep->e.rate <= 0 || ep->queued == 0 || ep->gone ||
		    ep->tokens >= 1.0 || ep->inflight >= (size_t)ep->e.concurrency)
			continue;
		w = (int64_t)((1.0 - ep->tokens) * 1000.0 /
		    (double)ep->e.rate) + 1;
		if (best == -1 || w < best)
			best = w;
	}
	return (int)best;
}

/* One line per attempt, the same for every kind of ending. */
static void
attempt_line(struct deliver *d, const struct job *j, int64_t n,
    const char *kind, int status, int64_t ms, int delivered,
    const char *error, int64_t retry_after)
{
	whk_buf_puts(&d->out, "{\"webhook\":");
	whk_buf_json_str(&d->out, j->w.id);
	whk_buf_puts(&d->out, ",\"endpoint\":");
	whk_buf_json_str(&d->out, j->ep->e.name);
	whk_buf_printf(&d->out, ",\"attempt\":%lld,\"kind\":\"%s\","
	    "\"status\":", (long long)n, kind);
	if (status > 0)
		whk_buf_int(&d->out, status);
	else
		whk_buf_puts(&d->out, "null");
	whk_buf_puts(&d->out, ",\"ms\":");
	if (ms >= 0)
		whk_buf_int(&d->out, ms);
	else
		whk_buf_puts(&d->out, "null");
	whk_buf_printf(&d->out, ",\"outcome\":\"%s\",\"error\":",
	    delivered ? "delivered" : "failed");
	if (error && *error)
		whk_buf_json_str(&d->out, error);
	else
		whk_buf_puts(&d->out, "null");
	if (!delivered && retry_after) {
		whk_buf_puts(&d->out, ",\"retry_after\":");
		whk_buf_json_time(&d->out, retry_after);
	}
	whk_buf_puts(&d->out, "}\n");
}

/* Record what came of a request, in the open transaction. */
static int
record(struct deliver *d, struct txn *t, struct job *j, struct whk_err *err)
{
	struct whk_http_req *r = &j->f->req;
	struct whk_attempt a;
	char why[600], reason[128];
	int64_t now = whk_now_ms();
	int rc;

	memset(&a, 0, sizeof(a));
	a.webhook_seq = j->w.seq;
	a.endpoint_id = j->w.endpoint_id;
	a.n = j->n;
	a.kind = j->kind;
	a.started_at = j->started_at;
	a.ms = r->ms;
	a.status = r->status;
	a.delivered = r->status >= 200 && r->status <= 299;
	a.error = r->error;
	if (!a.delivered && r->error[0] == '\0') {
		snprintf(why, sizeof(why), "HTTP %d", r->status);
		a.error = why;
	}
	a.response = r->excerpt.len > 0 ? r->excerpt.data : NULL;
	a.response_len = r->excerpt.len;
	if (!a.delivered && (r->status == 429 || r->status == 503) &&
	    r->retry_after_s > 0)
		/* A receiver may ask for a pause, not for a year of one. */
		a.retry_after = now + (r->retry_after_s < RETRY_AFTER_MAX ?
		    r->retry_after_s : RETRY_AFTER_MAX) * 1000;
	a.owner = d->owner;
	if ((rc = whk_store_attempt_record(d->store, &a, err)) == -1)
		return -1;
	if (rc == 1)
		warnx_("webhook %s: its lease ran out before the attempt was "
		    "recorded, and another deliverer took it over; the attempt "
		    "is recorded, the webhook's state left to it", j->w.id);
	if (r->status == 410 && !j->ep->gone && !j->ep->disabling) {
		snprintf(reason, sizeof(reason), "410 Gone from the receiver "
		    "(webhook %s)", j->w.id);
		if (whk_store_endpoint_disable(d->store, j->ep->e.id, reason,
		    err) == -1)
			return -1;
		j->ep->disabling = 1;	/* gone, once the main thread hears */
		warnx_("endpoint '%s' disabled: the receiver answered 410 Gone",
		    j->ep->e.name);
	}
	if (a.delivered)
		t->delivered++;
	else
		t->failed++;

	attempt_line(d, j, j->n, j->kind, r->status, r->ms, a.delivered,
	    a.error, a.retry_after);
	return d->out.oom ? oom(err) : 0;
}

/* The attempt a claim found lost: said like any other. */
static int
lost_line(struct deliver *d, struct txn *t, const struct job *j)
{
	t->failed++;
	attempt_line(d, j, j->w.lost, j->w.resend ? "resend" :
	    j->w.lost == 1 ? "first" : "retry", 0, -1, 0, WHK_LOST_ERROR, 0);
	return d->out.oom ? -1 : 0;
}

/* What a claim needs of the store: the stored body byte for byte. */
static int
prepare(struct deliver *d, struct job *j, struct whk_err *err)
{
	struct flight *f;

	if ((f = j->f) == NULL && (f = j->f = calloc(1, sizeof(*f))) == NULL)
		return oom(err);
	whk_buf_reset(&f->body);
	if (whk_store_webhook_body(d->store, j->w.seq, &f->body, err) == -1)
		return -1;
	if (f->body.data == NULL)
		whk_buf_add(&f->body, "", 0);
	return 0;
}

/*
 * Sign as the request starts, not when it was claimed: a claim may wait
 * in reserve for some requests' time, and a receiver checks that the
 * timestamp is recent.  Every secret valid now signs.
 */
static int
sign(struct job *j, int64_t now, struct whk_err *err)
{
	struct dep *ep = j->ep;
	struct flight *f = j->f;
	struct whk_key *keys[2];
	size_t nk = 0;
	int rotating = ep->e.old_secret && ep->e.old_secret_until > now;

	if (ep->key == NULL || (rotating && ep->old_key == NULL))
		return whk_error(err, WHK_EXIT_PARTIAL, "endpoint '%s': invalid "
		    "secret", ep->e.name);
	keys[nk++] = ep->key;
	if (rotating)
		keys[nk++] = ep->old_key;
	whk_buf_reset(&f->sig);
	whk_buf_puts(&f->sig, "webhook-signature: ");
	if (whk_sign(keys, nk, j->w.id, now / 1000, f->body.data,
	    f->body.len, &f->sig, err) == -1)
		return -1;
	snprintf(f->h_id, sizeof(f->h_id), "webhook-id: %s", j->w.id);
	snprintf(f->h_ts, sizeof(f->h_ts), "webhook-timestamp: %lld",
	    (long long)(now / 1000));
	return 0;
}

/*
 * Send a claimed webhook, with the endpoint as it is now (a reload may
 * have replaced its headers since the claim), its headers after ours.
 */
static int
launch(struct deliver *d, struct job *j, struct whk_err *err)
{
	struct dep *ep = j->ep;
	struct flight *f = j->f;
	size_t i, k = 0;

	j->started_at = whk_now_ms();
	if (sign(j, j->started_at, err) == -1)
		return -1;
	if (f->headers_cap < 4 + ep->nhdr) {
		free(f->headers);
		f->headers_cap = 0;
		if ((f->headers = calloc(4 + ep->nhdr, sizeof(*f->headers))) ==
		    NULL)
			return oom(err);
		f->headers_cap = 4 + ep->nhdr;
	}
	f->headers[k++] = "Content-Type: application/json";
	f->headers[k++] = f->h_id;
	f->headers[k++] = f->h_ts;
	f->headers[k++] = f->sig.data;
	/*
	 * curl reads the list only once connected, and a reload of the
	 * endpoints frees their headers meanwhile: the request has its own.
	 */
	if (ep->nhdr > 0) {
		whk_buf_reset(&f->hdrs);
		whk_buf_add(&f->hdrs, ep->hbuf, ep->hlen);
		if (f->hdrs.oom)
			return oom(err);
		for (i = 0; i < ep->nhdr; i++)
			f->headers[k++] = f->hdrs.data + (ep->hdr[i] - ep->hbuf);
	}
	f->req.url = ep->e.url;
	f->req.headers = f->headers;
	f->req.nheaders = k;
	f->req.body = f->body.data;
	f->req.body_len = f->body.len;
	f->req.timeout_ms = ep->e.timeout_ms;
	f->req.connect_timeout_ms = ep->e.timeout_ms < CONNECT_MAX_MS ?
	    ep->e.timeout_ms : CONNECT_MAX_MS;
	f->req.allow_private = ep->e.allow_private;
	f->req.user = j;
	if (whk_http_start(d->http, &f->req, err) == -1)
		return -1;
	ep->inflight++;
	d->sent++;
	return 0;
}

/*
 * Would the claim's lease no longer outlive a request started now by
 * half the margin?  (Its endpoint's timeout grew, or its concurrency
 * shrank, or the slots stayed busy longer than its place promised.)
 * Then it is not sent, since another deliverer could take it over
 * mid-flight.
 */
static int
lease_short(const struct job *j, int64_t now)
{
	return j->lease - now < j->ep->e.timeout_ms + LEASE_MARGIN_MS / 2;
}

/*
 * A claim whose lease is short is given back and claimed again, first in
 * its endpoint's queue, with a lease for the endpoint as it is now.
 */
static int
reclaim(struct deliver *d, struct job *j)
{
	struct dep *ep = j->ep;
	struct job *give;

	if ((give = job_new(d)) == NULL)
		return -1;
	give->ep = ep;
	give->w.seq = j->w.seq;
	give->next = d->stale;
	d->stale = give;
	d->claimed_total--;
	if (ep->e.rate > 0)
		ep->tokens += 1.0;
	if ((j->next = ep->head) == NULL)
		ep->tail = j;
	ep->head = j;
	ep->queued++;
	d->queued++;
	return 0;
}

/*
 * Start claimed webhooks while their endpoints and the whole have free
 * slots, one endpoint after another so none waits behind a busy one.
 */
static int
start_ready(struct deliver *d, struct whk_err *err)
{
	size_t k, running = whk_http_running(d->http);
	int64_t now;
	struct job *j;
	int progress = 1;

	if (stop)
		return 0;	/* what is in reserve is given back instead */
	if (d->ready == 0)
		return 0;
	now = whk_now_ms();
	while (progress && d->ready > 0 && running < d->concurrency) {
		progress = 0;
		for (k = 0; k < d->neps && running < d->concurrency; k++) {
			struct dep *ep = d->eps[k];

			if ((j = ep->rhead) == NULL || ep->gone ||
			    ep->inflight >= (size_t)ep->e.concurrency)
				continue;
			if ((ep->rhead = j->next) == NULL)
				ep->rtail = NULL;
			j->next = NULL;
			ep->ready--;
			d->ready--;
			if (lease_short(j, now)) {
				if (reclaim(d, j) == -1)
					return oom(err);
				progress = 1;
				continue;
			}
			if (launch(d, j, err) == -1) {
				/* Its lease runs out; the attempt is recorded then. */
				job_put(d, j);
				return -1;
			}
			running++;
			progress = 1;
		}
	}
	return 0;
}

/*
 * Claims waiting for a slot whose lease grew short (their endpoint's
 * requests ran long, its timeout grew, the whole was busy): given back
 * and claimed again before they could run out, at most once a second.
 */
static int
stale_ready(struct deliver *d)
{
	struct job *j, **pj, *found;
	int64_t now;
	size_t k;

	if (d->ready == 0 || stop || d->closing ||
	    whk_mono_ms() - d->last_scan < 1000)
		return 0;
	d->last_scan = whk_mono_ms();
	now = whk_now_ms();
	for (k = 0; k < d->neps; k++) {
		struct dep *ep = d->eps[k];

		if (ep->gone || ep->ready == 0)
			continue;
		found = NULL;
		for (pj = &ep->rhead; (j = *pj) != NULL; ) {
			if (!lease_short(j, now)) {
				pj = &j->next;
				continue;
			}
			*pj = j->next;
			ep->ready--;
			d->ready--;
			j->next = found;	/* the newest first */
			found = j;
		}
		for (ep->rtail = NULL, j = ep->rhead; j; j = j->next)
			ep->rtail = j;
		/* Each goes first in the queue: the oldest ends first. */
		while ((j = found) != NULL) {
			found = j->next;
			if (reclaim(d, j) == -1)
				return -1;
		}
	}
	return 0;
}

/*
 * A webhook left as it is because its endpoint is disabled: should it be
 * enabled again while --pending runs, it is read again.
 */
static void
left(struct dep *ep, const struct job *j)
{
	if (j->w.seq <= ep->after) {
		ep->after = j->w.seq - 1;
		ep->drained = 0;
	}
}

/*
 * Claims not to be started, to give back: all of them when stopping,
 * else those of endpoints disabled meanwhile.
 */
static struct job *
to_release(struct deliver *d)
{
	struct job *list = d->stale, *j;
	size_t k;
	int all = stop || d->closing;

	d->stale = NULL;
	for (k = 0; k < d->neps && d->ready > 0; k++) {
		struct dep *ep = d->eps[k];

		if (!all && !ep->gone)
			continue;
		while ((j = ep->rhead) != NULL) {
			if ((ep->rhead = j->next) == NULL)
				ep->rtail = NULL;
			ep->ready--;
			d->ready--;
			if (ep->gone) {
				d->skipped++;
				left(ep, j);
			}
			j->next = list;
			list = j;
		}
	}
	return list;
}

/* A claim to give back? */
static int
releasable(const struct deliver *d)
{
	size_t k;

	if (d->stale)
		return 1;
	if (d->ready == 0)
		return 0;
	if (stop || d->closing)
		return 1;
	for (k = 0; k < d->neps; k++)
		if (d->eps[k]->gone && d->eps[k]->ready > 0)
			return 1;
	return 0;
}

/* The claims an endpoint may hold: its slots, and a fast one's reserve. */
static size_t
ep_cap(const struct dep *ep)
{
	return (size_t)ep->e.concurrency + (ep->e.rate > 0 ? 0 : ep->ahead);
}

/*
 * The claims all may hold: the slots, and reserves up to RESERVE_TURNS
 * times as many.
 */
static size_t
cap(const struct deliver *d)
{
	size_t k, reserve = 0;

	for (k = 0; k < d->neps; k++)
		reserve += d->eps[k]->e.rate > 0 ? 0 : d->eps[k]->ahead;
	return d->concurrency + (reserve < RESERVE_TURNS * d->concurrency ?
	    reserve : RESERVE_TURNS * d->concurrency);
}

/*
 * Choose what to claim: per endpoint up to its free slots and its rate,
 * in all up to the free slots.  An endpoint that answers fast also gets
 * claims in reserve, RESERVE_TURNS times what it finished in the last
 * turn (what it will likely finish before the commit after next), at
 * most that many times its concurrency: they start the moment a slot
 * frees, not once the next commit reached the disk.  A slow
 * endpoint gets none, so a deliverer that dies strands no more of its
 * webhooks than it was sending.  Room is taken now; the writer gives
 * back what turns out not to be ours.
 */
static struct job *
plan(struct deliver *d)
{
	size_t busy = whk_http_running(d->http) + d->ready, i, k;
	size_t start = d->rr, all = cap(d);
	int64_t mono = whk_mono_ms();
	struct job *j, *list = NULL, **tail = &list;
	int progress = 1;

	while (progress && busy < all &&
	    (d->limit == 0 || d->claimed_total < d->limit) && !stop) {
		progress = 0;
		for (k = 0; k < d->neps && busy < all; k++) {
			struct dep *ep = d->eps[(start + k) % d->neps];

			if (ep->queued == 0)
				continue;
			if (ep->gone) {
				/* Left pending for when it is enabled. */
				while ((j = dequeue(d, ep)) != NULL) {
					d->skipped++;
					left(ep, j);
					job_put(d, j);
				}
				continue;
			}
			if (ep->inflight + ep->ready >= ep_cap(ep) ||
			    !rate_allows(ep, mono))
				continue;
			if (d->limit > 0 && d->claimed_total >= d->limit)
				break;
			j = dequeue(d, ep);
			/*
			 * The lease outlives the request by the margin,
			 * counted from when it can start at the latest: with
			 * k claims of its endpoint before it, once k /
			 * concurrency requests each ran their timeout.
			 */
			j->lease_for = ep->e.timeout_ms * (int64_t)(1 +
			    (ep->inflight + ep->ready) / (size_t)ep->e.concurrency) +
			    LEASE_MARGIN_MS;
			if (ep->e.rate > 0)
				ep->tokens -= 1.0;
			ep->ready++;
			d->ready++;
			d->claimed_total++;
			busy++;
			progress = 1;
			*tail = j;
			tail = &j->next;
		}
	}
	*tail = NULL;
	for (i = 0; i < d->neps; i++)
		if (d->eps[i]->queued > 0) {
			d->rr = (d->rr + 1) % d->neps;
			break;
		}
	return list;
}

static void
progress_line(struct deliver *d, int last)
{
	int64_t now = whk_mono_ms(), secs;

	if (!d->progress || (!last && now - d->last_progress < PROGRESS_MS))
		return;
	d->last_progress = now;
	secs = now - d->started;
	fprintf(stderr, "\rwhk-deliver: sent %lld, delivered %lld, failed "
	    "%lld, in flight %zu, %.0f/s\033[K%s", (long long)d->sent,
	    (long long)d->delivered, (long long)d->failed,
	    whk_http_running(d->http), secs > 0 ? (double)(d->delivered +
	    d->failed) * 1000.0 / (double)secs : 0.0, last ? "\n" : "");
}

/* Could a claim be made now?  Saves a write transaction when not. */
static int
claimable(struct deliver *d)
{
	int64_t mono = whk_mono_ms();
	size_t i;

	if (stop || d->closing || whk_http_running(d->http) + d->ready >=
	    cap(d) || (d->limit > 0 && d->claimed_total >= d->limit))
		return 0;
	for (i = 0; i < d->neps; i++) {
		struct dep *ep = d->eps[i];

		if (ep->queued > 0 && (ep->gone ||
		    (ep->inflight + ep->ready < ep_cap(ep) &&
		    rate_allows(ep, mono))))
			return 1;
	}
	return 0;
}

static void
free_list(struct job *j)
{
	struct job *next;

	for (; j; j = next) {
		next = j->next;
		job_free(j);
	}
}

/*
 * A transaction: record what finished, give back the claims not to be
 * used, claim what was chosen; once it committed, print.  What is not
 * ours after all (delivered, leased elsewhere, not due) moves to
 * t->rejects.  On failure nothing of it happened.
 */
static void
txn_run(struct deliver *d, struct txn *t)
{
	struct job *j, *rest = t->claims, **keep = &t->claims, **tail;
	struct job **rej = &t->rejects;
	int64_t now;
	int rc;

	t->rc = -1;
	t->claims = NULL;
	if (whk_store_begin(d->store, &t->err) == -1) {
		t->claims = rest;
		return;
	}
	for (j = t->done; j; j = j->next)
		if (record(d, t, j, &t->err) == -1)
			goto fail;
	for (j = t->release; j; j = j->next)
		if (whk_store_webhook_release(d->store, j->w.seq, d->owner,
		    &t->err) == -1)
			goto fail;
	/* Counted from now: the write lock may have been long in coming. */
	now = whk_now_ms();
	while ((j = rest) != NULL) {
		j->lease = now + j->lease_for;
		if ((rc = whk_store_webhook_claim(d->store, j->w.seq,
		    d->owner, j->lease, &j->w, &t->err)) == -1)
			goto fail;
		if (j->w.lost > 0 && lost_line(d, t, j) == -1) {
			oom(&t->err);
			goto fail;
		}
		if (rc == WHK_CLAIM_OK) {
			j->kind = whk_attempt_kind(&j->w);
			j->n = j->w.attempts + 1;
			if (prepare(d, j, &t->err) == -1)
				goto fail;
		}
		rest = j->next;
		if (rc != WHK_CLAIM_OK) {
			/* Delivered, leased or not due: not ours. */
			t->skipped++;
			*rej = j;
			rej = &j->next;
			continue;
		}
		*keep = j;
		keep = &j->next;
	}
	*keep = NULL;
	*rej = NULL;
	if (whk_store_commit(d->store, &t->err) == -1)
		goto fail;
	/* Done with: the main thread reuses them. */
	for (tail = &t->done; *tail; tail = &(*tail)->next)
		;
	*tail = t->release;
	t->spent = t->done;
	t->done = t->release = NULL;
	/* Durable now: only now may anyone hear of it. */
	if (d->out.len > 0 && (fwrite(d->out.data, 1, d->out.len, stdout) !=
	    d->out.len || fflush(stdout) == EOF)) {
		whk_error(&t->err, WHK_EXIT_SYSTEM, "write error: %s",
		    strerror(errno));
		whk_buf_reset(&d->out);
		t->rc = -2;	/* committed, but not said */
		return;
	}
	whk_buf_reset(&d->out);
	t->rc = 0;
	return;
fail:
	/* Not one claim holds; the claims and rejects are one list again. */
	*keep = rest;
	*rej = NULL;
	for (keep = &t->claims; *keep; keep = &(*keep)->next)
		;
	*keep = t->rejects;
	t->rejects = NULL;
	t->delivered = t->failed = t->skipped = 0;
	whk_store_rollback(d->store);
	whk_buf_reset(&d->out);
}

static void *
writer_main(void *arg)
{
	struct deliver *d = arg;
	struct writer *w = &d->wr;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->quit && (!w->busy || w->finished))
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->quit)
			break;
		pthread_mutex_unlock(&w->mu);
		txn_run(d, &w->t);
		pthread_mutex_lock(&w->mu);
		w->finished = 1;
		pthread_cond_broadcast(&w->cv);
		whk_http_wakeup(d->http);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* The signals are the main thread's: the writer never sees them. */
static int
writer_start(struct deliver *d, struct whk_err *err)
{
	struct writer *w = &d->wr;
	sigset_t all, old;
	int e;

	if ((e = pthread_mutex_init(&w->mu, NULL)) != 0 ||
	    (e = pthread_cond_init(&w->cv, NULL)) != 0)
		return whk_error(err, WHK_EXIT_SYSTEM, "cannot start the "
		    "writer: %s", strerror(e));
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&w->thread, NULL, writer_main, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e == 0)	/* so that top -H and perf tell the two apart */
		(void)pthread_setname_np(w->thread, "whk-deliver:wr");
	if (e != 0)
		return whk_error(err, WHK_EXIT_SYSTEM, "cannot start the "
		    "writer: %s", strerror(e));
	w->running = 1;
	return 0;
}

static void
writer_stop(struct deliver *d)
{
	struct writer *w = &d->wr;

	if (!w->running)
		return;
	pthread_mutex_lock(&w->mu);
	w->quit = 1;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w->running = 0;
}

/* Has the writer finished its transaction?  With wait, once it has. */
static int
writer_done(struct deliver *d, int wait)
{
	struct writer *w = &d->wr;
	int done;

	if (!w->busy)
		return 0;
	pthread_mutex_lock(&w->mu);
	while (wait && !w->finished)
		pthread_cond_wait(&w->cv, &w->mu);
	done = w->finished;
	pthread_mutex_unlock(&w->mu);
	return done;
}

/*
 * Give the writer what the store must hear of now, if anything: what
 * finished, the claims to give back, what to claim.  With sync, run it
 * here instead (the writer is idle).  Says whether there was anything.
 */
static int
hand(struct deliver *d, int sync)
{
	struct writer *w = &d->wr;
	struct txn *t = &w->t;
	struct job *j;
	int go = claimable(d);
	size_t k;

	if (!d->done && !go && !releasable(d))
		return 0;
	memset(t, 0, sizeof(*t));
	if ((t->done = d->done) != NULL) {
		for (k = 0; k < d->neps; k++)
			d->eps[k]->finished = 0;
		for (j = t->done; j; j = j->next)
			j->ep->finished++;
		for (k = 0; k < d->neps; k++) {
			struct dep *ep = d->eps[k];

			ep->ahead = RESERVE_TURNS * (ep->finished <
			    (size_t)ep->e.concurrency ? ep->finished :
			    (size_t)ep->e.concurrency);
		}
	}
	d->done = NULL;
	d->done_tail = &d->done;
	t->release = to_release(d);
	t->claims = go ? plan(d) : NULL;
	sync = sync || !w->running;
	pthread_mutex_lock(&w->mu);
	w->busy = 1;
	w->finished = sync;	/* so the writer leaves it alone */
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (sync)
		txn_run(d, t);
	return 1;
}

/* Give back the room a claim took that it will not use. */
static void
unclaim(struct deliver *d, struct job *j)
{
	j->ep->ready--;
	d->ready--;
	d->claimed_total--;
	if (j->ep->e.rate > 0)
		j->ep->tokens += 1.0;
	job_put(d, j);
}

/* Take back what the writer did: the claims go to their endpoints. */
static int
absorb(struct deliver *d, struct whk_err *err)
{
	struct txn *t = &d->wr.t;
	struct job *j, *next;
	size_t k;

	pthread_mutex_lock(&d->wr.mu);
	d->wr.busy = 0;
	pthread_mutex_unlock(&d->wr.mu);
	d->delivered += t->delivered;
	d->failed += t->failed;
	d->skipped += t->skipped;
	/*
	 * Once, and only if the disabling was committed: an endpoint
	 * enabled again later is sent to again, and a 410 whose transaction
	 * failed disables it when it is recorded again.
	 */
	for (k = 0; k < d->neps; k++)
		if (d->eps[k]->disabling) {
			if (t->rc != -1)
				d->eps[k]->gone = 1;
			d->eps[k]->disabling = 0;
		}
	for (j = t->rejects; j; j = next) {
		next = j->next;
		unclaim(d, j);
	}
	t->rejects = NULL;
	for (j = t->spent; j; j = next) {
		next = j->next;
		job_put(d, j);
	}
	t->spent = NULL;
	if (t->rc == -1) {
		/* Nothing happened: what finished is still to record. */
		*err = t->err;
		if (t->done) {
			for (j = t->done; j->next; j = j->next)
				;
			j->next = d->done;
			if (d->done == NULL)
				d->done_tail = &j->next;
			d->done = t->done;
		}
		/* Still leased: the leases run out. */
		for (j = t->release; j; j = next) {
			next = j->next;
			job_put(d, j);
		}
		for (j = t->claims; j; j = next) {
			next = j->next;
			unclaim(d, j);
		}
		t->done = t->release = t->claims = NULL;
		return -1;
	}
	for (j = t->claims; j; j = next) {
		struct dep *ep = j->ep;

		next = j->next;
		j->next = NULL;
		if (ep->rtail)
			ep->rtail->next = j;
		else
			ep->rhead = j;
		ep->rtail = j;
	}
	t->claims = NULL;
	if (t->rc == -2) {
		*err = t->err;
		return -1;
	}
	return 0;
}

static void
take_done(struct deliver *d)
{
	struct whk_http_req *r;
	struct job *j;

	while ((r = whk_http_done(d->http)) != NULL) {
		j = r->user;
		j->ep->inflight--;
		j->next = NULL;
		*d->done_tail = j;
		d->done_tail = &j->next;
	}
}

/*
 * Take in work while there is room for it: records on stdin, else with
 * --pending the store's.  The store must be this thread's.
 */
static int
take_input(struct deliver *d, struct whk_lines *lines, struct whk_err *err)
{
	const char *line;
	size_t len;
	int rc = 0, too_long;

	if (input_done(d))
		return 0;
	if (!d->input_open)
		return fill_pending(d, err);
	if (d->queued >= MAX_QUEUED || !whk_lines_ready(lines))
		return 0;
	/*
	 * The write lock, not a read snapshot: no commit can land while
	 * lines are read, so every line read names a webhook the snapshot
	 * holds.
	 */
	if (whk_store_begin(d->store, err) == -1)
		return -1;
	while (d->input_open && d->queued < MAX_QUEUED &&
	    whk_lines_ready(lines)) {
		rc = whk_lines_next(lines, &line, &len, &too_long, err);
		if (rc <= 0) {
			d->input_open = 0;
			break;
		}
		if (too_long)
			reject(d, lines->lineno, "longer than %d bytes",
			    MAX_RECORD);
		else if (len > 0 && (rc = one_record(d, line, len,
		    lines->lineno, err)) == -1)
			break;
		rc = 0;
	}
	if (rc == -1) {
		whk_store_rollback(d->store);
		return -1;
	}
	return whk_store_commit(d->store, err);
}

static int
run(struct deliver *d, struct whk_err *err)
{
	struct whk_lines lines;
	struct stat st;
	int rc = 0, fd_ready, wait, aborted = 0, idle;

	/*
	 * With --pending, records on a pipe come first (a reconciliation
	 * run behind "whk-batch --pending |"), then the store.
	 */
	d->input_open = !d->pending || (fstat(STDIN_FILENO, &st) == 0 &&
	    (S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode)));
	if (whk_lines_init(&lines, STDIN_FILENO, MAX_RECORD) == -1)
		return oom(err);
	for (;;) {
		if (stop > 1 && !aborted) {
			/* A second signal: give up on what is in flight. */
			whk_http_abort(d->http);
			aborted = 1;
		}
		take_done(d);
		if (writer_done(d, 0) && absorb(d, err) == -1) {
			rc = -1;
			break;
		}
		/* Claims in reserve go while the next commit is on its way. */
		if (start_ready(d, err) == -1) {
			rc = -1;
			break;
		}
		if (!d->wr.busy) {
			/* The store is this thread's until it is handed over. */
			if (endpoints_check(d, err) == -1 ||
			    take_input(d, &lines, err) == -1) {
				rc = -1;
				break;
			}
			if (stale_ready(d) == -1) {
				rc = oom(err);
				break;
			}
			(void)hand(d, 0);
		}
		progress_line(d, 0);
		idle = !d->wr.busy;
		if (idle && input_done(d) && whk_http_running(d->http) == 0 &&
		    d->done == NULL && d->ready == 0 && (d->queued == 0 ||
		    stop || (d->limit > 0 && d->claimed_total >= d->limit)))
			break;
		/*
		 * Wait for a request, input, a timer or the writer (which
		 * wakes this wait when it is done).
		 */
		wait = rate_wait(d);
		if (wait < 0 || wait > RELOAD_MS)
			wait = d->progress ? PROGRESS_MS : RELOAD_MS;
		if (idle && d->input_open && !stop && d->queued < MAX_QUEUED &&
		    whk_lines_ready(&lines))
			wait = 0;
		if (idle && !d->input_open && !input_done(d) && d->queued == 0)
			wait = 0;
		if (whk_http_wait(d->http, idle && d->input_open && !stop &&
		    d->queued < MAX_QUEUED ? STDIN_FILENO : -1, wait,
		    &fd_ready, err) == -1) {
			rc = -1;
			break;
		}
	}
	whk_lines_free(&lines);
	if (rc == -1) {
		/*
		 * Record what still finishes, so no attempt goes unsaid; a
		 * store that failed once mostly fails again, and that is
		 * said once, by the caller.
		 */
		struct whk_err why;

		whk_http_abort(d->http);
		if (writer_done(d, 1) && absorb(d, &why) == -1 &&
		    strcmp(why.msg, err->msg) != 0)
			warnx_("%s", why.msg);
		take_done(d);
		d->closing = 1;
		if (hand(d, 1) && absorb(d, &why) == -1 &&
		    strcmp(why.msg, err->msg) != 0)
			warnx_("%s", why.msg);
	}
	progress_line(d, 1);
	return rc;
}

int
main(int argc, char *argv[])
{
	struct deliver d;
	struct whk_err err = { 0, "" };
	struct sigaction sa;
	const char *store_opt = NULL, *limit_opt = NULL, *conc_opt = NULL;
	char path[4096], host[64] = "?";
	int64_t v;
	size_t i;
	int ch, verbose = 0, quiet = 0, status = WHK_EXIT_OK;

	memset(&d, 0, sizeof(d));
	d.concurrency = DEFAULT_CONCURRENCY;
	d.done_tail = &d.done;
	while ((ch = getopt_long(argc, argv, "s:pe:l:c:qvhV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			store_opt = optarg;
			break;
		case 'p':
			d.pending = 1;
			break;
		case 'e':
			d.only = optarg;
			break;
		case 'l':
			limit_opt = optarg;
			break;
		case 'c':
			conc_opt = optarg;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			fputs(help, stdout);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		case 'V':
			printf("whk-deliver %s\n", WHK_VERSION);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		default:
			fputs(usage, stderr);
			return WHK_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 0) {
		warnx_("unexpected argument '%s'", argv[0]);
		fputs(usage, stderr);
		return WHK_EXIT_USAGE;
	}
	if (limit_opt) {
		if (whk_parse_uint(limit_opt, 1, INT64_MAX, &d.limit,
		    &err) == -1) {
			warnx_("--limit: %s", err.msg);
			return WHK_EXIT_USAGE;
		}
	}
	if (conc_opt) {
		if (whk_parse_uint(conc_opt, 1, MAX_CONCURRENCY, &v,
		    &err) == -1) {
			warnx_("--concurrency: %s", err.msg);
			return WHK_EXIT_USAGE;
		}
		d.concurrency = (size_t)v;
	}
	d.progress = !quiet && isatty(STDERR_FILENO);
	/* As many as can be claimed, in flight or being recorded at once. */
	d.spare_max = d.concurrency * (2 + RESERVE_TURNS);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	gethostname(host, sizeof(host) - 1);
	snprintf(d.owner, sizeof(d.owner), "%s:%ld", host, (long)getpid());
	d.started = d.last_progress = whk_mono_ms();
	if (whk_now_init(&err) == -1 ||
	    whk_store_path(store_opt, path, sizeof(path), &err) == -1 ||
	    (d.store = whk_store_open(path, &err)) == NULL) {
		warnx_("%s", err.msg);
		return err.status;
	}
	if ((d.http = whk_http_new(d.concurrency, &err)) == NULL ||
	    endpoints_load(&d, &err) == -1 || writer_start(&d, &err) == -1 ||
	    run(&d, &err) == -1) {
		warnx_("%s", err.msg);
		status = err.status;
	}
	writer_stop(&d);
	if (verbose)
		fprintf(stderr, "whk-deliver: %lld attempts: %lld delivered, "
		    "%lld failed; %lld skipped (delivered, taken by another "
		    "deliverer, not due or endpoint disabled)\n",
		    (long long)(d.delivered + d.failed),
		    (long long)d.delivered, (long long)d.failed,
		    (long long)d.skipped);
	if (status == WHK_EXIT_OK && (d.failed > 0 || d.rejected > 0 ||
	    d.unsignable > 0))
		status = WHK_EXIT_PARTIAL;

	whk_http_free(d.http);
	/* Finished, but left unrecorded by a store that failed. */
	free_list(d.done);
	free_list(d.stale);
	free_list(d.spare);
	free(d.fresh);
	for (i = 0; i < d.neps; i++)
		dep_free(d.eps[i]);
	free(d.eps);
	whk_store_close(d.store);
	whk_buf_free(&d.out);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warnx_("write error: %s", strerror(errno));
		return WHK_EXIT_SYSTEM;
	}
	return status;
}
