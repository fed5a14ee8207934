/*
 * http.c - everything that touches libcurl: URLs, parsed by curl's own
 * parser so that what we check is what curl will connect to (it
 * normalises forms such as http://2130706433/ to 127.0.0.1); and the
 * requests themselves, whose destination is checked again on the address
 * actually connected to, after DNS.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "whk.h"

int
whk_url_parse(const char *s, struct whk_url *u, struct whk_err *err)
{
	CURLU *h;
	CURLUcode rc;
	char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
	int ret = -1;

	memset(u, 0, sizeof(*u));
	if ((h = curl_url()) == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	rc = curl_url_set(h, CURLUPART_URL, s, 0);
	if (rc != CURLUE_OK) {
		whk_error(err, WHK_EXIT_USAGE, "invalid URL '%s': %s", s,
		    curl_url_strerror(rc));
		goto out;
	}
	if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		whk_error(err, WHK_EXIT_USAGE,
		    "invalid URL '%s': only http and https are allowed", s);
		goto out;
	}
	if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    *host == '\0' || strlen(host) >= sizeof(u->host)) {
		whk_error(err, WHK_EXIT_USAGE, "invalid URL '%s': no host", s);
		goto out;
	}
	if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		whk_error(err, WHK_EXIT_USAGE, "invalid URL '%s': credentials "
		    "belong in --header, not in the URL", s);
		goto out;
	}
	if (curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
	    CURLUE_OK)
		u->port = atoi(port);
	snprintf(u->scheme, sizeof(u->scheme), "%s", scheme);
	snprintf(u->host, sizeof(u->host), "%s", host);
	ret = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(user);
	curl_url_cleanup(h);
	return ret;
}

int
whk_url_check(const char *s, int allow_private, struct whk_err *err)
{
	struct whk_url u;
	int literal;

	if (whk_url_parse(s, &u, err) == -1)
		return -1;
	if (!allow_private && whk_ip_literal_private(u.host, &literal))
		return whk_error(err, WHK_EXIT_USAGE,
		    "refusing '%s': '%s' is a private, loopback or link-local "
		    "address (use --allow-private to permit it)", s, u.host);
	return 0;
}

/*
 * Requests, many at once, on one libcurl multi handle: its connection
 * cache keeps connections to a receiver alive between requests, and
 * HTTP/2 multiplexes where the receiver offers it.
 */
#define EXCERPT_MAX	(16 * 1024)	/* kept of a response */
#define DRAIN_MAX	(1024 * 1024)	/* read past that, then hang up */
#define EXPECT_MIN	1024		/* bodies curl may hold back */

struct whk_http {
	CURLM		*multi;
	CURL		**idle;		/* easy handles to reuse */
	size_t		 nidle, capidle;
	size_t		 running;
	struct whk_http_req *inflight;	/* started, not finished */
	struct whk_http_req *done;	/* finished, not yet taken */
	const char	*cainfo, *capath;	/* NULL: the system's */
};

/* An address a request may not reach: say which, and refuse. */
static int
refuse(struct whk_http_req *r, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (r->allow_private || !whk_sockaddr_private(sa))
		return 0;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)
		    (const void *)sa)->sin_addr, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr, host, sizeof(host));
	snprintf(r->error, sizeof(r->error), "refused to connect to "
	    "%s: a private, loopback or link-local address (the "
	    "endpoint needs --allow-private)", host);
	r->refused = 1;
	return 1;
}

static curl_socket_t
open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct whk_http_req *r = arg;

	(void)purpose;
	if (refuse(r, &a->addr))
		return CURL_SOCKET_BAD;
	/* Another address of the name may do: forget a refusal. */
	if (r->refused) {
		r->refused = 0;
		r->error[0] = '\0';
	}
	return socket(a->family, a->socktype, a->protocol);
}

/*
 * A request may go out on a connection kept from another endpoint's
 * request to the same host and port, one that was allowed a private
 * address: open_socket() never sees it, so the address is checked
 * again here, before anything is sent, whether the connection is new
 * or reused.
 */
