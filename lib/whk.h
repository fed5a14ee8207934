/*
 * whk.h - the whk library: store, JSON and jq, HTTP, signing, utilities.
 *
 * The library never exits and never prints.  Every call that can fail
 * takes a struct whk_err and fills it in; cmd/ reports it and turns its
 * class into the exit status shared by every program (see whk(7)).
 */
#ifndef WHK_H
#define WHK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WHK_VERSION "0.1.0"

/* Exit statuses, the same for every command. */
enum {
	WHK_EXIT_OK = 0,	/* all done */
	WHK_EXIT_PARTIAL = 1,	/* done, some records rejected or failed */
	WHK_EXIT_USAGE = 2,	/* bad command line or option value */
	WHK_EXIT_STORE = 3,	/* store locked, read-only, corrupt, full */
	WHK_EXIT_SYSTEM = 4	/* any other system error */
};

/* An error: its class is the exit status it deserves. */
struct whk_err {
	int	 status;	/* one of WHK_EXIT_* */
	char	 msg[512];
};

int	 whk_error(struct whk_err *, int status, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* Growable byte buffer; never fails silently: whk_buf_oom() tells. */
struct whk_buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
	int	 oom;
};

void	 whk_buf_add(struct whk_buf *, const void *, size_t);
void	 whk_buf_puts(struct whk_buf *, const char *);
void	 whk_buf_printf(struct whk_buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 whk_buf_int(struct whk_buf *, int64_t);
void	 whk_buf_json_str(struct whk_buf *, const char *);	/* null if NULL */
void	 whk_buf_json_strn(struct whk_buf *, const char *, size_t);
void	 whk_buf_json_time(struct whk_buf *, int64_t ms);	/* null if 0 */
void	 whk_buf_reset(struct whk_buf *);
void	 whk_buf_free(struct whk_buf *);

/* Parsing of the common value syntaxes. Return 0 or -1 (and fill err). */
int	 whk_parse_duration(const char *, int64_t *ms, struct whk_err *);
int	 whk_parse_size(const char *, int64_t *bytes, struct whk_err *);
int	 whk_parse_uint(const char *, int64_t min, int64_t max, int64_t *,
	    struct whk_err *);
int	 whk_parse_time(const char *, int64_t *ms, struct whk_err *);
void	 whk_format_duration(int64_t ms, char *, size_t);
void	 whk_format_time(int64_t ms, char *, size_t);	/* RFC 3339, UTC */

/* The clock: real time, or WHK_NOW when set (tests walk weeks in seconds). */
int	 whk_now_init(struct whk_err *);
int64_t	 whk_now_ms(void);
int64_t	 whk_mono_ms(void);	/* a monotonic clock, for timers */

/* Time-sortable unique ids: prefix "evt", "msg", "atm". */
#define WHK_ID_LEN 31	/* "xxx_" + 26 + NUL */
int	 whk_id_new(const char *prefix, char out[WHK_ID_LEN], struct whk_err *);
/* The smallest id of the given prefix made at or after ms. */
void	 whk_id_floor(const char *prefix, int64_t ms, char out[WHK_ID_LEN]);

/* Text checks. */
int	 whk_utf8_valid(const char *, size_t, size_t *bad_offset);
int	 whk_name_valid(const char *);	/* endpoint names */
int	 whk_glob_list_valid(const char *, struct whk_err *);
int	 whk_glob_list_match(const char *list, const char *type);
int	 whk_header_valid(const char *, struct whk_err *);

/* Addresses that must not be reached unless an endpoint allows it. */
int	 whk_ip_literal_private(const char *host, int *is_literal);
int	 whk_sockaddr_private(const void *sockaddr);

/* Where the store lives: -s, else $WHK_STORE, else the XDG data dir. */
int	 whk_store_path(const char *opt, char *out, size_t, struct whk_err *);

/*
 * lines.c: NDJSON input with a bounded buffer, and a way to tell whether
 * the next line would block, so writers commit when their input pauses.
 */
struct whk_lines {
	int	 fd;
	char	*buf;
	size_t	 cap, start, end, scan;
	size_t	 max;		/* longest line kept */
	int	 eof;
	int	 dropping;	/* in an overlong line: dropping its rest */
	int64_t	 lineno;
};
int	 whk_lines_init(struct whk_lines *, int fd, size_t max);
/* 1 and a line (without its end of line), 0 at end, -1 on error. */
int	 whk_lines_next(struct whk_lines *, const char **, size_t *,
	    int *too_long, struct whk_err *);
int	 whk_lines_ready(struct whk_lines *);
int	 whk_lines_wait(struct whk_lines *, int ms);
void	 whk_lines_free(struct whk_lines *);

/*
 * sign.c: secrets and Standard Webhooks signatures (libcrypto).
 */
int	 whk_secret_new(char *out, size_t, struct whk_err *);
int	 whk_secret_valid(const char *, struct whk_err *);
void	 whk_secret_redact(const char *secret, char *out, size_t);
/*
 * A secret made ready to sign with, once rather than per signature.  A
 * key is one thread's at a time, as signing reuses it.  NULL: invalid
 * secret (WHK_EXIT_PARTIAL) or no memory.
 */
struct whk_key;
struct whk_key *whk_key_new(const char *secret, struct whk_err *);
void	 whk_key_free(struct whk_key *);
/* "v1,<sig>" for each key, space-separated, appended to out. */
int	 whk_sign(struct whk_key *const *keys, size_t nkeys,
	    const char *msg_id, int64_t timestamp, const char *body,
	    size_t len, struct whk_buf *out, struct whk_err *);

/*
 * backoff.c: retry schedules.  Step n is the wait after failed attempt n
 * (1 is the first attempt); whk_schedule_wait gives it with jitter of up
 * to 20% either way, or -1 when the schedule is spent.
 */
#define WHK_SCHEDULE_DEFAULT "5s,1m,5m,30m,2h,5h,10h,14h,1d*6"
struct whk_schedule {
	int64_t	*steps;		/* ms */
	size_t	 n;
};
int	 whk_schedule_parse(const char *, struct whk_schedule *,
	    struct whk_err *);
void	 whk_schedule_free(struct whk_schedule *);
int64_t	 whk_schedule_wait(const struct whk_schedule *, int64_t attempt,
	    uint64_t jitter_seed);

/*
 * http.c: URL checks (libcurl's URL parser).
 */
struct whk_url {
	char	 scheme[8];
	char	 host[256];
	int	 port;
};
int	 whk_url_parse(const char *, struct whk_url *, struct whk_err *);
/* Refuse private and loopback destinations unless allowed. */
int	 whk_url_check(const char *, int allow_private, struct whk_err *);

/*
 * Concurrent POSTs.  The caller owns each request and everything it
 * points to until whk_http_done() hands it back.
 */
struct whk_http;
struct whk_http_req {
	/* Filled in by the caller. */
	const char	 *url;
	const char	**headers;		/* "Name: value" */
	size_t		  nheaders;
	const char	 *body;
	size_t		  body_len;
	int64_t		  timeout_ms;
	int64_t		  connect_timeout_ms;
	int		  allow_private;
	void		 *user;
	/* What came of it. */
	int		  status;		/* HTTP status; 0: no response */
	int64_t		  ms;
	char		  error[512];		/* "" when none */
	struct whk_buf	  excerpt;		/* the response's start */
	int64_t		  response_bytes;
	int64_t		  retry_after_s;	/* -1: none given */
	/* The library's own. */
	int		  refused, truncated;
	char		  errbuf[256];
	void		 *handle, *slist;
	struct whk_http_req *next_done, *next_run, *prev_run;
};
struct whk_http	*whk_http_new(size_t max_connections, struct whk_err *);
int		 whk_http_start(struct whk_http *, struct whk_http_req *,
		    struct whk_err *);
/*
 * Move requests along and wait up to timeout_ms for one to finish or
 * for fd (-1: none) to be readable, which *fd_ready tells.
 */
int		 whk_http_wait(struct whk_http *, int fd, int timeout_ms,
		    int *fd_ready, struct whk_err *);
struct whk_http_req *whk_http_done(struct whk_http *);	/* NULL: none */
size_t		 whk_http_running(const struct whk_http *);
void		 whk_http_abort(struct whk_http *);
void		 whk_http_wakeup(struct whk_http *);
void		 whk_http_free(struct whk_http *);

/*
 * json.c: all use of jv and jq.
 */
struct whk_jq;
struct whk_jq	*whk_jq_compile(const char *expr, const char *what,
		    struct whk_err *);
void		 whk_jq_free(struct whk_jq *);
int		 whk_jq_apply(struct whk_jq *, const char *text, size_t len,
		    struct whk_buf *out, struct whk_err *);
int		 whk_jq_each(struct whk_jq *, const char *text, size_t len,
		    struct whk_buf *out, struct whk_err *);

/* Many expressions compiled as one program and run together. */
enum { WHK_JQ_NONE, WHK_JQ_VALUE, WHK_JQ_ERROR };
struct whk_jq_result {
	int	 kind;		/* WHK_JQ_* */
	int	 truthy;	/* a value neither false nor null */
	char	*text;		/* the value as JSON, or the error */
};
struct whk_jq_set;
struct whk_jq_set *whk_jq_set_compile(const char *const *exprs, size_t n,
		    struct whk_err *);
int		 whk_jq_set_eval(struct whk_jq_set *, const char *text,
		    size_t len, struct whk_jq_result *out, struct whk_err *);
void		 whk_jq_results_clear(struct whk_jq_result *, size_t n);
void		 whk_jq_set_free(struct whk_jq_set *);

/* A top-level string member of a record line ("event", "webhook"). */
int		 whk_record_field(const char *line, size_t len,
		    const char *name, char *out, size_t outsz,
		    struct whk_err *);

/* How whk-ingest turns a line into an event. */
struct whk_ingest_rules {
	struct whk_jq	*map;
	struct whk_jq	*type_from;
	struct whk_jq	*tenant_from;
	struct whk_jq	*key_from;
	struct whk_jq	*require;
};

/* An event as stored: body is the raw line unless mapped. */
struct whk_event {
	const char	*body;		/* not NUL-terminated necessarily */
	size_t		 body_len;
	char		*type;		/* NULL when absent */
	char		*tenant;
	char		*key;
	char		*mapped;	/* owned body when --map rewrote it */
};

/*
 * Validate one input line and extract its fields.  line[len] must be
 * readable and NUL (whk_lines_next gives lines so).  Returns 0, or -1 with
 * the reason in err (err->status WHK_EXIT_PARTIAL: the line is rejected).
 */
int	 whk_event_parse(const char *line, size_t len,
	    const struct whk_ingest_rules *, struct whk_event *,
	    struct whk_err *);
void	 whk_event_clear(struct whk_event *);

/*
 * store.c: all SQL.
 */
struct whk_store;

struct whk_store *whk_store_open(const char *path, struct whk_err *);
void		 whk_store_close(struct whk_store *);
const char	*whk_store_file(const struct whk_store *);
int		 whk_store_cache(struct whk_store *, int kib, struct whk_err *);
int		 whk_store_begin(struct whk_store *, struct whk_err *);
int		 whk_store_begin_read(struct whk_store *, struct whk_err *);
int		 whk_store_commit(struct whk_store *, struct whk_err *);
void		 whk_store_rollback(struct whk_store *);
int		 whk_store_schema_version(void);

struct whk_endpoint {
	int64_t	 id;
	char	*name;
	char	*url;
	char	*secret;
	char	*old_secret;		/* valid until old_secret_until */
	int64_t	 old_secret_until;	/* ms; 0 when none */
	char	*tenant;
	char	*types;
	char	*filter;
	char	*group_by;
	char	*template;
	char	*headers;		/* "K: V" lines joined by '\n' */
	int64_t	 batch;
	int64_t	 batch_bytes;
	int64_t	 window_ms;
	int64_t	 timeout_ms;
	int64_t	 concurrency;
	int64_t	 rate;			/* requests per second; 0: no cap */
	char	*schedule;		/* whk-retry's steps; NULL: its own */
	int	 allow_private;
	int64_t	 disabled_at;		/* ms; 0 when enabled */
	char	*disabled_reason;
	int64_t	 created_at;
	int64_t	 updated_at;
};

void	 whk_endpoint_defaults(struct whk_endpoint *);
void	 whk_endpoint_clear(struct whk_endpoint *);

/* Return 0, 1 when not found (or already exists for add), -1 on error. */
int	 whk_store_endpoint_add(struct whk_store *, const struct whk_endpoint *,
	    struct whk_err *);
int	 whk_store_endpoint_get(struct whk_store *, const char *name,
	    struct whk_endpoint *, struct whk_err *);
int	 whk_store_endpoint_update(struct whk_store *,
	    const struct whk_endpoint *, struct whk_err *);
int	 whk_store_endpoint_remove(struct whk_store *, const char *name,
	    int *kept_history, struct whk_err *);
typedef int (*whk_endpoint_fn)(const struct whk_endpoint *, void *);
int	 whk_store_endpoint_each(struct whk_store *, whk_endpoint_fn, void *,
	    struct whk_err *);

/*
 * Store an event inside the open transaction.  id receives the new id,
 * or the first event's id when the key was seen before (*duplicate = 1).
 */
int	 whk_store_event_add(struct whk_store *, const struct whk_event *,
	    char id[WHK_ID_LEN], int *duplicate, struct whk_err *);

/*
 * An event as the store holds it.  Read in batches: the strings of a
 * batch live in the buffer given for it, until its next use.
 */
struct whk_stored_event {
	int64_t		 seq;		/* 0: no such event */
	char		 id[WHK_ID_LEN];
	const char	*type;
	const char	*tenant;
	int64_t		 received_at;
	int		 routed;	/* whk-batch has handled it */
	const char	*body;		/* NUL-terminated */
	size_t		 body_len;
};
/*
 * The events named by ids[0..n) into out[0..n), in one go; out[i].seq is
 * 0 when the store holds no event ids[i].
 */
int	 whk_store_events_find(struct whk_store *, const char *const *ids,
	    size_t n, struct whk_stored_event *out, struct whk_buf *text,
	    struct whk_err *);
/*
 * Up to max events not yet routed with seq > after, oldest first, into
 * out; *n receives how many.
 */
int	 whk_store_events_unrouted(struct whk_store *, int64_t after,
	    struct whk_stored_event *out, size_t max, size_t *n,
	    struct whk_buf *text, struct whk_err *);
int	 whk_store_events_routed(struct whk_store *, const int64_t *seqs,
	    size_t n, struct whk_err *);
/* Changes whenever an endpoint is added, changed or removed. */
int	 whk_store_endpoints_stamp(struct whk_store *, int64_t *,
	    struct whk_err *);

/*
 * Webhooks.  A body is kept only when a template made it; otherwise it
 * is its events as stored, one alone ("event") or as an array ("array"),
 * built when needed, so fan-out never copies an event.
 */
enum { WHK_BODY_STORED, WHK_BODY_EVENT, WHK_BODY_ARRAY };
/*
 * Make a webhook of events seqs[0..n) and link them to it.  linked[i]
 * tells whether seqs[i] was linked; it was not when it is in another
 * webhook of the endpoint already.  With *nlinked below n, the caller
 * sets the counts with _finish, or with none linked drops it.
 */
int	 whk_store_webhook_create(struct whk_store *, int64_t endpoint_id,
	    int body_kind, const char *group_key, int64_t first_event_at,
	    const int64_t *seqs, size_t n, int64_t bytes,
	    unsigned char *linked, size_t *nlinked, char id[WHK_ID_LEN],
	    int64_t *seq, struct whk_err *);
/* Set the counts (and a template's body); no events linked: drop it. */
int	 whk_store_webhook_finish(struct whk_store *, int64_t seq,
	    int64_t events, int64_t bytes, const char *body, size_t len,
	    struct whk_err *);
int	 whk_store_webhook_drop(struct whk_store *, int64_t seq,
	    struct whk_err *);
/* The body as it is sent, appended to out. */
int	 whk_store_webhook_body(struct whk_store *, int64_t seq,
	    struct whk_buf *out, struct whk_err *);

/* A webhook as whk-deliver and whk-retry see it. */
struct whk_webhook {
	int64_t	 seq;
	char	 id[WHK_ID_LEN];
	int64_t	 endpoint_id;
	char	 state[16];		/* pending failed delivered dead */
	int64_t	 attempts;
	int64_t	 next_at, not_before, lease_until;	/* ms; 0: none */
	int	 resend;
	int64_t	 created_at, first_event_at;
	int64_t	 events, bytes;
	int64_t	 lost;			/* claim recorded this attempt lost */
	char	 lost_id[WHK_ID_LEN];
};
/* 0 and the webhook, 1 when there is none with that id, -1 on error. */
int	 whk_store_webhook_find(struct whk_store *, const char *id,
	    struct whk_webhook *, struct whk_err *);
/* Up to max never attempted, unclaimed, with seq > after, oldest first. */
int	 whk_store_webhooks_fresh(struct whk_store *, int64_t endpoint_id,
	    int64_t after, struct whk_webhook *out, size_t max, size_t *n,
	    struct whk_err *);
enum {
	WHK_CLAIM_OK,
	WHK_CLAIM_GONE,		/* no such webhook */
	WHK_CLAIM_DONE,		/* delivered or dead */
	WHK_CLAIM_LEASED,	/* another deliverer has it */
	WHK_CLAIM_NOT_DUE	/* its next attempt is later */
};
/*
 * Inside a transaction: lease the webhook to owner until lease_until if
 * it may be attempted now.  Returns WHK_CLAIM_* or -1, and w as it is.
 */
int	 whk_store_webhook_claim(struct whk_store *, int64_t seq,
	    const char *owner, int64_t lease_until, struct whk_webhook *,
	    struct whk_err *);
int	 whk_store_webhook_release(struct whk_store *, int64_t seq,
	    const char *owner, struct whk_err *);
const char *whk_attempt_kind(const struct whk_webhook *);
#define WHK_LOST_ERROR "unknown outcome: the deliverer that claimed it " \
	"stopped before recording the attempt (its lease ran out)"

/* One attempt, recorded with the webhook's new state. */
struct whk_attempt {
	int64_t		 webhook_seq, endpoint_id;
	int64_t		 n;
	const char	*kind;		/* first, retry, resend */
	int64_t		 started_at;
	int64_t		 ms;		/* -1: unknown */
	int		 status;	/* 0: no response */
	int		 delivered;
	const char	*error;
	const char	*response;
	size_t		 response_len;
	int64_t		 retry_after;	/* ms; 0: none */
	int64_t		 next_at;	/* when failed: 0 means given up */
	int		 keep_resend;	/* a resend still owed after this */
	const char	*owner;		/* whose lease it ends; NULL: any */
	char		 id[WHK_ID_LEN];	/* the atm_ id made */
};
/* 0; 1 when recorded but the webhook was no longer a->owner's; -1. */
int	 whk_store_attempt_record(struct whk_store *, struct whk_attempt *,
	    struct whk_err *);
int	 whk_store_endpoint_disable(struct whk_store *, int64_t id,
	    const char *reason, struct whk_err *);

/*
 * whk-retry's part of the store.
 */
struct whk_unscheduled {
	int64_t	 seq, endpoint_id, attempts, last_attempt_at, not_before;
};
/* Up to max failed webhooks with no next time, seq > after, by seq. */
int	 whk_store_unscheduled(struct whk_store *, int64_t after,
	    struct whk_unscheduled *, size_t max, size_t *n,
	    struct whk_err *);
/* Give a failed, unscheduled webhook its next time; 0 makes it dead. */
int	 whk_store_webhook_schedule(struct whk_store *, int64_t seq,
	    int64_t next_at, struct whk_err *);
struct whk_due {
	int64_t	 seq, endpoint_id, attempts, due;
	char	 id[WHK_ID_LEN];
	char	 reason[16];		/* retry, expired, resend */
};
typedef int (*whk_due_fn)(const struct whk_due *, void *);
/* Every webhook due by now, not in flight nor handed out, by due time. */
int	 whk_store_due(struct whk_store *, int64_t now, whk_due_fn, void *,
	    struct whk_err *);
/* Printed for a deliverer: not due again for anyone until until. */
int	 whk_store_webhook_hand(struct whk_store *, int64_t seq, int64_t until,
	    struct whk_err *);
struct whk_health {
	int	 tripped;		/* the last attempts all failed */
	int64_t	 failing_since;		/* tripped: the streak's first attempt */
	int	 busy;			/* tripped: one in flight or handed out */
};
int	 whk_store_endpoint_health(struct whk_store *, int64_t id,
	    int64_t last, int64_t now, struct whk_health *, struct whk_err *);
/* Owe a resend now, whatever the state; handed out until hand_until. */
int	 whk_store_webhook_resend(struct whk_store *, int64_t seq, int64_t now,
	    int64_t hand_until, struct whk_err *);
struct whk_select {
	int64_t		 endpoint_id;	/* 0: any */
	const char	*state;		/* NULL: any */
	int64_t		 since, until;	/* created, ms; until 0: no bound */
	int64_t		 limit;		/* 0: none */
};
typedef int (*whk_select_fn)(int64_t seq, const char *id, void *);
int	 whk_store_webhooks_select(struct whk_store *, const struct whk_select *,
	    whk_select_fn, void *, struct whk_err *);

/*
 * whk-log's part: rows of named columns.  A column named with a leading
 * '_' is the program's, not the record's.
 */
enum { WHK_COL_NULL, WHK_COL_INT, WHK_COL_REAL, WHK_COL_TEXT };
struct whk_col {
	const char	*name;
	int		 type;
	int64_t		 i;
	double		 r;
	const char	*s;
	size_t		 len;
};
#define WHK_COLS_MAX	32
/* 0 to go on, 1 to stop, -1 out of memory. */
typedef int (*whk_row_fn)(const struct whk_col *, int n, void *);
enum { WHK_LOG_EVENTS, WHK_LOG_WEBHOOKS, WHK_LOG_ATTEMPTS, WHK_LOG_ENDPOINTS };
struct whk_log_query {
	int		 kind;		/* WHK_LOG_* */
	const char	*endpoint, *tenant, *type, *status;
	const char	*event, *key, *webhook;
	int64_t		 since, until;	/* ms; 0: none */
	int64_t		 after;		/* seq; 0: none */
	int64_t		 limit;		/* 0: none */
	int		 oldest_first;
	int		 with_response;	/* attempts: the excerpt too */
	whk_row_fn	 head;		/* given the names before any row */
};
int	 whk_store_log(struct whk_store *, const struct whk_log_query *,
	    whk_row_fn, void *, struct whk_err *);
/* Latency buckets, ms, cumulative; the last, +Inf, is the count. */
#define WHK_BUCKETS	12
const int64_t	*whk_buckets_ms(void);
enum { WHK_AGG_SLO, WHK_AGG_ENDPOINTS };
int	 whk_store_agg(struct whk_store *, int which, const char *endpoint,
	    int64_t since, int64_t within, whk_row_fn, void *,
	    struct whk_err *);
typedef void (*whk_scan_fn)(int64_t endpoint_id, int delivered,
	    int64_t first_latency_ms, void *);	/* -1: not a first attempt */
int	 whk_store_attempts_scan(struct whk_store *, int64_t since,
	    const char *endpoint, whk_scan_fn, void *, struct whk_err *);
typedef void (*whk_wscan_fn)(int64_t endpoint_id, const char *state,
	    int64_t delivery_latency_ms, int64_t first_event_at, void *);
int	 whk_store_webhooks_scan(struct whk_store *, int64_t since,
	    const char *endpoint, whk_wscan_fn, void *, struct whk_err *);
struct whk_pruned {
	int64_t	 webhooks, attempts, events;
};
int	 whk_store_prune(struct whk_store *, int64_t before, int dry_run,
	    struct whk_pruned *, struct whk_err *);

#endif /* WHK_H */
