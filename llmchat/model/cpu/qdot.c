/* llmchat's matmul over GGUF blocks as the file holds them: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
 *
 * The method is llama.cpp's (ggml-cpu's vec_dot_*_q8_*): the activations are quantized to int8 per
 * block of 32 (one fp32 scale each, and the scaled sum of every 16 codes), and each weight block is
 * multiplied with them in integers (AVX2 `maddubs`: unsigned weight codes x signed activations),
 * its own scale applied once per 16 or 32 products. The weights keep their file grid exactly: a
 * block is decoded, in registers or an L1 scratch row, to codes u and per-16 (scale s, offset o) with
 * w = u * s + o -- that is the GGUF definition of every type here, rewritten, not approximated.
 *
 * Decode (T = 1) runs one weight row against one activation row; more tokens (prefill) decode a tile
 * of 4 rows once and run it against every token, so the decode cost is shared. Rows are split over
 * OpenMP threads (torch's own libgomp, which is already loaded when this library is: one pool).
 *
 * Built on first use by native.py with the machine's C compiler (-O3 -march=native -fopenmp); a
 * machine without AVX2 gets the portable loops at the end, slower but the same numbers.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };
#define QK 32
#define QKK 256
#define TILE 4

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { exp = 127 - 15 + 1; while (!(man & 0x400)) { man <<= 1; exp--; } bits = sign | (exp << 23) | ((man & 0x3ff) << 13); }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

int64_t llmchat_row_bytes(int type, int64_t cols) {
    switch (type) {
    case T_Q4_0: return cols / QK * 18;
    case T_Q4_1: return cols / QK * 20;
    case T_Q5_0: return cols / QK * 22;
    case T_Q5_1: return cols / QK * 24;
    case T_Q8_0: return cols / QK * 34;
    case T_Q4_K: return cols / QKK * 144;
    case T_Q5_K: return cols / QKK * 176;
    case T_Q6_K: return cols / QKK * 210;
    }
    return -1;
}

static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
    else { *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }
}

/* One row of `cols` weights -> u8 codes [cols] (Q8_0: signed int8), scale and offset per 16. */
static void decode_row(int type, const uint8_t *w, int64_t cols, uint8_t *u, float *s, float *o) {
    int64_t nb = cols / QK;
    if (type == T_Q5_0 || type == T_Q5_1) { /* 4 low bits + one high bit (qh, bit j of value j) */
        int bytes = type == T_Q5_0 ? 22 : 24;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + b * bytes, *qs = blk + bytes - 16;
            uint32_t qh;
            memcpy(&qh, blk + bytes - 20, 4);
            float d = h2f(blk), off = type == T_Q5_0 ? -16 * d : h2f(blk + 2);
            uint8_t *ub = u + b * QK;
            for (int j = 0; j < 16; j++) {
                ub[j] = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
                ub[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            }
            s[2 * b] = s[2 * b + 1] = d;
            o[2 * b] = o[2 * b + 1] = off;
        }
        return;
    }
    if (type == T_Q4_0 || type == T_Q4_1 || type == T_Q8_0) {
        int bytes = type == T_Q4_0 ? 18 : type == T_Q4_1 ? 20 : 34;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + b * bytes;
            float d = h2f(blk), off = type == T_Q4_0 ? -8 * d : type == T_Q4_1 ? h2f(blk + 2) : 0.f;
            uint8_t *ub = u + b * QK;
            if (type == T_Q8_0) memcpy(ub, blk + 2, QK);
            else {
                const uint8_t *qs = blk + (type == T_Q4_0 ? 2 : 4);
                for (int j = 0; j < 16; j++) { ub[j] = qs[j] & 0xF; ub[j + 16] = qs[j] >> 4; }
            }
            s[2 * b] = s[2 * b + 1] = d;
            o[2 * b] = o[2 * b + 1] = off;
        }
        return;
    }
    for (int64_t sb = 0; sb < cols / QKK; sb++) {
        uint8_t *ub = u + sb * QKK;
        float *sk = s + sb * 16, *ok = o + sb * 16;
        if (type == T_Q6_K) {
            const uint8_t *blk = w + sb * 210, *ql = blk, *qh = blk + 128;
            const int8_t *sc = (const int8_t *)(blk + 192);
            float d = h2f(blk + 208);
            for (int n = 0; n < 2; n++) {
                uint8_t *y = ub + 128 * n;
                for (int l = 0; l < 32; l++) {
                    y[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                    y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                    y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
                ql += 64;
                qh += 32;
            }
            for (int k = 0; k < 16; k++) {
                /* value index 16k -> 128-chunk n = k/8, inside it group g = (k%8)/2, half h = k%2;
                   ggml's scale index is 8n + 2g + h... which is k itself */
                sk[k] = d * sc[k];
                ok[k] = -32.f * sk[k];
            }
        } else { /* Q4_K, Q5_K */
            int five = type == T_Q5_K;
            const uint8_t *blk = w + sb * (five ? 176 : 144), *scales = blk + 4, *qh = blk + 16;
            const uint8_t *qs = blk + (five ? 48 : 16);
            float d = h2f(blk), dmin = h2f(blk + 2);
            for (int c = 0; c < 4; c++) {
                for (int l = 0; l < 32; l++) {
                    uint8_t lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
                    if (five) { lo |= ((qh[l] >> (2 * c)) & 1) << 4; hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4; }
                    ub[64 * c + l] = lo;
                    ub[64 * c + 32 + l] = hi;
                }
            }
            for (int j = 0; j < 8; j++) {
                int sc, m;
                scale_min_k4(j, scales, &sc, &m);
                sk[2 * j] = sk[2 * j + 1] = d * sc;
                ok[2 * j] = ok[2 * j + 1] = -dmin * m;
            }
        }
    }
}

/* Activations: int8 codes per 32 (scale ad), and asum = ad * (sum of each 16 codes). */
static void quantize_act(const float *x, int64_t cols, int8_t *q, float *ad, float *asum) {
    for (int64_t b = 0; b < cols / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.f, id = d > 0 ? 1.f / d : 0.f;
        int s0 = 0, s1 = 0;
        for (int j = 0; j < QK; j++) {
            int v = (int)lrintf(xb[j] * id);
            q[b * QK + j] = (int8_t)v;
            if (j < 16) s0 += v; else s1 += v;
        }
        ad[b] = d;
        asum[2 * b] = d * s0;
        asum[2 * b + 1] = d * s1;
    }
}

#ifdef __AVX2__
static inline float hsum(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}
#endif

/* Σ_b ad_b (s_lo dot_lo + s_hi dot_hi) + Σ_k o_k asum_k over a decoded row. */
static float dot_decoded(const uint8_t *u, const float *s, const float *o, int is_signed,
                         const int8_t *q, const float *ad, const float *asum, int64_t cols) {
    int64_t nb = cols / QK;
#ifdef __AVX2__
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps(), acco = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(u + b * QK));
        __m256i a = _mm256_loadu_si256((const __m256i *)(q + b * QK));
        if (is_signed) { a = _mm256_sign_epi8(a, w); w = _mm256_sign_epi8(w, w); }
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
        __m256 sc = _mm256_set_m128(_mm_set1_ps(s[2 * b + 1]), _mm_set1_ps(s[2 * b]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sc, _mm256_set1_ps(ad[b])), acc);
    }
    float total = hsum(acc);
    if (!is_signed) {
        int64_t k = 0, n16 = 2 * nb;
        for (; k + 8 <= n16; k += 8)
            acco = _mm256_fmadd_ps(_mm256_loadu_ps(o + k), _mm256_loadu_ps(asum + k), acco);
        total += hsum(acco);
        for (; k < n16; k++) total += o[k] * asum[k];
    }
    return total;
