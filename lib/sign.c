/*
 * sign.c - secrets: "whsec_" and the base64 of random bytes, as the
 * Standard Webhooks specification has them.  All of it is libcrypto's.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "whk.h"

#define SECRET_BYTES	32
#define SECRET_MIN	24	/* the specification's bounds */
#define SECRET_MAX	64

int
whk_secret_new(char *out, size_t n, struct whk_err *err)
{
	unsigned char raw[SECRET_BYTES];

	if (n < 6 + 4 * ((SECRET_BYTES + 2) / 3) + 1)
		return whk_error(err, WHK_EXIT_SYSTEM, "secret buffer too small");
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return whk_error(err, WHK_EXIT_SYSTEM, "cannot get random bytes");
	memcpy(out, "whsec_", 6);
	EVP_EncodeBlock((unsigned char *)out + 6, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int
whk_secret_valid(const char *s, struct whk_err *err)
{
	unsigned char raw[3 * 128 / 4 + 3];
	const char *eq;
	size_t n, pad = 0;
	int len;

	if (strncmp(s, "whsec_", 6) != 0)
		return whk_error(err, WHK_EXIT_USAGE,
		    "secret must start with 'whsec_'");
	s += 6;
	n = strlen(s);
	if (n == 0 || n % 4 != 0 || n > 128 ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/=") != n)
		return whk_error(err, WHK_EXIT_USAGE,
		    "secret must be 'whsec_' and base64");
	while (pad < 2 && s[n - 1 - pad] == '=')
		pad++;
	eq = strchr(s, '=');
	if (eq != NULL && eq < s + n - pad)
		return whk_error(err, WHK_EXIT_USAGE,
		    "secret must be 'whsec_' and base64");
	len = EVP_DecodeBlock(raw, (const unsigned char *)s, (int)n);
	if (len < 0)
		return whk_error(err, WHK_EXIT_USAGE,
		    "secret must be 'whsec_' and base64");
	len -= (int)pad;
	OPENSSL_cleanse(raw, sizeof(raw));
	if (len < SECRET_MIN || len > SECRET_MAX)
		return whk_error(err, WHK_EXIT_USAGE,
		    "secret must hold %d to %d bytes, not %d",
		    SECRET_MIN, SECRET_MAX, len);
	return 0;
}

/* No part of a secret is shown: a listing only tells that one is set. */
void
whk_secret_redact(const char *secret, char *out, size_t n)
{
	(void)secret;
	snprintf(out, n, "whsec_********");
}

/* The key a secret stands for: the bytes its base64 part decodes to. */
static int
secret_key(const char *secret, unsigned char *key, size_t *n)
{
	const char *s;
	size_t len, pad = 0;
	int got;

	if (strncmp(secret, "whsec_", 6) != 0)
		return -1;
	s = secret + 6;
	len = strlen(s);
	if (len == 0 || len % 4 != 0 || len > 128)
		return -1;
	while (pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	if ((got = EVP_DecodeBlock(key, (const unsigned char *)s,
	    (int)len)) < 0)
		return -1;
	*n = (size_t)got - pad;
	return 0;
}

struct whk_key {
	EVP_MAC_CTX	*ctx;	/* HMAC-SHA256, keyed */
};

/*
 * Keying an HMAC context looks the digest up and allocates a dozen
 * times: done once per secret, each signature only resets the context.
 */
struct whk_key *
whk_key_new(const char *secret, struct whk_err *err)
{
	unsigned char raw[3 * 128 / 4 + 3];
	static EVP_MAC *hmac;
	struct whk_key *k;
	OSSL_PARAM params[2];
	size_t len;
	int ok;

	if (secret_key(secret, raw, &len) == -1) {
		whk_error(err, WHK_EXIT_PARTIAL, "invalid secret");
		return NULL;
	}
	/* A fetch looks the algorithm up each time: once per process. */
	if (hmac == NULL && (hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
		OPENSSL_cleanse(raw, sizeof(raw));
		whk_error(err, WHK_EXIT_SYSTEM, "HMAC unavailable");
		return NULL;
	}
	params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->ctx = EVP_MAC_CTX_new(hmac)) == NULL) {
		free(k);
		OPENSSL_cleanse(raw, sizeof(raw));
		whk_error(err, WHK_EXIT_SYSTEM, "out of memory");
		return NULL;
	}
	ok = EVP_MAC_init(k->ctx, raw, len, params);
	OPENSSL_cleanse(raw, sizeof(raw));
	if (ok != 1) {
		whk_key_free(k);
		whk_error(err, WHK_EXIT_SYSTEM, "HMAC failed");
		return NULL;
	}
	return k;
}

void
whk_key_free(struct whk_key *k)
{
	if (k == NULL)
		return;
	EVP_MAC_CTX_free(k->ctx);
	free(k);
}

/*
 * The Standard Webhooks signature header: "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>" for each key, separated by spaces, so that a
 * receiver that knows either secret of a rotation can verify.
 */
int
whk_sign(struct whk_key *const *keys, size_t nkeys, const char *msg_id,
    int64_t timestamp, const char *body, size_t len, struct whk_buf *out,
    struct whk_err *err)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	char prefix[WHK_ID_LEN + 32];
	size_t maclen, i;
	int plen;

	plen = snprintf(prefix, sizeof(prefix), "%s.%lld.", msg_id,
	    (long long)timestamp);
	for (i = 0; i < nkeys; i++) {
		maclen = 0;
		/* Initialised again without a key: the same key, afresh. */
		if (EVP_MAC_init(keys[i]->ctx, NULL, 0, NULL) != 1 ||
		    EVP_MAC_update(keys[i]->ctx, (unsigned char *)prefix,
		    (size_t)plen) != 1 ||
		    EVP_MAC_update(keys[i]->ctx, (const unsigned char *)body,
		    len) != 1 ||
		    EVP_MAC_final(keys[i]->ctx, mac, &maclen, sizeof(mac)) != 1)
			return whk_error(err, WHK_EXIT_SYSTEM, "HMAC failed");
		EVP_EncodeBlock(b64, mac, (int)maclen);
		if (i > 0)
			whk_buf_add(out, " ", 1);
		whk_buf_puts(out, "v1,");
		whk_buf_puts(out, (char *)b64);
	}
	return out->oom ? whk_error(err, WHK_EXIT_SYSTEM, "out of memory") : 0;
}
