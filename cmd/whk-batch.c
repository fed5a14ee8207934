/*
 * whk-batch - route stored events to endpoints and group them into
 * webhooks.
 *
 * Reads the records whk-ingest prints (lines with "event"), or with
 * --pending every stored event not yet routed.  Each event goes to every
 * enabled endpoint whose tenant, types and filter take it; per endpoint,
 * events are grouped into webhooks of up to --batch events and
 * --batch-bytes bytes, by --group-by key, kept open for --window.  Prints
 * one record per webhook after the transaction holding it committed.
 * A store constraint keeps each (event, endpoint) pair in one webhook
 * however many batchers run and wherever one is killed; an event is
 * marked routed in the transaction that links its last pair.
 *
 * It does not send anything (whk-deliver does) and never changes an
 * event.  A webhook's body is not copied: it is built from its events
 * when sent, unless an endpoint's template shaped it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define TXN_WEBHOOKS	16384	/* commit at least this often under load */
#define TXN_MS		100	/* and at least this often in time */
#define CHUNK		1024	/* events read at once with --pending */
#define LOOKUP		256	/* records on stdin looked up at once */
#define MAX_OPEN	10000	/* open groups before the oldest is sent */
#define RELOAD_MS	1000	/* how often a stream looks for new endpoints */
#define DUE_MS		10	/* how often windows are looked at under load */
#define MAX_RECORD	(64 * 1024)
#define HELD_BUCKETS	4096

static const char usage[] =
"usage: whk-batch [-s store] [--pending [--limit n]] [--dry-run] [-v]\n";

static const char help[] =
"Route stored events to endpoints and group them into webhooks; print one\n"
"record per webhook made.\n"
"\n"
"  -s, --store PATH   the store (default $WHK_STORE, else\n"
"                     $XDG_DATA_HOME/whk/whk.db)\n"
"      --pending      take every stored event not yet routed, oldest\n"
"                     first, instead of records on stdin\n"
"      --limit N      with --pending: at most N events\n"
"  -n, --dry-run      show what would be made; write nothing\n"
"  -v, --verbose      a summary on stderr at the end\n"
"  -h, --help         show this help\n"
"  -V, --version      show the version\n"
"\n"
"Exit: 0 done, 1 some records rejected, 2 usage, 3 store unavailable,\n"
"4 system error.  See whk-batch(1).\n";

static const struct option longopts[] = {
	{ "store",	required_argument, NULL, 's' },
	{ "pending",	no_argument,	   NULL, 'p' },
	{ "limit",	required_argument, NULL, 'l' },
	{ "dry-run",	no_argument,	   NULL, 'n' },
	{ "verbose",	no_argument,	   NULL, 'v' },
	{ "help",	no_argument,	   NULL, 'h' },
	{ "version",	no_argument,	   NULL, 'V' },
	{ NULL,		0,		   NULL, 0 }
};

/* An event on its way: freed when its last group has been written. */
struct pev {
	struct pev *hnext;	/* events this run holds, by seq */
	int64_t	 seq;
	int64_t	 received_at;
	size_t	 bytes;
	int	 outstanding;	/* groups holding it */
};

struct ep;

/* The events of one endpoint (and one key) that will form one webhook. */
struct group {
	struct ep	 *ep;
	char		 *key;		/* --group-by value as JSON; NULL */
	struct pev	**ev;
	size_t		  n, cap;
	size_t		  bytes;	/* of the body they make */
	int64_t		  deadline;	/* monotonic ms: the window ends */
	struct group	 *hnext;	/* in its endpoint's table */
	struct group	 *prev, *next;	/* open groups, oldest first */
};

struct ep {
	struct whk_endpoint	  e;
	int			  filter;	/* index in the jq set, or -1 */
	int			  group_by;
	struct whk_jq		 *template;	/* compiled when first used */
	struct group		**table;	/* by key; one bucket without */
	size_t			  nbuckets;
};

