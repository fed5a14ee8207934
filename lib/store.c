/*
 * store.c - all SQL lives here and only here.
 *
 * One SQLite file in WAL mode with synchronous=FULL: a transaction that
 * committed survives a crash of the process and of the machine.  Writers
 * begin IMMEDIATE so that two of them queue on the busy timeout instead
 * of failing on a lock upgrade.  The schema is versioned with
 * user_version and migrated forward on open, inside one transaction.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "whk.h"

#define APPLICATION_ID	0x77686b31	/* "whk1" */
#define BUSY_TIMEOUT_MS	5000

/*
 * Migrations, oldest first.  Never edit one that has shipped: add the
 * next.  The tables hold the whole design; see share/schema.md.
 */
static const char *migrations[] = {
	/* 1 */
	"CREATE TABLE endpoints("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL,"
	"  url TEXT NOT NULL,"
	"  secret TEXT NOT NULL,"
	"  old_secret TEXT,"
	"  old_secret_until INTEGER,"
	"  tenant TEXT,"
	"  types TEXT,"
	"  filter TEXT,"
	"  group_by TEXT,"
	"  template TEXT,"
	"  headers TEXT,"
	"  batch INTEGER NOT NULL DEFAULT 1,"
	"  batch_bytes INTEGER NOT NULL DEFAULT 262144,"
	"  window_ms INTEGER NOT NULL DEFAULT 0,"
	"  timeout_ms INTEGER NOT NULL DEFAULT 15000,"
	"  concurrency INTEGER NOT NULL DEFAULT 8,"
	"  rate INTEGER,"
	"  schedule TEXT,"
	"  allow_private INTEGER NOT NULL DEFAULT 0,"
	"  disabled_at INTEGER,"
	"  disabled_reason TEXT,"
	"  removed_at INTEGER,"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL);"
	/* A removed endpoint keeps its history and frees its name. */
	"CREATE UNIQUE INDEX endpoints_name ON endpoints(name)"
	"  WHERE removed_at IS NULL;"

	"CREATE TABLE events("
	"  seq INTEGER PRIMARY KEY,"
	"  id TEXT NOT NULL UNIQUE,"
	"  key TEXT UNIQUE,"
	"  type TEXT,"
	"  tenant TEXT,"
	"  received_at INTEGER NOT NULL,"
	"  routed_at INTEGER,"
	"  body TEXT NOT NULL);"
	/* whk-batch --pending: proportional to what is pending. */
	"CREATE INDEX events_unrouted ON events(seq) WHERE routed_at IS NULL;"
	"CREATE TRIGGER events_append_only"
	"  BEFORE UPDATE OF seq, id, key, type, tenant, received_at, body"
	"  ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"

	"CREATE TABLE webhooks("
	"  seq INTEGER PRIMARY KEY,"
	"  id TEXT NOT NULL UNIQUE,"
	"  endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),"
	"  state TEXT NOT NULL DEFAULT 'pending',"
	"  events INTEGER NOT NULL,"
	"  bytes INTEGER NOT NULL,"
	"  body BLOB NOT NULL,"
	"  group_key TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  first_event_at INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  next_at INTEGER,"
	"  not_before INTEGER,"
	"  lease_until INTEGER,"
	"  lease_owner TEXT,"
	"  resend INTEGER NOT NULL DEFAULT 0,"
	"  last_attempt_at INTEGER,"
	"  last_status INTEGER,"
	"  last_error TEXT,"
	"  delivered_at INTEGER);"
	/* The first-attempt lane, per endpoint, oldest first. */
	"CREATE INDEX webhooks_fresh ON webhooks(endpoint_id, seq)"
	"  WHERE attempts = 0 AND state = 'pending';"
	/* The slow lane: what is due, and leases of dead deliverers. */
	"CREATE INDEX webhooks_due ON webhooks(next_at)"
	"  WHERE state IN ('pending', 'failed') AND attempts > 0;"
	"CREATE INDEX webhooks_leased ON webhooks(lease_until)"
	"  WHERE lease_until IS NOT NULL;"
	"CREATE INDEX webhooks_by_endpoint ON webhooks(endpoint_id, state, seq);"
	"CREATE INDEX webhooks_by_state ON webhooks(state, seq);"

	/* One row per (event, endpoint): the key makes fan-out exactly once. */
	"CREATE TABLE webhook_events("
	"  event_seq INTEGER NOT NULL REFERENCES events(seq),"
	"  endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),"
	"  webhook_seq INTEGER NOT NULL REFERENCES webhooks(seq),"
	"  PRIMARY KEY(event_seq, endpoint_id)) WITHOUT ROWID;"
	"CREATE INDEX webhook_events_webhook ON webhook_events(webhook_seq);"

	"CREATE TABLE attempts("
	"  seq INTEGER PRIMARY KEY,"
	"  id TEXT NOT NULL UNIQUE,"
	"  webhook_seq INTEGER NOT NULL REFERENCES webhooks(seq),"
	"  endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),"
	"  n INTEGER NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  started_at INTEGER NOT NULL,"
	"  ms INTEGER,"
	"  status INTEGER,"
	"  outcome TEXT NOT NULL,"
	"  error TEXT,"
	"  response TEXT,"
	"  retry_after INTEGER);"
	"CREATE INDEX attempts_by_webhook ON attempts(webhook_seq, n);"
	"CREATE INDEX attempts_by_endpoint ON attempts(endpoint_id, seq);"
	"CREATE TRIGGER attempts_append_only BEFORE UPDATE ON attempts"
	"  BEGIN SELECT RAISE(ABORT, 'attempts are append-only'); END;",
	/*
	 * 2: bodies built from the events they hold, not copied; and what
	 * is left to route kept apart, so that routing never rewrites an
	 * event: events become immutable.
	 */
	"ALTER TABLE webhooks ADD COLUMN body_kind INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE unrouted(seq INTEGER PRIMARY KEY);"
	"INSERT INTO unrouted SELECT seq FROM events WHERE routed_at IS NULL;"
	"DROP INDEX events_unrouted;"
	"CREATE TRIGGER events_unrouted AFTER INSERT ON events"
	"  BEGIN INSERT INTO unrouted(seq) VALUES(new.seq); END;"
	"DROP TRIGGER events_append_only;"
	"CREATE TRIGGER events_append_only BEFORE UPDATE ON events"
	"  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;",
	/*
	 * 3: routing writes one b-tree per (event, endpoint) pair, not
	 * four.  A webhook lists its events itself, so the pairs need no
	 * index by webhook; and the pairs' foreign keys, checked three
	 * lookups a row, guarded only what the code that writes them
	 * already knows.
	 */
	"ALTER TABLE webhooks ADD COLUMN event_seqs TEXT;"
	"UPDATE webhooks SET event_seqs = (SELECT json_group_array(event_seq)"
	"  FROM (SELECT event_seq FROM webhook_events w"
	"  WHERE w.webhook_seq = webhooks.seq ORDER BY event_seq));"
	"CREATE TABLE webhook_events_3("
	"  event_seq INTEGER NOT NULL,"
	"  endpoint_id INTEGER NOT NULL,"
	"  webhook_seq INTEGER NOT NULL,"
	"  PRIMARY KEY(endpoint_id, event_seq)) WITHOUT ROWID;"
	"INSERT INTO webhook_events_3 SELECT event_seq, endpoint_id, webhook_seq"
	"  FROM webhook_events;"
	"DROP TABLE webhook_events;"
	"ALTER TABLE webhook_events_3 RENAME TO webhook_events;",
	/*
	 * 4: whk-retry owns the schedule.  A webhook it printed is handed
	 * out until handed_until, so that overlapping runs print it once;
	 * a resend owed is found whatever the webhook's state.  Failures
	 * whk-deliver had scheduled itself keep their times.
	 */
	"ALTER TABLE webhooks ADD COLUMN handed_until INTEGER;"
	"CREATE INDEX webhooks_resend ON webhooks(next_at) WHERE resend = 1;"
	"CREATE INDEX webhooks_handed ON webhooks(endpoint_id, handed_until)"
	"  WHERE handed_until IS NOT NULL;",
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum stmt {
	S_EVENT_INSERT,
	S_EVENT_BY_KEY,
	S_ENDPOINT_GET,
	S_ENDPOINT_LIST,
	S_ENDPOINT_INSERT,
	S_ENDPOINT_UPDATE,
	S_ENDPOINT_HAS_WEBHOOKS,
	S_ENDPOINT_DELETE,
	S_ENDPOINT_RETIRE,
	S_EVENT_FIND,
	S_EVENT_SPAN,
	S_EVENTS_UNROUTED,
	S_ENDPOINTS_STAMP,
	S_WEBHOOK_CREATE,
	S_WEBHOOK_LINK,
	S_WEBHOOK_LINKED,
	S_WEBHOOK_SEQS,
	S_EVENTS_ROUTED,
	S_WEBHOOK_FINISH,
	S_WEBHOOK_DROP,
	S_WEBHOOK_KIND,
	S_WEBHOOK_EVENTS,
	S_WEBHOOK_FIND,
	S_WEBHOOK_GET,
	S_WEBHOOKS_FRESH,
	S_WEBHOOK_LEASE,
	S_WEBHOOK_RELEASE,
	S_ATTEMPT_INSERT,
	S_WEBHOOK_ATTEMPTED,
	S_ENDPOINT_DISABLE,
	S_UNSCHEDULED,
	S_WEBHOOK_SCHEDULE,
	S_WEBHOOK_DEAD,
	S_DUE,
	S_WEBHOOK_HAND,
	S_ENDPOINT_LAST,
	S_ENDPOINT_STREAK,
	S_ENDPOINT_BUSY,
	S_WEBHOOK_RESEND,
	S_WEBHOOKS_SELECT,
	S_BEGIN,
	S_BEGIN_READ,
	S_COMMIT,
	S_ROLLBACK,
	S_COUNT
};

#define ENDPOINT_COLUMNS \
	"id, name, url, secret, old_secret, old_secret_until, tenant, types," \
	" filter, group_by, headers, batch, batch_bytes, window_ms," \
	" timeout_ms, concurrency, allow_private, disabled_at," \
	" disabled_reason, created_at, updated_at, template, rate, schedule"

#define WEBHOOK_COLUMNS "SELECT seq, id, endpoint_id, state, attempts,"\
	" next_at, not_before, lease_until, resend, created_at,"\
	" first_event_at, events, bytes FROM webhooks"

