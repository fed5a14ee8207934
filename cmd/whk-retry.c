/*
 * whk-retry - the slow lane: schedule failed webhooks, print the due ones.
 *
 * One pass, run by cron ("whk-retry | whk-deliver"): every failed
 * webhook without a next time gets one from the schedule (the
 * endpoint's, --schedule's or the default, about a week), or is given
 * up as dead once the schedule is spent; then every webhook due now (a
 * failure whose time came, a lease a dead deliverer left, a resend owed)
 * is printed once, as a record whk-deliver reads.  A printed webhook is
 * handed out for a while, so that overlapping runs print it once and a
 * lost pipe only delays it.  A circuit breaker lets an endpoint whose
 * recent attempts all failed have one webhook at a time, a probe; an
 * endpoint that has failed everything for days is disabled, and its
 * webhooks wait.  With --now it resends: webhooks named, piped or
 * selected are made due at once whatever their state.
 *
 * It does not send anything (whk-deliver does), and it never touches
 * webhooks never attempted: those are the first-attempt lane's.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define HAND_MS		(10 * 60 * 1000)	/* a printed webhook's hand-out */
#define CHUNK		8192			/* schedulings a transaction */
#define MAX_RECORD	(64 * 1024)
#define DEFAULT_TRIP	5
#define DEFAULT_DISABLE	"5d"

static const char usage[] =
"usage: whk-retry [-s store] [--schedule list] [--trip-after n]\n"
"                 [--disable-after duration] [--limit n] [--dry-run] [-qv]\n"
"       whk-retry --now [-s store] [--endpoint name] [--status state]\n"
"                 [--since time] [--until time] [--limit n] [--dry-run] [-qv]\n"
"                 [id ...]\n";

static const char help[] =
"\n"
"Schedule failed webhooks and print the ones due now, for whk-deliver:\n"
"  * * * * *  whk-retry | whk-deliver\n"
"With --now, resend webhooks whatever their state.\n"
"\n"
"      --schedule LIST      retry steps, e.g. 5s,1m,1h,1d*6 (default\n"
"                           " WHK_SCHEDULE_DEFAULT ")\n"
"      --trip-after N       failed attempts in a row that trip an\n"
"                           endpoint's breaker: one probe at a time (5)\n"
"      --disable-after DUR  disable an endpoint failing everything this\n"
"                           long (default " DEFAULT_DISABLE ")\n"
"      --now                resend the webhooks named, piped or selected\n"
"      --endpoint NAME      only this endpoint's webhooks\n"
"      --status STATE       only webhooks in this state (pending, failed,\n"
"                           delivered, dead)\n"
"      --since TIME         only webhooks made at or after TIME\n"
"      --until TIME         only webhooks made before TIME\n"
"                           (TIME: Unix seconds, RFC 3339, or a duration\n"
"                           meaning that long ago)\n"
"  -l, --limit N            print at most N webhooks\n"
"  -n, --dry-run            print what would be due, change nothing\n"
"  -s, --store PATH         the store (default $WHK_STORE)\n"
"  -q, --quiet              say nothing but errors\n"
"  -v, --verbose            a summary on stderr at the end\n"
"  -h, --help               show this help\n"
"  -V, --version            show the version\n"
"\n"
"Exit: 0 done, 1 some records or ids rejected, 2 usage, 3 store\n"
"unavailable, 4 system error.  See whk-retry(1).\n";

enum {
	O_SCHEDULE = 256, O_TRIP, O_DISABLE, O_NOW, O_ENDPOINT, O_STATUS,
	O_SINCE, O_UNTIL
};

static const struct option longopts[] = {
	{ "schedule",		required_argument, NULL, O_SCHEDULE },
	{ "trip-after",		required_argument, NULL, O_TRIP },
	{ "disable-after",	required_argument, NULL, O_DISABLE },
	{ "now",		no_argument,	   NULL, O_NOW },
	{ "endpoint",		required_argument, NULL, O_ENDPOINT },
	{ "status",		required_argument, NULL, O_STATUS },
	{ "since",		required_argument, NULL, O_SINCE },
	{ "until",		required_argument, NULL, O_UNTIL },
	{ "limit",		required_argument, NULL, 'l' },
	{ "dry-run",		no_argument,	   NULL, 'n' },
	{ "store",		required_argument, NULL, 's' },
	{ "quiet",		no_argument,	   NULL, 'q' },
	{ "verbose",		no_argument,	   NULL, 'v' },
	{ "help",		no_argument,	   NULL, 'h' },
	{ "version",		no_argument,	   NULL, 'V' },
	{ NULL,			0,		   NULL, 0 }
};

