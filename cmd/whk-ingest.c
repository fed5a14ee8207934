/*
 * whk-ingest - append NDJSON events to the store.
 *
 * Reads one JSON object per line from stdin or files, checks it, and
 * stores it byte for byte (or as --map rewrote it) with its type, tenant
 * and idempotency key.  Prints one record per stored event, only after
 * the transaction holding it has committed: a printed id is durable.
 * Commits are grouped under load and made at once when input pauses.
 *
 * It does not route, group or send: whk-batch and whk-deliver do.  It
 * never rewrites a stored event; the same key again is a duplicate.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define TXN_EVENTS	8192	/* commit at least this often under load */
#define TXN_MS		100	/* and at least this often in time */

static const char usage[] =
"usage: whk-ingest [-s store] [--map jq] [--type-from jq] [--tenant-from jq]\n"
"                  [--key-from jq] [--require jq] [--max-bytes size]\n"
"                  [file ...]\n";

static const char help[] =
"Append NDJSON events to the whk store; print one record per stored event.\n"
"\n"
"  -s, --store PATH       the store (default $WHK_STORE, else\n"
"                         $XDG_DATA_HOME/whk/whk.db)\n"
"      --map JQ           rewrite each event with a jq expression\n"
"      --type-from JQ     event type (default .type)\n"
"      --tenant-from JQ   tenant (default .tenant)\n"
"      --key-from JQ      idempotency key (default .id)\n"
"      --require JQ       reject events for which JQ is not true\n"
"      --max-bytes SIZE   longest line accepted (default 1M)\n"
"  -h, --help             show this help\n"
"  -V, --version          show the version\n"
"\n"
"Exit: 0 all stored, 1 some lines rejected, 2 usage, 3 store unavailable,\n"
"4 system error.  See whk-ingest(1).\n";

static const struct option longopts[] = {
	{ "store",	 required_argument, NULL, 's' },
	{ "map",	 required_argument, NULL, 'M' },
	{ "type-from",	 required_argument, NULL, 'T' },
	{ "tenant-from", required_argument, NULL, 'N' },
	{ "key-from",	 required_argument, NULL, 'K' },
	{ "require",	 required_argument, NULL, 'R' },
	{ "max-bytes",	 required_argument, NULL, 'B' },
	{ "help",	 no_argument,	    NULL, 'h' },
	{ "version",	 no_argument,	    NULL, 'V' },
	{ NULL,		 0,		    NULL, 0 }
};

struct ingest {
	struct whk_store	*store;
	struct whk_ingest_rules	 rules;
	struct whk_buf		 out;		/* records awaiting commit */
	int			 in_txn;
	int			 txn_events;
	int64_t			 txn_start;
	int64_t			 stored, duplicates, rejected;
};

static int
commit(struct ingest *in, struct whk_err *err)
{
	if (!in->in_txn)
		return 0;
	in->in_txn = 0;
	if (whk_store_commit(in->store, err) == -1)
		return -1;
	/* Durable now: only now may anyone hear of it. */
	if (in->out.len > 0 && (fwrite(in->out.data, 1, in->out.len, stdout) !=
	    in->out.len || fflush(stdout) == EOF))
		return whk_error(err, WHK_EXIT_SYSTEM, "write error: %s",
		    strerror(errno));
	whk_buf_reset(&in->out);
	return 0;
}

static int
blank(const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	return n == 0;
}

static void
reject(struct ingest *in, const char *name, int64_t lineno, const char *why)
{
	in->rejected++;
	if (name)
		fprintf(stderr, "whk-ingest: %s: line %lld: %s\n", name,
		    (long long)lineno, why);
	else
		fprintf(stderr, "whk-ingest: line %lld: %s\n",
		    (long long)lineno, why);
}

static int
store_one(struct ingest *in, const struct whk_event *ev, struct whk_err *err)
{
	char id[WHK_ID_LEN];
	int dup;

	if (!in->in_txn) {
		if (whk_store_begin(in->store, err) == -1)
			return -1;
		in->in_txn = 1;
		in->txn_events = 0;
		in->txn_start = whk_now_ms();
	}
	if (whk_store_event_add(in->store, ev, id, &dup, err) == -1)
		return -1;
	whk_buf_puts(&in->out, "{\"event\":\"");
	whk_buf_puts(&in->out, id);
	whk_buf_puts(&in->out, "\",\"key\":");
	whk_buf_json_str(&in->out, ev->key);
	whk_buf_puts(&in->out, ",\"type\":");
	whk_buf_json_str(&in->out, ev->type);
	whk_buf_puts(&in->out, ",\"tenant\":");
	whk_buf_json_str(&in->out, ev->tenant);
	whk_buf_puts(&in->out, dup ? ",\"duplicate\":true}\n" :
	    ",\"duplicate\":false}\n");
	if (in->out.oom)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	if (dup)
		in->duplicates++;
	else
		in->stored++;
	in->txn_events++;
	return 0;
}

/* Returns -1 on a fatal error (store, system), 0 otherwise. */
static int
ingest_fd(struct ingest *in, int fd, const char *name, size_t max,
    struct whk_err *err)
{
	struct whk_lines r;
	struct whk_event ev;
	struct whk_err why;
	const char *line;
	size_t len;
	int rc = 0, too_long;

