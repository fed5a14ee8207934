/*
 * json.c - the only file that touches jv and jq_state.
 *
 * Events are kept byte for byte as they came in, so the parser here only
 * judges and extracts; it never writes back what it parsed (jq 1.6 rounds
 * integers past 2^53).  jq 1.6 also accepts text that is not JSON (nan,
 * 01, .5, +1): a strict scan of the tokens comes first, so a receiver's
 * strict parser never chokes on what we accepted.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jq.h>
#include <jv.h>

#include "whk.h"

#define MAX_DEPTH	256	/* jq 1.6's own parser limit */
#define MAX_FIELD	1024	/* type, tenant and key */

struct whk_jq {
	jq_state	*jq;
	char		*what;		/* "--filter", for messages */
	char		 msg[256];	/* last message from jq */
};

static void
jq_message(void *data, jv msg)
{
	struct whk_jq *q = data;
	const char *s;

	if (jv_get_kind(msg) == JV_KIND_STRING)
		s = jv_string_value(msg);
	else {
		msg = jv_dump_string(msg, 0);
		s = jv_string_value(msg);
	}
	/* Keep the first: it names the error; later ones only count them. */
	if (q->msg[0] == '\0') {
		if (strncmp(s, "jq: error: ", 11) == 0)
			s += 11;
		snprintf(q->msg, sizeof(q->msg), "%s", s);
	}
	jv_free(msg);
}

struct whk_jq *
whk_jq_compile(const char *expr, const char *what, struct whk_err *err)
{
	struct whk_jq *q;
	char *nl;

	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->what = strdup(what)) == NULL || (q->jq = jq_init()) == NULL) {
		whk_jq_free(q);
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		return NULL;
	}
	jq_set_error_cb(q->jq, jq_message, q);
	if (!jq_compile(q->jq, expr)) {
		if ((nl = strchr(q->msg, '\n')) != NULL)
			*nl = '\0';
		whk_error(err, WHK_EXIT_USAGE, "%s: invalid jq expression '%s': "
		    "%s", what, expr, q->msg[0] ? q->msg : "compile error");
		whk_jq_free(q);
		return NULL;
	}
	return q;
}

void
whk_jq_free(struct whk_jq *q)
{
	if (q == NULL)
		return;
	if (q->jq)
		jq_teardown(&q->jq);
	free(q->what);
	free(q);
}

/*
 * The first output of q on input (which is consumed).  Returns 1 with
 * *out set, 0 when q produced nothing, -1 on a jq error.
 */
static int
jq_first(struct whk_jq *q, jv input, jv *out, struct whk_err *err)
{
	jv r, msg;

	q->msg[0] = '\0';
	jq_start(q->jq, input, 0);
	r = jq_next(q->jq);
	if (jv_is_valid(r)) {
		*out = r;
		return 1;
	}
	msg = jv_invalid_get_msg(r);
	if (jv_get_kind(msg) == JV_KIND_NULL) {
		jv_free(msg);
		return 0;
	}
	if (jv_get_kind(msg) != JV_KIND_STRING)
		msg = jv_dump_string(msg, 0);
	whk_error(err, WHK_EXIT_PARTIAL, "%s: %s", q->what,
	    jv_string_value(msg));
	jv_free(msg);
	return -1;
}

/*
 * Strict JSON tokens: numbers as RFC 8259 has them, true/false/null as
 * the only words, raw control characters never in strings, and no more
 * than MAX_DEPTH levels.  The structure itself is left to jv_parse.
 */
static int
number_valid(const char *p, size_t n)
{
	size_t i = 0;

	if (i < n && p[i] == '-')
		i++;
	if (i < n && p[i] == '0')
		i++;
	else if (i < n && p[i] >= '1' && p[i] <= '9')
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	else
		return 0;
	if (i < n && p[i] == '.') {
		size_t start = ++i;

		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == start)
			return 0;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		size_t start;

		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		start = i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == start)
			return 0;
	}
	return i == n;
}