static const char *sql[S_COUNT] = {
	[S_EVENT_INSERT] =
	    "INSERT INTO events(id, key, type, tenant, received_at, body)"
	    " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(key) DO NOTHING",
	[S_EVENT_BY_KEY] = "SELECT id FROM events WHERE key = ?1",
	[S_ENDPOINT_GET] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints"
	    " WHERE name = ?1 AND removed_at IS NULL",
	[S_ENDPOINT_LIST] = "SELECT " ENDPOINT_COLUMNS " FROM endpoints"
	    " WHERE removed_at IS NULL ORDER BY name",
	[S_ENDPOINT_INSERT] = "INSERT INTO endpoints(name, url, secret,"
	    " old_secret, old_secret_until, tenant, types, filter, group_by,"
	    " headers, batch, batch_bytes, window_ms, timeout_ms, concurrency,"
	    " allow_private, disabled_at, disabled_reason, created_at,"
	    " updated_at, template, rate, schedule) VALUES(?2, ?3, ?4, ?5, ?6,"
	    " ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,"
	    " ?20, ?20, ?21, ?22, ?23)",
	[S_ENDPOINT_UPDATE] = "UPDATE endpoints SET name = ?2, url = ?3,"
	    " secret = ?4, old_secret = ?5, old_secret_until = ?6,"
	    " tenant = ?7, types = ?8, filter = ?9, group_by = ?10,"
	    " headers = ?11, batch = ?12, batch_bytes = ?13, window_ms = ?14,"
	    " timeout_ms = ?15, concurrency = ?16, allow_private = ?17,"
	    " disabled_at = ?18, disabled_reason = ?19, updated_at = ?20,"
	    " template = ?21, rate = ?22, schedule = ?23"
	    " WHERE id = ?1 AND removed_at IS NULL",
	[S_ENDPOINT_HAS_WEBHOOKS] =
	    "SELECT EXISTS(SELECT 1 FROM webhooks WHERE endpoint_id = ?1)",
	[S_ENDPOINT_DELETE] = "DELETE FROM endpoints WHERE id = ?1",
	[S_ENDPOINT_RETIRE] = "UPDATE endpoints SET removed_at = ?2,"
	    " disabled_at = coalesce(disabled_at, ?2),"
	    " disabled_reason = coalesce(disabled_reason, 'removed'),"
	    " updated_at = ?2 WHERE id = ?1",
	/* Many ids in one statement: statements cost more than rows. */
	[S_EVENT_FIND] = "SELECT e.seq, e.id, e.type, e.tenant,"
	    " e.received_at,"
	    " NOT EXISTS(SELECT 1 FROM unrouted u WHERE u.seq = e.seq),"
	    " e.body, j.key FROM json_each(?1) j"
	    " JOIN events e ON e.id = j.value",
	/* The events stored from the one named on: most records' order. */
	[S_EVENT_SPAN] = "SELECT e.seq, e.id, e.type, e.tenant,"
	    " e.received_at,"
	    " NOT EXISTS(SELECT 1 FROM unrouted u WHERE u.seq = e.seq),"
	    " e.body FROM events e"
	    " WHERE e.seq >= (SELECT seq FROM events WHERE id = ?1)"
	    " ORDER BY e.seq LIMIT ?2",
	[S_EVENTS_UNROUTED] = "SELECT e.seq, e.id, e.type, e.tenant,"
	    " e.received_at, 0, e.body FROM unrouted u"
	    " JOIN events e ON e.seq = u.seq WHERE u.seq > ?1"
	    " ORDER BY u.seq LIMIT ?2",
	/* Every change of an endpoint moves updated_at or the count. */
	[S_ENDPOINTS_STAMP] = "SELECT count(*) * 1000003 +"
	    " coalesce(max(updated_at), 0) + coalesce(sum(updated_at % 9973), 0)"
	    " FROM endpoints",
	[S_WEBHOOK_CREATE] = "INSERT INTO webhooks(id, endpoint_id, body_kind,"
	    " group_key, first_event_at, created_at, events, bytes, body,"
	    " event_seqs) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, X'', ?9)",
	/* One statement for a webhook's events: statements cost more here
	 * than rows do. */
	[S_WEBHOOK_LINK] = "INSERT INTO webhook_events(event_seq, endpoint_id,"
	    " webhook_seq) SELECT value, ?2, ?3 FROM json_each(?1) WHERE 1"
	    " ON CONFLICT(endpoint_id, event_seq) DO NOTHING",
	[S_WEBHOOK_LINKED] = "SELECT w.event_seq FROM json_each(?1) j"
	    " JOIN webhook_events w ON w.event_seq = j.value"
	    " AND w.endpoint_id = ?2 WHERE w.webhook_seq = ?3",
	[S_WEBHOOK_SEQS] = "UPDATE webhooks SET event_seqs = ?2 WHERE seq = ?1",
	[S_EVENTS_ROUTED] = "DELETE FROM unrouted WHERE seq BETWEEN ?1 AND ?2",
	[S_WEBHOOK_FINISH] = "UPDATE webhooks SET events = ?2, bytes = ?3,"
	    " body = coalesce(?4, body), body_kind = CASE WHEN ?4 IS NULL"
	    " THEN body_kind ELSE 0 END WHERE seq = ?1",
	[S_WEBHOOK_DROP] = "DELETE FROM webhooks WHERE seq = ?1",
	/* One event's body comes with the kind: most webhooks are one. */
	[S_WEBHOOK_KIND] = "SELECT w.body_kind, CASE w.body_kind WHEN 0 THEN"
	    " w.body WHEN 1 THEN (SELECT e.body FROM events e"
	    " WHERE e.seq = w.event_seqs ->> 0) END FROM webhooks w"
	    " WHERE w.seq = ?1",
	[S_WEBHOOK_EVENTS] = "SELECT e.body FROM webhooks w,"
	    " json_each(w.event_seqs) j JOIN events e ON e.seq = j.value"
	    " WHERE w.seq = ?1 ORDER BY j.key",
	[S_WEBHOOK_FIND] = WEBHOOK_COLUMNS " WHERE id = ?1",
	[S_WEBHOOK_GET] = WEBHOOK_COLUMNS " WHERE seq = ?1",
	/*
	 * The first-attempt lane: webhooks_fresh, oldest first; with the
	 * first attempts of deliverers that died (their claim records the
	 * lost attempt), so that the reconciliation run alone leaves
	 * nothing behind.
	 */
	[S_WEBHOOKS_FRESH] = WEBHOOK_COLUMNS " WHERE endpoint_id = ?1"
	    " AND attempts = 0 AND state = 'pending' AND seq > ?2"
	    " AND (lease_until IS NULL OR lease_until <= ?4)"
	    " ORDER BY seq LIMIT ?3",
	[S_WEBHOOK_LEASE] = "UPDATE webhooks SET lease_until = ?2,"
	    " lease_owner = ?3 WHERE seq = ?1",
	[S_WEBHOOK_RELEASE] = "UPDATE webhooks SET lease_until = NULL,"
	    " lease_owner = NULL WHERE seq = ?1 AND lease_owner = ?2",
	[S_ATTEMPT_INSERT] = "INSERT INTO attempts(id, webhook_seq,"
	    " endpoint_id, n, kind, started_at, ms, status, outcome, error,"
	    " response, retry_after) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
	    " ?9, ?10, ?11, ?12)",
	[S_WEBHOOK_ATTEMPTED] = "UPDATE webhooks SET state = ?2,"
	    " attempts = ?3, last_attempt_at = ?4, last_status = ?5,"
	    " last_error = ?6, delivered_at = coalesce(?7, delivered_at),"
	    " next_at = ?8, not_before = ?9, lease_until = NULL,"
	    " lease_owner = NULL, resend = ?10, handed_until = NULL"
	    " WHERE seq = ?1 AND (?11 IS NULL OR lease_owner IS ?11)",
	[S_ENDPOINT_DISABLE] = "UPDATE endpoints SET disabled_at = ?2,"
	    " disabled_reason = ?3, updated_at = ?2 WHERE id = ?1"
	    " AND disabled_at IS NULL",
	/*
	 * whk-retry.  The due webhooks: failures whose time came, leases
	 * that ran out, resends owed; none in flight or handed out.  Each
	 * branch's terms are those of the partial index it rides on.
	 */
	[S_UNSCHEDULED] = "SELECT seq, endpoint_id, attempts, last_attempt_at,"
	    " not_before FROM webhooks WHERE state IN ('pending', 'failed')"
	    " AND attempts > 0 AND next_at IS NULL AND state = 'failed'"
	    " AND seq > ?1 ORDER BY seq LIMIT ?2",
	[S_WEBHOOK_SCHEDULE] = "UPDATE webhooks SET next_at = ?2"
	    " WHERE seq = ?1 AND state = 'failed' AND next_at IS NULL",
	[S_WEBHOOK_DEAD] = "UPDATE webhooks SET state = 'dead'"
	    " WHERE seq = ?1 AND state = 'failed' AND next_at IS NULL",
	[S_DUE] = "SELECT seq, id, endpoint_id, attempts, due, reason FROM ("
	    " SELECT seq, id, endpoint_id, attempts, next_at AS due,"
	    "  CASE WHEN resend THEN 'resend' ELSE 'retry' END AS reason"
	    "  FROM webhooks WHERE state IN ('pending', 'failed')"
	    "  AND attempts > 0 AND next_at <= ?1 AND lease_until IS NULL"
	    "  AND (handed_until IS NULL OR handed_until <= ?1)"
	    " UNION ALL"
	    " SELECT seq, id, endpoint_id, attempts, lease_until, 'expired'"
	    "  FROM webhooks WHERE lease_until IS NOT NULL"
	    "  AND lease_until <= ?1"
	    "  AND (handed_until IS NULL OR handed_until <= ?1)"
	    " UNION ALL"
	    " SELECT seq, id, endpoint_id, attempts, next_at, 'resend'"
	    "  FROM webhooks WHERE resend = 1 AND next_at <= ?1"
	    "  AND NOT (state IN ('pending', 'failed') AND attempts > 0)"
	    "  AND lease_until IS NULL"
	    "  AND (handed_until IS NULL OR handed_until <= ?1))"
	    " ORDER BY due, seq",
	[S_WEBHOOK_HAND] = "UPDATE webhooks SET handed_until = ?2"
	    " WHERE seq = ?1",
	[S_ENDPOINT_LAST] = "SELECT count(*), coalesce(sum(outcome = 'failed'),"
	    " 0) FROM (SELECT outcome FROM attempts WHERE endpoint_id = ?1"
	    " ORDER BY seq DESC LIMIT ?2)",
	[S_ENDPOINT_STREAK] = "SELECT started_at FROM attempts"
	    " WHERE endpoint_id = ?1 AND seq > coalesce((SELECT seq"
	    " FROM attempts WHERE endpoint_id = ?1 AND outcome = 'delivered'"
	    " ORDER BY seq DESC LIMIT 1), 0) ORDER BY seq LIMIT 1",
	[S_ENDPOINT_BUSY] = "SELECT EXISTS(SELECT 1 FROM webhooks"
	    " WHERE lease_until > ?2 AND endpoint_id = ?1)"
	    " OR EXISTS(SELECT 1 FROM webhooks WHERE endpoint_id = ?1"
	    " AND handed_until > ?2)",
	[S_WEBHOOK_RESEND] = "UPDATE webhooks SET resend = 1, next_at = ?2,"
	    " not_before = NULL, handed_until = ?3 WHERE seq = ?1",
	[S_WEBHOOKS_SELECT] = "SELECT w.seq, w.id FROM webhooks w"
	    " WHERE (?1 = 0 OR w.endpoint_id = ?1) AND (?2 IS NULL"
	    " OR w.state = ?2) AND w.created_at >= ?3 AND w.created_at < ?4"
	    " ORDER BY w.seq LIMIT ?5",
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_BEGIN_READ] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
};