struct batch {
	struct whk_store	*store;
	struct ep		*eps;
	size_t			 neps;
	struct whk_jq_set	*set;
	size_t			 nset;
	struct whk_jq_result	*results;
	struct pev		*held[HELD_BUCKETS];	/* in open groups */
	int64_t			 stamp;
	int64_t			 last_reload;
	int64_t			 last_due;
	struct group		*oldest, *newest;
	size_t			 open;
	struct whk_buf		 out;		/* records awaiting commit */
	struct whk_buf		 body;
	struct pev		**routed;	/* to mark at commit; held */
	int64_t			*routed_seqs;
	size_t			 nrouted, caprouted;
	int64_t			*seqs;		/* of the group being sent */
	unsigned char		*linked;
	size_t			 capseqs;
	struct whk_stored_event	*evs;		/* read from the store */
	struct whk_buf		 evtext;	/* their strings */
	int64_t			 commits;
	int			 in_txn;
	int			 txn_items;
	int64_t			 txn_start;
	int			 dry_run;
	int			 pending;
	/* What happened, for -v. */
	int64_t			 events, unmatched, already, webhooks;
	int64_t			 linked_events, conflicts, waiting, rejected;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fputs("whk-batch: ", stderr);
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
pev_release(struct batch *b, struct pev *p)
{
	struct pev **pp = &b->held[(uint64_t)p->seq % HELD_BUCKETS];

	while (*pp && *pp != p)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = p->hnext;
	free(p);
}

static int
held(struct batch *b, int64_t seq)
{
	struct pev *p;

	for (p = b->held[(uint64_t)seq % HELD_BUCKETS]; p; p = p->hnext)
		if (p->seq == seq)
			return 1;
	return 0;
}

static int
begin(struct batch *b, struct whk_err *err)
{
	if (b->in_txn || b->dry_run)
		return 0;
	if (whk_store_begin(b->store, err) == -1)
		return -1;
	b->in_txn = 1;
	b->txn_items = 0;
	b->txn_start = whk_mono_ms();
	return 0;
}

static int
commit(struct batch *b, struct whk_err *err)
{
	size_t i;

	/* Marked in the transaction that linked their last pair. */
	if (b->nrouted > 0 && !b->dry_run) {
		for (i = 0; i < b->nrouted; i++)
			b->routed_seqs[i] = b->routed[i]->seq;
		if (begin(b, err) == -1 || whk_store_events_routed(b->store,
		    b->routed_seqs, b->nrouted, err) == -1)
			return -1;
	}
	if (b->in_txn) {
		b->in_txn = 0;
		if (whk_store_commit(b->store, err) == -1)
			return -1;
		b->commits++;
	}
	/*
	 * Held until now, so that a second record of the same event in
	 * this run is known as routed; a dry run holds them to the end.
	 */
	if (!b->dry_run) {
		for (i = 0; i < b->nrouted; i++)
			pev_release(b, b->routed[i]);
		b->nrouted = 0;
	}
	/* Durable now: only now may anyone hear of it. */
	if (b->out.len > 0 && (fwrite(b->out.data, 1, b->out.len, stdout) !=
	    b->out.len || fflush(stdout) == EOF))
		return whk_error(err, WHK_EXIT_SYSTEM, "write error: %s",
		    strerror(errno));
	whk_buf_reset(&b->out);
	return 0;
}

static int
maybe_commit(struct batch *b, struct whk_err *err)
{
	if (b->in_txn && (b->txn_items >= TXN_WEBHOOKS ||
	    whk_mono_ms() - b->txn_start >= TXN_MS))
		return commit(b, err);
	return 0;
}

static int
event_routed(struct batch *b, struct pev *p, struct whk_err *err)
{
	struct pev **v;
	int64_t *w;

	if (!b->dry_run && begin(b, err) == -1)
		return -1;
	if (b->nrouted == b->caprouted) {
		b->caprouted = b->caprouted ? b->caprouted * 2 : 1024;
		if ((v = reallocarray(b->routed, b->caprouted,
		    sizeof(*v))) == NULL)
			return oom(err);
		b->routed = v;
		if ((w = reallocarray(b->routed_seqs, b->caprouted,
		    sizeof(*w))) == NULL)
			return oom(err);
		b->routed_seqs = w;
	}
	b->routed[b->nrouted++] = p;
	b->txn_items++;
	return 0;
}

static uint64_t
hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	if (s == NULL)
		return 0;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void
group_unlink(struct batch *b, struct group *g)
{
	struct group **pp;

	pp = &g->ep->table[hash(g->key) % g->ep->nbuckets];
	while (*pp != g)
		pp = &(*pp)->hnext;
	*pp = g->hnext;
	if (g->prev)
		g->prev->next = g->next;
	else
		b->oldest = g->next;
	if (g->next)
		g->next->prev = g->prev;
	else
		b->newest = g->prev;
	b->open--;
}

static void
group_free(struct group *g)
{
	free(g->key);
	free(g->ev);
	free(g);
}

/* The body of a template, from the events the webhook got. */
static int
shape(struct batch *b, struct ep *ep, int64_t seq, const char *id,
    struct whk_err *err)
{
	struct whk_buf plain = { 0 };
	struct whk_err why;
	int rc;

