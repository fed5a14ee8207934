/*
 * curl-multi.c - bench-curl-multi, the reference tests/bench/deliver
 * measures whk-deliver against: the plainest fast way to POST many
 * bodies with libcurl, and nothing else (no store, no signing).
 *
 *   bench-curl-multi [-c concurrency] URL [FILE]
 *
 * Reads every body (one per line) from FILE or stdin before the clock
 * starts, then keeps up to -c (default 64) POSTs in flight on one multi
 * handle, waiting with curl_multi_poll.  Easy handles are reused and the
 * multi handle keeps up to -c connections alive, so each connection
 * carries many requests.  Each request is sent as whk sends it: POST,
 * "Content-Type: application/json", an empty "Expect:" header (the body
 * goes at once, no wait for "100 Continue"), the response body read and
 * dropped.  Prints one line:
 *
 *   requests N 2xx M seconds S
 *
 * where S is the time from the first request started to the last one
 * finished.  Exit 0 if every request got a 2xx answer, 1 otherwise, 2 on
 * a usage or system error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

struct body {
	char	*p;
	size_t	 len;
};

static size_t
drop(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
die(const char *msg)
{
	fprintf(stderr, "bench-curl-multi: %s\n", msg);
	exit(2);
}

/* Every line of f, without its newline; empty lines are skipped. */
static struct body *
read_bodies(FILE *f, size_t *n)
{
	struct body *v = NULL, *t;
	size_t cap = 0, bufcap = 0;
	ssize_t len;
	char *line = NULL;

	*n = 0;
	while ((len = getline(&line, &bufcap, f)) != -1) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((t = realloc(v, cap * sizeof(*v))) == NULL)
				die("out of memory");
			v = t;
		}
		if ((v[*n].p = malloc((size_t)len + 1)) == NULL)
			die("out of memory");
		memcpy(v[*n].p, line, (size_t)len + 1);
		v[*n].len = (size_t)len;
		(*n)++;
	}
	free(line);
	if (ferror(f))
		die("read error");
	return v;
}

int
main(int argc, char *argv[])
{
	struct curl_slist *hdr = NULL;
	struct body *bodies;
	CURL **handles;
	CURLM *multi;
	CURLMsg *m;
	FILE *f = stdin;
	const char *url;
	double t0, t1;
	size_t n, next = 0, done = 0, ok = 0, nidle = 0, i;
	long conc = 64, status;
	int ch, running, left;

	while ((ch = getopt(argc, argv, "c:")) != -1) {
		switch (ch) {
		case 'c':
			conc = strtol(optarg, NULL, 10);
			if (conc < 1 || conc > 100000)
				die("-c: between 1 and 100000");
			break;
		default:
			fprintf(stderr, "usage: bench-curl-multi [-c n] URL "
			    "[FILE]\n");
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || argc > 2) {
		fprintf(stderr, "usage: bench-curl-multi [-c n] URL [FILE]\n");
		return 2;
	}
	url = argv[0];
	if (argc == 2 && (f = fopen(argv[1], "r")) == NULL)
		die("cannot open the file of bodies");
	bodies = read_bodies(f, &n);
	if (f != stdin)
		fclose(f);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (multi = curl_multi_init()) == NULL ||
	    (handles = calloc((size_t)conc, sizeof(*handles))) == NULL ||
	    (hdr = curl_slist_append(hdr, "Content-Type: application/json")) ==
	    NULL || (hdr = curl_slist_append(hdr, "Expect:")) == NULL)
		die("cannot start libcurl");
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
	for (i = 0; i < (size_t)conc; i++) {
		if ((handles[i] = curl_easy_init()) == NULL)
			die("out of memory");
		curl_easy_setopt(handles[i], CURLOPT_URL, url);
		curl_easy_setopt(handles[i], CURLOPT_POST, 1L);
		curl_easy_setopt(handles[i], CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(handles[i], CURLOPT_WRITEFUNCTION, drop);
		curl_easy_setopt(handles[i], CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(handles[i], CURLOPT_TIMEOUT_MS, 30000L);
	}
	nidle = (size_t)conc;

	t0 = now();
	for (;;) {
		/* Top up: every idle handle takes the next body. */
		while (nidle > 0 && next < n) {
			CURL *c = handles[--nidle];

			curl_easy_setopt(c, CURLOPT_POSTFIELDS, bodies[next].p);
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
			    (curl_off_t)bodies[next].len);
			if (curl_multi_add_handle(multi, c) != CURLM_OK)
				die("cannot start a request");
			next++;
		}
		if (done == n)
			break;
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			die("curl_multi_perform failed");
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			status = 0;
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE,
			    &status);
			if (m->data.result == CURLE_OK && status >= 200 &&
			    status <= 299)
				ok++;
			curl_multi_remove_handle(multi, m->easy_handle);
			handles[nidle++] = m->easy_handle;
			done++;
		}
		if (nidle > 0 && next < n)
			continue;	/* start more before waiting */
		if (done < n && curl_multi_poll(multi, NULL, 0, 1000, NULL) !=
		    CURLM_OK)
			die("curl_multi_poll failed");
	}
	t1 = now();
	printf("requests %zu 2xx %zu seconds %.6f\n", n, ok, t1 - t0);

	for (i = 0; i < (size_t)conc; i++)
		curl_easy_cleanup(handles[i]);
	free(handles);
	curl_slist_free_all(hdr);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	for (i = 0; i < n; i++)
		free(bodies[i].p);
	free(bodies);
	return ok == n ? 0 : 1;
}