static int
tokens_valid(const char *s, size_t n, struct whk_err *err)
{
	size_t i = 0, depth = 0, start;

	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				if ((unsigned char)s[i] < 0x20)
					return whk_error(err, WHK_EXIT_PARTIAL,
					    "control character in a string "
					    "at byte %zu", i + 1);
				if (s[i] == '\\')
					i++;
			}
			i++;
			continue;
		}
		if (c == '{' || c == '[') {
			if (++depth > MAX_DEPTH)
				return whk_error(err, WHK_EXIT_PARTIAL,
				    "nested deeper than %d levels", MAX_DEPTH);
		} else if (c == '}' || c == ']') {
			if (depth > 0)
				depth--;
		} else if ((c >= '0' && c <= '9') || c == '-' || c == '+' ||
		    c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			for (start = i; i < n; i++) {
				c = (unsigned char)s[i];
				if (!((c >= '0' && c <= '9') || c == '-' ||
				    c == '+' || c == '.' || (c >= 'a' &&
				    c <= 'z') || (c >= 'A' && c <= 'Z')))
					break;
			}
			if (!number_valid(s + start, i - start) &&
			    !(i - start == 4 && memcmp(s + start, "true", 4) == 0) &&
			    !(i - start == 5 && memcmp(s + start, "false", 5) == 0) &&
			    !(i - start == 4 && memcmp(s + start, "null", 4) == 0))
				return whk_error(err, WHK_EXIT_PARTIAL,
				    "not JSON: invalid literal '%.*s'",
				    (int)(i - start > 40 ? 40 : i - start),
				    s + start);
			continue;
		}
		i++;
	}
	return 0;
}

/*
 * A field's value as text: strings as they are, numbers as JSON has
 * them.  A number that jq cannot hold exactly is refused rather than
 * rounded, since two ids rounded alike would be taken for one.
 */
static int
field_text(jv v, const char *what, int numbers_ok, char **out,
    struct whk_err *err)
{
	const char *s;
	size_t n;