#define LOG_STMTS	8

struct whk_store {
	sqlite3		*db;
	char		*path;
	const char	*doing;		/* what an error says we could not */
	int		 busy_ms;
	sqlite3_stmt	*stmt[S_COUNT];
	struct whk_buf	 scratch;
	int64_t		*sorted;	/* seq_array's */
	size_t		 capsorted;
	size_t		*offs;		/* where events' strings go */
	size_t		 capoffs;
	size_t		*idx;		/* events_span's hash of ids */
	size_t		 capidx;
	/* whk_store_log's statements, kept: show and follow ask again. */
	struct {
		char		*sql;
		sqlite3_stmt	*st;
	}		 logst[LOG_STMTS];
	unsigned	 logst_next;
};

/*
 * SQLite calls ENOSPC full but EFBIG and EDQUOT only an I/O error, and
 * its errno is not reliable by the time we see it: look for ourselves.
 */
static int
out_of_space(const struct whk_store *s)
{
	struct statvfs fs;
	struct rlimit rl;
	struct stat st;
	char wal[4096 + 8];

	if (statvfs(s->path, &fs) == 0 &&
	    (uint64_t)fs.f_bavail * fs.f_frsize < 1024 * 1024)
		return 1;
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		snprintf(wal, sizeof(wal), "%s-wal", s->path);
		if ((stat(s->path, &st) == 0 &&
		    (uint64_t)st.st_size + 65536 >= rl.rlim_cur) ||
		    (stat(wal, &st) == 0 &&
		    (uint64_t)st.st_size + 65536 >= rl.rlim_cur))
			return 1;
	}
	return 0;
}

/*
 * Map SQLite's answer to our one-line errors and exit statuses; doing is
 * what could not be done ("cannot open"), NULL for what the store is
 * doing now: opening, reading, or writing inside whk_store_begin.
 */
static int
fail(struct whk_store *s, struct whk_err *err, int rc, const char *doing)
{
	int status = WHK_EXIT_STORE;
	const char *why = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);

	if (doing == NULL)
		doing = s->doing;
	if ((rc & 0xff) == SQLITE_IOERR && out_of_space(s))
		rc = SQLITE_FULL;
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return whk_error(err, status, "store '%s' is locked by another "
		    "process (waited %dms)", s->path, s->busy_ms);
	case SQLITE_READONLY:
		return whk_error(err, status, "%s '%s': store is read-only",
		    doing, s->path);
	case SQLITE_FULL:
		return whk_error(err, status, "%s '%s': disk full", doing,
		    s->path);
	case SQLITE_NOMEM:
		status = WHK_EXIT_SYSTEM;
		break;
	}
	return whk_error(err, status, "%s '%s': %s", doing, s->path, why);
}

/*
 * The file at the path is no longer the one open: renamed, deleted, or
 * replaced by another.  SQLite would go on writing to the old file, and
 * what it committed would be acknowledged to no one who will find it.
 * One stat(2) of the path.
 */
static int
has_moved(struct whk_store *s)
{
	int moved = 0;

	if (s->db == NULL || sqlite3_file_control(s->db, "main",
	    SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK)
		return 0;
	return moved;
}

static int
check_moved(struct whk_store *s, struct whk_err *err)
{
	struct stat st;

	if (!has_moved(s))
		return 0;
	/* SQLite says moved when it cannot look, too. */
	if (stat(s->path, &st) == -1 && errno != ENOENT)
		return whk_error(err, WHK_EXIT_STORE, "%s '%s': %s", s->doing,
		    s->path, strerror(errno));
	return whk_error(err, WHK_EXIT_STORE, "%s '%s': the store was moved "
	    "or deleted while in use", s->doing, s->path);
}

static sqlite3_stmt *
stmt(struct whk_store *s, enum stmt which, struct whk_err *err)
{
	int rc;

	if (s->stmt[which]) {
		sqlite3_reset(s->stmt[which]);
		sqlite3_clear_bindings(s->stmt[which]);
		return s->stmt[which];
	}
	rc = sqlite3_prepare_v3(s->db, sql[which], -1,
	    SQLITE_PREPARE_PERSISTENT, &s->stmt[which], NULL);
	if (rc != SQLITE_OK) {
		fail(s, err, rc, NULL);
		return NULL;
	}
	return s->stmt[which];
}

static int
exec(struct whk_store *s, const char *q, struct whk_err *err)
{
	int rc = sqlite3_exec(s->db, q, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : fail(s, err, rc, NULL);
}

static int
pragma_int(struct whk_store *s, const char *q, int64_t *out,
    struct whk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if ((rc = sqlite3_prepare_v2(s->db, q, -1, &st, NULL)) != SQLITE_OK)
		return fail(s, err, rc, "cannot open");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(s, err, rc, "cannot open");
	return 0;
}

static int
busy_timeout(struct whk_err *err)
{
	const char *env = getenv("WHK_BUSY_TIMEOUT");
	struct whk_err why;
	int64_t ms;

	if (env == NULL || *env == '\0')
		return BUSY_TIMEOUT_MS;
	if (whk_parse_duration(env, &ms, &why) == -1)
		return whk_error(err, WHK_EXIT_USAGE, "WHK_BUSY_TIMEOUT: %s",
		    why.msg);
	if (ms > 3600000)
		return whk_error(err, WHK_EXIT_USAGE, "WHK_BUSY_TIMEOUT: "
		    "'%s' is over 1h", env);
	return (int)ms;
}

/*
 * Bring the schema up to date.  The version is read again under the
 * write lock: two programs opening a new store at once migrate it once.
 */
static int
migrate(struct whk_store *s, struct whk_err *err)
{
	int64_t version, app, objects;
	char q[64];
	int rc;

	if (pragma_int(s, "PRAGMA user_version", &version, err) == -1 ||
	    pragma_int(s, "PRAGMA application_id", &app, err) == -1)
		return -1;
	if (version == NMIGRATIONS && app == APPLICATION_ID)
		return 0;
	if (exec(s, "BEGIN IMMEDIATE", err) == -1)
		return -1;
	if (pragma_int(s, "PRAGMA user_version", &version, err) == -1 ||
	    pragma_int(s, "PRAGMA application_id", &app, err) == -1 ||
	    pragma_int(s, "SELECT count(*) FROM sqlite_master", &objects,
	    err) == -1)
		goto fail;
	if (app != APPLICATION_ID && (objects > 0 || version > 0)) {
		whk_error(err, WHK_EXIT_STORE,
		    "cannot open '%s': not a whk store", s->path);
		goto fail;
	}
	if (version > NMIGRATIONS) {
		whk_error(err, WHK_EXIT_STORE, "cannot open '%s': schema "
		    "version %lld is newer than this whk knows (%d)", s->path,
		    (long long)version, NMIGRATIONS);
		goto fail;
	}
	for (; version < NMIGRATIONS; version++) {
		if ((rc = sqlite3_exec(s->db, migrations[version], NULL, NULL,
		    NULL)) != SQLITE_OK) {
			fail(s, err, rc, "cannot migrate");
			goto fail;
		}
	}
	snprintf(q, sizeof(q), "PRAGMA user_version = %d", NMIGRATIONS);
	if (exec(s, q, err) == -1)
		goto fail;
	snprintf(q, sizeof(q), "PRAGMA application_id = %d", APPLICATION_ID);
	if (exec(s, q, err) == -1 || exec(s, "COMMIT", err) == -1)
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

struct whk_store *
whk_store_open(const char *path, struct whk_err *err)
{
	static int configured;
	struct whk_store *s;
	int fd, rc;
	int64_t ro;

	if (!configured) {
		/*
		 * Counting every allocation takes a global mutex each time,
		 * a hundred times per attempt recorded; nothing reads the
		 * counts.  Only possible before SQLite starts: the first time.
		 */
		(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
		configured = 1;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->path = strdup(path)) == NULL) {
		free(s);
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		return NULL;
	}
	s->doing = "cannot open";
	if ((s->busy_ms = busy_timeout(err)) < 0)
		goto fail;
	/*
	 * Create the file ourselves so that it is 0600 from its first
	 * moment; SQLite gives -wal and -shm the mode of the database.
	 */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	else if (errno != EEXIST) {
		whk_error(err, WHK_EXIT_STORE, "cannot open '%s': %s", path,
		    strerror(errno));
		goto fail;
	}
	/*
	 * SQLite reads a name that starts with "file:" as a URI (whose
	 * parameters could make the store a memory one, or unlocked) and
	 * ":memory:" as no file: a relative name is given to it as "./name",
	 * the file that open() above made.
	 */
	if (*path == '/')
		rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
		    SQLITE_OPEN_NOMUTEX, NULL);
	else {
		char *rel = sqlite3_mprintf("./%s", path);

		rc = rel == NULL ? SQLITE_NOMEM : sqlite3_open_v2(rel, &s->db,
		    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
		sqlite3_free(rel);
	}
	if (rc != SQLITE_OK) {
		fail(s, err, rc, "cannot open");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, s->busy_ms);
	if (sqlite3_db_readonly(s->db, "main") == 1) {
		whk_error(err, WHK_EXIT_STORE, "cannot open '%s': store is "
		    "read-only", path);
		goto fail;
	}
	if (pragma_int(s, "PRAGMA journal_mode = WAL", &ro, err) == -1)
		goto fail;
	/*
	 * A WAL grows past its checkpoint size while a reader holds an old
	 * snapshot (a paused pager, a backlog) and SQLite keeps the file at
	 * its largest until the last connection closes, which a cron store
	 * may never see.  The limit cuts it back at the next reset; it is
	 * four times what the autocheckpoint lets it reach, so steady work
	 * never pays for a truncate.
	 */
	if (exec(s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
	    " PRAGMA cache_size = -16384;"
	    " PRAGMA journal_size_limit = 16777216;",
	    err) == -1 || migrate(s, err) == -1)
		goto fail;
	s->doing = "cannot read";
	return s;
fail:
	whk_store_close(s);
	return NULL;
}

void
whk_store_close(struct whk_store *s)
{
	int i;

	if (s == NULL)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	for (i = 0; i < LOG_STMTS; i++) {
		sqlite3_finalize(s->logst[i].st);
		free(s->logst[i].sql);
	}
	/*
	 * SQLite does not checkpoint a moved store on close, and leaves its
	 * -wal where it was: beside whatever file now has the path, which
	 * would read our pages as its own.  Empty it into the file it
	 * belongs to (which keeps what was committed, wherever that file
	 * went).
	 */
	if (has_moved(s))
		sqlite3_wal_checkpoint_v2(s->db, "main",
		    SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	sqlite3_close(s->db);
	whk_buf_free(&s->scratch);
	free(s->sorted);
	free(s->offs);
	free(s->idx);
	free(s->path);
	free(s);
}

const char *
whk_store_file(const struct whk_store *s)
{
	return s->path;
}

int
whk_store_schema_version(void)
{
	return NMIGRATIONS;
}

static int
step_done(struct whk_store *s, sqlite3_stmt *st, struct whk_err *err)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		fail(s, err, rc, NULL);	/* before reset clears errno */
		sqlite3_reset(st);
		return -1;
	}
	sqlite3_reset(st);
	return 0;
}

/*
 * A smaller page cache, for a program that only appends: its memory then
 * stays flat however much it writes, and appends need few pages.
 */
int
whk_store_cache(struct whk_store *s, int kib, struct whk_err *err)
{
	char q[64];

	snprintf(q, sizeof(q), "PRAGMA cache_size = -%d", kib);
	return exec(s, q, err);
}

int
whk_store_begin(struct whk_store *s, struct whk_err *err)
{
	sqlite3_stmt *st;

	s->doing = "cannot write";
	if (check_moved(s, err) == -1 || (st = stmt(s, S_BEGIN, err)) == NULL ||
	    step_done(s, st, err) == -1) {
		s->doing = "cannot read";
		return -1;
	}
	return 0;
}

/* Many reads at one snapshot, without the write lock. */
int
whk_store_begin_read(struct whk_store *s, struct whk_err *err)
{
	sqlite3_stmt *st;

	if (check_moved(s, err) == -1 || (st = stmt(s, S_BEGIN_READ, err)) ==
	    NULL)
		return -1;
	return step_done(s, st, err);
}

/*
 * What commits is acknowledged once this returns: it must land in the
 * store at the path, so a store moved meanwhile is a failure.
 */
int
whk_store_commit(struct whk_store *s, struct whk_err *err)
{
	sqlite3_stmt *st;

	if (check_moved(s, err) == -1 || (st = stmt(s, S_COMMIT, err)) ==
	    NULL || step_done(s, st, err) == -1) {
		whk_store_rollback(s);
		return -1;
	}
	s->doing = "cannot read";
	return 0;
}

void
whk_store_rollback(struct whk_store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->doing = "cannot read";
}

static int
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) :
	    sqlite3_bind_null(st, i);
}