	/* A compile costs milliseconds: only for endpoints that get work. */
	if (ep->template == NULL && (ep->template = whk_jq_compile(
	    ep->e.template, "--template", err)) == NULL)
		return -1;
	whk_buf_reset(&b->body);
	if (whk_store_webhook_body(b->store, seq, &plain, err) == -1) {
		whk_buf_free(&plain);
		return -1;
	}
	whk_buf_add(&plain, "", 1);	/* the parser wants a NUL */
	if (plain.oom) {
		whk_buf_free(&plain);
		return oom(err);
	}
	rc = whk_jq_apply(ep->template, plain.data, plain.len - 1, &b->body,
	    &why);
	whk_buf_free(&plain);
	if (rc == -1 && why.status != WHK_EXIT_PARTIAL) {
		*err = why;
		return -1;
	}
	if (rc == -1) {
		/* Better the events unshaped than not at all. */
		warnx_("endpoint '%s': webhook %s: %s; sent without the "
		    "template", ep->e.name, id, why.msg);
		b->rejected++;
		return 0;
	}
	return 1;
}

/* Write a group as one webhook (in the open transaction) and free it. */
static int
flush(struct batch *b, struct group *g, struct whk_err *err)
{
	struct ep *ep = g->ep;
	char id[WHK_ID_LEN] = "";
	int64_t seq = 0, first = g->ev[0]->received_at, bytes = 0;
	size_t i, done = 0, linked = g->n;
	int kind = ep->e.batch > 1 ? WHK_BODY_ARRAY : WHK_BODY_EVENT;
	int shaped = 0;

	group_unlink(b, g);
	if (g->n > b->capseqs) {
		free(b->seqs);
		free(b->linked);
		b->capseqs = g->n * 2;
		b->seqs = calloc(b->capseqs, sizeof(*b->seqs));
		b->linked = calloc(b->capseqs, 1);
		if (b->seqs == NULL || b->linked == NULL) {
			b->capseqs = 0;
			goto oom;
		}
	}
	for (i = 0; i < g->n; i++) {
		b->seqs[i] = g->ev[i]->seq;
		b->linked[i] = 1;
		if (g->ev[i]->received_at < first)
			first = g->ev[i]->received_at;
	}
	if (!b->dry_run) {
		if (begin(b, err) == -1 ||
		    whk_store_webhook_create(b->store, ep->e.id, kind, g->key,
		    first, b->seqs, g->n, (int64_t)g->bytes, b->linked,
		    &linked, id, &seq, err) == -1)
			goto fail;
	}
	/* Another batcher got some first: those are theirs. */
	b->conflicts += (int64_t)(g->n - linked);
	bytes = (int64_t)g->bytes;
	if (linked < g->n) {
		bytes = kind == WHK_BODY_ARRAY ? 2 : 0;
		for (i = 0; i < g->n; i++)
			if (b->linked[i])
				bytes += (int64_t)g->ev[i]->bytes;
		if (kind == WHK_BODY_ARRAY && linked > 1)
			bytes += (int64_t)linked - 1;
	}
	if (!b->dry_run && linked > 0 && ep->e.template &&
	    (shaped = shape(b, ep, seq, id, err)) == -1)
		goto fail;
	if (shaped)
		bytes = (int64_t)b->body.len;
	if (!b->dry_run && (linked == 0 ?
	    whk_store_webhook_drop(b->store, seq, err) :
	    (shaped || linked < g->n) ? whk_store_webhook_finish(b->store,
	    seq, (int64_t)linked, bytes, shaped ? b->body.data : NULL,
	    b->body.len, err) : 0) == -1)
		goto fail;
	for (; done < g->n; done++)
		if (--g->ev[done]->outstanding == 0 &&
		    event_routed(b, g->ev[done], err) == -1) {
			pev_release(b, g->ev[done++]);
			goto fail;
		}
	if (linked > 0) {
		b->webhooks++;
		b->linked_events += (int64_t)linked;
		b->txn_items++;
		if (b->dry_run)
			whk_buf_puts(&b->out, "{\"webhook\":null");
		else
			whk_buf_printf(&b->out, "{\"webhook\":\"%s\"", id);
		whk_buf_puts(&b->out, ",\"endpoint\":");
		whk_buf_json_str(&b->out, ep->e.name);
		whk_buf_printf(&b->out, ",\"events\":%zu,\"bytes\":%lld",
		    linked, (long long)bytes);
		if (ep->group_by >= 0) {
			whk_buf_puts(&b->out, ",\"group\":");
			whk_buf_puts(&b->out, g->key ? g->key : "null");
		}
		whk_buf_puts(&b->out, b->dry_run ? ",\"dry_run\":true}\n" :
		    "}\n");
		if (b->out.oom)
			goto oom;
	}
	group_free(g);
	return 0;
oom:
	oom(err);
fail:
	/* Its events stay unrouted; let go of those only it held. */
	for (; done < g->n; done++)
		if (--g->ev[done]->outstanding == 0)
			pev_release(b, g->ev[done]);
	group_free(g);
	return -1;
}

static struct group *
group_get(struct batch *b, struct ep *ep, const char *key,
    const struct pev *p)
{
	struct group *g, **bucket;
	int64_t age;

	bucket = &ep->table[hash(key) % ep->nbuckets];
	for (g = *bucket; g; g = g->hnext)
		if ((g->key == NULL && key == NULL) ||
		    (g->key && key && strcmp(g->key, key) == 0))
			return g;
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (key && (g->key = strdup(key)) == NULL)) {
		free(g);
		return NULL;
	}
	g->ep = ep;
	/* The window runs from the event's arrival, not from now. */
	age = whk_now_ms() - p->received_at;
	if (age < 0)
		age = 0;
	/* Without a window, a group waits only until input pauses. */
	g->deadline = ep->e.window_ms == 0 ? INT64_MAX : whk_mono_ms() +
	    (ep->e.window_ms > age ? ep->e.window_ms - age : 0);
	g->hnext = *bucket;
	*bucket = g;
	g->prev = b->newest;
	if (b->newest)
		b->newest->next = g;
	else
		b->oldest = g;
	b->newest = g;
	b->open++;
	return g;
}

