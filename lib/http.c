/*
 * http.c - everything that touches libcurl.  For now: URLs, parsed by
 * curl's own parser so that what we check is what curl will connect to
 * (it normalises forms such as http://2130706433/ to 127.0.0.1).
 */
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
