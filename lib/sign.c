/*
 * sign.c - secrets: "whsec_" and the base64 of random bytes, as the
 * Standard Webhooks specification has them.  All of it is libcrypto's.
 */
#include <string.h>

#include <openssl/evp.h>
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