	if (whk_lines_init(&r, fd, max) == -1)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	for (;;) {
		/* Input paused: commit now rather than keep anyone waiting. */
		if (in->in_txn && !whk_lines_ready(&r) && commit(in, err) == -1)
			break;
		if ((rc = whk_lines_next(&r, &line, &len, &too_long, err)) <= 0) {
			if (rc == -1 && name) {
				char msg[sizeof(err->msg)];

				snprintf(msg, sizeof(msg), "%.200s: %.300s", name,
				    err->msg);
				memcpy(err->msg, msg, sizeof(msg));
			}
			break;
		}
		if (r.lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf",
		    3) == 0)
			line += 3, len -= 3;	/* a BOM is not content */
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (too_long) {
			snprintf(why.msg, sizeof(why.msg), "longer than "
			    "--max-bytes (%zu bytes)", max);
			reject(in, name, r.lineno, why.msg);
			continue;
		}
		if (blank(line, len))
			continue;
		if (whk_event_parse(line, len, &in->rules, &ev, &why) == -1) {
			if (why.status != WHK_EXIT_PARTIAL) {
				*err = why;
				rc = -1;
				break;
			}
			reject(in, name, r.lineno, why.msg);
			continue;
		}
		rc = store_one(in, &ev, err);
		whk_event_clear(&ev);
		if (rc == -1)
			break;
		if ((in->txn_events >= TXN_EVENTS ||
		    whk_now_ms() - in->txn_start >= TXN_MS) &&
		    commit(in, err) == -1) {
			rc = -1;
			break;
		}
	}
	whk_lines_free(&r);
	return rc == -1 ? -1 : 0;
}

static struct whk_jq *
compile(const char *expr, const char *what)
{
	struct whk_err err;
	struct whk_jq *q;

	if ((q = whk_jq_compile(expr, what, &err)) == NULL) {
		fprintf(stderr, "whk-ingest: %s\n", err.msg);
		exit(err.status);
	}
	return q;
}

int
main(int argc, char *argv[])
{
	struct ingest in;
	struct whk_err err = { 0, "" };
	const char *store_opt = NULL;
	char path[4096];
	int64_t max = 1024 * 1024;
	int ch, i, status = WHK_EXIT_OK, fd;

	memset(&in, 0, sizeof(in));
	while ((ch = getopt_long(argc, argv, "s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			store_opt = optarg;
			break;
		case 'M':
			in.rules.map = compile(optarg, "--map");
			break;
		case 'T':
			in.rules.type_from = compile(optarg, "--type-from");
			break;
		case 'N':
			in.rules.tenant_from = compile(optarg, "--tenant-from");
			break;
		case 'K':
			in.rules.key_from = compile(optarg, "--key-from");
			break;
		case 'R':
			in.rules.require = compile(optarg, "--require");
			break;
		case 'B':
			if (whk_parse_size(optarg, &max, &err) == -1 ||
			    max < 2 || max > 256 * 1024 * 1024) {
				fprintf(stderr, "whk-ingest: --max-bytes: %s\n",
				    err.msg[0] ? err.msg :
				    "must be between 2 and 256M");
				return WHK_EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			fputs(help, stdout);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		case 'V':
			printf("whk-ingest %s\n", WHK_VERSION);
			return fflush(stdout) == EOF ? WHK_EXIT_SYSTEM :
			    WHK_EXIT_OK;
		default:
			fputs(usage, stderr);
			return WHK_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;

	if (whk_now_init(&err) == -1 ||
	    whk_store_path(store_opt, path, sizeof(path), &err) == -1 ||
	    (in.store = whk_store_open(path, &err)) == NULL ||
	    whk_store_cache(in.store, 2048, &err) == -1) {
		fprintf(stderr, "whk-ingest: %s\n", err.msg);
		whk_store_close(in.store);
		return err.status;
	}

	for (i = 0; i < (argc ? argc : 1); i++) {
		const char *name = argc ? argv[i] : "-";

		if (strcmp(name, "-") == 0)
			fd = STDIN_FILENO;
		else if ((fd = open(name, O_RDONLY | O_CLOEXEC)) == -1) {
			fprintf(stderr, "whk-ingest: cannot open '%s': %s\n",
			    name, strerror(errno));
			status = WHK_EXIT_SYSTEM;
			continue;
		}
		if (ingest_fd(&in, fd, fd == STDIN_FILENO ? NULL : name,
		    (size_t)max, &err) == -1 || commit(&in, &err) == -1) {
			/* Nothing of the open transaction was printed. */
			whk_store_rollback(in.store);
			fprintf(stderr, "whk-ingest: %s\n", err.msg);
			status = err.status;
			if (fd != STDIN_FILENO)
				close(fd);
			break;
		}
		if (fd != STDIN_FILENO)
			close(fd);
	}

	if (status == WHK_EXIT_OK && in.rejected > 0)
		status = WHK_EXIT_PARTIAL;
	whk_store_close(in.store);
	whk_buf_free(&in.out);
	whk_jq_free(in.rules.map);
	whk_jq_free(in.rules.type_from);
	whk_jq_free(in.rules.tenant_from);
	whk_jq_free(in.rules.key_from);
	whk_jq_free(in.rules.require);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "whk-ingest: write error: %s\n",
		    strerror(errno));
		return WHK_EXIT_SYSTEM;
	}
	return status;
}