static int
group_add(struct batch *b, struct ep *ep, const char *key, struct pev *p,
    struct whk_err *err)
{
	struct group *g;
	struct pev **v;
	size_t more;

	if ((g = group_get(b, ep, key, p)) == NULL)
		return oom(err);
	/* Full by bytes: send what it holds; an event too big goes alone. */
	more = p->bytes + (g->n > 0 ? 1 : ep->e.batch > 1 ? 2 : 0);
	if (g->n > 0 && g->bytes + more > (size_t)ep->e.batch_bytes) {
		if (flush(b, g, err) == -1)
			return -1;
		if ((g = group_get(b, ep, key, p)) == NULL)
			return oom(err);
		more = p->bytes + (ep->e.batch > 1 ? 2 : 0);
	}
	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 8;
		if ((v = reallocarray(g->ev, g->cap, sizeof(*v))) == NULL)
			return oom(err);
		g->ev = v;
	}
	g->ev[g->n++] = p;
	g->bytes += more;
	p->outstanding++;
	if (g->n >= (size_t)ep->e.batch)
		return flush(b, g, err);
	if (b->open > MAX_OPEN)
		return flush(b, b->oldest, err);
	return 0;
}

/*
 * Send the groups whose time has come: those whose window passed, and
 * with all set, every one (end of input; or, with paused set, those
 * without a window, since input paused and there is no reason to wait).
 * *wait, when given, receives the milliseconds until the next window
 * ends, or -1 for none.
 */
static int
flush_due(struct batch *b, int all, int paused, int64_t *wait,
    struct whk_err *err)
{
	struct group *g, *next;
	int64_t now = whk_mono_ms(), w = -1;

	for (g = b->oldest; g; g = next) {
		next = g->next;	/* flush() frees g and nothing else */
		if (all || g->deadline <= now ||
		    (paused && g->ep->e.window_ms == 0)) {
			if (flush(b, g, err) == -1)
				return -1;
			continue;
		}
		if (w == -1 || g->deadline - now < w)
			w = g->deadline - now;
	}
	if (wait)
		*wait = w;
	return 0;
}