#else
    float total = 0.f;
    for (int64_t b = 0; b < nb; b++) {
        int d0 = 0, d1 = 0;
        for (int j = 0; j < 16; j++) {
            int wv0 = is_signed ? (int)(int8_t)u[b * QK + j] : u[b * QK + j];
            int wv1 = is_signed ? (int)(int8_t)u[b * QK + 16 + j] : u[b * QK + 16 + j];
            d0 += wv0 * q[b * QK + j];
            d1 += wv1 * q[b * QK + 16 + j];
        }
        total += ad[b] * (s[2 * b] * d0 + s[2 * b + 1] * d1);
    }
    if (!is_signed)
        for (int64_t k = 0; k < 2 * nb; k++) total += o[k] * asum[k];
    return total;
#endif
}

#ifdef __AVX2__
/* T = 1, fused: each block is decoded in registers and multiplied at once (no scratch row). */
static inline __m256i nibbles(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0xF));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (byte i <- bit i; ggml's bytes_from_bits_32). */
static inline __m256i bits32(const uint8_t *x) {
    uint32_t x32;
    memcpy(&x32, x, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

/* hadd_ps(a, b) gives [a01 a23 b01 b23 | a45 a67 b45 b67]; this puts the pairs back in order. */
static inline __m256 _mm256_permute4x64_pd_ps(__m256 v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}

static inline __m256i madd32(__m256i w, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1));
}

static float dot_fused(int type, const uint8_t *w, const int8_t *q, const float *ad, const float *asum, int64_t cols) {
    /* Two accumulators (even / odd blocks) so that consecutive FMAs do not wait on each other. */
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), offv = _mm256_setzero_ps();
    float off0 = 0.f, off1 = 0.f;
    int64_t nb = cols / QK;
    if (type == T_Q4_0 || type == T_Q8_0) { /* signed codes: llama.cpp's sign trick, no offsets */
        /* (Gathering 8 blocks' fp16 scales into one vector conversion was tried: slower, 1.1 -> 1.8 ms
           for a 16384x2048 Q8_0 row set, the 2-byte stores stalling the 16-byte reload.) */
        const __m256i eight = _mm256_set1_epi8(8);
        const int bytes = type == T_Q4_0 ? 18 : 34;
        const int q8 = type == T_Q8_0;
#define LOADW(blk) (q8 ? _mm256_loadu_si256((const __m256i *)((blk) + 2)) : _mm256_sub_epi8(nibbles((blk) + 2), eight))
        int64_t b = 0;
        for (; b + 1 < nb; b += 2) {
            const uint8_t *x0 = w + b * bytes, *x1 = x0 + bytes;
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(q + b * QK));
            __m256i a1 = _mm256_loadu_si256((const __m256i *)(q + b * QK + QK));
            __m256i v0 = LOADW(x0), v1 = LOADW(x1);
            __m256 p0 = _mm256_cvtepi32_ps(madd32(_mm256_sign_epi8(v0, v0), _mm256_sign_epi8(a0, v0)));
            __m256 p1 = _mm256_cvtepi32_ps(madd32(_mm256_sign_epi8(v1, v1), _mm256_sign_epi8(a1, v1)));
            acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(h2f(x0) * ad[b]), acc0);
            acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(h2f(x1) * ad[b + 1]), acc1);
        }
        for (; b < nb; b++) {
            const uint8_t *x0 = w + b * bytes;
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(q + b * QK)), v0 = LOADW(x0);
            __m256 p0 = _mm256_cvtepi32_ps(madd32(_mm256_sign_epi8(v0, v0), _mm256_sign_epi8(a0, v0)));
            acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(h2f(x0) * ad[b]), acc0);
        }