	*out = NULL;
	switch (jv_get_kind(v)) {
	case JV_KIND_NULL:
	case JV_KIND_INVALID:
		jv_free(v);
		return 0;
	case JV_KIND_STRING:
		s = jv_string_value(v);
		n = (size_t)jv_string_length_bytes(jv_copy(v));
		if (n == 0) {
			jv_free(v);
			return 0;
		}
		if (n > MAX_FIELD || memchr(s, '\0', n)) {
			jv_free(v);
			return whk_error(err, WHK_EXIT_PARTIAL, "%s is longer "
			    "than %d bytes or holds a NUL", what, MAX_FIELD);
		}
		*out = strdup(s);
		break;
	case JV_KIND_NUMBER:
		if (!numbers_ok) {
			jv_free(v);
			return whk_error(err, WHK_EXIT_PARTIAL,
			    "%s must be a string", what);
		}
		if (fabs(jv_number_value(v)) > 9007199254740992.0) {
			jv_free(v);
			return whk_error(err, WHK_EXIT_PARTIAL, "%s is a number "
			    "too large to keep exactly; send it as a string",
			    what);
		}
		v = jv_dump_string(v, 0);
		*out = strdup(jv_string_value(v));
		break;
	default:
		jv_free(v);
		return whk_error(err, WHK_EXIT_PARTIAL, "%s must be a %s", what,
		    numbers_ok ? "string or a number" : "string");
	}
	jv_free(v);
	if (*out == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	return 0;
}

static int
extract(struct whk_jq *q, jv ev, const char *field, const char *what,
    int numbers_ok, char **out, struct whk_err *err)
{
	jv v;
	int rc;

	if (q == NULL)
		return field_text(jv_object_get(ev, jv_string(field)), what,
		    numbers_ok, out, err);
	if ((rc = jq_first(q, ev, &v, err)) == -1)
		return -1;
	if (rc == 0)
		return *out = NULL, 0;
	return field_text(v, what, numbers_ok, out, err);
}

static int
truthy(jv v)
{
	jv_kind k = jv_get_kind(v);

	jv_free(v);
	return k != JV_KIND_NULL && k != JV_KIND_FALSE;
}

int
whk_event_parse(const char *line, size_t len,
    const struct whk_ingest_rules *r, struct whk_event *ev,
    struct whk_err *err)
{
	static const struct whk_ingest_rules none;
	size_t bad;
	jv v, m;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (r == NULL)
		r = &none;
	if (memchr(line, '\0', len))
		return whk_error(err, WHK_EXIT_PARTIAL, "NUL byte at byte %zu",
		    (size_t)((const char *)memchr(line, '\0', len) - line) + 1);
	if (!whk_utf8_valid(line, len, &bad))
		return whk_error(err, WHK_EXIT_PARTIAL,
		    "invalid UTF-8 at byte %zu", bad + 1);
	if (tokens_valid(line, len, err) == -1)
		return -1;
	if (len > 0x7fffffff)
		return whk_error(err, WHK_EXIT_PARTIAL, "line too long");
	/* jv_parse_sized quotes the line up to a NUL: it must have one. */
	v = jv_parse_sized(line, (int)len);
	if (!jv_is_valid(v)) {
		jv msg = jv_invalid_get_msg(v);
		const char *text = jv_get_kind(msg) == JV_KIND_STRING ?
		    jv_string_value(msg) : "parse error";
		const char *quote = strstr(text, " (while parsing '");

		/* The line itself is the caller's to quote, not ours. */
		whk_error(err, WHK_EXIT_PARTIAL, "not JSON: %.*s",
		    quote ? (int)(quote - text) : (int)strlen(text), text);
		jv_free(msg);
		return -1;
	}
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		whk_error(err, WHK_EXIT_PARTIAL, "not a JSON object but %s",
		    jv_kind_name(jv_get_kind(v)));
		jv_free(v);
		return -1;
	}
	ev->body = line;
	ev->body_len = len;
	if (r->map) {
		if ((rc = jq_first(r->map, v, &m, err)) <= 0) {
			if (rc == 0)
				whk_error(err, WHK_EXIT_PARTIAL,
				    "--map produced nothing");
			return -1;
		}
		if (jv_get_kind(m) != JV_KIND_OBJECT) {
			whk_error(err, WHK_EXIT_PARTIAL, "--map produced %s, "
			    "not an object", jv_kind_name(jv_get_kind(m)));
			jv_free(m);
			return -1;
		}
		v = m;
		m = jv_dump_string(jv_copy(v), 0);
		ev->mapped = strdup(jv_string_value(m));
		jv_free(m);
		if (ev->mapped == NULL) {
			jv_free(v);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
		ev->body = ev->mapped;
		ev->body_len = strlen(ev->mapped);
	}
	if (r->require) {
		if ((rc = jq_first(r->require, jv_copy(v), &m, err)) == -1)
			goto fail;
		if (rc == 0 || !truthy(m)) {
			whk_error(err, WHK_EXIT_PARTIAL, "--require is not true");
			goto fail;
		}
	}
	if (extract(r->type_from, jv_copy(v), "type", "type", 0, &ev->type,
	    err) == -1 ||
	    extract(r->tenant_from, jv_copy(v), "tenant", "tenant", 1,
	    &ev->tenant, err) == -1 ||
	    extract(r->key_from, jv_copy(v), "id", r->key_from ? "key" : "id",
	    1, &ev->key, err) == -1)
		goto fail;
	jv_free(v);
	return 0;
fail:
	jv_free(v);
	whk_event_clear(ev);
	return -1;
}

void
whk_event_clear(struct whk_event *ev)
{
	free(ev->type);
	free(ev->tenant);
	free(ev->key);
	free(ev->mapped);
	memset(ev, 0, sizeof(*ev));
}