static int
bind_ms(sqlite3_stmt *st, int i, int64_t v)
{
	return v ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

int
whk_store_event_add(struct whk_store *s, const struct whk_event *ev,
    char id[WHK_ID_LEN], int *duplicate, struct whk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	*duplicate = 0;
	if (whk_id_new("evt", id, err) == -1 ||
	    (st = stmt(s, S_EVENT_INSERT, err)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	bind_text(st, 2, ev->key);
	bind_text(st, 3, ev->type);
	bind_text(st, 4, ev->tenant);
	sqlite3_bind_int64(st, 5, whk_now_ms());
	sqlite3_bind_text(st, 6, ev->body, (int)ev->body_len, SQLITE_STATIC);
	if (step_done(s, st, err) == -1)
		return -1;
	if (sqlite3_changes(s->db) == 1)
		return 0;
	/* The key was seen before: answer with the first event's id. */
	if ((st = stmt(s, S_EVENT_BY_KEY, err)) == NULL)
		return -1;
	bind_text(st, 1, ev->key);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return fail(s, err, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc,
		    NULL);
	}
	snprintf(id, WHK_ID_LEN, "%s", sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	*duplicate = 1;
	return 0;
}

void
whk_endpoint_defaults(struct whk_endpoint *e)
{
	memset(e, 0, sizeof(*e));
	e->batch = 1;
	e->batch_bytes = 256 * 1024;
	e->timeout_ms = 15000;
	e->concurrency = 8;
}

void
whk_endpoint_clear(struct whk_endpoint *e)
{
	free(e->name);
	free(e->url);
	free(e->secret);
	free(e->old_secret);
	free(e->tenant);
	free(e->types);
	free(e->filter);
	free(e->group_by);
	free(e->template);
	free(e->headers);
	free(e->disabled_reason);
	free(e->schedule);
	whk_endpoint_defaults(e);
}

static char *
column_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t ? strdup((const char *)t) : NULL;
}

static void
endpoint_row(sqlite3_stmt *st, struct whk_endpoint *e)
{
	e->id = sqlite3_column_int64(st, 0);
	e->name = column_dup(st, 1);
	e->url = column_dup(st, 2);
	e->secret = column_dup(st, 3);
	e->old_secret = column_dup(st, 4);
	e->old_secret_until = sqlite3_column_int64(st, 5);
	e->tenant = column_dup(st, 6);
	e->types = column_dup(st, 7);
	e->filter = column_dup(st, 8);
	e->group_by = column_dup(st, 9);
	e->headers = column_dup(st, 10);
	e->batch = sqlite3_column_int64(st, 11);
	e->batch_bytes = sqlite3_column_int64(st, 12);
	e->window_ms = sqlite3_column_int64(st, 13);
	e->timeout_ms = sqlite3_column_int64(st, 14);
	e->concurrency = sqlite3_column_int64(st, 15);
	e->allow_private = sqlite3_column_int(st, 16);
	e->disabled_at = sqlite3_column_int64(st, 17);
	e->disabled_reason = column_dup(st, 18);
	e->created_at = sqlite3_column_int64(st, 19);
	e->updated_at = sqlite3_column_int64(st, 20);
	e->template = column_dup(st, 21);
	e->rate = sqlite3_column_int64(st, 22);
	e->schedule = column_dup(st, 23);
}

static void
endpoint_bind(sqlite3_stmt *st, const struct whk_endpoint *e, int64_t now)
{
	sqlite3_bind_int64(st, 1, e->id);
	bind_text(st, 2, e->name);
	bind_text(st, 3, e->url);
	bind_text(st, 4, e->secret);
	bind_text(st, 5, e->old_secret);
	bind_ms(st, 6, e->old_secret_until);
	bind_text(st, 7, e->tenant);
	bind_text(st, 8, e->types);
	bind_text(st, 9, e->filter);
	bind_text(st, 10, e->group_by);
	bind_text(st, 11, e->headers);
	sqlite3_bind_int64(st, 12, e->batch);
	sqlite3_bind_int64(st, 13, e->batch_bytes);
	sqlite3_bind_int64(st, 14, e->window_ms);
	sqlite3_bind_int64(st, 15, e->timeout_ms);
	sqlite3_bind_int64(st, 16, e->concurrency);
	sqlite3_bind_int(st, 17, e->allow_private != 0);
	bind_ms(st, 18, e->disabled_at);
	bind_text(st, 19, e->disabled_reason);
	sqlite3_bind_int64(st, 20, now);
	bind_text(st, 21, e->template);
	bind_ms(st, 22, e->rate);
	bind_text(st, 23, e->schedule);
}

int
whk_store_endpoint_get(struct whk_store *s, const char *name,
    struct whk_endpoint *e, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_ENDPOINT_GET, err);
	int rc;

	whk_endpoint_defaults(e);
	if (st == NULL)
		return -1;
	bind_text(st, 1, name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		endpoint_row(st, e);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return 1;
	return fail(s, err, rc, NULL);
}

int
whk_store_endpoint_add(struct whk_store *s, const struct whk_endpoint *e,
    struct whk_err *err)
{
	struct whk_endpoint old;
	sqlite3_stmt *st;
	int rc;

	if ((rc = whk_store_endpoint_get(s, e->name, &old, err)) != 1) {
		whk_endpoint_clear(&old);
		return rc == 0 ? 1 : -1;
	}
	if ((st = stmt(s, S_ENDPOINT_INSERT, err)) == NULL)
		return -1;
	endpoint_bind(st, e, whk_now_ms());
	return step_done(s, st, err);
}

int
whk_store_endpoint_update(struct whk_store *s, const struct whk_endpoint *e,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_ENDPOINT_UPDATE, err);

	if (st == NULL)
		return -1;
	endpoint_bind(st, e, whk_now_ms());
	if (step_done(s, st, err) == -1)
		return -1;
	return sqlite3_changes(s->db) == 1 ? 0 : 1;
}

/* An endpoint with history is retired, not deleted: attempts name it. */
int
whk_store_endpoint_remove(struct whk_store *s, const char *name,
    int *kept_history, struct whk_err *err)
{
	struct whk_endpoint e;
	sqlite3_stmt *st;
	int rc, has;

	*kept_history = 0;
	if ((rc = whk_store_endpoint_get(s, name, &e, err)) != 0)
		return rc;
	if ((st = stmt(s, S_ENDPOINT_HAS_WEBHOOKS, err)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, e.id);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		fail(s, err, rc, NULL);
		goto fail;
	}
	has = sqlite3_column_int(st, 0);
	sqlite3_reset(st);
	if ((st = stmt(s, has ? S_ENDPOINT_RETIRE : S_ENDPOINT_DELETE,
	    err)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, e.id);
	if (has)
		sqlite3_bind_int64(st, 2, whk_now_ms());
	if (step_done(s, st, err) == -1)
		goto fail;
	*kept_history = has;
	whk_endpoint_clear(&e);
	return 0;
fail:
	whk_endpoint_clear(&e);
	return -1;
}

int
whk_store_endpoint_each(struct whk_store *s, whk_endpoint_fn fn, void *arg,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_ENDPOINT_LIST, err);
	struct whk_endpoint e;
	int rc;

	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		whk_endpoint_defaults(&e);
		endpoint_row(st, &e);
		rc = fn(&e, arg);
		whk_endpoint_clear(&e);
		if (rc != 0) {
			sqlite3_reset(st);
			return rc;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

#define NO_TEXT SIZE_MAX

/* Where column i's text goes in text, NUL-terminated; NO_TEXT for NULL. */
static size_t
column_keep(sqlite3_stmt *st, int i, struct whk_buf *text)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t at = text->len;

	if (t == NULL)
		return NO_TEXT;
	whk_buf_add(text, t, (size_t)sqlite3_column_bytes(st, i) + 1);
	return at;
}

static char *
text_at(struct whk_buf *text, size_t off)
{
	return off == NO_TEXT ? NULL : text->data + off;
}

/* The event of the query's row into e, its strings at offs in text. */
static void
event_keep(sqlite3_stmt *st, struct whk_stored_event *e, size_t *offs,
    struct whk_buf *text)
{
	e->seq = sqlite3_column_int64(st, 0);
	snprintf(e->id, sizeof(e->id), "%s", sqlite3_column_text(st, 1));
	e->received_at = sqlite3_column_int64(st, 4);
	e->routed = sqlite3_column_int(st, 5);
	offs[0] = column_keep(st, 2, text);
	offs[1] = column_keep(st, 3, text);
	offs[2] = column_keep(st, 6, text);
	e->body_len = (size_t)sqlite3_column_bytes(st, 6);
}

/*
 * The strings of a batch of events share one buffer instead of three
 * allocations each; since it moves as it grows, they are placed by
 * offset first, and pointed to once all are in.
 */
static int
events_place(struct whk_store *s, struct whk_stored_event *out, size_t n,
    struct whk_buf *text, struct whk_err *err)
{
	size_t k;

	if (text->oom)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	for (k = 0; k < n; k++) {
		if (out[k].seq == 0)
			continue;
		out[k].type = text_at(text, s->offs[3 * k]);
		out[k].tenant = text_at(text, s->offs[3 * k + 1]);
		/* The column is NOT NULL: an empty body at worst. */
		out[k].body = s->offs[3 * k + 2] == NO_TEXT ? "" :
		    text_at(text, s->offs[3 * k + 2]);
	}
	return 0;
}

static int
events_begin(struct whk_store *s, struct whk_stored_event *out, size_t n,
    struct whk_buf *text, struct whk_err *err)
{
	size_t *o;

	whk_buf_reset(text);
	memset(out, 0, n * sizeof(*out));
	if (n > s->capoffs) {
		if ((o = reallocarray(s->offs, n, 3 * sizeof(*o))) == NULL)
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		s->offs = o;
		s->capoffs = n;
	}
	return 0;
}

static uint64_t
id_hash(const char *p)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

/*
 * Records come mostly in the order their events were stored: the events
 * from the first record's on are read in one range, and each goes to the
 * records that name its id.  Those it leaves, a duplicate's record naming
 * an older event say, are found by id.
 */
static int
events_span(struct whk_store *s, const char *const *ids, size_t n,
    struct whk_stored_event *out, struct whk_buf *text, struct whk_err *err)
{
	sqlite3_stmt *st;
	const char *id;
	size_t i, h, nb, *head, *next, *v;
	int rc;

	for (nb = 1; nb < 2 * n; nb *= 2)
		;
	if (nb + n > s->capidx) {
		if ((v = reallocarray(s->idx, nb + n, sizeof(*v))) == NULL)
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		s->idx = v;
		s->capidx = nb + n;
	}
	head = s->idx;
	next = s->idx + nb;
	for (i = 0; i < nb; i++)
		head[i] = SIZE_MAX;
	for (i = n; i-- > 0; ) {
		h = id_hash(ids[i]) & (nb - 1);
		next[i] = head[h];
		head[h] = i;
	}
	if ((st = stmt(s, S_EVENT_SPAN, err)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, ids[0], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)n);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((id = (const char *)sqlite3_column_text(st, 1)) == NULL)
			continue;
		for (i = head[id_hash(id) & (nb - 1)]; i != SIZE_MAX;
		    i = next[i])
			if (strcmp(ids[i], id) == 0)
				event_keep(st, &out[i], &s->offs[3 * i], text);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

int
whk_store_events_find(struct whk_store *s, const char *const *ids, size_t n,
    struct whk_stored_event *out, struct whk_buf *text, struct whk_err *err)
{
	sqlite3_stmt *st;
	size_t i, left = 0, *map;
	int64_t k;
	int rc;

	if (n == 0)
		return 0;
	if (events_begin(s, out, n, text, err) == -1 ||
	    events_span(s, ids, n, out, text, err) == -1)
		return -1;
	/* The rest by id: json_each's key says which of those left. */
	map = s->idx;
	whk_buf_reset(&s->scratch);
	whk_buf_add(&s->scratch, "[", 1);
	for (i = 0; i < n; i++) {
		if (out[i].seq != 0)
			continue;
		if (left > 0)
			whk_buf_add(&s->scratch, ",", 1);
		whk_buf_json_str(&s->scratch, ids[i]);
		map[left++] = i;
	}
	whk_buf_add(&s->scratch, "]", 1);
	if (s->scratch.oom)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	if (left > 0) {
		if ((st = stmt(s, S_EVENT_FIND, err)) == NULL)
			return -1;
		sqlite3_bind_text(st, 1, s->scratch.data,
		    (int)s->scratch.len, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			k = sqlite3_column_int64(st, 7);
			if (k < 0 || (uint64_t)k >= left)
				continue;
			i = map[k];
			event_keep(st, &out[i], &s->offs[3 * i], text);
		}
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return fail(s, err, rc, NULL);
	}
	return events_place(s, out, n, text, err);
}

int
whk_store_events_unrouted(struct whk_store *s, int64_t after,
    struct whk_stored_event *out, size_t max, size_t *n, struct whk_buf *text,
    struct whk_err *err)
{
	sqlite3_stmt *st;
	int rc = SQLITE_DONE;

	*n = 0;
	if (max == 0)
		return 0;
	if (events_begin(s, out, max, text, err) == -1 ||
	    (st = stmt(s, S_EVENTS_UNROUTED, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, (int64_t)max);
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		event_keep(st, &out[*n], &s->offs[3 * *n], text);
		(*n)++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(s, err, rc, NULL);
	return events_place(s, out, *n, text, err);
}

static int
one_int(struct whk_store *s, sqlite3_stmt *st, int64_t *out,
    struct whk_err *err)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return fail(s, err, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, NULL);
}

int
whk_store_endpoints_stamp(struct whk_store *s, int64_t *stamp,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_ENDPOINTS_STAMP, err);

	return st ? one_int(s, st, stamp, err) : -1;
}

static int
seq_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Seqs in ascending order, into s->sorted. */
static int
seq_sort(struct whk_store *s, const int64_t *seqs, size_t n,
    struct whk_err *err)
{
	int64_t *v;
	size_t i;

	if (n > s->capsorted) {
		if ((v = reallocarray(s->sorted, n, sizeof(*v))) == NULL)
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		s->sorted = v;
		s->capsorted = n;
	}
	memcpy(s->sorted, seqs, n * sizeof(*seqs));
	/* Events are mostly grouped in the order they were stored. */
	for (i = 1; i < n; i++)
		if (seqs[i] < seqs[i - 1]) {
			qsort(s->sorted, n, sizeof(*s->sorted), seq_cmp);
			break;
		}
	return 0;
}

/* A JSON array of seqs in ascending order, as webhooks.event_seqs has. */
static int
seq_array(struct whk_store *s, const int64_t *seqs, size_t n,
    struct whk_err *err)
{
	size_t i;

	if (seq_sort(s, seqs, n, err) == -1)
		return -1;
	whk_buf_reset(&s->scratch);
	whk_buf_add(&s->scratch, "[", 1);
	for (i = 0; i < n; i++) {
		if (i > 0)
			whk_buf_add(&s->scratch, ",", 1);
		whk_buf_int(&s->scratch, s->sorted[i]);
	}
	whk_buf_add(&s->scratch, "]", 1);
	return s->scratch.oom ? whk_error(err, WHK_EXIT_SYSTEM,
	    "out of memory") : 0;
}

/*
 * The webhook row and its (event, endpoint) pairs, in one go.  The pairs'
 * key is what keeps two batchers from giving one event to an endpoint
 * twice: a pair another webhook holds already is not linked here.
 */
int
whk_store_webhook_create(struct whk_store *s, int64_t endpoint_id,
    int body_kind, const char *group_key, int64_t first_event_at,
    const int64_t *seqs, size_t n, int64_t bytes, unsigned char *linked,
    size_t *nlinked, char id[WHK_ID_LEN], int64_t *seq, struct whk_err *err)
{
	sqlite3_stmt *st;
	int64_t got, *mine;
	size_t i, k;
	int rc;

	if (whk_id_new("msg", id, err) == -1 ||
	    seq_array(s, seqs, n, err) == -1 ||
	    (st = stmt(s, S_WEBHOOK_CREATE, err)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, endpoint_id);
	sqlite3_bind_int(st, 3, body_kind);
	bind_text(st, 4, group_key);
	sqlite3_bind_int64(st, 5, first_event_at);
	sqlite3_bind_int64(st, 6, whk_now_ms());
	sqlite3_bind_int64(st, 7, (int64_t)n);
	sqlite3_bind_int64(st, 8, bytes);
	sqlite3_bind_text(st, 9, s->scratch.data, (int)s->scratch.len,
	    SQLITE_STATIC);
	if (step_done(s, st, err) == -1)
		return -1;
	*seq = sqlite3_last_insert_rowid(s->db);

	if ((st = stmt(s, S_WEBHOOK_LINK, err)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, s->scratch.data, (int)s->scratch.len,
	    SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, endpoint_id);
	sqlite3_bind_int64(st, 3, *seq);
	if (step_done(s, st, err) == -1)
		return -1;
	*nlinked = (size_t)sqlite3_changes(s->db);
	memset(linked, *nlinked == n, n);
	if (*nlinked == n)
		return 0;

	/* Some were in another webhook already: which did we get? */
	if ((st = stmt(s, S_WEBHOOK_LINKED, err)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, s->scratch.data, (int)s->scratch.len,
	    SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, endpoint_id);
	sqlite3_bind_int64(st, 3, *seq);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		got = sqlite3_column_int64(st, 0);
		for (i = 0; i < n; i++)
			if (seqs[i] == got)
				linked[i] = 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return fail(s, err, rc, NULL);
	if (*nlinked == 0)
		return 0;
	if ((mine = calloc(*nlinked, sizeof(*mine))) == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	for (i = k = 0; i < n; i++)
		if (linked[i] && k < *nlinked)
			mine[k++] = seqs[i];
	rc = seq_array(s, mine, k, err);
	free(mine);
	if (rc == -1 || (st = stmt(s, S_WEBHOOK_SEQS, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, *seq);
	sqlite3_bind_text(st, 2, s->scratch.data, (int)s->scratch.len,
	    SQLITE_STATIC);
	return step_done(s, st, err);
}

int
whk_store_events_routed(struct whk_store *s, const int64_t *seqs, size_t n,
    struct whk_err *err)
{
	sqlite3_stmt *st;
	size_t i, j;

	if (n == 0)
		return 0;
	if (seq_sort(s, seqs, n, err) == -1)
		return -1;
	/*
	 * The events of a commit are mostly consecutive: a run of them is
	 * one range, where a list costs a sort and a seek for each.
	 */
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && s->sorted[j] <= s->sorted[j - 1] + 1;
		    j++)
			;
		if ((st = stmt(s, S_EVENTS_ROUTED, err)) == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, s->sorted[i]);
		sqlite3_bind_int64(st, 2, s->sorted[j - 1]);
		if (step_done(s, st, err) == -1)
			return -1;
	}
	return 0;
}

int
whk_store_webhook_finish(struct whk_store *s, int64_t seq, int64_t events,
    int64_t bytes, const char *body, size_t len, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_FINISH, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_int64(st, 2, events);
	sqlite3_bind_int64(st, 3, bytes);
	if (body)
		sqlite3_bind_blob(st, 4, body, (int)len, SQLITE_STATIC);
	return step_done(s, st, err);
}

int
whk_store_webhook_drop(struct whk_store *s, int64_t seq, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_DROP, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	return step_done(s, st, err);
}

int
whk_store_webhook_body(struct whk_store *s, int64_t seq, struct whk_buf *out,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_KIND, err);
	int rc, kind, n = 0;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		return fail(s, err, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc,
		    NULL);
	}
	kind = sqlite3_column_int(st, 0);
	if (kind != WHK_BODY_ARRAY && sqlite3_column_bytes(st, 1) > 0)
		whk_buf_add(out, sqlite3_column_blob(st, 1),
		    (size_t)sqlite3_column_bytes(st, 1));
	sqlite3_reset(st);
	if (kind == WHK_BODY_ARRAY) {
		if ((st = stmt(s, S_WEBHOOK_EVENTS, err)) == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, seq);
		whk_buf_add(out, "[", 1);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (n++ > 0)
				whk_buf_add(out, ",", 1);
			whk_buf_add(out, sqlite3_column_text(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0));
		}
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return fail(s, err, rc, NULL);
		whk_buf_add(out, "]", 1);
	}
	return out->oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") : 0;
}

static void
webhook_row(sqlite3_stmt *st, struct whk_webhook *w)
{
	memset(w, 0, sizeof(*w));
	w->seq = sqlite3_column_int64(st, 0);
	snprintf(w->id, sizeof(w->id), "%s",
	    (const char *)sqlite3_column_text(st, 1));
	w->endpoint_id = sqlite3_column_int64(st, 2);
	snprintf(w->state, sizeof(w->state), "%s",
	    (const char *)sqlite3_column_text(st, 3));
	w->attempts = sqlite3_column_int64(st, 4);
	w->next_at = sqlite3_column_int64(st, 5);
	w->not_before = sqlite3_column_int64(st, 6);
	w->lease_until = sqlite3_column_int64(st, 7);
	w->resend = sqlite3_column_int(st, 8);
	w->created_at = sqlite3_column_int64(st, 9);
	w->first_event_at = sqlite3_column_int64(st, 10);
	w->events = sqlite3_column_int64(st, 11);
	w->bytes = sqlite3_column_int64(st, 12);
}

static int
webhook_one(struct whk_store *s, sqlite3_stmt *st, struct whk_webhook *w,
    struct whk_err *err)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		webhook_row(st, w);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? 1 : fail(s, err, rc, NULL);
}

int
whk_store_webhook_find(struct whk_store *s, const char *id,
    struct whk_webhook *w, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_FIND, err);

	if (st == NULL)
		return -1;
	bind_text(st, 1, id);
	return webhook_one(s, st, w, err);
}

int
whk_store_webhooks_fresh(struct whk_store *s, int64_t endpoint_id,
    int64_t after, struct whk_webhook *out, size_t max, size_t *n,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOKS_FRESH, err);
	int rc = SQLITE_DONE;

	*n = 0;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, endpoint_id);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int64(st, 3, (int64_t)max);
	sqlite3_bind_int64(st, 4, whk_now_ms());
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
		webhook_row(st, &out[(*n)++]);
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 :
	    fail(s, err, rc, NULL);
}