#undef LOADW
        return hsum(_mm256_add_ps(acc0, acc1));
    }
    if (type == T_Q4_1 || type == T_Q5_0 || type == T_Q5_1) { /* unsigned codes, an offset per block */
        const int bytes = type == T_Q4_1 ? 20 : type == T_Q5_0 ? 22 : 24;
        const __m256i high = _mm256_set1_epi8(0x10);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + b * bytes;
            __m256i v = nibbles(blk + bytes - 16);
            if (type != T_Q4_1) v = _mm256_or_si256(v, _mm256_and_si256(bits32(blk + bytes - 20), high));
            __m256 p = _mm256_cvtepi32_ps(madd32(v, _mm256_loadu_si256((const __m256i *)(q + b * QK))));
            float d = h2f(blk);
            __m256 sc = _mm256_set1_ps(d * ad[b]);
            float o = (type == T_Q5_0 ? -16.f * d : h2f(blk + 2)) * (asum[2 * b] + asum[2 * b + 1]);
            if (b & 1) { acc1 = _mm256_fmadd_ps(p, sc, acc1); off1 += o; }
            else { acc0 = _mm256_fmadd_ps(p, sc, acc0); off0 += o; }
        }
        return hsum(_mm256_add_ps(acc0, acc1)) + off0 + off1;
    }
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t sb = 0; sb < cols / QKK; sb++) {
        const int8_t *qa = q + sb * QKK;
        const float *da = ad + sb * 8, *sa = asum + sb * 16;
        float comb[16];
        if (type == T_Q6_K) {
            const uint8_t *blk = w + sb * 210, *ql = blk, *qh = blk + 128;
            const int8_t *sc = (const int8_t *)(blk + 192);
            float d = h2f(blk + 208);
            __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
            __m256 s_lo = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)));
            __m256 s_hi = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc8, 8))));
            /* the -32 of every code: -32 * Σ_k s_k asum_k */
            offv = _mm256_fmadd_ps(s_lo, _mm256_loadu_ps(sa), offv);
            offv = _mm256_fmadd_ps(s_hi, _mm256_loadu_ps(sa + 8), offv);
            _mm256_storeu_ps(comb, s_lo);
            _mm256_storeu_ps(comb + 8, s_hi);
            for (int n = 0; n < 2; n++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)qh);
                __m256i g[4];
                g[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
                g[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
                g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
                g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
                for (int k = 0; k < 4; k++) {
                    int blkno = 4 * n + k, si = 8 * n + 2 * k;
                    __m256 p = _mm256_cvtepi32_ps(madd32(g[k], _mm256_loadu_si256((const __m256i *)(qa + 32 * blkno))));
                    __m256 scv = _mm256_mul_ps(_mm256_set_m128(_mm_broadcast_ss(comb + si + 1), _mm_broadcast_ss(comb + si)),
                                               _mm256_set1_ps(da[blkno]));
                    if (k & 1) acc1 = _mm256_fmadd_ps(p, scv, acc1);
                    else acc0 = _mm256_fmadd_ps(p, scv, acc0);
                }
                ql += 64;
                qh += 32;
            }
            continue;
        }
        int five = type == T_Q5_K;
        const uint8_t *blk = w + sb * (five ? 176 : 144), *scales = blk + 4;
        const uint8_t *qs = blk + (five ? 48 : 16);
        float d = h2f(blk), dmin = h2f(blk + 2);
        /* the 8 six-bit (scale, min) pairs at once, as ggml unpacks them: bytes 0-7 scales, 8-15 mins */
        uint32_t u[4];
        memcpy(u, scales, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
        uint32_t mins_lo = u[1] & 0x3f3f3f3f;
        u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
        u[2] = mins_lo;
        u[0] &= 0x3f3f3f3f;
        __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u)));
        __m256 mnf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2))));
        /* per-32 activation sums: pairs of the per-16 ones */
        __m256 s01 = _mm256_loadu_ps(sa), s23 = _mm256_loadu_ps(sa + 8);
        __m256 pairs = _mm256_permute4x64_pd_ps(_mm256_hadd_ps(s01, s23));
        _mm256_storeu_ps(comb, _mm256_mul_ps(_mm256_mul_ps(scf, _mm256_set1_ps(d)), _mm256_loadu_ps(da)));
        offv = _mm256_fmadd_ps(_mm256_mul_ps(mnf, _mm256_set1_ps(dmin)), pairs, offv);
        __m256i h = five ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4));
            }
            __m256 p0 = _mm256_cvtepi32_ps(madd32(lo, _mm256_loadu_si256((const __m256i *)(qa + 64 * c))));
            __m256 p1 = _mm256_cvtepi32_ps(madd32(hi, _mm256_loadu_si256((const __m256i *)(qa + 64 * c + 32))));
            acc0 = _mm256_fmadd_ps(p0, _mm256_broadcast_ss(comb + 2 * c), acc0);
            acc1 = _mm256_fmadd_ps(p1, _mm256_broadcast_ss(comb + 2 * c + 1), acc1);
        }
    }
    /* Q6_K's offsets enter with -32, the K-quants' mins with -1 */
    return hsum(_mm256_add_ps(acc0, acc1)) - (type == T_Q6_K ? 32.f : 1.f) * hsum(offv);
}
#endif

