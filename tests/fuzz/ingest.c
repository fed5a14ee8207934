/*
 * Fuzz target: whk-ingest's reading of its input.  The input is what
 * whk-ingest would read on its standard input.  It is split into lines
 * as whk_lines_next splits it, and each line is judged and read by
 * whk_event_parse, as whk-ingest does it (a BOM dropped from the first
 * line, one CR from the end of each, blank lines skipped), under the
 * default options and, when the first byte of the input is 1 to 4 (not
 * input then: no JSON line starts so), under a set of options too:
 *
 *	1  --type-from .type --tenant-from .tenant --key-from .id
 *	2  --map .
 *	3  --require '.type != null'
 *	4  --type-from empty --tenant-from empty --key-from empty
 *
 * Each answer is checked against what whk-ingest(1) promises, as judged
 * by a second implementation written here: a loop with an explicit stack
 * where the library's validator recurses, its own UTF-8 table, and jq's
 * parser for the values of the fields.  whk_record_field, which the later
 * programs use to read a member of a record line, must agree with both.
 * A disagreement prints the line and aborts.
 *
 * WHK_FUZZ_BREAK in the environment makes the harness cut one byte off
 * every type the library reads before checking it: a bug put in on
 * purpose, to show that the checks can fail.
 */
#include <sys/mman.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "whk.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define MAX_DEPTH	256		/* whk-ingest(1): nesting, as jq counts */
#define MAX_FIELD	1024		/* whk-ingest(1): each field */
#define TWO_53		"9007199254740992"

static const char *cur_line;		/* the line being judged */
static size_t cur_len;
static int cur_mode;