/* Between records under load: windows that ended, and a due commit. */
static int
tick(struct batch *b, struct whk_err *err)
{
	if (b->oldest && whk_mono_ms() - b->last_due >= DUE_MS) {
		b->last_due = whk_mono_ms();
		if (flush_due(b, 0, 0, NULL, err) == -1)
			return -1;
	}
	return maybe_commit(b, err);
}

/* Close a group without writing it: its events stay unrouted. */
static void
group_drop(struct batch *b, struct group *g)
{
	size_t i;

	group_unlink(b, g);
	for (i = 0; i < g->n; i++)
		if (--g->ev[i]->outstanding == 0)
			pev_release(b, g->ev[i]);
	group_free(g);
}

static int
route(struct batch *b, const struct whk_stored_event *ev, struct whk_err *err)
{
	struct whk_jq_result *r = b->results;
	struct pev *p;
	struct whk_err why;
	const char *key;
	size_t i;
	int evaluated = 0, matched = 0;

	/* A duplicate's record names an event this run may hold already. */
	if (ev->routed || held(b, ev->seq)) {
		b->already++;
		return 0;
	}
	b->events++;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return oom(err);
	p->hnext = b->held[(uint64_t)ev->seq % HELD_BUCKETS];
	b->held[(uint64_t)ev->seq % HELD_BUCKETS] = p;
	p->seq = ev->seq;
	p->received_at = ev->received_at;
	p->bytes = ev->body_len;
	/* Our own hold: a group sent at once must not free it under us. */
	p->outstanding = 1;
	for (i = 0; i < b->neps; i++) {
		struct ep *ep = &b->eps[i];

		if (ep->e.tenant && (ev->tenant == NULL ||
		    strcmp(ep->e.tenant, ev->tenant) != 0))
			continue;
		if (!whk_glob_list_match(ep->e.types, ev->type))
			continue;
		if ((ep->filter >= 0 || ep->group_by >= 0) && !evaluated) {
			if (whk_jq_set_eval(b->set, ev->body, ev->body_len, r,
			    &why) == -1) {
				if (why.status != WHK_EXIT_PARTIAL) {
					*err = why;
					goto fail;
				}
				memset(r, 0, b->nset * sizeof(*r));
			}
			evaluated = 1;
		}
		if (ep->filter >= 0) {
			if (r[ep->filter].kind == WHK_JQ_ERROR)
				warnx_("endpoint '%s': --filter on event %s: "
				    "%s", ep->e.name, ev->id,
				    r[ep->filter].text);
			if (!r[ep->filter].truthy)
				continue;
		}
		key = NULL;
		if (ep->group_by >= 0) {
			key = r[ep->group_by].kind == WHK_JQ_VALUE ?
			    r[ep->group_by].text : "null";
			if (r[ep->group_by].kind == WHK_JQ_ERROR)
				warnx_("endpoint '%s': --group-by on event %s: "
				    "%s", ep->e.name, ev->id,
				    r[ep->group_by].text);
		}
		matched++;
		if (group_add(b, ep, key, p, err) == -1)
			goto fail;
	}
	if (evaluated)
		whk_jq_results_clear(r, b->nset);
	if (matched == 0)
		b->unmatched++;
	if (--p->outstanding == 0)
		return event_routed(b, p, err);
	return 0;
fail:
	if (evaluated)
		whk_jq_results_clear(r, b->nset);
	if (--p->outstanding == 0)
		pev_release(b, p);
	return -1;
}