/* y[T, rows] = x[T, cols] @ W^T, W given as `rows` GGUF rows of `type`. Returns 0, or -1 on a bad type/shape. */
int llmchat_qmatmul(int type, const uint8_t *w, int64_t rows, int64_t cols, const float *x, int64_t T, float *y) {
    int64_t rb = llmchat_row_bytes(type, cols), nb = cols / QK;
    int block = (type == T_Q4_K || type == T_Q5_K || type == T_Q6_K) ? QKK : QK;
    if (rb < 0 || cols % block || rows <= 0 || T <= 0) return -1;
    int8_t *q = aligned_alloc(64, (size_t)((T * cols + 63) / 64 * 64));
    float *ad = malloc(sizeof(float) * T * nb), *asum = malloc(sizeof(float) * T * nb * 2);
    if (!q || !ad || !asum) { free(q); free(ad); free(asum); return -2; }
    int is_signed = type == T_Q8_0;
#pragma omp parallel for schedule(static) if (T * cols >= 4096)
    for (int64_t t = 0; t < T; t++) quantize_act(x + t * cols, cols, q + t * cols, ad + t * nb, asum + t * 2 * nb);
#ifdef __AVX2__
    if (T == 1) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) y[r] = dot_fused(type, w + r * rb, q, ad, asum, cols);
        free(q); free(ad); free(asum);
        return 0;
    }
