/*
 * Base64 (RFC 4648, standard alphabet). The decoder is tolerant as the
 * protocol needs: ASCII whitespace anywhere is skipped and padding is
 * optional, but any other character, misplaced padding or a dangling
 * single character is an error. Output is bounded by the caller's buffer.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct cta_buf;

/* Decoded size upper bound for an encoded input of n characters. */
size_t cta_b64_decoded_max(size_t n);

/* Decode into out[0..outcap). Returns 0 and sets *ret_len, or
 * -CTA_E_BAD_BASE64 for malformed input, -CTA_E_TOO_LARGE if it does not fit. */
int cta_b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outcap, size_t *ret_len);

/* Decode a text field that must be a string: no NUL bytes allowed; out is
 * NUL-terminated (outcap includes the NUL). */
int cta_b64_decode_str(const char *in, size_t inlen, char *out, size_t outcap);

/* Append the encoding (no line breaks, with padding) to b. */
int cta_b64_encode_buf(struct cta_buf *b, const void *data, size_t len);
/* Return a malloc'd NUL-terminated encoding (aborts on OOM). */
char *cta_b64_encode(const void *data, size_t len);