/* An endpoint as whk-retry sees it. */
struct rep {
	int64_t			 id;
	char			*name;
	int			 disabled;
	int64_t			 changed_at;	/* enabled or set last */
	struct whk_schedule	 sched;		/* its own; n 0: none */
	int			 health_known;
	struct whk_health	 health;
	int			 probed;	/* a probe printed this run */
};

struct retry {
	struct whk_store	*store;
	struct whk_schedule	 sched;		/* --schedule or the default */
	struct rep		*eps;
	size_t			 neps;
	int64_t			 now, trip_after, disable_after, limit;
	int			 dry_run, resend;
	const char		*only;		/* --endpoint */
	struct whk_select	 sel;
	int			 filtered;	/* a selection option given */
	struct whk_due		*due;		/* this run's, or the resends */
	size_t			 ndue, capdue;
	struct whk_buf		 out;
	/* What happened. */
	int64_t			 scheduled, dead, emitted, probes, held;
	int64_t			 rejected;
};

static void
warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fputs("whk-retry: ", stderr);
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

static struct rep *
rep_by_id(struct retry *r, int64_t id)
{
	size_t i;

	for (i = 0; i < r->neps; i++)
		if (r->eps[i].id == id)
			return &r->eps[i];
	return NULL;
}

static int
collect(const struct whk_endpoint *e, void *arg)
{
	struct retry *r = arg;
	struct rep *v, *ep;
	struct whk_err err;

	if ((v = reallocarray(r->eps, r->neps + 1, sizeof(*v))) == NULL)
		return -1;
	r->eps = v;
	ep = &r->eps[r->neps++];
	memset(ep, 0, sizeof(*ep));
	ep->id = e->id;
	ep->disabled = e->disabled_at != 0;
	ep->changed_at = e->updated_at;
	if ((ep->name = strdup(e->name)) == NULL)
		return -1;
	/* whk-endpoint checked it; a schedule gone bad keeps the default. */
	if (e->schedule && whk_schedule_parse(e->schedule, &ep->sched,
	    &err) == -1)
		warnx_("endpoint '%s': --schedule: %s (using the default)",
		    e->name, err.msg);
	return 0;
}