static void
endpoints_free(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->neps; i++) {
		whk_endpoint_clear(&b->eps[i].e);
		whk_jq_free(b->eps[i].template);
		free(b->eps[i].table);
	}
	free(b->eps);
	b->eps = NULL;
	b->neps = 0;
	whk_jq_set_free(b->set);
	b->set = NULL;
	free(b->results);
	b->results = NULL;
	b->nset = 0;
}

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int
collect(const struct whk_endpoint *e, void *arg)
{
	struct batch *b = arg;
	struct ep *ep, *v;

	if (e->disabled_at)
		return 0;
	if ((v = reallocarray(b->eps, b->neps + 1, sizeof(*v))) == NULL)
		return -1;
	b->eps = v;
	ep = &b->eps[b->neps];
	memset(ep, 0, sizeof(*ep));
	ep->e = *e;
	ep->e.name = dup_or_null(e->name);
	ep->e.tenant = dup_or_null(e->tenant);
	ep->e.types = dup_or_null(e->types);
	ep->e.filter = dup_or_null(e->filter);
	ep->e.group_by = dup_or_null(e->group_by);
	ep->e.template = dup_or_null(e->template);
	ep->e.url = ep->e.secret = ep->e.old_secret = NULL;
	ep->e.headers = ep->e.disabled_reason = ep->e.schedule = NULL;
	ep->filter = ep->group_by = -1;
	ep->nbuckets = e->group_by ? 1021 : 1;
	b->neps++;
	if (ep->e.name == NULL ||
	    (ep->table = calloc(ep->nbuckets, sizeof(*ep->table))) == NULL ||
	    (e->tenant && !ep->e.tenant) || (e->types && !ep->e.types) ||
	    (e->filter && !ep->e.filter) || (e->group_by && !ep->e.group_by) ||
	    (e->template && !ep->e.template))
		return -1;
	return 0;
}

/* Read the endpoints and compile their expressions, all at once. */
static int
endpoints_load(struct batch *b, struct whk_err *err)
{
	const char **exprs;
	size_t i, n = 0;
	int rc;

	endpoints_free(b);
	if (whk_store_endpoints_stamp(b->store, &b->stamp, err) == -1)
		return -1;
	b->last_reload = whk_mono_ms();
	if ((rc = whk_store_endpoint_each(b->store, collect, b, err)) != 0)
		return rc == -1 && err->msg[0] ? -1 : oom(err);
	if ((exprs = calloc(2 * b->neps + 1, sizeof(*exprs))) == NULL)
		return oom(err);
	for (i = 0; i < b->neps; i++) {
		struct ep *ep = &b->eps[i];

		if (ep->e.filter) {
			ep->filter = (int)n;
			exprs[n++] = ep->e.filter;
		}
		if (ep->e.group_by) {
			ep->group_by = (int)n;
			exprs[n++] = ep->e.group_by;
		}
	}
	b->nset = n;
	b->set = whk_jq_set_compile(exprs, n, err);
	free(exprs);
	if (b->set == NULL)
		return -1;
	if ((b->results = calloc(n + 1, sizeof(*b->results))) == NULL)
		return oom(err);
	return 0;
}

/* A long-running stream takes up endpoints added or changed meanwhile. */
static int
endpoints_check(struct batch *b, struct whk_err *err)
{
	int64_t stamp;

	if (whk_mono_ms() - b->last_reload < RELOAD_MS)
		return 0;
	b->last_reload = whk_mono_ms();
	if (whk_store_endpoints_stamp(b->store, &stamp, err) == -1)
		return -1;
	if (stamp == b->stamp)
		return 0;
	if (flush_due(b, 1, 0, NULL, err) == -1 || commit(b, err) == -1)
		return -1;
	return endpoints_load(b, err);
}