#endif
    int64_t tiles = (rows + TILE - 1) / TILE;
#pragma omp parallel
    {
        uint8_t *u = aligned_alloc(64, (size_t)((TILE * cols + 63) / 64 * 64));
        float *s = malloc(sizeof(float) * TILE * 2 * nb), *o = malloc(sizeof(float) * TILE * 2 * nb);
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < tiles; tile++) {
            int64_t r0 = tile * TILE, n = rows - r0 < TILE ? rows - r0 : TILE;
            for (int64_t i = 0; i < n; i++) decode_row(type, w + (r0 + i) * rb, cols, u + i * cols, s + i * 2 * nb, o + i * 2 * nb);
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < n; i++)
                    y[t * rows + r0 + i] = dot_decoded(u + i * cols, s + i * 2 * nb, o + i * 2 * nb, is_signed,
                                                       q + t * cols, ad + t * nb, asum + t * 2 * nb, cols);
        }
        free(u); free(s); free(o);
    }
    free(q); free(ad); free(asum);
    return 0;
}

/* Rows `ids` of W dequantized to fp32 (an embedding lookup), exactly as GGUF defines them. */
int llmchat_dequant_rows(int type, const uint8_t *w, int64_t cols, const int64_t *ids, int64_t n, float *out) {
    int64_t rb = llmchat_row_bytes(type, cols), nb = cols / QK;
    if (rb < 0) return -1;
    uint8_t *u = malloc((size_t)cols);
    float *s = malloc(sizeof(float) * 2 * nb), *o = malloc(sizeof(float) * 2 * nb);
    if (!u || !s || !o) { free(u); free(s); free(o); return -2; }
    for (int64_t i = 0; i < n; i++) {
        decode_row(type, w + ids[i] * rb, cols, u, s, o);
        for (int64_t j = 0; j < cols; j++) {
            float v = type == T_Q8_0 ? (float)(int8_t)u[j] : (float)u[j];
            out[i * cols + j] = v * s[j / 16] + o[j / 16];
        }
    }
    free(u); free(s); free(o);
    return 0;
}