static int
pre_request(void *arg, char *remote, char *local, int rport, int lport)
{
	struct whk_http_req *r = arg;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;

	(void)local;
	(void)rport;
	(void)lport;
	memset(&v4, 0, sizeof(v4));
	memset(&v6, 0, sizeof(v6));
	if (inet_pton(AF_INET, remote, &v4.sin_addr) == 1) {
		v4.sin_family = AF_INET;
		if (refuse(r, (struct sockaddr *)&v4))
			return CURL_PREREQFUNC_ABORT;
	} else if (inet_pton(AF_INET6, remote, &v6.sin6_addr) == 1) {
		v6.sin6_family = AF_INET6;
		if (refuse(r, (struct sockaddr *)&v6))
			return CURL_PREREQFUNC_ABORT;
	} else if (!r->allow_private) {
		snprintf(r->error, sizeof(r->error), "refused to send: "
		    "connected to an unknown address '%.64s'", remote);
		r->refused = 1;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct whk_http_req *r = arg;
	size_t len = size * n, keep;

	if (r->excerpt.len < EXCERPT_MAX) {
		keep = EXCERPT_MAX - r->excerpt.len;
		whk_buf_add(&r->excerpt, p, len < keep ? len : keep);
	}
	r->response_bytes += (int64_t)len;
	if (r->response_bytes > DRAIN_MAX) {
		r->truncated = 1;
		return 0;	/* hang up: never hold a flood */
	}
	return len;
}

struct whk_http *
whk_http_new(size_t max_connections, struct whk_err *err)
{
	static int ready;
	struct whk_http *h;

	if (!ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			whk_error(err, WHK_EXIT_SYSTEM, "cannot start libcurl");
			return NULL;
		}
		ready = 1;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->multi = curl_multi_init()) == NULL) {
		free(h);
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
	    (long)(max_connections > 0 ? max_connections : 64));
	curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	/*
	 * The certificate authorities curl(1) would trust: receivers on a
	 * private PKI are common, and every deliverer in cron would
	 * otherwise need a changed system store.
	 */
	if ((h->cainfo = getenv("CURL_CA_BUNDLE")) == NULL || !*h->cainfo) {
		h->cainfo = getenv("SSL_CERT_FILE");
		h->capath = getenv("SSL_CERT_DIR");
	}
	return h;
}

size_t
whk_http_running(const struct whk_http *h)
{
	return h->running;
}

int
whk_http_start(struct whk_http *h, struct whk_http_req *r,
    struct whk_err *err)
{
	static char expect[] = "Expect:";
	struct curl_slist *l = NULL;
	CURL *c;
	size_t i, n;

	r->status = 0;
	r->ms = 0;
	r->error[0] = '\0';
	r->refused = r->truncated = 0;
	r->response_bytes = 0;
	r->retry_after_s = -1;
	whk_buf_reset(&r->excerpt);
	/*
	 * A handle is kept for the next request with what every request
	 * sets alike; what differs is set below, each time.
	 */
	if (h->nidle > 0)
		c = h->idle[--h->nidle];
	else if ((c = curl_easy_init()) == NULL)
		return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
	else {
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_USERAGENT, "whk/" WHK_VERSION);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
		/* A proxy's address is not the receiver's: the check would lie. */
		curl_easy_setopt(c, CURLOPT_PROXY, "");
		curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
		    (long)CURL_HTTP_VERSION_2TLS);
		if (h->cainfo && *h->cainfo)
			curl_easy_setopt(c, CURLOPT_CAINFO, h->cainfo);
		if (h->capath && *h->capath)
			curl_easy_setopt(c, CURLOPT_CAPATH, h->capath);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
		curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, pre_request);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	}
	/*
	 * The header list in one piece, pointing at the caller's strings,
	 * which outlive the request: curl only reads a list, and building
	 * it with curl_slist_append() cost two allocations a header.
	 */
	n = r->nheaders + (r->body_len >= EXPECT_MIN);
	if (n > 0 && (l = calloc(n, sizeof(*l))) == NULL)
		goto oom;
	for (i = 0; i < r->nheaders; i++) {
		l[i].data = (char *)(uintptr_t)r->headers[i];
		l[i].next = i + 1 < n ? &l[i + 1] : NULL;
	}
	/*
	 * A body is sent at once, not after a wait for "100 Continue",
	 * which curl asks for from 1 KiB (or 1 MiB, by version) up; below
	 * that, a header less is work saved on every request.
	 */
	if (i < n) {
		l[i].data = expect;
		l[i].next = NULL;
	}
	r->handle = c;
	r->slist = l;
	curl_easy_setopt(c, CURLOPT_URL, r->url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)r->body_len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)r->connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, r);
	curl_easy_setopt(c, CURLOPT_PREREQDATA, r);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_PRIVATE, r);
	r->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
	if (curl_multi_add_handle(h->multi, c) != CURLM_OK) {
		free(l);
		curl_easy_cleanup(c);
		r->handle = r->slist = NULL;
		return whk_error(err, WHK_EXIT_SYSTEM, "cannot start a request");
	}
	h->running++;
	r->prev_run = NULL;
	if ((r->next_run = h->inflight) != NULL)
		h->inflight->prev_run = r;
	h->inflight = r;
	return 0;
oom:
	curl_easy_cleanup(c);
	return whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
}

/*
 * libcurl ends a failed connect with "Couldn't connect to server", which
 * does not tell a refusal from an unreachable network: say the system's
 * reason instead, unless libcurl already did.
 */
static void
connect_reason(CURL *c, char *error, size_t size)
{
	char generic[128];
	const char *why;
	size_t len = strlen(error), glen;
	long oserr = 0;

	if (curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr) != CURLE_OK ||
	    oserr == 0)
		return;
	why = strerror((int)oserr);
	if (strstr(error, why) != NULL)
		return;
	glen = (size_t)snprintf(generic, sizeof(generic), ": %s",
	    curl_easy_strerror(CURLE_COULDNT_CONNECT));
	if (len >= glen && strcmp(error + len - glen, generic) == 0)
		len -= glen;
	snprintf(error + len, size - len, ": %s", why);
}