static void
fail(int where, const char *fmt, ...)
{
	va_list ap;
	size_t i;

	fprintf(stderr, "fuzz-ingest: property violated (ingest.c:%d, "
	    "options %d): ", where, cur_mode);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nline: ", stderr);
	for (i = 0; cur_line != NULL && i < cur_len && i < 400; i++) {
		unsigned char c = (unsigned char)cur_line[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			fputc(c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fputc('\n', stderr);
	abort();
}

#define CHECK(cond, ...) do {						\
	if (!(cond))							\
		fail(__LINE__, __VA_ARGS__);				\
} while (0)

/* --- the reference judge ------------------------------------------------ */

/* RFC 3629's table of well-formed UTF-8 sequences, row by row. */
static int
ref_utf8(const unsigned char *s, size_t n)
{
	static const struct {
		unsigned char lead_lo, lead_hi, lo, hi;	/* second byte */
		int len;
	} rows[] = {
		{ 0xc2, 0xdf, 0x80, 0xbf, 2 },
		{ 0xe0, 0xe0, 0xa0, 0xbf, 3 },
		{ 0xe1, 0xec, 0x80, 0xbf, 3 },
		{ 0xed, 0xed, 0x80, 0x9f, 3 },
		{ 0xee, 0xef, 0x80, 0xbf, 3 },
		{ 0xf0, 0xf0, 0x90, 0xbf, 4 },
		{ 0xf1, 0xf3, 0x80, 0xbf, 4 },
		{ 0xf4, 0xf4, 0x80, 0x8f, 4 },
	};
	size_t i = 0, r;
	int k;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		for (r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
			if (s[i] >= rows[r].lead_lo && s[i] <= rows[r].lead_hi)
				break;
		if (r == sizeof(rows) / sizeof(rows[0]) ||
		    n - i < (size_t)rows[r].len ||
		    s[i + 1] < rows[r].lo || s[i + 1] > rows[r].hi)
			return 0;
		for (k = 2; k < rows[r].len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return 0;
		i += (size_t)rows[r].len;
	}
	return 1;
}

/* A top-level member's name and value, as text. */
struct member {
	const char	*v;		/* NULL: no such member */
	size_t		 vn;
};

struct ref {
	int		 ok;		/* one JSON object as the manual says */
	struct member	 type, tenant, id;	/* the last of each name */
};

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static unsigned
hex_at(const unsigned char *p)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 4; i++)
		v = v * 16 + (unsigned)(p[i] <= '9' ? p[i] - '0' :
		    (p[i] | 0x20) - 'a' + 10);
	return v;
}

/* The end of the string starting at s[i] (a quote), or 0 if none. */
static size_t
ref_string(const unsigned char *s, size_t n, size_t i)
{
	unsigned u;

	for (i++; i < n; ) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] < 0x20)
			return 0;
		if (s[i] != '\\') {
			i++;
			continue;
		}
		if (i + 1 >= n)
			return 0;
		if (s[i + 1] != '\0' && strchr("\"\\/bfnrt", s[i + 1]) != NULL) {
			i += 2;
			continue;
		}
		if (s[i + 1] != 'u' || n - i < 6 || !is_hex(s[i + 2]) ||
		    !is_hex(s[i + 3]) || !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
			return 0;
		u = hex_at(s + i + 2);
		i += 6;
		/* A surrogate must be a high one followed by a low one. */
		if (u >= 0xdc00 && u <= 0xdfff)
			return 0;
		if (u >= 0xd800 && u <= 0xdbff) {
			if (n - i < 6 || s[i] != '\\' || s[i + 1] != 'u' ||
			    !is_hex(s[i + 2]) || !is_hex(s[i + 3]) ||
			    !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
				return 0;
			u = hex_at(s + i + 2);
			if (u < 0xdc00 || u > 0xdfff)
				return 0;
			i += 6;
		}
	}
	return 0;
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* The end of the number at s[i], or 0 if it is none. */
static size_t
ref_number(const unsigned char *s, size_t n, size_t i)
{
	if (i < n && s[i] == '-')
		i++;
	if (i >= n || !is_digit(s[i]))
		return 0;
	if (s[i] == '0')
		i++;
	else
		while (i < n && is_digit(s[i]))
			i++;
	if (i < n && s[i] == '.') {
		if (++i >= n || !is_digit(s[i]))
			return 0;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !is_digit(s[i]))
			return 0;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return i;
}

/* Which field a top-level member name is, decoded as JSON says. */
static struct member *
ref_field(struct ref *r, const unsigned char *k, size_t kn)
{
	struct member *m = NULL;
	const char *name = (const char *)k + 1;
	size_t n = kn - 2;
	jv d = jv_invalid();

	if (memchr(k, '\\', kn) != NULL) {
		d = jv_parse_sized((const char *)k, (int)kn);
		CHECK(jv_get_kind(d) == JV_KIND_STRING,
		    "jq cannot parse the member name %.*s", (int)kn, k);
		name = jv_string_value(d);
		n = (size_t)jv_string_length_bytes(jv_copy(d));
	}
	if (n == 4 && memcmp(name, "type", 4) == 0)
		m = &r->type;
	else if (n == 6 && memcmp(name, "tenant", 6) == 0)
		m = &r->tenant;
	else if (n == 2 && memcmp(name, "id", 2) == 0)
		m = &r->id;
	jv_free(d);
	return m;
}

/*
 * Judge a line without recursion: a state and a stack of open brackets.
 * The top-level members that are fields are noted on the way.  Nesting
 * is counted as jq 1.6 counts it, whose parser the programs after
 * whk-ingest use: open arrays, objects, and members of objects.
 */
static void
ref_judge(const char *line, size_t n, struct ref *r)
{
	enum { VALUE, VALUE_OR_CLOSE, NAME, NAME_OR_CLOSE, COLON, AFTER };
	const unsigned char *s = (const unsigned char *)line;
	char stack[MAX_DEPTH];
	size_t sp = 0, nobj = 0, i = 0, e, name = 0, name_n = 0, val = 0;
	int state = VALUE;
	struct member *m;

	memset(r, 0, sizeof(*r));
	if (!ref_utf8(s, n))
		return;
	while (i < n && is_ws(s[i]))
		i++;
	if (i >= n || s[i] != '{')
		return;
	for (;;) {
		while (i < n && is_ws(s[i]))
			i++;
		if (i >= n) {
			r->ok = sp == 0 && state == AFTER;
			return;
		}
		switch (state) {
		case VALUE_OR_CLOSE:
			if (s[i] == ']') {
				sp--, i++;
				break;
			}
			/* FALLTHROUGH */
		case VALUE:
			if (sp == 1 && stack[0] == '{')
				val = i;
			if (s[i] == '{' || s[i] == '[') {
				/* jq's count: each open object's member too. */
				if (sp + nobj >= MAX_DEPTH)
					return;
				nobj += s[i] == '{';
				stack[sp++] = (char)s[i];
				state = s[i++] == '{' ? NAME_OR_CLOSE :
				    VALUE_OR_CLOSE;
				continue;
			}
			if (s[i] == '"')
				e = ref_string(s, n, i);
			else if (n - i >= 4 && memcmp(s + i, "true", 4) == 0)
				e = i + 4;
			else if (n - i >= 5 && memcmp(s + i, "false", 5) == 0)
				e = i + 5;
			else if (n - i >= 4 && memcmp(s + i, "null", 4) == 0)
				e = i + 4;
			else
				e = ref_number(s, n, i);
			if (e == 0)
				return;
			i = e;
			break;
		case NAME_OR_CLOSE:
			if (s[i] == '}') {
				sp--, nobj--, i++;
				break;
			}
			/* FALLTHROUGH */
		case NAME:
			if (s[i] != '"' || (e = ref_string(s, n, i)) == 0)
				return;
			if (sp == 1) {
				name = i;
				name_n = e - i;
			}
			i = e;
			state = COLON;
			continue;
		case COLON:
			if (s[i] != ':')
				return;
			i++;
			state = VALUE;
			continue;
		case AFTER:
			if (sp == 0)
				return;		/* more after the object */
			if (s[i] == ',') {
				state = stack[sp - 1] == '{' ? NAME : VALUE;
				i++;
				continue;
			}
			if (s[i] != (stack[sp - 1] == '{' ? '}' : ']'))
				return;
			nobj -= s[i] == '}';
			sp--, i++;
			break;
		}
		/* A value ended at i; a top-level member's, when sp is 1. */
		state = AFTER;
		if (sp == 1 && stack[0] == '{' &&
		    (m = ref_field(r, s + name, name_n)) != NULL) {
			m->v = line + val;
			m->vn = i - val;
		}
	}
}

/* What whk-ingest(1) says a field holds: ok, and its text (NULL: none). */
struct want {
	int	 ok;
	char	*text;
};

static int
integer_text(const char *s, size_t n)
{
	size_t i = s[0] == '-';

	if (i == n)
		return 0;
	for (; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return 0;
	return 1;
}

/*
 * A field's value v (consumed) as jq read it; raw is its text in the line
 * when the line has it.  "Strings are kept as they are.  Numbers are kept
 * in the JSON form jq prints them in ... a number whose magnitude is
 * beyond 2^53 is rejected.  Each field is at most 1024 bytes long."  An
 * empty string is no value, as null is.
 */
static struct want
want_field(jv v, const struct member *raw, int numbers_ok)
{
	struct want w = { 1, NULL };
	const char *s;
	size_t n, digits;
	jv t;

	switch (jv_get_kind(v)) {
	case JV_KIND_INVALID:
	case JV_KIND_NULL:
		break;
	case JV_KIND_STRING:
		s = jv_string_value(v);
		n = (size_t)jv_string_length_bytes(jv_copy(v));
		if (n > MAX_FIELD || memchr(s, '\0', n) != NULL)
			w.ok = 0;
		else if (n > 0)
			w.text = strdup(s);
		break;
	case JV_KIND_NUMBER:
		if (!numbers_ok) {
			w.ok = 0;
			break;
		}
		if (raw != NULL && raw->v != NULL &&
		    integer_text(raw->v, raw->vn)) {
			/* As written, not as rounded: 2^53 + 1 is beyond. */
			digits = raw->vn - (raw->v[0] == '-');
			if (digits > strlen(TWO_53) ||
			    (digits == strlen(TWO_53) &&
			    memcmp(raw->v + (raw->v[0] == '-'), TWO_53,
			    digits) >= 0)) {
				w.ok = 0;
				break;
			}
		} else if (!(fabs(jv_number_value(v)) < 9007199254740992.0)) {
			w.ok = 0;
			break;
		}
		t = jv_dump_string(jv_copy(v), 0);
		w.text = strdup(jv_string_value(t));
		jv_free(t);
		break;
	default:
		w.ok = 0;
		break;
	}
	jv_free(v);
	return w;
}

static void
same_field(const char *what, const char *got, const struct want *w)
{
	CHECK((got == NULL) == (w->text == NULL) &&
	    (got == NULL || strcmp(got, w->text) == 0),
	    "%s is '%s', not '%s'", what, got ? got : "(none)",
	    w->text ? w->text : "(none)");
}

/* --- the library under test ---------------------------------------------- */

static struct whk_ingest_rules rules[5];
static int broken;

static struct whk_jq *
compile(const char *expr)
{
	struct whk_err err;
	struct whk_jq *q;

	if ((q = whk_jq_compile(expr, "--fuzz", &err)) == NULL) {
		fprintf(stderr, "fuzz-ingest: %s\n", err.msg);
		abort();
	}
	return q;
}

/*
 * At exit, as whk-ingest does: jq keeps its interpreter's stack by a
 * pointer past its end, which the leak checker would take for a leak.
 */
static void
teardown(void)
{
	size_t i;

	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		whk_jq_free(rules[i].map);
		whk_jq_free(rules[i].type_from);
		whk_jq_free(rules[i].tenant_from);
		whk_jq_free(rules[i].key_from);
		whk_jq_free(rules[i].require);
	}
	memset(rules, 0, sizeof(rules));
}

static void
init(void)
{
	rules[1].type_from = compile(".type");
	rules[1].tenant_from = compile(".tenant");
	rules[1].key_from = compile(".id");
	rules[2].map = compile(".");
	rules[3].require = compile(".type != null");
	rules[4].type_from = compile("empty");
	rules[4].tenant_from = compile("empty");
	rules[4].key_from = compile("empty");
	broken = getenv("WHK_FUZZ_BREAK") != NULL;
	atexit(teardown);
}

/* One line under options set m; the reference's verdict is r, tree v. */
static void
check_event(const char *line, size_t len, int m, const struct ref *r, jv v)
{
	struct whk_event ev, again;
	struct whk_err err = { 0, "" };
	struct want type = { 1, NULL }, tenant = { 1, NULL }, key = { 1, NULL };
	int rc, ok;
	jv mv;

	cur_mode = m;
	rc = whk_event_parse(line, len, &rules[m], &ev, &err);
	if (broken && rc == 0 && ev.type != NULL && *ev.type != '\0')
		ev.type[strlen(ev.type) - 1] = '\0';
	CHECK(rc == 0 || rc == -1, "returned %d", rc);
	if (!r->ok) {
		CHECK(rc == -1, "accepted a line that is not one JSON object "
		    "as whk-ingest(1) defines it");
		CHECK(err.status == WHK_EXIT_PARTIAL, "a rejection of status "
		    "%d: %s", err.status, err.msg);
		return;
	}
	if (m != 4) {
		type = want_field(jv_object_get(jv_copy(v), jv_string("type")),
		    m == 2 ? NULL : &r->type, 0);
		tenant = want_field(jv_object_get(jv_copy(v),
		    jv_string("tenant")), m == 2 ? NULL : &r->tenant, 1);
		key = want_field(jv_object_get(jv_copy(v), jv_string("id")),
		    m == 2 ? NULL : &r->id, 1);
	}
	ok = type.ok && tenant.ok && key.ok;
	if (m == 3) {
		/* Absent, it is null to jq (and invalid to jv). */
		mv = jv_object_get(jv_copy(v), jv_string("type"));
		ok = ok && jv_get_kind(mv) != JV_KIND_NULL &&
		    jv_get_kind(mv) != JV_KIND_INVALID;
		jv_free(mv);
	}
	if (!ok) {
		CHECK(rc == -1, "accepted a line whose fields it must refuse");
		CHECK(err.status == WHK_EXIT_PARTIAL, "a rejection of status "
		    "%d: %s", err.status, err.msg);
		goto out;
	}
	CHECK(rc == 0, "rejected a good line: %s", err.msg);
	same_field("the type", ev.type, &type);
	same_field("the tenant", ev.tenant, &tenant);
	same_field("the key", ev.key, &key);
	if (m != 2) {
		CHECK(ev.body == line && ev.body_len == len && !ev.mapped,
		    "the body is not the line itself");
	} else {
		/*
		 * --map .: the event as jq prints it (1e400 becomes
		 * 1.7976931348623157e+308), which is a good line with the
		 * same fields, and which --map . leaves as it is.
		 */
		CHECK(ev.mapped != NULL && ev.body == ev.mapped &&
		    ev.body_len == strlen(ev.mapped), "no mapped body");
		CHECK(whk_event_parse(ev.body, ev.body_len, &rules[0], &again,
		    &err) == 0, "--map . made a line refused: %s (%s)",
		    ev.body, err.msg);
		same_field("the type again", again.type, &type);
		same_field("the tenant again", again.tenant, &tenant);
		same_field("the key again", again.key, &key);
		whk_event_clear(&again);
		CHECK(whk_event_parse(ev.body, ev.body_len, &rules[2], &again,
		    &err) == 0 && strcmp(again.mapped, ev.mapped) == 0,
		    "--map . twice is not --map . once: %s", ev.body);
		whk_event_clear(&again);
	}
	whk_event_clear(&ev);
out:
	free(type.text);
	free(tenant.text);
	free(key.text);
}

/* whk_record_field, as whk-batch reads "event": here, "type". */
static void
check_record_field(const char *line, size_t len, const struct ref *r, jv v)
{
	struct whk_err err;
	char out[32];
	int rc;
	jv t;

	cur_mode = 0;
	rc = whk_record_field(line, len, "type", out, sizeof(out), &err);
	if (!r->ok) {
		CHECK(rc == -1, "whk_record_field took a line that is not a "
		    "JSON object");
		return;
	}
	t = jv_object_get(jv_copy(v), jv_string("type"));
	if (jv_get_kind(t) == JV_KIND_STRING &&
	    (size_t)jv_string_length_bytes(jv_copy(t)) < sizeof(out) &&
	    strlen(jv_string_value(t)) ==
	    (size_t)jv_string_length_bytes(jv_copy(t))) {
		CHECK(rc == 1 && strcmp(out, jv_string_value(t)) == 0,
		    "whk_record_field read '%s' (%d)", rc == 1 ? out : "", rc);
	} else
		CHECK(rc == 0, "whk_record_field read '%s' (%d) from a "
		    "member that is no short string", rc == 1 ? out : "", rc);
	jv_free(t);
}

static void
check_line(const char *text, size_t len, int lineno, int m)
{
	struct ref r;
	char *line;
	size_t i, n = len;
	jv v = jv_invalid();

	/* As whk-ingest frames a line. */
	if (lineno == 1 && n >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		text += 3, n -= 3;
	if (n > 0 && text[n - 1] == '\r')
		n--;
	for (i = 0; i < n && (text[i] == ' ' || text[i] == '\t'); i++)
		;
	if (i == n)
		return;
	/* Its own allocation: a read past line[n] is ASan's to see. */
	if ((line = malloc(n + 1)) == NULL)
		abort();
	memcpy(line, text, n);
	line[n] = '\0';
	cur_line = line;
	cur_len = n;
	cur_mode = 0;

	ref_judge(line, n, &r);
	if (r.ok) {
		v = jv_parse_sized(line, (int)n);
		CHECK(jv_get_kind(v) == JV_KIND_OBJECT,
		    "jq does not take a JSON object: %s",
		    jv_is_valid(v) ? jv_kind_name(jv_get_kind(v)) : "invalid");
	}
	check_event(line, n, 0, &r, v);
	if (m != 0)
		check_event(line, n, m, &r, v);
	check_record_field(line, n, &r, v);
	jv_free(v);
	cur_line = NULL;
	free(line);
}

/*
 * whk_lines_next against the plain split: the same lines, those longer
 * than max flagged and emptied, the last one without its newline.
 */
static void
check_lines(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct whk_lines lr;
	struct whk_err err;
	const char *line;
	const uint8_t *p = data, *end = data + size, *nl;
	size_t len, want, max = 1 + size % 61;
	int too_long, rc;
	int64_t lineno = 0;

	if (fd == -1 && (fd = memfd_create("fuzz-ingest", 0)) == -1)
		abort();
	if (ftruncate(fd, 0) == -1 ||
	    pwrite(fd, data, size, 0) != (ssize_t)size ||
	    lseek(fd, 0, SEEK_SET) != 0 || whk_lines_init(&lr, fd, max) == -1)
		abort();
	cur_line = (const char *)data;
	cur_len = size;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		want = (size_t)((nl ? nl : end) - p);
		rc = whk_lines_next(&lr, &line, &len, &too_long, &err);
		lineno++;
		CHECK(rc == 1, "whk_lines_next ended at line %lld",
		    (long long)lineno);
		CHECK(lr.lineno == lineno, "whk_lines_next counts line %lld "
		    "as %lld", (long long)lineno, (long long)lr.lineno);
		if (want > max)
			CHECK(too_long && len == 0, "line %lld of %zu bytes "
			    "is not flagged as longer than %zu",
			    (long long)lineno, want, max);
		else
			CHECK(!too_long && len == want &&
			    memcmp(line, p, len) == 0 && line[len] == '\0',
			    "line %lld is not what was written",
			    (long long)lineno);
		p += want + (nl != NULL);
	}
	rc = whk_lines_next(&lr, &line, &len, &too_long, &err);
	CHECK(rc == 0, "whk_lines_next gave a line after the last");
	whk_lines_free(&lr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	const char *p, *end, *nl;
	int lineno = 0, m = 0;

	if (!ready) {
		init();
		ready = 1;
	}
	if (size > 0 && data[0] >= 1 && data[0] <= 4)
		m = data[0], data++, size--;
	check_lines(data, size);
	p = (const char *)data;
	end = p + size;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		check_line(p, (size_t)((nl ? nl : end) - p), ++lineno, m);
		p = nl ? nl + 1 : end;
	}
	return 0;
}
