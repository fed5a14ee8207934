/*
 * json.c - the only file that touches jv and jq_state.
 *
 * Events are kept byte for byte as they came in, so the parser here only
 * judges and extracts; it never writes back what it parsed (jq 1.6 rounds
 * integers past 2^53).  jq 1.6 also accepts text that is not JSON (nan,
 * 01, .5, +1) and builds a whole tree to say yes: a strict validator
 * comes first, so a receiver's strict parser never chokes on what we
 * accepted, and jq's tree is built only when a jq expression needs it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jq.h>
#include <jv.h>

#include "whk.h"

#define MAX_DEPTH	256	/* jq 1.6's own parser limit, as it counts */
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
 * The strict validator: RFC 8259 JSON, one value per line, no deeper than
 * MAX_DEPTH, counting as jq 1.6 does the arrays, the objects and the
 * object members open, so that jq can parse whatever it passes (an
 * object in an object is two levels deeper).  It builds nothing; on the
 * way it notes where the top-level "type", "tenant" and "id" are, so the
 * common case needs no jv tree.
 */
struct span {
	const char	*p;	/* NULL when absent */
	size_t		 n;
	int		 escaped;	/* a string holding backslashes */
	char		 kind;		/* first byte: '"', '{', 't', '1'... */
};

struct scan {
	const char	*s, *p, *end;
	int		 depth;
	struct whk_err	*err;
	struct span	 type, tenant, id;
	const char	*want;		/* one more top-level name to note */
	size_t		 want_n;
	struct span	 wanted;
};

static int
scan_fail(struct scan *sc, const char *what)
{
	if (sc->p >= sc->end)
		return whk_error(sc->err, WHK_EXIT_PARTIAL,
		    "not JSON: unexpected end of line");
	return whk_error(sc->err, WHK_EXIT_PARTIAL, "not JSON: %s at byte %zu",
	    what, (size_t)(sc->p - sc->s) + 1);
}

static void
ws(struct scan *sc)
{
	while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' ||
	    *sc->p == '\n' || *sc->p == '\r'))
		sc->p++;
}