const char *
whk_attempt_kind(const struct whk_webhook *w)
{
	return w->resend ? "resend" : w->attempts == 0 ? "first" : "retry";
}

int
whk_store_attempt_record(struct whk_store *s, struct whk_attempt *a,
    struct whk_err *err)
{
	sqlite3_stmt *st;

	if (whk_id_new("atm", a->id, err) == -1 ||
	    (st = stmt(s, S_ATTEMPT_INSERT, err)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->webhook_seq);
	sqlite3_bind_int64(st, 3, a->endpoint_id);
	sqlite3_bind_int64(st, 4, a->n);
	bind_text(st, 5, a->kind);
	sqlite3_bind_int64(st, 6, a->started_at);
	if (a->ms >= 0)
		sqlite3_bind_int64(st, 7, a->ms);
	else
		sqlite3_bind_null(st, 7);
	if (a->status > 0)
		sqlite3_bind_int(st, 8, a->status);
	else
		sqlite3_bind_null(st, 8);
	sqlite3_bind_text(st, 9, a->delivered ? "delivered" : "failed", -1,
	    SQLITE_STATIC);
	bind_text(st, 10, a->error && *a->error ? a->error : NULL);
	if (a->response)
		sqlite3_bind_text(st, 11, a->response, (int)a->response_len,
		    SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 11);
	bind_ms(st, 12, a->retry_after);
	if (step_done(s, st, err) == -1 ||
	    (st = stmt(s, S_WEBHOOK_ATTEMPTED, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, a->webhook_seq);
	sqlite3_bind_text(st, 2, a->delivered ? "delivered" : "failed", -1,
	    SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->n);
	sqlite3_bind_int64(st, 4, a->started_at);
	if (a->status > 0)
		sqlite3_bind_int(st, 5, a->status);
	else
		sqlite3_bind_null(st, 5);
	bind_text(st, 6, a->error && *a->error ? a->error : NULL);
	bind_ms(st, 7, a->delivered ? a->started_at + (a->ms > 0 ? a->ms : 0) :
	    0);
	bind_ms(st, 8, a->delivered ? 0 : a->next_at);
	bind_ms(st, 9, a->delivered ? 0 : a->retry_after);
	sqlite3_bind_int(st, 10, a->keep_resend ? 1 : 0);
	bind_text(st, 11, a->owner);
	if (step_done(s, st, err) == -1)
		return -1;
	/*
	 * Not the owner's any more: its lease ran out and another deliverer
	 * took the webhook over.  The attempt happened and stays recorded;
	 * the webhook's state is the new owner's to write.
	 */
	return sqlite3_changes(s->db) == 0 && a->owner ? 1 : 0;
}

/*
 * Claim a webhook for one attempt, inside the open (write) transaction,
 * so no other deliverer can decide the same at the same time.  A lease
 * that ran out belonged to a deliverer that stopped mid-flight: what it
 * sent, if anything, is unknown, and that is recorded first.
 */
int
whk_store_webhook_claim(struct whk_store *s, int64_t seq, const char *owner,
    int64_t lease_until, struct whk_webhook *w, struct whk_err *err)
{
	struct whk_attempt lost;
	sqlite3_stmt *st;
	int64_t now = whk_now_ms();
	int rc;

	if ((st = stmt(s, S_WEBHOOK_GET, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	if ((rc = webhook_one(s, st, w, err)) != 0)
		return rc == 1 ? WHK_CLAIM_GONE : -1;
	w->lost = 0;
	/* A resend owed goes whatever came of the attempts before. */
	if (!w->resend && strcmp(w->state, "pending") != 0 &&
	    strcmp(w->state, "failed") != 0)
		return WHK_CLAIM_DONE;
	if (w->lease_until > now)
		return WHK_CLAIM_LEASED;
	if (w->lease_until > 0) {
		memset(&lost, 0, sizeof(lost));
		lost.webhook_seq = w->seq;
		lost.endpoint_id = w->endpoint_id;
		lost.n = w->attempts + 1;
		lost.kind = whk_attempt_kind(w);
		lost.started_at = w->lease_until;
		lost.ms = -1;
		lost.error = WHK_LOST_ERROR;
		lost.next_at = now;
		lost.keep_resend = w->resend;	/* the resend is still owed */
		if (whk_store_attempt_record(s, &lost, err) == -1)
			return -1;
		w->lost = lost.n;
		snprintf(w->lost_id, sizeof(w->lost_id), "%s", lost.id);
		w->attempts++;
		snprintf(w->state, sizeof(w->state), "failed");
		w->next_at = now;
		w->not_before = 0;
	}
	/* A failure not yet scheduled by whk-retry is not due either. */
	if (w->not_before > now || (w->attempts > 0 && (w->next_at == 0 ||
	    w->next_at > now)))
		return WHK_CLAIM_NOT_DUE;
	if ((st = stmt(s, S_WEBHOOK_LEASE, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, w->seq);
	sqlite3_bind_int64(st, 2, lease_until);
	bind_text(st, 3, owner);
	if (step_done(s, st, err) == -1)
		return -1;
	w->lease_until = lease_until;
	return WHK_CLAIM_OK;
}

/* A claim given back unused: the webhook is as if never claimed. */
int
whk_store_webhook_release(struct whk_store *s, int64_t seq, const char *owner,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_RELEASE, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	bind_text(st, 2, owner);
	return step_done(s, st, err);
}

/*
 * whk-retry's part.
 */
int
whk_store_unscheduled(struct whk_store *s, int64_t after,
    struct whk_unscheduled *out, size_t max, size_t *n, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_UNSCHEDULED, err);
	int rc = SQLITE_DONE;

	*n = 0;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, (int64_t)max);
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct whk_unscheduled *u = &out[(*n)++];

		u->seq = sqlite3_column_int64(st, 0);
		u->endpoint_id = sqlite3_column_int64(st, 1);
		u->attempts = sqlite3_column_int64(st, 2);
		u->last_attempt_at = sqlite3_column_int64(st, 3);
		u->not_before = sqlite3_column_int64(st, 4);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 :
	    fail(s, err, rc, NULL);
}

int
whk_store_webhook_schedule(struct whk_store *s, int64_t seq, int64_t next_at,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, next_at > 0 ? S_WEBHOOK_SCHEDULE :
	    S_WEBHOOK_DEAD, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	if (next_at > 0)
		sqlite3_bind_int64(st, 2, next_at);
	return step_done(s, st, err);
}

int
whk_store_due(struct whk_store *s, int64_t now, whk_due_fn fn, void *arg,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_DUE, err);
	struct whk_due d;
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, now);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&d, 0, sizeof(d));
		d.seq = sqlite3_column_int64(st, 0);
		snprintf(d.id, sizeof(d.id), "%s",
		    (const char *)sqlite3_column_text(st, 1));
		d.endpoint_id = sqlite3_column_int64(st, 2);
		d.attempts = sqlite3_column_int64(st, 3);
		d.due = sqlite3_column_int64(st, 4);
		snprintf(d.reason, sizeof(d.reason), "%s",
		    (const char *)sqlite3_column_text(st, 5));
		if (fn(&d, arg) == -1) {
			sqlite3_reset(st);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

int
whk_store_webhook_hand(struct whk_store *s, int64_t seq, int64_t until,
    struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_HAND, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_int64(st, 2, until);
	return step_done(s, st, err);
}

int
whk_store_endpoint_health(struct whk_store *s, int64_t id, int64_t last,
    int64_t now, struct whk_health *h, struct whk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	memset(h, 0, sizeof(*h));
	if ((st = stmt(s, S_ENDPOINT_LAST, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, last);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		h->tripped = sqlite3_column_int64(st, 0) == last &&
		    sqlite3_column_int64(st, 1) == last;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return fail(s, err, rc, NULL);
	if (!h->tripped)
		return 0;
	if ((st = stmt(s, S_ENDPOINT_STREAK, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		h->failing_since = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(s, err, rc, NULL);
	if ((st = stmt(s, S_ENDPOINT_BUSY, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		h->busy = sqlite3_column_int(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : fail(s, err, rc, NULL);
}

int
whk_store_webhook_resend(struct whk_store *s, int64_t seq, int64_t now,
    int64_t hand_until, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOK_RESEND, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_int64(st, 2, now);
	bind_ms(st, 3, hand_until);
	return step_done(s, st, err);
}

int
whk_store_webhooks_select(struct whk_store *s, const struct whk_select *q,
    whk_select_fn fn, void *arg, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_WEBHOOKS_SELECT, err);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, q->endpoint_id);
	bind_text(st, 2, q->state);
	sqlite3_bind_int64(st, 3, q->since);
	sqlite3_bind_int64(st, 4, q->until > 0 ? q->until : INT64_MAX);
	sqlite3_bind_int64(st, 5, q->limit > 0 ? q->limit : -1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (fn(sqlite3_column_int64(st, 0),
		    (const char *)sqlite3_column_text(st, 1), arg) == -1) {
			sqlite3_reset(st);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

int
whk_store_endpoint_disable(struct whk_store *s, int64_t id,
    const char *reason, struct whk_err *err)
{
	sqlite3_stmt *st = stmt(s, S_ENDPOINT_DISABLE, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, whk_now_ms());
	bind_text(st, 3, reason);
	return step_done(s, st, err);
}

/*
 * whk-log's part: history as rows of named columns, for the program to
 * render.  The listing's SQL is put together from fixed pieces, one per
 * filter given, so that each query can ride its index; every value is
 * bound, none is ever spliced into the text.
 */
static const char *log_select[] = {
	[WHK_LOG_EVENTS] = "SELECT e.seq AS _seq, e.id AS event, e.key,"
	    " e.type, e.tenant, e.received_at, NOT EXISTS(SELECT 1 FROM"
	    " unrouted u WHERE u.seq = e.seq) AS routed, e.body FROM events e"
	    " WHERE 1",
	[WHK_LOG_WEBHOOKS] = "SELECT w.seq AS _seq, w.id AS webhook,"
	    " p.name AS endpoint, w.state, w.events, w.bytes, w.attempts,"
	    " w.created_at, w.next_at, w.delivered_at, w.last_status,"
	    " w.last_error FROM webhooks w JOIN endpoints p"
	    " ON p.id = w.endpoint_id WHERE 1",
	[WHK_LOG_ATTEMPTS] = "SELECT a.seq AS _seq, w.id AS webhook,"
	    " p.name AS endpoint, a.n AS attempt, a.kind, a.status, a.ms,"
	    " a.outcome, a.error, a.id, a.started_at, a.retry_after%s"
	    " FROM attempts a JOIN webhooks w ON w.seq = a.webhook_seq"
	    " JOIN endpoints p ON p.id = a.endpoint_id WHERE 1",
	[WHK_LOG_ENDPOINTS] = "SELECT p.id AS _seq, p.name AS endpoint, p.url,"
	    " CASE WHEN p.disabled_at IS NULL THEN 'enabled' ELSE 'disabled'"
	    " END AS state, p.disabled_reason,"
	    " (SELECT count(*) FROM webhooks w WHERE w.endpoint_id = p.id"
	    " AND w.state = 'pending') AS pending,"
	    " (SELECT count(*) FROM webhooks w WHERE w.endpoint_id = p.id"
	    " AND w.state = 'failed') AS failed,"
	    " (SELECT count(*) FROM webhooks w WHERE w.endpoint_id = p.id"
	    " AND w.state = 'delivered') AS delivered,"
	    " (SELECT count(*) FROM webhooks w WHERE w.endpoint_id = p.id"
	    " AND w.state = 'dead') AS dead"
	    " FROM endpoints p WHERE p.removed_at IS NULL",
};

/* The webhooks holding event :ev (by id) or :key (by key). */
#define HOLDING(col) \
	"(SELECT x.webhook_seq FROM webhook_events x WHERE x.endpoint_id IN" \
	" (SELECT id FROM endpoints) AND x.event_seq = (SELECT seq FROM" \
	" events WHERE " col "))"

static void
log_sql(struct whk_buf *b, const struct whk_log_query *q)
{
	static const char *time_col[] = { "e.received_at", "w.created_at",
	    "a.started_at", NULL };
	int k = q->kind;

	if (k == WHK_LOG_ATTEMPTS)
		whk_buf_printf(b, log_select[k], q->with_response ?
		    ", a.response" : "");
	else
		whk_buf_puts(b, log_select[k]);
	if (q->endpoint)
		whk_buf_puts(b, k == WHK_LOG_EVENTS ? " AND e.seq IN (SELECT"
		    " event_seq FROM webhook_events WHERE endpoint_id = (SELECT"
		    " id FROM endpoints WHERE name = :endpoint AND removed_at IS"
		    " NULL))" : k == WHK_LOG_ENDPOINTS ? " AND p.name = :endpoint"
		    : k == WHK_LOG_WEBHOOKS ? " AND w.endpoint_id = (SELECT id"
		    " FROM endpoints WHERE name = :endpoint AND removed_at IS"
		    " NULL)" : " AND a.endpoint_id = (SELECT id FROM endpoints"
		    " WHERE name = :endpoint AND removed_at IS NULL)");
	if (q->tenant)
		whk_buf_puts(b, " AND e.tenant = :tenant");
	if (q->type)
		whk_buf_puts(b, " AND e.type = :type");
	if (q->status)
		whk_buf_puts(b, k == WHK_LOG_EVENTS ? (strcmp(q->status,
		    "routed") == 0 ? " AND NOT EXISTS(SELECT 1 FROM unrouted u"
		    " WHERE u.seq = e.seq)" : " AND e.seq IN (SELECT seq FROM"
		    " unrouted)") : k == WHK_LOG_WEBHOOKS ?
		    " AND w.state = :status" : k == WHK_LOG_ATTEMPTS ?
		    " AND a.outcome = :status" : strcmp(q->status, "enabled") == 0 ?
		    " AND p.disabled_at IS NULL" : " AND p.disabled_at IS NOT NULL");
	if (q->since && time_col[k])
		whk_buf_printf(b, " AND %s >= :since", time_col[k]);
	if (q->until && time_col[k])
		whk_buf_printf(b, " AND %s < :until", time_col[k]);
	if (q->event || q->key) {
		const char *holding = q->event ? HOLDING("id = :event") :
		    HOLDING("key = :key");

		if (k == WHK_LOG_EVENTS)
			whk_buf_puts(b, q->event ? " AND e.id = :event" :
			    " AND e.key = :key");
		else if (k == WHK_LOG_WEBHOOKS)
			whk_buf_printf(b, " AND w.seq IN %s", holding);
		else
			whk_buf_printf(b, " AND a.webhook_seq IN %s", holding);
	}
	if (q->webhook)
		whk_buf_puts(b, k == WHK_LOG_EVENTS ? " AND e.seq IN (SELECT"
		    " j.value FROM webhooks w, json_each(w.event_seqs) j"
		    " WHERE w.id = :webhook)" : k == WHK_LOG_WEBHOOKS ?
		    " AND w.id = :webhook" : " AND a.webhook_seq = (SELECT seq"
		    " FROM webhooks WHERE id = :webhook)");
	if (q->after > 0)
		whk_buf_printf(b, " AND %s > :after", k == WHK_LOG_ATTEMPTS ?
		    "a.seq" : k == WHK_LOG_WEBHOOKS ? "w.seq" : "e.seq");
	if (k == WHK_LOG_ENDPOINTS)
		whk_buf_printf(b, " ORDER BY p.id %s", q->oldest_first ? "ASC" :
		    "DESC");
	else
		whk_buf_printf(b, " ORDER BY %s %s", k == WHK_LOG_EVENTS ?
		    "e.seq" : k == WHK_LOG_WEBHOOKS ? "w.seq" : "a.seq",
		    q->oldest_first ? "ASC" : "DESC");
	if (q->limit > 0)
		whk_buf_puts(b, " LIMIT :limit");
}

static void
bind_named(sqlite3_stmt *st, const char *name, const char *v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

static void
bind_named_int(sqlite3_stmt *st, const char *name, int64_t v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_int64(st, i, v);
}

/* Each row of a prepared statement to fn, as named columns. */
static int
rows(struct whk_store *s, sqlite3_stmt *st, whk_row_fn fn, void *arg,
    struct whk_err *err)
{
	struct whk_col cols[WHK_COLS_MAX];
	int rc, n, i;

	n = sqlite3_column_count(st);
	if (n > WHK_COLS_MAX)
		n = WHK_COLS_MAX;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (i = 0; i < n; i++) {
			cols[i].name = sqlite3_column_name(st, i);
			cols[i].i = 0;
			cols[i].r = 0;
			cols[i].s = NULL;
			cols[i].len = 0;
			switch (sqlite3_column_type(st, i)) {
			case SQLITE_NULL:
				cols[i].type = WHK_COL_NULL;
				break;
			case SQLITE_INTEGER:
				cols[i].type = WHK_COL_INT;
				cols[i].i = sqlite3_column_int64(st, i);
				break;
			case SQLITE_FLOAT:
				cols[i].type = WHK_COL_REAL;
				cols[i].r = sqlite3_column_double(st, i);
				break;
			default:
				cols[i].type = WHK_COL_TEXT;
				cols[i].s = (const char *)sqlite3_column_text(st,
				    i);
				cols[i].len = (size_t)sqlite3_column_bytes(st, i);
				break;
			}
		}
		if ((rc = fn(cols, n, arg)) != 0)
			return rc == -1 ? whk_error(err, WHK_EXIT_SYSTEM,
			    "out of memory") : 0;
	}
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

/*
 * The statement of SQL text b, prepared once per store: a show asks four
 * queries per id, and preparing them cost more than running them.  The
 * store keeps it (the oldest of LOG_STMTS gives way) and the caller
 * resets it; a statement in use (a row callback that asks again) is
 * neither handed out twice nor given way: *once then says the caller
 * finalizes.
 */
static int
log_stmt(struct whk_store *s, struct whk_buf *b, sqlite3_stmt **st,
    int *once)
{
	unsigned i, k;
	int rc;

	*once = 0;
	for (i = 0; i < LOG_STMTS; i++)
		if (s->logst[i].sql && !sqlite3_stmt_busy(s->logst[i].st) &&
		    strcmp(s->logst[i].sql, b->data) == 0) {
			*st = s->logst[i].st;
			return SQLITE_OK;
		}
	if ((rc = sqlite3_prepare_v3(s->db, b->data, -1,
	    SQLITE_PREPARE_PERSISTENT, st, NULL)) != SQLITE_OK)
		return rc;
	for (k = 0; k < LOG_STMTS; k++) {
		i = s->logst_next++ % LOG_STMTS;
		if (s->logst[i].st == NULL || !sqlite3_stmt_busy(s->logst[i].st))
			break;
	}
	if (k == LOG_STMTS) {
		*once = 1;
		return SQLITE_OK;
	}
	sqlite3_finalize(s->logst[i].st);
	free(s->logst[i].sql);
	s->logst[i].st = *st;
	s->logst[i].sql = b->data;	/* the caller's buffer, taken */
	b->data = NULL;
	b->len = b->cap = 0;
	return SQLITE_OK;
}

/* Done with a statement of log_stmt's. */
static void
log_stmt_done(sqlite3_stmt *st, int once)
{
	if (once) {
		sqlite3_finalize(st);
		return;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

int
whk_store_log(struct whk_store *s, const struct whk_log_query *q,
    whk_row_fn fn, void *arg, struct whk_err *err)
{
	struct whk_buf b = { 0 };
	sqlite3_stmt *st = NULL;
	int rc, once;

	/* whk-log follow reads on for as long as it runs. */
	if (sqlite3_get_autocommit(s->db) && check_moved(s, err) == -1)
		return -1;
	log_sql(&b, q);
	if (b.oom) {
		whk_buf_free(&b);
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	}
	rc = log_stmt(s, &b, &st, &once);
	whk_buf_free(&b);
	if (rc != SQLITE_OK)
		return fail(s, err, rc, NULL);
	bind_named(st, ":endpoint", q->endpoint);
	bind_named(st, ":tenant", q->tenant);
	bind_named(st, ":type", q->type);
	bind_named(st, ":status", q->status);
	bind_named(st, ":event", q->event);
	bind_named(st, ":key", q->key);
	bind_named(st, ":webhook", q->webhook);
	bind_named_int(st, ":since", q->since);
	bind_named_int(st, ":until", q->until);
	bind_named_int(st, ":after", q->after);
	bind_named_int(st, ":limit", q->limit);
	if (q->head) {
		/* The names alone, once, before any row: a header. */
		struct whk_col cols[WHK_COLS_MAX];
		int i, n = sqlite3_column_count(st);

		if (n > WHK_COLS_MAX)
			n = WHK_COLS_MAX;
		memset(cols, 0, sizeof(cols));
		for (i = 0; i < n; i++)
			cols[i].name = sqlite3_column_name(st, i);
		if (q->head(cols, n, arg) == -1) {
			log_stmt_done(st, once);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
	}
	rc = rows(s, st, fn, arg, err);
	log_stmt_done(st, once);
	return rc;
}

/*
 * Aggregates for metrics, slo and stats: a latency in ms per row, summed
 * into cumulative buckets by SQL, one row per endpoint (and outcome or
 * state).
 */
#define BUCKETS_SQL(x) \
	"sum(" x " IS NOT NULL) AS n, coalesce(sum(" x "), 0) AS sum," \
	" sum(" x " <= 100), sum(" x " <= 250), sum(" x " <= 500)," \
	" sum(" x " <= 1000), sum(" x " <= 2500), sum(" x " <= 5000)," \
	" sum(" x " <= 10000), sum(" x " <= 30000), sum(" x " <= 60000)," \
	" sum(" x " <= 300000), sum(" x " <= 900000), sum(" x " <= 3600000)"

static const int64_t bucket_ms[WHK_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000,
	3600000
};

const int64_t *
whk_buckets_ms(void)
{
	return bucket_ms;
}

static const char *agg_sql[] = {
	/* Events delivered within the bound, later, or not yet decided. */
	[WHK_AGG_SLO] = "SELECT p.name AS endpoint, coalesce(sum(CASE WHEN"
	    " w.delivered_at IS NOT NULL AND w.delivered_at - w.first_event_at"
	    " <= :within THEN w.events END), 0) AS met, coalesce(sum(CASE WHEN"
	    " (w.delivered_at IS NOT NULL AND w.delivered_at - w.first_event_at"
	    " > :within) OR (w.delivered_at IS NULL AND :now - w.first_event_at"
	    " > :within) THEN w.events END), 0) AS missed FROM endpoints p"
	    " LEFT JOIN webhooks w ON w.endpoint_id = p.id AND w.created_at >="
	    " :since WHERE p.removed_at IS NULL AND (:endpoint IS NULL OR"
	    " p.name = :endpoint) GROUP BY p.id ORDER BY p.name",
	[WHK_AGG_ENDPOINTS] = "SELECT id, name AS endpoint, disabled_at IS NULL"
	    " AS enabled FROM endpoints WHERE removed_at IS NULL"
	    " AND (:endpoint IS NULL OR name = :endpoint) ORDER BY name",
};

/* Every webhook made since a time, in one pass, for sums per endpoint. */
int
whk_store_webhooks_scan(struct whk_store *s, int64_t since,
    const char *endpoint, whk_wscan_fn fn, void *arg, struct whk_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sqlite3_prepare_v2(s->db, "SELECT w.endpoint_id, w.state,"
	    " CASE WHEN w.delivered_at IS NOT NULL THEN w.delivered_at -"
	    " w.first_event_at END, w.first_event_at FROM webhooks w"
	    " NOT INDEXED WHERE w.created_at >= :since AND (:endpoint IS NULL"
	    " OR w.endpoint_id = (SELECT id FROM endpoints WHERE name ="
	    " :endpoint AND removed_at IS NULL))", -1, &st,
	    NULL)) != SQLITE_OK)
		return fail(s, err, rc, NULL);
	bind_named(st, ":endpoint", endpoint);
	bind_named_int(st, ":since", since);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(sqlite3_column_int64(st, 0),
		    (const char *)sqlite3_column_text(st, 1),
		    sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 :
		    sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
		    arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

/*
 * Every attempt since a time, in one pass over the table in its own
 * order (through an index, each row would be a seek of its own): its
 * endpoint, whether it delivered, and for a first attempt the latency
 * from its webhook's first event.  The sums are the caller's.
 */
int
whk_store_attempts_scan(struct whk_store *s, int64_t since,
    const char *endpoint, whk_scan_fn fn, void *arg, struct whk_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sqlite3_prepare_v2(s->db, "SELECT a.endpoint_id,"
	    " a.outcome = 'delivered', CASE WHEN a.n = 1 THEN a.started_at +"
	    " coalesce(a.ms, 0) - (SELECT w.first_event_at FROM webhooks w"
	    " WHERE w.seq = a.webhook_seq) END FROM attempts a NOT INDEXED"
	    " WHERE a.started_at >= :since AND (:endpoint IS NULL OR"
	    " a.endpoint_id = (SELECT id FROM endpoints WHERE name = :endpoint"
	    " AND removed_at IS NULL))", -1, &st, NULL)) != SQLITE_OK)
		return fail(s, err, rc, NULL);
	bind_named(st, ":endpoint", endpoint);
	bind_named_int(st, ":since", since);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
		    sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 :
		    sqlite3_column_int64(st, 2), arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(s, err, rc, NULL);
}

int
whk_store_agg(struct whk_store *s, int which, const char *endpoint,
    int64_t since, int64_t within, whk_row_fn fn, void *arg,
    struct whk_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sqlite3_prepare_v2(s->db, agg_sql[which], -1, &st,
	    NULL)) != SQLITE_OK)
		return fail(s, err, rc, NULL);
	bind_named(st, ":endpoint", endpoint);
	bind_named_int(st, ":since", since);
	bind_named_int(st, ":within", within);
	bind_named_int(st, ":now", whk_now_ms());
	rc = rows(s, st, fn, arg, err);
	sqlite3_finalize(st);
	return rc;
}

/*
 * prune: delivered and dead webhooks made before the bound, their
 * attempts and pairs, then the events before it that nothing holds any
 * more, a thousand at a time, so writers wait little.  A dry run counts
 * in one transaction and rolls it back.
 */
#define PRUNE_CHUNK 1000
#define WHK_STR_(x) #x
#define WHK_STR(x) WHK_STR_(x)

static int
prune_exec(struct whk_store *s, const char *q, int64_t a1, int64_t a2,
    int64_t *changed, struct whk_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sqlite3_prepare_v2(s->db, q, -1, &st, NULL)) != SQLITE_OK)
		return fail(s, err, rc, NULL);
	bind_named_int(st, ":a", a1);
	bind_named_int(st, ":b", a2);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(s, err, rc, NULL);
	if (changed)
		*changed = sqlite3_changes64(s->db);
	return 0;
}

/* The next chunk, by seq past *after; *after moves to its last. */
static int
prune_fill(struct whk_store *s, const char *select, int64_t *after,
    int64_t before, int64_t *n, struct whk_err *err)
{
	struct whk_buf q = { 0 };
	sqlite3_stmt *st = NULL;
	int rc;

	whk_buf_printf(&q, "INSERT INTO temp.prune_chunk %s", select);
	rc = q.oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") :
	    prune_exec(s, "DELETE FROM temp.prune_chunk", 0, 0, NULL, err) ==
	    -1 ? -1 : prune_exec(s, q.data, *after, before, n, err);
	whk_buf_free(&q);
	if (rc == -1 || *n == 0)
		return rc;
	if ((rc = sqlite3_prepare_v2(s->db, "SELECT max(seq) FROM"
	    " temp.prune_chunk", -1, &st, NULL)) != SQLITE_OK)
		return fail(s, err, rc, NULL);
	if (sqlite3_step(st) == SQLITE_ROW)
		*after = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return 0;
}

int
whk_store_prune(struct whk_store *s, int64_t before, int dry_run,
    struct whk_pruned *out, struct whk_err *err)
{
	int64_t n, after = 0, k;

	memset(out, 0, sizeof(*out));
	if (dry_run && whk_store_begin(s, err) == -1)
		return -1;
	/* The chunk: the next delivered or dead webhooks, by seq. */
	if (exec(s, "CREATE TEMP TABLE IF NOT EXISTS prune_chunk(seq INTEGER"
	    " PRIMARY KEY)", err) == -1)
		goto fail;
	do {
		if (!dry_run && whk_store_begin(s, err) == -1)
			return -1;
		if (prune_fill(s, "SELECT seq FROM webhooks WHERE state IN"
		    " ('delivered', 'dead') AND seq > :a AND created_at < :b"
		    " ORDER BY seq LIMIT " WHK_STR(PRUNE_CHUNK), &after, before,
		    &n, err) == -1)
			goto fail;
		if (n > 0) {
			if (prune_exec(s, "DELETE FROM attempts WHERE webhook_seq"
			    " IN temp.prune_chunk", 0, 0, &k, err) == -1)
				goto fail;
			out->attempts += k;
			if (prune_exec(s, "DELETE FROM webhook_events WHERE"
			    " (endpoint_id, event_seq) IN (SELECT w.endpoint_id,"
			    " j.value FROM webhooks w, json_each(w.event_seqs) j"
			    " WHERE w.seq IN temp.prune_chunk)", 0, 0, NULL,
			    err) == -1 ||
			    prune_exec(s, "DELETE FROM webhooks WHERE seq IN"
			    " temp.prune_chunk", 0, 0, &k, err) == -1)
				goto fail;
			out->webhooks += k;
		}
		if (!dry_run && whk_store_commit(s, err) == -1)
			goto fail;
	} while (n == PRUNE_CHUNK);
	/* Events nothing holds, routed, from before the bound. */
	after = 0;
	do {
		if (!dry_run && whk_store_begin(s, err) == -1)
			return -1;
		if (prune_fill(s, "SELECT e.seq FROM events e WHERE e.seq > :a"
		    " AND e.received_at < :b AND NOT EXISTS(SELECT 1 FROM"
		    " unrouted u WHERE u.seq = e.seq) AND NOT EXISTS(SELECT 1"
		    " FROM webhook_events x WHERE x.endpoint_id IN (SELECT id"
		    " FROM endpoints) AND x.event_seq = e.seq) ORDER BY e.seq"
		    " LIMIT " WHK_STR(PRUNE_CHUNK), &after, before, &n,
		    err) == -1)
			goto fail;
		if (n > 0) {
			if (prune_exec(s, "DELETE FROM events WHERE seq IN"
			    " temp.prune_chunk", 0, 0, &k, err) == -1)
				goto fail;
			out->events += k;
		}
		if (!dry_run && whk_store_commit(s, err) == -1)
			goto fail;
	} while (n == PRUNE_CHUNK);
	if (dry_run)
		whk_store_rollback(s);
	return 0;
fail:
	whk_store_rollback(s);
	return -1;
}