/* ---- the small ops of a decode step, which torch runs at 10-60 us each (dispatch, threads) ---- */

/* out = (x * rsqrt(mean(x^2) + eps)) * w, per row of n (transformers' LlamaRMSNorm, fp32). */
void llmchat_rmsnorm(const float *x, const float *w, int64_t T, int64_t n, float eps, float *out) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *yr = out + t * n;
        float ss = 0.f;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < n; j++) ss += xr[j] * xr[j];
        float r = 1.0f / sqrtf(ss / n + eps);
        for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] * r) * w[j];
    }
}

/* out[T, F] = silu(gate) * up, gate_up[T, 2F] holding gate then up in each row. */
void llmchat_swiglu(const float *gu, int64_t T, int64_t F, float *out) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < F; j++) {
            float g = gu[t * 2 * F + j];
            out[t * F + j] = g / (1.0f + expf(-g)) * gu[t * 2 * F + F + j];
        }
}

/* One query row per head against the first L cached positions: softmax(scale q.k) v, grouped heads
   (H / KVH query heads share a KV head). q, out: [H, D]; k, v: [KVH, cap, D]. */
void llmchat_attend1(const float *q, const float *k, const float *v, int64_t H, int64_t KVH, int64_t cap, int64_t L,
                     int64_t D, float scale, float *out) {
    int64_t group = H / KVH;
#pragma omp parallel for schedule(static) if (H * L * D >= 32768)
    for (int64_t h = 0; h < H; h++) {
        const float *qh = q + h * D, *kh = k + (h / group) * cap * D, *vh = v + (h / group) * cap * D;
        float *oh = out + h * D, stack[1024];
        float *p = L <= 1024 ? stack : malloc(sizeof(float) * L);
        float mx = -INFINITY, sum = 0.f;
        for (int64_t j = 0; j < L; j++) {
            float s = 0.f;
#pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; d++) s += qh[d] * kh[j * D + d];
            p[j] = s * scale;
            mx = fmaxf(mx, p[j]);
        }
        for (int64_t j = 0; j < L; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
        for (int64_t d = 0; d < D; d++) oh[d] = 0.f;
        for (int64_t j = 0; j < L; j++) {
            float pj = p[j] / sum;
            for (int64_t d = 0; d < D; d++) oh[d] += pj * vh[j * D + d];
        }
        if (p != stack) free(p);
    }
}

/* The same product with the activations' int8 rounding error multiplied too: x = x8 + r, where x8
   is x as the kernel quantizes it and r the remainder, quantized again (its own scales, ~127x
   finer). Twice the integer work, an error ~100x smaller: for the output head, where a near tie
   between two tokens must not be decided by activation rounding. */
int llmchat_qmatmul_precise(int type, const uint8_t *w, int64_t rows, int64_t cols, const float *x, int64_t T, float *y) {
    int64_t nb = cols / QK;
    int8_t *q = malloc((size_t)(T * cols));
    float *ad = malloc(sizeof(float) * T * nb), *asum = malloc(sizeof(float) * T * nb * 2);
    float *r = malloc(sizeof(float) * T * cols), *y2 = malloc(sizeof(float) * T * rows);
    int rc = -2;
    if (q && ad && asum && r && y2) {
        for (int64_t t = 0; t < T; t++) {
            quantize_act(x + t * cols, cols, q + t * cols, ad + t * nb, asum + t * 2 * nb);
            for (int64_t j = 0; j < cols; j++) r[t * cols + j] = x[t * cols + j] - q[t * cols + j] * ad[t * nb + j / QK];
        }
        rc = llmchat_qmatmul(type, w, rows, cols, x, T, y);
        if (rc == 0) rc = llmchat_qmatmul(type, w, rows, cols, r, T, y2);
        if (rc == 0)
            for (int64_t i = 0; i < T * rows; i++) y[i] += y2[i];
    }
    free(q); free(ad); free(asum); free(r); free(y2);
    return rc;
}