static void
reject(struct batch *b, int64_t lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reject(struct batch *b, int64_t lineno, const char *fmt, ...)
{
	va_list ap;

	b->rejected++;
	fprintf(stderr, "whk-batch: line %lld: ", (long long)lineno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A record read from stdin, waiting to be looked up with others. */
struct rec {
	int64_t	 lineno;
	size_t	 id;		/* in the id text; NO_ID: rejected, or blank */
	char	*why;		/* the rejection; NULL: none */
};

#define NO_ID	SIZE_MAX

struct recs {
	struct rec	 r[LOOKUP];
	size_t		 n;
	struct whk_buf	 ids;		/* NUL-terminated, one after another */
	const char	*idv[LOOKUP];	/* of those being looked up */
	size_t		 map[LOOKUP];	/* which record each of those is */
};

static void
recs_reset(struct recs *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++)
		free(rs->r[i].why);
	rs->n = 0;
	whk_buf_reset(&rs->ids);
}

static int
blank(const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++, n--;
	return n == 0;
}

/* Keep a line's event id, or why it has none, for the next lookup. */
static int
take_record(struct recs *rs, const char *line, size_t len, int too_long,
    int64_t lineno, struct whk_err *err)
{
	struct rec *r = &rs->r[rs->n];
	struct whk_err why;
	char id[256];
	int rc;

	r->lineno = lineno;
	r->id = NO_ID;
	r->why = NULL;
	if (too_long) {
		if (asprintf(&r->why, "longer than %d bytes", MAX_RECORD) == -1)
			return oom(err);
	} else if (!blank(line, len)) {
		if ((rc = whk_record_field(line, len, "event", id, sizeof(id),
		    &why)) == -1 && why.status != WHK_EXIT_PARTIAL) {
			*err = why;
			return -1;
		}
		if (rc == 1) {
			r->id = rs->ids.len;
			whk_buf_add(&rs->ids, id, strlen(id) + 1);
			if (rs->ids.oom)
				return oom(err);
		} else if ((r->why = strdup(rc == -1 ? why.msg :
		    "no \"event\" id in the record")) == NULL)
			return oom(err);
	}
	rs->n++;
	return 0;
}

/*
 * Look up the events of records [from, n) in one statement: a statement
 * per event cost more than finding the event.
 */
static int
lookup(struct batch *b, struct recs *rs, size_t from, size_t *nv,
    struct whk_err *err)
{
	size_t i;

	*nv = 0;
	for (i = from; i < rs->n; i++) {
		if (rs->r[i].id == NO_ID)
			continue;
		rs->idv[*nv] = rs->ids.data + rs->r[i].id;
		rs->map[i] = (*nv)++;
	}
	if (*nv == 0)
		return 0;
	/* Lookups outside a transaction would lock and unlock per batch. */
	if (begin(b, err) == -1)
		return -1;
	return whk_store_events_find(b->store, rs->idv, *nv, b->evs,
	    &b->evtext, err);
}

/*
 * Route the records in their order.  An event is looked up in the
 * transaction that routes it, as if alone: after a commit, the events
 * of the records left are read again, so that what the commit marked
 * routed is seen as such.
 */
static int
records(struct batch *b, struct recs *rs, struct whk_err *err)
{
	const struct whk_stored_event *ev;
	struct rec *r;
	size_t i = 0, nv;
	int64_t commits;

	while (i < rs->n) {
		if (lookup(b, rs, i, &nv, err) == -1)
			return -1;
		commits = b->commits;
		for (; i < rs->n && b->commits == commits; i++) {
			r = &rs->r[i];
			if (r->why)
				reject(b, r->lineno, "%s", r->why);
			else if (r->id != NO_ID) {
				ev = &b->evs[rs->map[i]];
				if (ev->seq == 0)
					reject(b, r->lineno, "no event '%s' in "
					    "the store", rs->ids.data + r->id);
				else if (route(b, ev, err) == -1)
					return -1;
			}
			if (tick(b, err) == -1)
				return -1;
		}
	}
	return 0;
}

/* Records on stdin: windows are honoured while input is awaited. */
static int
stream(struct batch *b, struct whk_err *err)
{
	struct whk_lines r;
	struct whk_err why;
	struct recs *rs;
	const char *line;
	size_t len;
	int64_t wait;
	int rc = 0, more = 1, too_long, failed;

	if ((rs = calloc(1, sizeof(*rs))) == NULL ||
	    (b->evs = calloc(LOOKUP, sizeof(*b->evs))) == NULL ||
	    whk_lines_init(&r, STDIN_FILENO, MAX_RECORD) == -1) {
		free(rs);
		return oom(err);
	}
	while (!stop && more) {
		if (!whk_lines_ready(&r)) {
			/* Input paused: send what need not wait, commit. */
			if (flush_due(b, 0, 1, &wait, err) == -1 ||
			    commit(b, err) == -1 ||
			    endpoints_check(b, err) == -1) {
				rc = -1;
				break;
			}
			if (wait == -1 || wait > RELOAD_MS)
				wait = RELOAD_MS;
			if (whk_lines_wait(&r, (int)wait) != 1)
				continue;
		}
		/* What is there already, taken together; never waited for. */
		do {
			if ((rc = whk_lines_next(&r, &line, &len, &too_long,
			    err)) <= 0) {
				more = 0;
				break;
			}
			rc = take_record(rs, line, len, too_long, r.lineno,
			    err);
		} while (rc == 0 && !stop && rs->n < LOOKUP &&
		    whk_lines_ready(&r));
		/* The lines before a failure are handled first, as ever. */
		if ((failed = rc == -1))
			why = *err;
		rc = records(b, rs, err);
		recs_reset(rs);
		if (rc == -1)
			break;
		if (failed) {
			*err = why;
			rc = -1;
			break;
		}
	}
	whk_lines_free(&r);
	whk_buf_free(&rs->ids);
	free(rs);
	if (rc == -1)
		return -1;
	return flush_due(b, 1, 0, NULL, err);
}

/* Every event not yet routed; open windows are left to the next run. */
static int
pending(struct batch *b, int64_t limit, struct whk_err *err)
{
	struct whk_stored_event *evs;
	struct group *g;
	int64_t after = 0, taken = 0;
	size_t i, n, max;
	int rc = 0;

	if ((evs = b->evs = calloc(CHUNK, sizeof(*evs))) == NULL)
		return oom(err);
	while (!stop && (limit == 0 || taken < limit)) {
		max = CHUNK;
		if (limit > 0 && (int64_t)max > limit - taken)
			max = (size_t)(limit - taken);
		if (whk_store_events_unrouted(b->store, after, evs, max, &n,
		    &b->evtext, err) == -1) {
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		for (i = 0; i < n && rc == 0; i++) {
			after = evs[i].seq;
			rc = route(b, &evs[i], err);
		}
		taken += (int64_t)n;
		if (rc == -1)
			break;
		if (tick(b, err) == -1) {
			rc = -1;
			break;
		}
	}
	if (rc == -1)
		return -1;
	if (flush_due(b, b->dry_run, 1, NULL, err) == -1)
		return -1;
	/* What still waits for its window stays unrouted for later. */
	while ((g = b->oldest) != NULL) {
		b->waiting += (int64_t)g->n;
		group_drop(b, g);
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	struct batch b;
	struct whk_err err = { 0, "" };
	struct sigaction sa;
	const char *store_opt = NULL, *limit_opt = NULL;
	char path[4096];
	int64_t limit = 0;
	size_t i;
	int ch, verbose = 0, status = WHK_EXIT_OK;

	memset(&b, 0, sizeof(b));
	while ((ch = getopt_long(argc, argv, "s:nvhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			store_opt = optarg;
			break;
		case 'p':
			b.pending = 1;
			break;
		case 'l':
			limit_opt = optarg;
			break;
		case 'n':
			b.dry_run = 1;
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
			printf("whk-batch %s\n", WHK_VERSION);
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
		if (!b.pending) {
			warnx_("--limit: only with --pending");
			return WHK_EXIT_USAGE;
		}
		if (whk_parse_uint(limit_opt, 1, INT64_MAX, &limit,
		    &err) == -1) {
			warnx_("--limit: %s", err.msg);
			return WHK_EXIT_USAGE;
		}
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (whk_now_init(&err) == -1 ||
	    whk_store_path(store_opt, path, sizeof(path), &err) == -1 ||
	    (b.store = whk_store_open(path, &err)) == NULL) {
		warnx_("%s", err.msg);
		return err.status;
	}

	if (endpoints_load(&b, &err) == -1 ||
	    (b.pending ? pending(&b, limit, &err) : stream(&b, &err)) == -1 ||
	    commit(&b, &err) == -1) {
		/* Nothing of the open transaction was printed. */
		whk_store_rollback(b.store);
		warnx_("%s", err.msg);
		status = err.status;
	}
	if (verbose)
		fprintf(stderr, "whk-batch: %lld events: %lld webhooks made "
		    "of %lld, %lld matched no endpoint, %lld already routed, "
		    "%lld taken by another batcher, %lld wait for a window\n",
		    (long long)b.events, (long long)b.webhooks,
		    (long long)b.linked_events, (long long)b.unmatched,
		    (long long)b.already, (long long)b.conflicts,
		    (long long)b.waiting);

	if (status == WHK_EXIT_OK && b.rejected > 0)
		status = WHK_EXIT_PARTIAL;
	/* Groups still open after a failure: their events stay unrouted. */
	while (b.oldest)
		group_drop(&b, b.oldest);
	endpoints_free(&b);
	whk_store_close(b.store);
	whk_buf_free(&b.out);
	whk_buf_free(&b.body);
	for (i = 0; i < b.nrouted; i++)
		pev_release(&b, b.routed[i]);
	free(b.routed);
	free(b.routed_seqs);
	free(b.seqs);
	free(b.linked);
	free(b.evs);
	whk_buf_free(&b.evtext);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warnx_("write error: %s", strerror(errno));
		return WHK_EXIT_SYSTEM;
	}
	return status;
}