/* A request is over: note what came of it and put its handle aside. */
static void
finish(struct whk_http *h, struct whk_http_req *r, CURLcode rc)
{
	CURL *c = r->handle, **v;
	curl_off_t us = 0, after = -1, connected = 0;
	long status = 0;

	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &us);
	curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &after);
	curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connected);
	r->status = (int)status;
	r->ms = (int64_t)((us + 500) / 1000);	/* the nearest ms */
	r->retry_after_s = (int64_t)after >= 0 && status > 0 ?
	    (int64_t)after : -1;
	if (r->truncated)
		snprintf(r->error, sizeof(r->error), "response over %d bytes: "
		    "connection dropped", DRAIN_MAX);
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(r->error, sizeof(r->error), "timed out after %lld ms "
		    "%s", (long long)r->ms, status > 0 ?
		    "reading the response" : connected > 0 ?
		    "waiting for the response" : "connecting");
	else if ((rc == CURLE_WEIRD_SERVER_REPLY ||
	    rc == CURLE_UNSUPPORTED_PROTOCOL) && connected > 0)
		/* Say what it was: curl says "Received HTTP/0.9" and such. */
		snprintf(r->error, sizeof(r->error), "invalid HTTP response: "
		    "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
	else if (rc != CURLE_OK && !r->refused)
		/* curl's buffer has the detail (address, port, reason). */
		snprintf(r->error, sizeof(r->error), "%s", r->errbuf[0] ?
		    r->errbuf : curl_easy_strerror(rc));
	if (rc == CURLE_COULDNT_CONNECT && !r->refused)
		connect_reason(c, r->error, sizeof(r->error));
	curl_multi_remove_handle(h->multi, c);
	free(r->slist);
	r->slist = NULL;
	r->handle = NULL;
	if (h->nidle == h->capidle) {
		size_t cap = h->capidle ? h->capidle * 2 : 64;

		if ((v = reallocarray(h->idle, cap, sizeof(*v))) == NULL) {
			curl_easy_cleanup(c);
			goto out;
		}
		h->idle = v;
		h->capidle = cap;
	}
	h->idle[h->nidle++] = c;
out:
	h->running--;
	if (r->prev_run)
		r->prev_run->next_run = r->next_run;
	else
		h->inflight = r->next_run;
	if (r->next_run)
		r->next_run->prev_run = r->prev_run;
	r->next_done = h->done;
	h->done = r;
}

int
whk_http_wait(struct whk_http *h, int fd, int timeout_ms, int *fd_ready,
    struct whk_err *err)
{
	struct curl_waitfd extra;
	struct whk_http_req *r;
	CURLMsg *m;
	CURLMcode mc;
	int still, left, nfds = 0;

	if (fd_ready)
		*fd_ready = 0;
	if (fd >= 0) {
		extra.fd = fd;
		extra.events = CURL_WAIT_POLLIN;
		extra.revents = 0;
		nfds = 1;
	}
	if ((mc = curl_multi_perform(h->multi, &still)) != CURLM_OK)
		return whk_error(err, WHK_EXIT_SYSTEM, "libcurl: %s",
		    curl_multi_strerror(mc));
	/* Wait only when nothing finished: the caller has work otherwise. */
	if ((m = curl_multi_info_read(h->multi, &left)) == NULL) {
		if ((mc = curl_multi_poll(h->multi, nfds ? &extra : NULL,
		    (unsigned)nfds, timeout_ms, NULL)) != CURLM_OK)
			return whk_error(err, WHK_EXIT_SYSTEM, "libcurl: %s",
			    curl_multi_strerror(mc));
		if (fd_ready && nfds && extra.revents)
			*fd_ready = 1;
		if ((mc = curl_multi_perform(h->multi, &still)) != CURLM_OK)
			return whk_error(err, WHK_EXIT_SYSTEM, "libcurl: %s",
			    curl_multi_strerror(mc));
		m = curl_multi_info_read(h->multi, &left);
	}
	for (; m; m = curl_multi_info_read(h->multi, &left)) {
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		finish(h, r, m->data.result);
	}
	return 0;
}

struct whk_http_req *
whk_http_done(struct whk_http *h)
{
	struct whk_http_req *r = h->done;

	if (r)
		h->done = r->next_done;
	return r;
}

/* Give up on every request in flight: each ends as interrupted. */
/* From any thread: a wait in progress, or the next one, returns at once. */
void
whk_http_wakeup(struct whk_http *h)
{
	curl_multi_wakeup(h->multi);
}

void
whk_http_abort(struct whk_http *h)
{
	struct whk_http_req *r;

	while ((r = h->inflight) != NULL) {
		snprintf(r->error, sizeof(r->error), "interrupted");
		r->refused = 1;	/* keep the message */
		finish(h, r, CURLE_ABORTED_BY_CALLBACK);
	}
}

void
whk_http_free(struct whk_http *h)
{
	size_t i;

	if (h == NULL)
		return;
	whk_http_abort(h);
	for (i = 0; i < h->nidle; i++)
		curl_easy_cleanup(h->idle[i]);
	free(h->idle);
	curl_multi_cleanup(h->multi);
	free(h);
}
