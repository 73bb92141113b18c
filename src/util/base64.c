#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64.h"
#include "util/buf.h"
#include "util/errcodes.h"
#include "util/util.h"

static const char b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 64 for '=', 65 for whitespace, 255 invalid. */
static uint8_t b64_class(unsigned char c)
{
        if (c >= 'A' && c <= 'Z')
                return (uint8_t)(c - 'A');
        if (c >= 'a' && c <= 'z')
                return (uint8_t)(c - 'a' + 26);
        if (c >= '0' && c <= '9')
                return (uint8_t)(c - '0' + 52);
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        if (c == '=')
                return 64;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v')
                return 65;
        return 255;
}

size_t cta_b64_decoded_max(size_t n)
{
        return n / 4 * 3 + 3;
}

int cta_b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outcap, size_t *ret_len)
{
        uint32_t acc = 0;
        size_t nq = 0, olen = 0, npad = 0;

        for (size_t i = 0; i < inlen; i++) {
                uint8_t v = b64_class((unsigned char)in[i]);
                if (v == 65)
                        continue;
                if (v == 255)
                        return -CTA_E_BAD_BASE64;
                if (v == 64) {
                        /* Padding only completes a quantum of 2 or 3 characters. */
                        if (nq + npad < 2)
                                return -CTA_E_BAD_BASE64;
                        npad++;
                        if (nq + npad > 4)
                                return -CTA_E_BAD_BASE64;
                        continue;
                }
                if (npad)
                        return -CTA_E_BAD_BASE64; /* data after padding */
                acc = acc << 6 | v;
                if (++nq == 4) {
                        if (olen + 3 > outcap)
                                return -CTA_E_TOO_LARGE;
                        out[olen++] = (uint8_t)(acc >> 16);
                        out[olen++] = (uint8_t)(acc >> 8);
                        out[olen++] = (uint8_t)acc;
                        acc = 0;
                        nq = 0;
                }
        }
        if (npad && nq + npad != 4)
                return -CTA_E_BAD_BASE64;
        if (nq == 1)
                return -CTA_E_BAD_BASE64;
        if (nq == 2) {
                if (olen + 1 > outcap)
                        return -CTA_E_TOO_LARGE;
                out[olen++] = (uint8_t)(acc >> 4);
        } else if (nq == 3) {
                if (olen + 2 > outcap)
                        return -CTA_E_TOO_LARGE;
                out[olen++] = (uint8_t)(acc >> 10);
                out[olen++] = (uint8_t)(acc >> 2);
        }
        *ret_len = olen;
        return 0;
}

int cta_b64_decode_str(const char *in, size_t inlen, char *out, size_t outcap)
{
        size_t n;
        if (outcap == 0)
                return -CTA_E_TOO_LARGE;
        int r = cta_b64_decode(in, inlen, (uint8_t *)out, outcap - 1, &n);
        if (r < 0)
                return r;
        if (memchr(out, '\0', n))
                return -CTA_E_BAD_BASE64;
        out[n] = '\0';
        return 0;
}

int cta_b64_encode_buf(struct cta_buf *b, const void *data, size_t len)
{
        const uint8_t *p = data;
        size_t olen = (len + 2) / 3 * 4;
        int r = cta_buf_reserve(b, olen);
        if (r < 0)
                return r;
        char *o = b->data + b->len;
        size_t i = 0;
        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
                *o++ = b64_alphabet[v >> 18 & 63];
                *o++ = b64_alphabet[v >> 12 & 63];
                *o++ = b64_alphabet[v >> 6 & 63];
                *o++ = b64_alphabet[v & 63];
        }
        if (len - i == 1) {
                uint32_t v = (uint32_t)p[i] << 16;
                *o++ = b64_alphabet[v >> 18 & 63];
                *o++ = b64_alphabet[v >> 12 & 63];
                *o++ = '=';
                *o++ = '=';
        } else if (len - i == 2) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
                *o++ = b64_alphabet[v >> 18 & 63];
                *o++ = b64_alphabet[v >> 12 & 63];
                *o++ = b64_alphabet[v >> 6 & 63];
                *o++ = '=';
        }
        b->len += olen;
        b->data[b->len] = '\0';
        return 0;
}

char *cta_b64_encode(const void *data, size_t len)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        if (cta_b64_encode_buf(&b, data, len) < 0)
                abort();
        return cta_buf_steal(&b, NULL);
}