static int
hex4(const char *p, unsigned *v)
{
	int i;

	*v = 0;
	for (i = 0; i < 4; i++) {
		char c = p[i];

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static int
scan_string(struct scan *sc, struct span *sp)
{
	const char *start = ++sc->p;
	int escaped = 0;
	unsigned u, lo;

	for (;;) {
		if (sc->p >= sc->end)
			return scan_fail(sc, "unterminated string");
		unsigned char c = (unsigned char)*sc->p;

		if (c == '"')
			break;
		if (c < 0x20)
			return whk_error(sc->err, WHK_EXIT_PARTIAL, "control "
			    "character in a string at byte %zu",
			    (size_t)(sc->p - sc->s) + 1);
		if (c != '\\') {
			sc->p++;
			continue;
		}
		escaped = 1;
		if (sc->end - sc->p < 2)
			return scan_fail(sc, "unterminated string");
		switch (sc->p[1]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n':
		case 'r': case 't':
			sc->p += 2;
			continue;
		case 'u':
			break;
		default:
			return scan_fail(sc, "invalid escape");
		}
		if (sc->end - sc->p < 6 || hex4(sc->p + 2, &u) == -1)
			return scan_fail(sc, "invalid \\u escape");
		if (u >= 0xdc00 && u <= 0xdfff)
			return scan_fail(sc, "lone surrogate in \\u escape");
		if (u >= 0xd800 && u <= 0xdbff) {
			if (sc->end - sc->p < 12 || sc->p[6] != '\\' ||
			    sc->p[7] != 'u' || hex4(sc->p + 8, &lo) == -1 ||
			    lo < 0xdc00 || lo > 0xdfff)
				return scan_fail(sc,
				    "lone surrogate in \\u escape");
			sc->p += 6;
		}
		sc->p += 6;
	}
	if (sp) {
		sp->p = start;
		sp->n = (size_t)(sc->p - start);
		sp->escaped = escaped;
		sp->kind = '"';
	}
	sc->p++;
	return 0;
}

#define IS_DIGIT(c)	((c) >= '0' && (c) <= '9')

static int
scan_number(struct scan *sc)
{
	const char *start = sc->p, *end = sc->end, *p = sc->p;

	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && IS_DIGIT(*p))
			p++;
	else
		goto bad;
	if (p < end && *p == '.') {
		if (++p >= end || !IS_DIGIT(*p))
			goto bad;
		while (p < end && IS_DIGIT(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !IS_DIGIT(*p))
			goto bad;
		while (p < end && IS_DIGIT(*p))
			p++;
	}
	/* "01", "1x": a number must end where a token can. */
	if (p < end && (IS_DIGIT(*p) || (*p >= 'a' && *p <= 'z') ||
	    (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '+' || *p == '-'))
		goto bad;
	sc->p = p;
	return 0;
bad:
	/* Name the whole word, as a person would read it. */
	for (p = start; p < end && (IS_DIGIT(*p) || (*p >= 'a' && *p <= 'z') ||
	    (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '+' || *p == '-');
	    p++)
		;
	return whk_error(sc->err, WHK_EXIT_PARTIAL,
	    "not JSON: invalid literal '%.*s'",
	    (int)(p - start > 40 ? 40 : p - start), start);
}

static int scan_value(struct scan *, struct span *);
static jv span_jv(const struct span *);

static struct span *
top_field(struct scan *sc, const struct span *key)
{
	const char *name = key->p;
	size_t n = key->n;
	struct span *field = NULL;
	jv decoded = jv_invalid();

	if (key->escaped) {	/* "typ\u0065" is "type" to jq as well */
		decoded = span_jv(key);
		if (jv_get_kind(decoded) != JV_KIND_STRING) {
			jv_free(decoded);
			return NULL;
		}
		name = jv_string_value(decoded);
		n = (size_t)jv_string_length_bytes(jv_copy(decoded));
	}
	if (n == 4 && memcmp(name, "type", 4) == 0)
		field = &sc->type;
	else if (n == 6 && memcmp(name, "tenant", 6) == 0)
		field = &sc->tenant;
	else if (n == 2 && memcmp(name, "id", 2) == 0)
		field = &sc->id;
	if (sc->want && n == sc->want_n && memcmp(name, sc->want, n) == 0)
		field = &sc->wanted;
	jv_free(decoded);
	return field;
}

static int
scan_object(struct scan *sc, int top)
{
	struct span key, val, *field;

	sc->p++;
	ws(sc);
	if (sc->p < sc->end && *sc->p == '}') {
		sc->p++;
		return 0;
	}
	for (;;) {
		if (sc->p >= sc->end || *sc->p != '"')
			return scan_fail(sc, "expected a member name");
		if (scan_string(sc, &key) == -1)
			return -1;
		ws(sc);
		if (sc->p >= sc->end || *sc->p != ':')
			return scan_fail(sc, "expected ':'");
		sc->p++;
		ws(sc);
		/* The last of repeated names wins, as in jq. */
		field = top ? top_field(sc, &key) : NULL;
		val.p = sc->p;
		val.kind = sc->p < sc->end ? *sc->p : '\0';
		/* jq keeps the name on its stack: a level of its own. */
		sc->depth++;
		if (scan_value(sc, field ? &val : NULL) == -1)
			return -1;
		sc->depth--;
		if (field) {
			if (val.kind != '"') {
				val.n = (size_t)(sc->p - val.p);
				val.escaped = 0;
			}
			*field = val;
		}
		ws(sc);
		if (sc->p < sc->end && *sc->p == ',') {
			sc->p++;
			ws(sc);
			continue;
		}
		if (sc->p < sc->end && *sc->p == '}') {
			sc->p++;
			return 0;
		}
		return scan_fail(sc, "expected ',' or '}'");
	}
}

static int
scan_array(struct scan *sc)
{
	sc->p++;
	ws(sc);
	if (sc->p < sc->end && *sc->p == ']') {
		sc->p++;
		return 0;
	}
	for (;;) {
		if (scan_value(sc, NULL) == -1)
			return -1;
		ws(sc);
		if (sc->p < sc->end && *sc->p == ',') {
			sc->p++;
			ws(sc);
			continue;
		}
		if (sc->p < sc->end && *sc->p == ']') {
			sc->p++;
			return 0;
		}
		return scan_fail(sc, "expected ',' or ']'");
	}
}

static int
scan_value(struct scan *sc, struct span *sp)
{
	static const char *words[] = { "true", "false", "null" };
	size_t i, n;
	int rc;

	if (sc->p >= sc->end)
		return scan_fail(sc, "expected a value");
	switch (*sc->p) {
	case '{':
	case '[':
		if (++sc->depth > MAX_DEPTH)
			return whk_error(sc->err, WHK_EXIT_PARTIAL,
			    "nested deeper than %d levels", MAX_DEPTH);
		rc = *sc->p == '{' ? scan_object(sc, 0) : scan_array(sc);
		sc->depth--;
		return rc;
	case '"':
		return scan_string(sc, sp);
	}
	for (i = 0; i < 3; i++) {
		n = strlen(words[i]);
		if ((size_t)(sc->end - sc->p) >= n &&
		    memcmp(sc->p, words[i], n) == 0 &&
		    ((size_t)(sc->end - sc->p) == n || !((sc->p[n] >= 'a' &&
		    sc->p[n] <= 'z') || (sc->p[n] >= 'A' && sc->p[n] <= 'Z') ||
		    IS_DIGIT(sc->p[n])))) {
			sc->p += n;
			return 0;
		}
	}
	if (*sc->p == '-' || IS_DIGIT(*sc->p) || *sc->p == '+' ||
	    *sc->p == '.' || (*sc->p >= 'a' && *sc->p <= 'z') ||
	    (*sc->p >= 'A' && *sc->p <= 'Z'))
		return scan_number(sc);
	return scan_fail(sc, "unexpected character");
}

static int
scan_line(struct scan *sc, const char *s, size_t n, const char *want,
    struct whk_err *err)
{
	const char *kind;

	memset(sc, 0, sizeof(*sc));
	if ((sc->want = want) != NULL)
		sc->want_n = strlen(want);
	sc->s = sc->p = s;
	sc->end = s + n;
	sc->err = err;
	ws(sc);
	if (sc->p < sc->end && *sc->p == '{') {
		sc->depth = 1;
		if (scan_object(sc, 1) == -1)
			return -1;
	} else {
		if (scan_value(sc, NULL) == -1)
			return -1;
		switch (*s == ' ' || *s == '\t' ? s[strspn(s, " \t")] : *s) {
		case '[': kind = "array"; break;
		case '"': kind = "string"; break;
		case 't': case 'f': kind = "boolean"; break;
		case 'n': kind = "null"; break;
		default: kind = "number"; break;
		}
		return whk_error(err, WHK_EXIT_PARTIAL,
		    "not a JSON object but %s", kind);
	}
	ws(sc);
	if (sc->p < sc->end)
		return scan_fail(sc, "more after the object");
	return 0;
}

/* A noted field as a jv: strings decoded, numbers parsed as jq would. */
static jv
span_jv(const struct span *sp)
{
	char *d, *o;
	const char *p, *e;
	unsigned u, lo;
	jv v;

	if (sp->p == NULL)
		return jv_null();
	if (sp->kind != '"') {
		switch (sp->kind) {
		case 'n': return jv_null();
		case 't': return jv_true();
		case 'f': return jv_false();
		case '{': return jv_object();
		case '[': return jv_array();
		}
		return jv_number(strtod(sp->p, NULL));
	}
	if (!sp->escaped)
		return jv_string_sized(sp->p, (int)sp->n);
	if ((o = d = malloc(sp->n + 1)) == NULL)
		return jv_invalid();
	for (p = sp->p, e = sp->p + sp->n; p < e; ) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		switch (p[1]) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			hex4(p + 2, &u);
			if (u >= 0xd800 && u <= 0xdbff) {
				hex4(p + 8, &lo);
				u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			}
			if (u < 0x80)
				*o++ = (char)u;
			else if (u < 0x800) {
				*o++ = (char)(0xc0 | u >> 6);
				*o++ = (char)(0x80 | (u & 0x3f));
			} else if (u < 0x10000) {
				*o++ = (char)(0xe0 | u >> 12);
				*o++ = (char)(0x80 | ((u >> 6) & 0x3f));
				*o++ = (char)(0x80 | (u & 0x3f));
			} else {
				*o++ = (char)(0xf0 | u >> 18);
				*o++ = (char)(0x80 | ((u >> 12) & 0x3f));
				*o++ = (char)(0x80 | ((u >> 6) & 0x3f));
				*o++ = (char)(0x80 | (u & 0x3f));
			}
			p += 6;
			continue;
		default: *o++ = p[1]; break;
		}
		p += 2;
	}
	v = jv_string_sized(d, (int)(o - d));
	free(d);
	return v;
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
		/* 2^53 itself: 2^53 + 1 is read as 2^53 too. */
		if (fabs(jv_number_value(v)) >= 9007199254740992.0) {
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

/*
 * A field by its jq rule, else from the event (the tree when there is
 * one, else what the validator noted).
 */
static int
extract(struct whk_jq *q, jv ev, const struct span *sp, const char *field,
    const char *what, int numbers_ok, char **out, struct whk_err *err)
{
	jv v;
	int rc;

	if (q == NULL && !jv_is_valid(ev))
		return field_text(span_jv(sp), what, numbers_ok, out, err);
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

/* What the validator leaves to others: NUL bytes and UTF-8. */
static int
line_check(const char *line, size_t len, struct whk_err *err)
{
	const char *nul = memchr(line, '\0', len);
	size_t bad;

	if (nul != NULL)
		return whk_error(err, WHK_EXIT_PARTIAL, "NUL byte at byte %zu",
		    (size_t)(nul - line) + 1);
	if (!whk_utf8_valid(line, len, &bad))
		return whk_error(err, WHK_EXIT_PARTIAL,
		    "invalid UTF-8 at byte %zu", bad + 1);
	return 0;
}

int
whk_event_parse(const char *line, size_t len,
    const struct whk_ingest_rules *r, struct whk_event *ev,
    struct whk_err *err)
{
	static const struct whk_ingest_rules none;
	struct scan sc;
	jv v, m;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (r == NULL)
		r = &none;
	if (line_check(line, len, err) == -1)
		return -1;
	if (len > 0x7fffffff)
		return whk_error(err, WHK_EXIT_PARTIAL, "line too long");
	if (scan_line(&sc, line, len, NULL, err) == -1)
		return -1;
	/* Only jq needs the tree; jv_parse_sized wants line[len] NUL. */
	v = jv_invalid();
	if (r->map || r->require || r->type_from || r->tenant_from ||
	    r->key_from) {
		v = jv_parse_sized(line, (int)len);
		if (!jv_is_valid(v)) {
			jv_free(v);
			return whk_error(err, WHK_EXIT_PARTIAL, "not JSON");
		}
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
	if (extract(r->type_from, jv_copy(v), &sc.type, "type", "type", 0,
	    &ev->type, err) == -1 ||
	    extract(r->tenant_from, jv_copy(v), &sc.tenant, "tenant", "tenant",
	    1, &ev->tenant, err) == -1 ||
	    extract(r->key_from, jv_copy(v), &sc.id, "id",
	    r->key_from ? "key" : "id", 1, &ev->key, err) == -1)
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

/*
 * The string value of one top-level member of a record line, as the
 * programs after whk-ingest read "event" and "webhook".  Returns 1 with
 * the value, 0 when the member is absent or not a string, -1 when the
 * line is not a JSON object (err->status WHK_EXIT_PARTIAL).
 */
int
whk_record_field(const char *line, size_t len, const char *name, char *out,
    size_t outsz, struct whk_err *err)
{
	struct scan sc;
	jv v;
	int rc = 0;

	if (line_check(line, len, err) == -1)
		return -1;
	if (scan_line(&sc, line, len, name, err) == -1)
		return -1;
	if (sc.wanted.p == NULL || sc.wanted.kind != '"')
		return 0;
	/* Without escapes, the text is the value (line_check saw no NUL). */
	if (!sc.wanted.escaped) {
		if (sc.wanted.n >= outsz)
			return 0;
		memcpy(out, sc.wanted.p, sc.wanted.n);
		out[sc.wanted.n] = '\0';
		return 1;
	}
	v = span_jv(&sc.wanted);
	/* "a\u0000b" is no id, and must not pass for "a". */
	if (jv_get_kind(v) == JV_KIND_STRING &&
	    (size_t)jv_string_length_bytes(jv_copy(v)) < outsz &&
	    strlen(jv_string_value(v)) ==
	    (size_t)jv_string_length_bytes(jv_copy(v))) {
		snprintf(out, outsz, "%s", jv_string_value(v));
		rc = 1;
	}
	jv_free(v);
	return rc;
}

/*
 * A set of expressions evaluated together on one input.  jq 1.6 spends
 * most of a compile binding its builtins, so a thousand filters compiled
 * one by one cost seconds; joined into one program they cost one
 * compile.  jq refuses a program whose code passes 64 KiB, so the set is
 * joined in parts, and a part that does not compile (too long, or a
 * filter with an import) is split in two until it does.  Each expression
 * runs under try, so one failing does not hide the rest.
 *
 * Most filters and keys are a path, or a path compared with a constant,
 * and for those jq's cost is nearly all in building the event's tree and
 * starting its interpreter.  Such "simple" expressions never enter a
 * part: they are answered from the event's text.  Whenever jq's answer
 * might differ from ours by one byte (an error, a number jq would print
 * differently, a string it would escape, a key spelled with escapes that
 * might be the one sought), the expression runs alone in jq instead.
 */
#define SET_PART	128	/* expressions joined into one program */

struct set_part {
	struct whk_jq	*q;
	size_t		 first, n;
	struct whk_jq	**alone;	/* to tell an error, when one comes */
	const char	*const *exprs;
	const size_t	*map;		/* where each one's result goes */
};

enum { OP_NONE, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

/* A scalar: a literal of an expression, or a value of an event. */
struct scalar {
	char		 kind;		/* 'n', 'f', 't', '1' or '"' */
	const char	*s;		/* a string's bytes, unescaped */
	size_t		 n;
	double		 d;
};

struct simple {
	int		 op;		/* OP_NONE: the path's value itself */
	int		 swapped;	/* the literal is on the left */
	size_t		 path;		/* in the set's paths */
	struct scalar	 lit;
	size_t		 same;		/* the first expression like it */
	struct whk_jq	*alone;		/* compiled when jq must answer */
	int		 to_jq;		/* for the event at hand */
};

/* A path's value in the event at hand. */
struct path {
	char		*names;		/* "a.b.c" for .a.b.c */
	struct span	 v;		/* v.p NULL: null */
	int		 unsure;	/* only jq can tell */
};

struct whk_jq_set {
	struct set_part	*parts;
	size_t		 nparts, cap;
	size_t		 n;
	char		**exprs;	/* kept to compile one alone later */
	struct simple	**simple;	/* per expression; NULL: jq's */
	struct path	*paths;		/* those simple expressions use */
	size_t		 npaths;
	const char	**jexprs;	/* the others, joined in parts */
	size_t		*jmap;		/* their index among all */
	size_t		 nj;
};

void
whk_jq_set_free(struct whk_jq_set *set)
{
	size_t i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nparts; i++) {
		whk_jq_free(set->parts[i].q);
		if (set->parts[i].alone) {
			size_t k;

			for (k = 0; k < set->parts[i].n; k++)
				whk_jq_free(set->parts[i].alone[k]);
			free(set->parts[i].alone);
		}
	}
	free(set->parts);
	if (set->exprs) {
		for (i = 0; i < set->n; i++)
			free(set->exprs[i]);
		free(set->exprs);
	}
	if (set->simple) {
		for (i = 0; i < set->n; i++)
			if (set->simple[i]) {
				whk_jq_free(set->simple[i]->alone);
				free(set->simple[i]);
			}
		free(set->simple);
	}
	for (i = 0; i < set->npaths; i++)
		free(set->paths[i].names);
	free(set->paths);
	free(set->jexprs);
	free(set->jmap);
	free(set);
}

static int
set_part_compile(struct whk_jq_set *set, size_t first, size_t n,
    struct whk_err *err)
{
	const char *const *exprs = set->jexprs;
	struct whk_buf prog = { 0 };
	struct set_part *v;
	struct whk_jq *q;
	struct whk_err why;
	size_t i;

	if (n == 1)
		q = whk_jq_compile(exprs[first], "jq", err);
	else {
		/* Newlines end any comment an expression closes with. */
		whk_buf_puts(&prog, "[");
		for (i = first; i < first + n; i++)
			whk_buf_printf(&prog, "%s([(\n%s\n)]? // null)",
			    i > first ? ",\n" : "", exprs[i]);
		whk_buf_puts(&prog, "]");
		if (prog.oom) {
			whk_buf_free(&prog);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
		q = whk_jq_compile(prog.data, "jq", &why);
		whk_buf_free(&prog);
		if (q == NULL)
			return set_part_compile(set, first, n / 2, err) == -1 ?
			    -1 : set_part_compile(set, first + n / 2, n - n / 2,
			    err);
	}
	if (q == NULL)
		return -1;
	if (set->nparts == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 4;
		if ((v = reallocarray(set->parts, set->cap, sizeof(*v))) ==
		    NULL) {
			whk_jq_free(q);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
		set->parts = v;
	}
	memset(&set->parts[set->nparts], 0, sizeof(set->parts[0]));
	set->parts[set->nparts].q = q;
	set->parts[set->nparts].first = first;
	set->parts[set->nparts].n = n;
	set->parts[set->nparts].exprs = set->jexprs + first;
	set->parts[set->nparts].map = set->jmap + first;
	set->nparts++;
	return 0;
}

#define IS_SPACE(c)	((c) == ' ' || (c) == '\t' || (c) == '\n' || \
			    (c) == '\r')
#define IS_IDENT(c)	(((c) >= 'a' && (c) <= 'z') || \
			    ((c) >= 'A' && (c) <= 'Z') || (c) == '_' || \
			    IS_DIGIT(c))

/* Bytes that jq prints as they are inside a string, but '\'. */
static int
plain_text(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '\\')
			return 0;
	return 1;
}

/*
 * A path .a.b.c of plain names: its names joined by dots into names
 * (as long as p), and where it ends; NULL when p holds no such path.
 * Keywords are refused, whatever jq would make of them.
 */
static const char *
parse_path(const char *p, char *names)
{
	static const char *const keywords[] = { "and", "or", "not", "if",
	    "then", "elif", "else", "end", "as", "def", "reduce", "foreach",
	    "try", "catch", "label", "import", "include", "module",
	    "__loc__" };
	const char *name;
	size_t i, n;

	if (*p != '.')
		return NULL;
	for (;;) {
		name = ++p;
		if (!IS_IDENT(*p) || IS_DIGIT(*p))
			return NULL;
		while (IS_IDENT(*p))
			p++;
		n = (size_t)(p - name);
		for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
			if (strlen(keywords[i]) == n &&
			    memcmp(keywords[i], name, n) == 0)
				return NULL;
		memcpy(names, name, n);
		names += n;
		if (*p != '.')
			break;
		*names++ = '.';
	}
	*names = '\0';
	return p;
}

/*
 * A literal: a JSON number with no exponent, a string of printable
 * ASCII with no escape, true, false or null.  Where it ends, or NULL.
 */
static const char *
parse_literal(const char *p, struct scalar *lit)
{
	static const char *const words[] = { "null", "false", "true" };
	const char *start = p;
	size_t i, n;

	memset(lit, 0, sizeof(*lit));
	if (*p == '"') {
		for (lit->s = ++p; *p != '"'; p++)
			if (*p == '\0' || !plain_text(p, 1))
				return NULL;
		lit->n = (size_t)(p - lit->s);
		lit->kind = '"';
		return p + 1;
	}
	for (i = 0; i < 3; i++) {
		n = strlen(words[i]);
		if (strncmp(p, words[i], n) == 0 && !IS_IDENT(p[n])) {
			lit->kind = "nft"[i];
			return p + n;
		}
	}
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (IS_DIGIT(*p))
			p++;
	else
		return NULL;
	if (*p == '.') {
		if (!IS_DIGIT(p[1]))
			return NULL;
		for (p++; IS_DIGIT(*p); p++)
			;
	}
	/* "1e5", "1.5.2", "0x": left to jq. */
	if (IS_IDENT(*p) || *p == '.')
		return NULL;
	lit->kind = '1';
	lit->d = strtod(start, NULL);
	return p;
}

static const char *
parse_op(const char *p, int *op)
{
	static const struct {
		const char	*s;
		int		 op;
	} ops[] = {
		{ "==", OP_EQ }, { "!=", OP_NE }, { "<=", OP_LE },
		{ ">=", OP_GE }, { "<", OP_LT }, { ">", OP_GT }
	};
	size_t i, n;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		n = strlen(ops[i].s);
		if (strncmp(p, ops[i].s, n) == 0) {
			*op = ops[i].op;
			return p + n;
		}
	}
	return NULL;
}

static const char *
skip_space(const char *p)
{
	while (IS_SPACE(*p))
		p++;
	return p;
}

/*
 * Whether expr is simple: PATH, PATH OP LITERAL or LITERAL OP PATH,
 * with spaces around.  names receives the path (as long as expr).
 */
static int
parse_simple(const char *expr, struct simple *s, char *names)
{
	const char *p = skip_space(expr);

	memset(s, 0, sizeof(*s));
	if (*p == '.') {
		if ((p = parse_path(p, names)) == NULL)
			return 0;
		p = skip_space(p);
		if (*p == '\0')
			return 1;
		if ((p = parse_op(p, &s->op)) == NULL ||
		    (p = parse_literal(skip_space(p), &s->lit)) == NULL)
			return 0;
	} else {
		s->swapped = 1;
		if ((p = parse_literal(p, &s->lit)) == NULL ||
		    (p = parse_op(skip_space(p), &s->op)) == NULL ||
		    (p = parse_path(skip_space(p), names)) == NULL)
			return 0;
	}
	return *skip_space(p) == '\0';
}

/* Note a simple expression, sharing its path with those before. */
static int
set_add_simple(struct whk_jq_set *set, size_t i, struct whk_err *err)
{
	struct simple s, *sp;
	struct path *v;
	char *names;
	size_t k;

	if ((names = malloc(strlen(set->exprs[i]) + 1)) == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	if (!parse_simple(set->exprs[i], &s, names)) {
		free(names);
		set->jexprs[set->nj] = set->exprs[i];
		set->jmap[set->nj++] = i;
		return 0;
	}
	/* Endpoints often share an expression: compile it once for all. */
	for (s.same = 0; s.same < i; s.same++)
		if (set->simple[s.same] &&
		    strcmp(set->exprs[s.same], set->exprs[i]) == 0)
			break;
	for (k = 0; k < set->npaths; k++)
		if (strcmp(set->paths[k].names, names) == 0)
			break;
	if (k == set->npaths) {
		/* At most one path per expression: room was made for n. */
		v = &set->paths[set->npaths++];
		memset(v, 0, sizeof(*v));
		v->names = names;
	} else
		free(names);
	s.path = k;
	if ((sp = malloc(sizeof(*sp))) == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	*sp = s;
	set->simple[i] = sp;
	return 0;
}

struct whk_jq_set *
whk_jq_set_compile(const char *const *exprs, size_t n, struct whk_err *err)
{
	struct whk_jq_set *set;
	size_t i, k;

	if ((set = calloc(1, sizeof(*set))) == NULL) {
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		return NULL;
	}
	set->n = n;
	if ((set->exprs = calloc(n + 1, sizeof(*set->exprs))) == NULL ||
	    (set->simple = calloc(n + 1, sizeof(*set->simple))) == NULL ||
	    (set->paths = calloc(n + 1, sizeof(*set->paths))) == NULL ||
	    (set->jexprs = calloc(n + 1, sizeof(*set->jexprs))) == NULL ||
	    (set->jmap = calloc(n + 1, sizeof(*set->jmap))) == NULL) {
		whk_jq_set_free(set);
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++)
		if ((set->exprs[i] = strdup(exprs[i])) == NULL) {
			whk_jq_set_free(set);
			whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
			return NULL;
		}
	for (i = 0; i < n; i++)
		if (set_add_simple(set, i, err) == -1) {
			whk_jq_set_free(set);
			return NULL;
		}
	for (i = 0; i < set->nj; i += k) {
		k = set->nj - i < SET_PART ? set->nj - i : SET_PART;
		if (set_part_compile(set, i, k, err) == -1) {
			whk_jq_set_free(set);
			return NULL;
		}
	}
	return set;
}

static void
result_set(struct whk_jq_result *r, int kind, jv v)
{
	jv t;

	r->kind = kind;
	r->truthy = kind == WHK_JQ_VALUE &&
	    jv_get_kind(v) != JV_KIND_NULL && jv_get_kind(v) != JV_KIND_FALSE;
	if (kind == WHK_JQ_ERROR && jv_get_kind(v) == JV_KIND_STRING)
		t = jv_copy(v);
	else if (kind == WHK_JQ_NONE)
		t = jv_string("");
	else
		t = jv_dump_string(jv_copy(v), 0);
	r->text = strdup(jv_string_value(t));
	jv_free(t);
	jv_free(v);
}

/* Run expr alone on in, compiling it into *q the first time. */
static void
jq_alone(struct whk_jq **q, const char *expr, jv in,
    struct whk_jq_result *out)
{
	struct whk_err err;
	jv r;
	int rc;

	if (q != NULL && *q == NULL)
		*q = whk_jq_compile(expr, "jq", &err);
	if (q == NULL || *q == NULL) {
		jv_free(in);
		result_set(out, WHK_JQ_ERROR, jv_string("error"));
		return;
	}
	rc = jq_first(*q, in, &r, &err);
	if (rc == 1)
		result_set(out, WHK_JQ_VALUE, r);
	else if (rc == 0)
		result_set(out, WHK_JQ_NONE, jv_null());
	else
		result_set(out, WHK_JQ_ERROR, jv_string(err.msg +
		    strlen("jq: ")));
}

/* One expression failed in its part: run it alone to learn why. */
static void
alone_eval(struct set_part *part, size_t i, jv in, struct whk_jq_result *out)
{
	if (part->alone == NULL)
		part->alone = calloc(part->n, sizeof(*part->alone));
	jq_alone(part->alone ? &part->alone[i] : NULL, part->exprs[i], in,
	    out);
}

/* out is the whole set's: part->map tells where each result goes. */
static void
part_eval(struct set_part *part, jv in, struct whk_jq_result *out)
{
	struct whk_err err;
	jv r, e;
	size_t i;
	int rc;

	rc = jq_first(part->q, jv_copy(in), &r, &err);
	if (part->n == 1) {
		jv_free(in);
		if (rc == 1)
			result_set(&out[part->map[0]], WHK_JQ_VALUE, r);
		else if (rc == 0)
			result_set(&out[part->map[0]], WHK_JQ_NONE, jv_null());
		else
			result_set(&out[part->map[0]], WHK_JQ_ERROR,
			    jv_string(err.msg + strlen("jq: ")));
		return;
	}
	if (rc != 1 || jv_get_kind(r) != JV_KIND_ARRAY ||
	    (size_t)jv_array_length(jv_copy(r)) != part->n) {
		/* Only halt can stop a joined program; say so for each. */
		if (rc == 1)
			jv_free(r);
		for (i = 0; i < part->n; i++)
			result_set(&out[part->map[i]], WHK_JQ_ERROR,
			    jv_string("the expression halted"));
		jv_free(in);
		return;
	}
	for (i = 0; i < part->n; i++) {
		e = jv_array_get(jv_copy(r), (int)i);
		if (jv_get_kind(e) == JV_KIND_NULL)
			alone_eval(part, i, jv_copy(in), &out[part->map[i]]);
		else if (jv_array_length(jv_copy(e)) == 0) {
			jv_free(e);
			result_set(&out[part->map[i]], WHK_JQ_NONE, jv_null());
		} else
			result_set(&out[part->map[i]], WHK_JQ_VALUE,
			    jv_array_get(e, 0));
	}
	jv_free(r);
	jv_free(in);
}

/*
 * The last member called name[0..n) of the object at sc->p (jq keeps the
 * last of repeated names), v->p NULL when there is none; sc->p is left
 * after the object.  Returns 1 when a member name holds an escape, as it
 * might decode to name; -1 when the text is not JSON.
 */
static int
member(struct scan *sc, const char *name, size_t n, struct span *v)
{
	struct span key, val;

	v->p = NULL;
	sc->p++;
	ws(sc);
	if (sc->p < sc->end && *sc->p == '}') {
		sc->p++;
		return 0;
	}
	for (;;) {
		if (sc->p >= sc->end || *sc->p != '"' ||
		    scan_string(sc, &key) == -1)
			return -1;
		if (key.escaped)
			return 1;
		ws(sc);
		if (sc->p >= sc->end || *sc->p != ':')
			return -1;
		sc->p++;
		ws(sc);
		val.p = sc->p;
		val.kind = sc->p < sc->end ? *sc->p : '\0';
		sc->depth++;		/* as in scan_object */
		if (scan_value(sc, &val) == -1)
			return -1;
		sc->depth--;
		if (key.n == n && memcmp(key.p, name, n) == 0) {
			if (val.kind != '"') {
				val.n = (size_t)(sc->p - val.p);
				val.escaped = 0;
			}
			*v = val;
		}
		ws(sc);
		if (sc->p < sc->end && *sc->p == ',') {
			sc->p++;
			ws(sc);
			continue;
		}
		if (sc->p < sc->end && *sc->p == '}') {
			sc->p++;
			return 0;
		}
		return -1;
	}
}

/*
 * Find a path's value in text, which must be one object: the whole text
 * is scanned on the way, so what is found is as jq would find it.  Only
 * objects are searched; a name looked up in anything but an object or
 * null is jq's error to tell, and so is text that is not JSON.
 */
static void
path_find(struct path *path, const char *text, size_t len)
{
	struct whk_err err;
	struct scan sc;
	struct span *v = &path->v;
	const char *name, *dot;
	size_t n;

	memset(&sc, 0, sizeof(sc));
	sc.s = sc.p = text;
	sc.end = text + len;
	sc.err = &err;
	sc.depth = 1;
	ws(&sc);
	path->unsure = 1;
	if (sc.p >= sc.end || *sc.p != '{')
		return;
	v->p = sc.p;
	v->kind = '{';
	for (name = path->names; ; name = dot + 1) {
		if ((dot = strchr(name, '.')) != NULL)
			n = (size_t)(dot - name);
		else
			n = strlen(name);
		if (v->p != NULL && v->kind == 'n')
			v->p = NULL;
		if (v->p != NULL) {
			if (v->kind != '{')
				return;
			sc.p = v->p;
			if (member(&sc, name, n, v) != 0)
				return;
			if (name == path->names) {
				ws(&sc);
				if (sc.p != sc.end)
					return;
			}
		}
		if (dot == NULL)
			break;
	}
	path->unsure = 0;
}

static int
result_text(struct whk_jq_result *r, int truthy, const char *s, size_t n,
    int quote)
{
	r->kind = WHK_JQ_VALUE;
	r->truthy = truthy;
	if ((r->text = malloc(n + 3)) != NULL) {
		if (quote)
			r->text[0] = '"';
		memcpy(r->text + quote, s, n);
		if (quote)
			r->text[n + 1] = '"';
		r->text[n + 2 * quote] = '\0';
	}
	return 0;
}

/*
 * A found value as jq prints it.  jq 1.6 prints numbers through a double
 * with up to 17 digits: only a plain integer of 15 digits at most is
 * sure to come out as it went in.  Returns 1 when jq must answer.
 */
static int
value_eval(const struct span *v, struct whk_jq_result *r)
{
	size_t i, digits;

	if (v->p == NULL)
		return result_text(r, 0, "null", 4, 0);
	switch (v->kind) {
	case 'n':
		return result_text(r, 0, "null", 4, 0);
	case 't':
		return result_text(r, 1, "true", 4, 0);
	case 'f':
		return result_text(r, 0, "false", 5, 0);
	case '"':
		if (v->escaped || !plain_text(v->p, v->n))
			return 1;
		return result_text(r, 1, v->p, v->n, 1);
	case '{':
	case '[':
		return 1;
	}
	i = v->p[0] == '-';
	for (digits = 0; i + digits < v->n && IS_DIGIT(v->p[i + digits]);
	    digits++)
		;
	if (i + digits != v->n || digits == 0 || digits > 15 ||
	    (i == 1 && v->p[1] == '0'))
		return 1;
	return result_text(r, 1, v->p, v->n, 0);
}

/* jq's order: null < false < true < numbers < strings (bytewise). */
static int
scalar_cmp(const struct scalar *a, const struct scalar *b)
{
	static const char order[] = "nft1\"";
	int r;

	if (a->kind != b->kind)
		return (int)(strchr(order, a->kind) - order) -
		    (int)(strchr(order, b->kind) - order);
	switch (a->kind) {
	case '1':
		return a->d < b->d ? -1 : a->d == b->d ? 0 : 1;
	case '"':
		if ((r = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n)) != 0)
			return r;
		return a->n < b->n ? -1 : a->n > b->n;
	}
	return 0;
}

/* A comparison of a found value.  Returns 1 when jq must answer. */
static int
compare_eval(const struct simple *s, const struct span *v,
    struct whk_jq_result *r)
{
	struct scalar a;
	int c, yes = 0;

	memset(&a, 0, sizeof(a));
	a.kind = v->p == NULL ? 'n' : v->kind;
	switch (a.kind) {
	case 'n':
	case 't':
	case 'f':
		break;
	case '"':
		if (v->escaped || !plain_text(v->p, v->n))
			return 1;
		a.s = v->p;
		a.n = v->n;
		break;
	case '{':
	case '[':
		return 1;
	default:
		/* Both are correctly rounded, as jq's strtod is. */
		a.kind = '1';
		a.d = strtod(v->p, NULL);
		break;
	}
	c = s->swapped ? scalar_cmp(&s->lit, &a) : scalar_cmp(&a, &s->lit);
	switch (s->op) {
	case OP_EQ: yes = c == 0; break;
	case OP_NE: yes = c != 0; break;
	case OP_LT: yes = c < 0; break;
	case OP_LE: yes = c <= 0; break;
	case OP_GT: yes = c > 0; break;
	case OP_GE: yes = c >= 0; break;
	}
	return yes ? result_text(r, 1, "true", 4, 0) :
	    result_text(r, 0, "false", 5, 0);
}

/*
 * Run every expression of the set on one JSON text (text[len] must be
 * NUL).  out[i] receives each one's first output, or none, or its error.
 * Returns -1 only when the text is not JSON or memory ran out.
 */
int
whk_jq_set_eval(struct whk_jq_set *set, const char *text, size_t len,
    struct whk_jq_result *out, struct whk_err *err)
{
	struct simple *s;
	struct path *path;
	jv in;
	size_t i;
	int need_jq;

	memset(out, 0, set->n * sizeof(*out));
	if (set->n == 0)
		return 0;
	need_jq = set->nparts > 0;
	for (i = 0; i < set->npaths; i++)
		path_find(&set->paths[i], text, len);
	for (i = 0; i < set->n; i++) {
		if ((s = set->simple[i]) == NULL)
			continue;
		path = &set->paths[s->path];
		s->to_jq = path->unsure || (s->op == OP_NONE ?
		    value_eval(&path->v, &out[i]) :
		    compare_eval(s, &path->v, &out[i]));
		need_jq |= s->to_jq;
	}
	if (need_jq) {
		in = jv_parse_sized(text, (int)len);
		if (!jv_is_valid(in)) {
			jv_free(in);
			whk_jq_results_clear(out, set->n);
			return whk_error(err, WHK_EXIT_PARTIAL, "not JSON");
		}
		for (i = 0; i < set->nparts; i++)
			part_eval(&set->parts[i], jv_copy(in), out);
		for (i = 0; i < set->n; i++)
			if ((s = set->simple[i]) != NULL && s->to_jq)
				jq_alone(&set->simple[s->same]->alone,
				    set->exprs[i], jv_copy(in), &out[i]);
		jv_free(in);
	}
	for (i = 0; i < set->n; i++)
		if (out[i].text == NULL) {
			whk_jq_results_clear(out, set->n);
			return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		}
	return 0;
}

void
whk_jq_results_clear(struct whk_jq_result *r, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(r[i].text);
		r[i].text = NULL;
	}
}

/*
 * Apply q to one JSON text and write its first output as JSON: how an
 * endpoint's template shapes a body.  Errors are WHK_EXIT_PARTIAL.
 */
int
whk_jq_apply(struct whk_jq *q, const char *text, size_t len,
    struct whk_buf *out, struct whk_err *err)
{
	jv in, r;
	int rc;

	in = jv_parse_sized(text, (int)len);
	if (!jv_is_valid(in)) {
		jv_free(in);
		return whk_error(err, WHK_EXIT_PARTIAL, "%s: input is not JSON",
		    q->what);
	}
	if ((rc = jq_first(q, in, &r, err)) == -1)
		return -1;
	if (rc == 0)
		return whk_error(err, WHK_EXIT_PARTIAL, "%s produced nothing",
		    q->what);
	r = jv_dump_string(r, 0);
	whk_buf_add(out, jv_string_value(r),
	    (size_t)jv_string_length_bytes(jv_copy(r)));
	jv_free(r);
	return out->oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") : 0;
}

/*
 * Apply q to one JSON text and write every output as compact JSON, a line
 * each, as "jq -c" would.  A jq error stops the record: WHK_EXIT_PARTIAL.
 */
int
whk_jq_each(struct whk_jq *q, const char *text, size_t len,
    struct whk_buf *out, struct whk_err *err)
{
	jv in, r, msg;

	in = jv_parse_sized(text, (int)len);
	if (!jv_is_valid(in)) {
		jv_free(in);
		return whk_error(err, WHK_EXIT_PARTIAL, "%s: input is not JSON",
		    q->what);
	}
	q->msg[0] = '\0';
	jq_start(q->jq, in, 0);
	while (jv_is_valid(r = jq_next(q->jq))) {
		r = jv_dump_string(r, 0);
		whk_buf_add(out, jv_string_value(r),
		    (size_t)jv_string_length_bytes(jv_copy(r)));
		whk_buf_add(out, "\n", 1);
		jv_free(r);
	}
	msg = jv_invalid_get_msg(r);
	if (jv_get_kind(msg) == JV_KIND_NULL) {
		jv_free(msg);
		return out->oom ? whk_error(err, WHK_EXIT_SYSTEM,
		    "out of memory") : 0;
	}
	if (jv_get_kind(msg) != JV_KIND_STRING)
		msg = jv_dump_string(msg, 0);
	whk_error(err, WHK_EXIT_PARTIAL, "%s: %s", q->what,
	    jv_string_value(msg));
	jv_free(msg);
	return -1;
}