static void
reject(struct retry *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
reject(struct retry *r, const char *fmt, ...)
{
	va_list ap;

	r->rejected++;
	fputs("whk-retry: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
add_due(struct retry *r, const struct whk_due *d)
{
	struct whk_due *v;
	size_t cap;

	if (r->ndue == r->capdue) {
		cap = r->capdue ? r->capdue * 2 : 256;
		if ((v = reallocarray(r->due, cap, sizeof(*v))) == NULL)
			return -1;
		r->due = v;
		r->capdue = cap;
	}
	r->due[r->ndue++] = *d;
	return 0;
}

static int
collect_due(const struct whk_due *d, void *arg)
{
	return add_due(arg, d);
}

/* One line per webhook printed. */
static void
due_line(struct retry *r, const struct whk_due *d, const char *reason)
{
	struct rep *ep = rep_by_id(r, d->endpoint_id);

	whk_buf_puts(&r->out, "{\"webhook\":");
	whk_buf_json_str(&r->out, d->id);
	whk_buf_puts(&r->out, ",\"endpoint\":");
	whk_buf_json_str(&r->out, ep ? ep->name : NULL);
	whk_buf_printf(&r->out, ",\"reason\":\"%s\",\"attempts\":", reason);
	whk_buf_int(&r->out, d->attempts);
	whk_buf_puts(&r->out, ",\"due_at\":");
	whk_buf_json_time(&r->out, d->due);
	whk_buf_puts(&r->out, "}\n");
}

/* The transaction is over: only now may anyone hear of it. */
static int
finish(struct retry *r, struct whk_err *err)
{
	if (r->dry_run)
		whk_store_rollback(r->store);
	else if (whk_store_commit(r->store, err) == -1) {
		whk_buf_reset(&r->out);
		return -1;
	}
	if (r->out.oom)
		return oom(err);
	if (r->out.len > 0 && (fwrite(r->out.data, 1, r->out.len, stdout) !=
	    r->out.len || fflush(stdout) == EOF))
		return whk_error(err, WHK_EXIT_SYSTEM, "write error: %s",
		    strerror(errno));
	whk_buf_reset(&r->out);
	return 0;
}

/*
 * Records on stdin.  Without --now, they only need to name webhooks the
 * store has: the pass over the store schedules what failed.  With --now,
 * each one named is to be resent.
 */
static int
read_records(struct retry *r, struct whk_err *err)
{
	struct whk_lines lines;
	struct whk_webhook w;
	struct whk_due d;
	struct whk_err why;
	const char *line;
	size_t len;
	char id[256];
	int rc, too_long;

	if (whk_lines_init(&lines, STDIN_FILENO, MAX_RECORD) == -1)
		return oom(err);
	while ((rc = whk_lines_next(&lines, &line, &len, &too_long,
	    err)) == 1) {
		if (too_long) {
			reject(r, "line %lld: longer than %d bytes",
			    (long long)lines.lineno, MAX_RECORD);
			continue;
		}
		if (len == 0)
			continue;
		if ((rc = whk_record_field(line, len, "webhook", id,
		    sizeof(id), &why)) == -1) {
			if (why.status != WHK_EXIT_PARTIAL) {
				*err = why;
				break;
			}
			reject(r, "line %lld: %s", (long long)lines.lineno,
			    why.msg);
			continue;
		}
		if (rc == 0) {
			reject(r, "line %lld: no \"webhook\" id in the record",
			    (long long)lines.lineno);
			continue;
		}
		if ((rc = whk_store_webhook_find(r->store, id, &w, err)) == -1)
			break;
		if (rc == 1) {
			reject(r, "line %lld: no webhook '%s' in the store",
			    (long long)lines.lineno, id);
			continue;
		}
		if (r->resend) {
			memset(&d, 0, sizeof(d));
			d.seq = w.seq;
			d.endpoint_id = w.endpoint_id;
			d.attempts = w.attempts;
			d.due = w.created_at;	/* for the filters */
			snprintf(d.id, sizeof(d.id), "%s", w.id);
			snprintf(d.reason, sizeof(d.reason), "%s", w.state);
			if (add_due(r, &d) == -1) {
				rc = oom(err);
				break;
			}
		}
	}
	whk_lines_free(&lines);
	return rc == -1 ? -1 : 0;
}

/*
 * Every failed webhook without a next time gets one, or is dead when
 * its schedule is spent; in small transactions, so writers wait little.
 */
static int
schedule(struct retry *r, struct whk_err *err)
{
	static struct whk_unscheduled rows[CHUNK];
	const struct whk_schedule *sch;
	struct rep *ep;
	int64_t after = 0, wait, next;
	size_t n, i;

	/* A dry run is one transaction, rolled back at the end. */
	if (r->dry_run && whk_store_begin(r->store, err) == -1)
		return -1;
	do {
		if (!r->dry_run && whk_store_begin(r->store, err) == -1)
			return -1;
		if (whk_store_unscheduled(r->store, after, rows, CHUNK, &n,
		    err) == -1)
			goto fail;
		for (i = 0; i < n; i++) {
			after = rows[i].seq;
			ep = rep_by_id(r, rows[i].endpoint_id);
			sch = ep && ep->sched.n > 0 ? &ep->sched : &r->sched;
			wait = whk_schedule_wait(sch, rows[i].attempts,
			    (uint64_t)rows[i].seq);
			next = 0;
			if (wait >= 0) {
				next = rows[i].last_attempt_at + wait;
				/* Never before the receiver asked. */
				if (next < rows[i].not_before)
					next = rows[i].not_before;
				if (next < 1)
					next = 1;
				r->scheduled++;
			} else
				r->dead++;
			if (whk_store_webhook_schedule(r->store, rows[i].seq,
			    next, err) == -1)
				goto fail;
		}
		if (!r->dry_run && whk_store_commit(r->store, err) == -1)
			goto fail;
	} while (n == CHUNK);
	return 0;
fail:
	whk_store_rollback(r->store);
	return -1;
}

/*
 * The breaker: an endpoint whose last attempts all failed gets one
 * webhook at a time.  Failing everything long enough, it is disabled.
 * Says whether d may go, and as what.
 */
static int
gate(struct retry *r, struct rep *ep, const char **reason,
    struct whk_err *err)
{
	char why[160], since[40], dur[32];
	struct whk_buf t = { 0 };

	if (!ep->health_known) {
		if (whk_store_endpoint_health(r->store, ep->id, r->trip_after,
		    r->now, &ep->health, err) == -1)
			return -1;
		ep->health_known = 1;
	}
	if (!ep->health.tripped)
		return 1;
	/* An endpoint enabled or changed since gets a fresh start. */
	if (ep->health.failing_since < ep->changed_at)
		ep->health.failing_since = ep->changed_at;
	if (r->disable_after > 0 && ep->health.failing_since > 0 &&
	    r->now - ep->health.failing_since >= r->disable_after) {
		whk_buf_json_time(&t, ep->health.failing_since);
		snprintf(since, sizeof(since), "%.*s", t.len > 2 ?
		    (int)t.len - 2 : 0, t.data ? t.data + 1 : "");
		whk_buf_free(&t);
		whk_format_duration(r->disable_after, dur, sizeof(dur));
		snprintf(why, sizeof(why), "every attempt failed for %s "
		    "(since %s)", dur, since);
		if (whk_store_endpoint_disable(r->store, ep->id, why,
		    err) == -1)
			return -1;
		ep->disabled = 1;
		if (!r->dry_run)
			warnx_("endpoint '%s' disabled: %s", ep->name, why);
		return 0;
	}
	if (ep->health.busy || ep->probed)
		return 0;
	ep->probed = 1;
	*reason = "probe";
	return 1;
}

/* Print every webhook due now, once, in one transaction. */
static int
emit(struct retry *r, struct whk_err *err)
{
	struct whk_due *d;
	struct rep *ep;
	const char *reason;
	size_t i;
	int rc;

	if (!r->dry_run && whk_store_begin(r->store, err) == -1)
		return -1;
	r->ndue = 0;
	if (whk_store_due(r->store, r->now, collect_due, r, err) == -1)
		goto fail;
	for (i = 0; i < r->ndue; i++) {
		d = &r->due[i];
		if (r->limit > 0 && r->emitted >= r->limit)
			break;
		ep = rep_by_id(r, d->endpoint_id);
		/* A disabled or removed endpoint's webhooks wait. */
		if (ep == NULL || ep->disabled ||
		    (r->only && strcmp(ep->name, r->only) != 0))
			continue;
		reason = d->reason;
		if ((rc = gate(r, ep, &reason, err)) == -1)
			goto fail;
		if (rc == 0) {
			r->held++;
			continue;
		}
		if (whk_store_webhook_hand(r->store, d->seq, r->now + HAND_MS,
		    err) == -1)
			goto fail;
		if (strcmp(reason, "probe") == 0)
			r->probes++;
		r->emitted++;
		due_line(r, d, reason);
	}
	return finish(r, err);
fail:
	whk_store_rollback(r->store);
	whk_buf_reset(&r->out);
	return -1;
}

static int
select_one(int64_t seq, const char *id, void *arg)
{
	struct retry *r = arg;
	struct whk_due d;

	memset(&d, 0, sizeof(d));
	d.seq = seq;
	snprintf(d.id, sizeof(d.id), "%s", id);
	return add_due(r, &d);
}

/*
 * --now: make each webhook due at once as a resend, whatever came of it
 * before; the ids named, else the records piped, else the selection.
 */
static int
resend(struct retry *r, char **ids, int nids, struct whk_err *err)
{
	struct whk_webhook w;
	struct whk_due *d;
	struct rep *ep;
	size_t i;
	int k, rc;

	if (whk_store_begin(r->store, err) == -1)
		return -1;
	for (k = 0; k < nids; k++) {
		/* Longer than any id, it names none (not its first bytes). */
		if (strlen(ids[k]) >= WHK_ID_LEN)
			reject(r, "no webhook '%s'", ids[k]);
		else if (select_one(0, ids[k], r) == -1)
			goto nomem;
	}
	if (nids == 0 && r->ndue == 0 && r->filtered &&
	    whk_store_webhooks_select(r->store, &r->sel, select_one, r,
	    err) == -1)
		goto fail;
	for (i = 0; i < r->ndue; i++) {
		d = &r->due[i];
		if ((rc = whk_store_webhook_find(r->store, d->id, &w,
		    err)) == -1)
			goto fail;
		if (rc == 1) {
			reject(r, "no webhook '%s'", d->id);
			continue;
		}
		ep = rep_by_id(r, w.endpoint_id);
		/* The selection narrows what was named or piped. */
		if ((r->sel.endpoint_id && w.endpoint_id != r->sel.endpoint_id) ||
		    (r->sel.state && strcmp(w.state, r->sel.state) != 0) ||
		    w.created_at < r->sel.since ||
		    (r->sel.until && w.created_at >= r->sel.until))
			continue;
		if (r->limit > 0 && r->emitted >= r->limit)
			break;
		if (ep == NULL || ep->disabled) {
			reject(r, "webhook '%s': endpoint '%s' is %s", w.id,
			    ep ? ep->name : "?", ep ? "disabled" : "removed");
			continue;
		}
		if (whk_store_webhook_resend(r->store, w.seq, r->now,
		    r->now + HAND_MS, err) == -1)
			goto fail;
		d->seq = w.seq;
		d->endpoint_id = w.endpoint_id;
		d->attempts = w.attempts;
		d->due = r->now;
		r->emitted++;
		due_line(r, d, "resend");
	}
	return finish(r, err);
nomem:
	oom(err);
fail:
	whk_store_rollback(r->store);
	whk_buf_reset(&r->out);
	return -1;
}

/* TIME: Unix seconds, RFC 3339, or a duration meaning that long ago. */
static int64_t
time_arg(const char *s, const char *opt, int64_t now)
{
	struct whk_err err;
	int64_t t;

	if (whk_parse_time(s, &t, &err) == 0)
		return t;
	if (whk_parse_duration(s, &t, &err) == 0)
		return now - t;
	warnx_("%s: '%s' is not a time (Unix seconds, RFC 3339, or a "
	    "duration ago such as 1h)", opt, s);
	exit(WHK_EXIT_USAGE);
}

int
main(int argc, char *argv[])
{
	struct retry r;
	struct whk_err err = { 0, "" };
	struct stat st;
	const char *store_opt = NULL, *sched_opt = NULL, *trip_opt = NULL;
	const char *disable_opt = DEFAULT_DISABLE, *limit_opt = NULL;
	const char *since_opt = NULL, *until_opt = NULL;
	char path[4096];
	size_t i;
	int ch, verbose = 0, quiet = 0, piped, status = WHK_EXIT_OK, rc;

	memset(&r, 0, sizeof(r));
	r.trip_after = DEFAULT_TRIP;
	while ((ch = getopt_long(argc, argv, "s:l:nqvhV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case O_SCHEDULE: sched_opt = optarg; break;
		case O_TRIP: trip_opt = optarg; break;
		case O_DISABLE: disable_opt = optarg; break;
		case O_NOW: r.resend = 1; break;
		case O_ENDPOINT: r.only = optarg; r.filtered = 1; break;
		case O_STATUS: r.sel.state = optarg; r.filtered = 1; break;
		case O_SINCE: since_opt = optarg; r.filtered = 1; break;
		case O_UNTIL: until_opt = optarg; r.filtered = 1; break;
		case 'l': limit_opt = optarg; break;
		case 'n': r.dry_run = 1; break;
		case 's': store_opt = optarg; break;
		case 'q': quiet = 1; break;
		case 'v': verbose = 1; break;
		case 'h':
			fputs(usage, stdout);
			fputs(help, stdout);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		case 'V':
			printf("whk-retry %s\n", WHK_VERSION);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		default:
			fputs(usage, stderr);
			return WHK_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 0 && !r.resend) {
		warnx_("unexpected argument '%s' (ids need --now)", argv[0]);
		fputs(usage, stderr);
		return WHK_EXIT_USAGE;
	}
	if (!r.resend && (r.sel.state || since_opt || until_opt)) {
		warnx_("--status, --since and --until select webhooks to "
		    "resend: they need --now");
		return WHK_EXIT_USAGE;
	}
	if (r.resend && (sched_opt || trip_opt)) {
		warnx_("--schedule and --trip-after do not go with --now");
		return WHK_EXIT_USAGE;
	}
	if (whk_now_init(&err) == -1) {
		warnx_("%s", err.msg);
		return err.status;
	}
	r.now = whk_now_ms();
	if (trip_opt && whk_parse_uint(trip_opt, 1, 1000, &r.trip_after,
	    &err) == -1) {
		warnx_("--trip-after: %s", err.msg);
		return WHK_EXIT_USAGE;
	}
	if (whk_parse_duration(disable_opt, &r.disable_after, &err) == -1) {
		warnx_("--disable-after: %s", err.msg);
		return WHK_EXIT_USAGE;
	}
	if (limit_opt && whk_parse_uint(limit_opt, 1, INT64_MAX, &r.limit,
	    &err) == -1) {
		warnx_("--limit: %s", err.msg);
		return WHK_EXIT_USAGE;
	}
	if (r.sel.state && strcmp(r.sel.state, "pending") != 0 &&
	    strcmp(r.sel.state, "failed") != 0 &&
	    strcmp(r.sel.state, "delivered") != 0 &&
	    strcmp(r.sel.state, "dead") != 0) {
		warnx_("--status: '%s' is not a state (pending, failed, "
		    "delivered, dead)", r.sel.state);
		return WHK_EXIT_USAGE;
	}
	if (since_opt)
		r.sel.since = time_arg(since_opt, "--since", r.now);
	if (until_opt)
		r.sel.until = time_arg(until_opt, "--until", r.now);
	piped = fstat(STDIN_FILENO, &st) == 0 &&
	    (S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode));
	if (r.resend && argc == 0 && !piped && !r.filtered) {
		warnx_("--now needs ids, records on stdin or a filter");
		fputs(usage, stderr);
		return WHK_EXIT_USAGE;
	}
	/* The last check, the first thing kept: nothing to free before. */
	if (whk_schedule_parse(sched_opt ? sched_opt : WHK_SCHEDULE_DEFAULT,
	    &r.sched, &err) == -1) {
		warnx_("--schedule: %s", err.msg);
		return WHK_EXIT_USAGE;
	}

	if (whk_store_path(store_opt, path, sizeof(path), &err) == -1 ||
	    (r.store = whk_store_open(path, &err)) == NULL) {
		whk_schedule_free(&r.sched);
		warnx_("%s", err.msg);
		return err.status;
	}
	rc = whk_store_endpoint_each(r.store, collect, &r, &err);
	if (rc == 0 && r.only) {
		for (i = 0; i < r.neps; i++)
			if (strcmp(r.eps[i].name, r.only) == 0)
				r.sel.endpoint_id = r.eps[i].id;
		if (r.sel.endpoint_id == 0) {
			err.status = WHK_EXIT_USAGE;
			snprintf(err.msg, sizeof(err.msg), "no endpoint '%s'",
			    r.only);
			rc = -1;
		}
	} else if (rc != 0 && err.msg[0] == '\0')
		oom(&err);
	if (rc != 0 ||
	    (piped && argc == 0 && read_records(&r, &err) == -1) ||
	    (r.resend ? resend(&r, argv, argc, &err) == -1 :
	    (schedule(&r, &err) == -1 || emit(&r, &err) == -1))) {
		warnx_("%s", err.msg);
		status = err.status;
	}
	if (verbose)
		fprintf(stderr, "whk-retry: scheduled %lld (%lld dead), "
		    "emitted %lld (%lld probes), held %lld (breaker), "
		    "rejected %lld\n", (long long)r.scheduled,
		    (long long)r.dead, (long long)r.emitted,
		    (long long)r.probes, (long long)r.held,
		    (long long)r.rejected);
	(void)quiet;
	if (status == WHK_EXIT_OK && r.rejected > 0)
		status = WHK_EXIT_PARTIAL;

	for (i = 0; i < r.neps; i++) {
		free(r.eps[i].name);
		whk_schedule_free(&r.eps[i].sched);
	}
	free(r.eps);
	free(r.due);
	whk_schedule_free(&r.sched);
	whk_buf_free(&r.out);
	whk_store_close(r.store);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warnx_("write error: %s", strerror(errno));
		return WHK_EXIT_SYSTEM;
	}
	return status;
}
