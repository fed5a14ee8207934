/*
 * lines.c - reading NDJSON: one bounded buffer per input, so memory stays
 * flat however long the input and however long one of its lines.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "whk.h"

#define READ_CHUNK	(64 * 1024)

int
whk_lines_init(struct whk_lines *r, int fd, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->max = max;
	r->cap = max + READ_CHUNK + 1;
	if ((r->buf = malloc(r->cap)) == NULL)
		return -1;
	return 0;
}

void
whk_lines_free(struct whk_lines *r)
{
	free(r->buf);
	r->buf = NULL;
}

static ssize_t
fill(struct whk_lines *r)
{
	ssize_t n;

	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->scan -= r->start;
		r->start = 0;
	}
	do
		n = read(r->fd, r->buf + r->end, r->cap - 1 - r->end);
	while (n == -1 && errno == EINTR);
	if (n > 0)
		r->end += (size_t)n;
	else if (n == 0)
		r->eof = 1;
	return n;
}

/*
 * Is a whole line (or the end) in the buffer?  What an overlong line
 * brought so far is dropped here, so that the buffer never holds more
 * than max and one read.
 */
static int
buffered(struct whk_lines *r)
{
	if (memchr(r->buf + r->scan, '\n', r->end - r->scan) != NULL)
		return 1;
	r->scan = r->end;
	if (r->end - r->start > r->max) {
		/* Keep nothing of an overlong line. */
		r->dropping = 1;
		r->start = r->scan = r->end = 0;
	}
	return r->eof;
}

/*
 * Lines come back NUL-terminated, in place.  A line longer than max is
 * returned once, empty, with *too_long set; the rest of it is read and
 * dropped without being kept.
 */
int
whk_lines_next(struct whk_lines *r, const char **line, size_t *len,
    int *too_long, struct whk_err *err)
{
	char *nl;

	*too_long = 0;
	while (!buffered(r))
		if (fill(r) == -1)
			return whk_error(err, WHK_EXIT_SYSTEM, "read error: %s",
			    strerror(errno));
	if ((nl = memchr(r->buf + r->scan, '\n', r->end - r->scan)) != NULL) {
		*line = r->buf + r->start;
		*len = (size_t)(nl - *line);
		*nl = '\0';	/* parsers may read up to a NUL */
		r->start = r->scan = (size_t)(nl - r->buf) + 1;
		r->lineno++;
		/* One read can bring a whole overlong line at once. */
		if (r->dropping || *len > r->max) {
			*too_long = 1;
			*len = 0;
		}
		r->dropping = 0;
		return 1;
	}
	/* The end: a last line without its newline, or nothing. */
	if (r->end == r->start && !r->dropping)
		return 0;
	*line = r->buf + r->start;
	*len = r->dropping ? 0 : r->end - r->start;
	r->buf[r->end] = '\0';
	*too_long = r->dropping;
	r->dropping = 0;
	r->start = r->scan = r->end;
	r->lineno++;
	return 1;
}

/*
 * Would whk_lines_next answer without waiting for the writer?  Readable
 * is not enough: the writer may have written half a line, and a caller
 * that holds the store's write lock must not wait for the other half.
 * So what is there is read (poll said a read will not block), and the
 * answer is whether that makes a whole line.
 */
int
whk_lines_ready(struct whk_lines *r)
{
	struct pollfd p = { .fd = r->fd, .events = POLLIN };

	while (!buffered(r)) {
		if (poll(&p, 1, 0) <= 0)
			return 0;
		if (fill(r) == -1)
			return 1;	/* whk_lines_next reports it */
	}
	return 1;
}

/*
 * Wait up to ms (-1: for ever) for a whole line.  1: one is ready, 0: the
 * time passed, -1: a signal came (errno EINTR) or poll failed.
 */
int
whk_lines_wait(struct whk_lines *r, int ms)
{
	struct pollfd p = { .fd = r->fd, .events = POLLIN };
	int64_t until = ms < 0 ? -1 : whk_mono_ms() + ms, left = -1;

	while (!whk_lines_ready(r)) {
		if (until >= 0 && (left = until - whk_mono_ms()) <= 0)
			return 0;
		switch (poll(&p, 1, (int)left)) {
		case -1:
			return -1;
		case 0:
			return 0;
		}
	}
	return 1;
}
