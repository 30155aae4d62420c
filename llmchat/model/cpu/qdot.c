/* llmchat's matmul over GGUF blocks as the file holds them: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
 *
 * The method is llama.cpp's (ggml-cpu's vec_dot_*_q8_*): the activations are quantized to int8 per
 * block of 32 (one fp32 scale each, and the scaled sum of every 16 codes), and each weight block is
 * multiplied with them in integers (AVX2 `maddubs`: unsigned weight codes x signed activations),
 * its own scale applied once per 16 or 32 products. The weights keep their file grid exactly: a
 * block is decoded, in registers or an L1 scratch row, to codes u and per-16 (scale s, offset o) with
 * w = u * s + o -- that is the GGUF definition of every type here, rewritten, not approximated.
 *
 * The 4-6 bit types are repacked at load (llmchat_repack, type code | RP) into groups of 8 rows in
 * llama.cpp's interleaved layout (block_q4_0x8: 4 codes of each of the 8 rows side by side, the 8
 * rows' scales together): one maddubs of a broadcast activation group serves 8 rows, for one token
 * (decode) and for every token of a prompt alike (rp_micro), with no decoding per call. Where the
 * compiler targets AVX-512 VNNI (-march=native on Zen 4, Ice Lake and later), one vpdpbusd replaces a
 * maddubs and its widening (rp_block_vnni): the same integers (Q8_0's one pass aside), 1.05-1.25x faster. Q8_0 is repacked too,
 * its codes + 128, unsigned, as vpdpbusd takes them; without VNNI (maddubs would overflow int16 on them) its
 * groups take the sign trick for one pass (rp_block_q8s_v) and int16 activations for two (rp_block16_v). Rows as
 * the file holds them (a matrix whose rows are not a multiple of 8; LLMCHAT_REPACK=0) run one row
 * at a time for one token (dot_fused_n, each block decoded in registers), and 8 rows decoded into
 * the same interleaved L1 tile for a prompt (decode_tile + micro8). F16 / BF16 rows take fp32
 * activations (dot_half). Rows are split over OpenMP threads (torch's own libgomp, which is
 * already loaded when this library is: one pool). llmchat_qmatmul_precise adds the activations'
 * rounding remainder as a second int8 pass in the same sweep (float32's product to rounding): the remainder is
 * quantized on d / 254, so that the two passes are one 16-bit activation, and on repacked groups their sums are
 * joined in integers before the one float step (rp_block2_v).
 *
 * Built on first use by native.py with the machine's C compiler (-O3 -march=native -fopenmp); a
 * machine without AVX2 gets the portable loops at the end, slower but the same numbers.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
/* AVX-512 VNNI (Zen 4, Ice Lake and later; -march=native says): vpdpbusd in the repacked groups (rp_block_vnni).
   -DLLMCHAT_NO_VNNI builds the AVX2 kernel on such a CPU (tests compare the two). */
#if defined(__AVX2__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && !defined(LLMCHAT_NO_VNNI)
#define RP_VNNI 1
#else
#define RP_VNNI 0
#endif

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };
enum { T_F16 = 1, T_BF16 = 30 }; /* 16-bit float rows: fp32 activations, no quantization (dot_half) */
#define QK 32
#define QKK 256

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
    case T_F16: case T_BF16: return cols * 2;
    }
    return -1;
}

/* The 8 six-bit (scale, min) pairs of a Q4_K / Q5_K super-block (12 bytes), as ggml unpacks them. */
static inline void kscales(const uint8_t *scales, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[4];
    memcpy(u, scales, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
    uint32_t mins_lo = u[1] & 0x3f3f3f3f;
    u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
    u[2] = mins_lo;
    u[0] &= 0x3f3f3f3f;
    memcpy(sc, u, 8);
    memcpy(mn, u + 2, 8);
}

/* Bytes of one block of a 32-value type. */
static inline int block_bytes(int type) {
    return type == T_Q4_0 ? 18 : type == T_Q4_1 ? 20 : type == T_Q5_0 ? 22 : type == T_Q5_1 ? 24 : 34;
}

/* The scale s and offset o of every 16 weights of a row (w = u * s + o), for both decoders below. */
static void row_scales(int type, const uint8_t *w, int64_t cols, float *s, float *o) {
    if (type <= T_Q8_0) {
        const int bytes = block_bytes(type);
        for (int64_t b = 0; b < cols / QK; b++) {
            const uint8_t *blk = w + b * bytes;
            float d = h2f(blk);
            float off = type == T_Q4_0 ? -8.f * d : type == T_Q5_0 ? -16.f * d : type == T_Q8_0 ? 0.f : h2f(blk + 2);
            s[2 * b] = s[2 * b + 1] = d;
            o[2 * b] = o[2 * b + 1] = off;
        }
        return;
    }
    for (int64_t sb = 0; sb < cols / QKK; sb++) {
        float *sk = s + sb * 16, *ok = o + sb * 16;
        if (type == T_Q6_K) {
            const uint8_t *blk = w + sb * 210;
            const int8_t *sc = (const int8_t *)(blk + 192);
            float d = h2f(blk + 208);
            for (int k = 0; k < 16; k++) { /* value 16k's scale: ggml's index 8n + 2g + h is k itself */
                sk[k] = d * sc[k];
                ok[k] = -32.f * sk[k];
            }
            continue;
        }
        const uint8_t *blk = w + sb * (type == T_Q5_K ? 176 : 144);
        float d = h2f(blk), dmin = h2f(blk + 2);
        uint8_t sc[8], mn[8];
        kscales(blk + 4, sc, mn);
        for (int j = 0; j < 8; j++) {
            sk[2 * j] = sk[2 * j + 1] = d * sc[j];
            ok[2 * j] = ok[2 * j + 1] = -dmin * mn[j];
        }
    }
}

/* One row of `cols` weights -> u8 codes [cols] (Q8_0: signed int8), scale and offset per 16. The
   plain C decoding: embedding rows, and the portable build's prefill. */
static void decode_row(int type, const uint8_t *w, int64_t cols, uint8_t *u, float *s, float *o) {
    row_scales(type, w, cols, s, o);
    if (type <= T_Q8_0) {
        const int bytes = block_bytes(type);
        for (int64_t b = 0; b < cols / QK; b++) {
            const uint8_t *blk = w + b * bytes, *qs = blk + bytes - 16;
            uint8_t *ub = u + b * QK;
            if (type == T_Q8_0) {
                memcpy(ub, blk + 2, QK);
                continue;
            }
            uint32_t qh = 0; /* Q5_0 / Q5_1: the fifth bit of value j is bit j of qh */
            if (type == T_Q5_0 || type == T_Q5_1) memcpy(&qh, blk + bytes - 20, 4);
            for (int j = 0; j < 16; j++) {
                ub[j] = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
                ub[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            }
        }
        return;
    }
    for (int64_t sb = 0; sb < cols / QKK; sb++) {
        uint8_t *ub = u + sb * QKK;
        if (type == T_Q6_K) {
            const uint8_t *ql = w + sb * 210, *qh = ql + 128;
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
            continue;
        }
        int five = type == T_Q5_K;
        const uint8_t *blk = w + sb * (five ? 176 : 144), *qh = blk + 16, *qs = blk + (five ? 48 : 16);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                uint8_t lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
                if (five) { lo |= ((qh[l] >> (2 * c)) & 1) << 4; hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4; }
                ub[64 * c + l] = lo;
                ub[64 * c + 32 + l] = hi;
            }
    }
}

/* One block of 32 activations -> int8 codes q = round(x * id) (AVX2: cvtps_epi32 under the default rounding
   mode, half to even, as lrintf; saturated to int8 as packs does), its scale d, and asum = d * (the sum of
   each 16 codes). */
static void quantize_block(const float *xb, float d, float id, int8_t *q, float *ad, float *asum) {
#ifdef __AVX2__
    __m256 idv = _mm256_set1_ps(id);
    __m256i c[4];
    for (int i = 0; i < 4; i++) c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * i), idv));
    /* int32 x 32 -> int8 x 32 in order: packs interleave 128-bit lanes, the permute undoes it */
    __m256i p16a = _mm256_packs_epi32(c[0], c[1]), p16b = _mm256_packs_epi32(c[2], c[3]);
    __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p8);
    __m256i s01 = _mm256_add_epi32(c[0], c[1]), s23 = _mm256_add_epi32(c[2], c[3]);
    __m128i h01 = _mm_add_epi32(_mm256_castsi256_si128(s01), _mm256_extracti128_si256(s01, 1));
    __m128i h23 = _mm_add_epi32(_mm256_castsi256_si128(s23), _mm256_extracti128_si256(s23, 1));
    __m128i h = _mm_hadd_epi32(h01, h23); /* [a01 a23 b01 b23] */
    h = _mm_hadd_epi32(h, h);             /* [s0 s1 s0 s1] */
    *ad = d;
    asum[0] = d * _mm_cvtsi128_si32(h);
    asum[1] = d * _mm_extract_epi32(h, 1);
#else
    int s0 = 0, s1 = 0;
    for (int j = 0; j < QK; j++) {
        long v = lrintf(xb[j] * id);
        v = v > 127 ? 127 : v < -128 ? -128 : v;
        q[j] = (int8_t)v;
        if (j < 16) s0 += (int)v; else s1 += (int)v;
    }
    *ad = d;
    asum[0] = d * s0;
    asum[1] = d * s1;
#endif
}

/* Activations: int8 codes per 32 (scale ad = amax / 127), and asum = ad * (sum of each 16 codes), `ap` floats
   per row (the per-16 count rounded up to 8, zero-padded). The AVX2 path vectorizes both the max and the
   rounding: the scalar loop called libm's lrintf per value, ~7 ns. */
static void quantize_act(const float *x, int64_t cols, int8_t *q, float *ad, float *asum, int64_t ap) {
    for (int64_t b = 0; b < cols / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.f;
#ifdef __AVX2__
        const __m256 sign = _mm256_set1_ps(-0.f);
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * i)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        amax = _mm_cvtss_f32(m4);
#else
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
#endif
        float d = amax / 127.f, id = d > 0 ? 1.f / d : 0.f;
        quantize_block(xb, d, id, q + b * QK, ad + b, asum + 2 * b);
    }
    for (int64_t k = 2 * (cols / QK); k < ap; k++) asum[k] = 0.f;
}

/* The second pass of llmchat_qmatmul_precise: the remainder r = x - d q of each block (|r| <= d / 2), quantized
   on the fixed finer scale d2 = d / 254 (codes within +-127), so that x = d2 (254 q + q2) up to d2 / 2: the two
   passes are one 16-bit activation, which the repacked kernels multiply as such (rp_block2: the two int16 sums
   joined in integers, one float step). */
static void quantize_rem(const float *x, int64_t cols, const int8_t *q, const float *ad, int8_t *q2, float *ad2,
                         float *asum2, int64_t ap) {
    for (int64_t b = 0; b < cols / QK; b++) {
        float rr[QK], d = ad[b];
#ifdef __AVX2__
        __m256 dv = _mm256_set1_ps(d);
        for (int j = 0; j < QK; j += 8) {
            __m256 qv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + b * QK + j))));
            _mm256_storeu_ps(rr + j, _mm256_sub_ps(_mm256_loadu_ps(x + b * QK + j), _mm256_mul_ps(qv, dv)));
        }
#else
        for (int j = 0; j < QK; j++) rr[j] = x[b * QK + j] - q[b * QK + j] * d;
#endif
        quantize_block(rr, d / 254.f, d > 254.f / FLT_MAX ? 254.f / d : 0.f, q2 + b * QK, ad2 + b, asum2 + 2 * b);
    }
    for (int64_t k = 2 * (cols / QK); k < ap; k++) asum2[k] = 0.f;
}

/* A growing scratch buffer per thread (the caller's, or each OpenMP worker's): no malloc per call. */
static void *scratch(void **buf, size_t *cap, size_t need) {
    if (need > *cap) {
        free(*buf);
        *cap = (need + 4095) / 4096 * 4096;
        *buf = aligned_alloc(64, *cap);
        if (!*buf) *cap = 0;
    }
    return *buf;
}

#ifdef __AVX2__
static inline float hsum(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

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

/* Q5_0 / Q5_1 codes of one block: 4 low bits | the fifth from qh. */
static inline __m256i q5_codes(const uint8_t *blk, int bytes) {
    return _mm256_or_si256(nibbles(blk + bytes - 16), _mm256_and_si256(bits32(blk + bytes - 20), _mm256_set1_epi8(0x10)));
}

/* Q6_K: the 4 x 32 codes (0..63) of one 128-value half from its 64 ql and 32 qh bytes. */
static inline void q6_codes(const uint8_t *ql, const uint8_t *qh, __m256i g[4]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    g[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
    g[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
    g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
    g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
}

/* Q4_K / Q5_K: the 2 x 32 codes of chunk c (0..3) of a super-block (qs its nibbles, h its 32 qh bytes). */
static inline void k_codes(const uint8_t *qs, __m256i h, int five, int c, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (five) {
        *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4));
        *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4));
    }
}

/* hadd_ps(a, b) gives [a01 a23 b01 b23 | a45 a67 b45 b67]; this puts the pairs back in order. */
static inline __m256 _mm256_permute4x64_pd_ps(__m256 v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}

static inline __m256i madd32(__m256i w, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1));
}

/* ---- T = 1 (decode): each block decoded in registers and multiplied at once, no scratch row ----
   `na` activation sets (1, or 2 for the precise two-pass product) at q + n cols, ad + n nb, asum + n ap
   are summed into the same accumulators, so the weights are read and decoded once. */
static inline __attribute__((always_inline)) float dot_fused_n(int type, const uint8_t *w, const int8_t *q, const float *ad,
                                                                const float *asum, int64_t cols, int64_t ap, const int na) {
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
            __m256i v0 = LOADW(x0), v1 = LOADW(x1);
            __m256i u0 = _mm256_sign_epi8(v0, v0), u1 = _mm256_sign_epi8(v1, v1);
            float d0 = h2f(x0), d1 = h2f(x1);
            for (int n = 0; n < na; n++) {
                const int8_t *qn = q + n * cols + b * QK;
                __m256i a0 = _mm256_loadu_si256((const __m256i *)qn), a1 = _mm256_loadu_si256((const __m256i *)(qn + QK));
                __m256 p0 = _mm256_cvtepi32_ps(madd32(u0, _mm256_sign_epi8(a0, v0)));
                __m256 p1 = _mm256_cvtepi32_ps(madd32(u1, _mm256_sign_epi8(a1, v1)));
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d0 * ad[n * nb + b]), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d1 * ad[n * nb + b + 1]), acc1);
            }
        }
        for (; b < nb; b++) {
            const uint8_t *x0 = w + b * bytes;
            __m256i v0 = LOADW(x0), u0 = _mm256_sign_epi8(v0, v0);
            for (int n = 0; n < na; n++) {
                __m256i a0 = _mm256_loadu_si256((const __m256i *)(q + n * cols + b * QK));
                __m256 p0 = _mm256_cvtepi32_ps(madd32(u0, _mm256_sign_epi8(a0, v0)));
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(h2f(x0) * ad[n * nb + b]), acc0);
            }
        }
#undef LOADW
        return hsum(_mm256_add_ps(acc0, acc1));
    }
    if (type == T_Q4_1 || type == T_Q5_0 || type == T_Q5_1) { /* unsigned codes, an offset per block */
        const int bytes = type == T_Q4_1 ? 20 : type == T_Q5_0 ? 22 : 24;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + b * bytes;
            __m256i v = type == T_Q4_1 ? nibbles(blk + 4) : q5_codes(blk, bytes);
            float d = h2f(blk), m = type == T_Q5_0 ? -16.f * d : h2f(blk + 2);
            for (int n = 0; n < na; n++) {
                __m256 p = _mm256_cvtepi32_ps(madd32(v, _mm256_loadu_si256((const __m256i *)(q + n * cols + b * QK))));
                __m256 sc = _mm256_set1_ps(d * ad[n * nb + b]);
                float o = m * (asum[n * ap + 2 * b] + asum[n * ap + 2 * b + 1]);
                if (b & 1) { acc1 = _mm256_fmadd_ps(p, sc, acc1); off1 += o; }
                else { acc0 = _mm256_fmadd_ps(p, sc, acc0); off0 += o; }
            }
        }
        return hsum(_mm256_add_ps(acc0, acc1)) + off0 + off1;
    }
    for (int64_t sb = 0; sb < cols / QKK; sb++) {
        float comb[16];
        if (type == T_Q6_K) {
            const uint8_t *blk = w + sb * 210;
            const int8_t *sc = (const int8_t *)(blk + 192);
            float d = h2f(blk + 208);
            __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
            __m256 s_lo = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)));
            __m256 s_hi = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc8, 8))));
            _mm256_storeu_ps(comb, s_lo);
            _mm256_storeu_ps(comb + 8, s_hi);
            for (int n = 0; n < na; n++) { /* the -32 of every code: -32 * Σ_k s_k asum_k */
                const float *sa = asum + n * ap + sb * 16;
                offv = _mm256_fmadd_ps(s_lo, _mm256_loadu_ps(sa), offv);
                offv = _mm256_fmadd_ps(s_hi, _mm256_loadu_ps(sa + 8), offv);
            }
            for (int half = 0; half < 2; half++) {
                __m256i g[4];
                q6_codes(blk + 64 * half, blk + 128 + 32 * half, g);
                for (int k = 0; k < 4; k++) {
                    int blkno = 4 * half + k, si = 2 * blkno;
                    __m256 s2 = _mm256_set_m128(_mm_broadcast_ss(comb + si + 1), _mm_broadcast_ss(comb + si));
                    for (int n = 0; n < na; n++) {
                        const int8_t *qa = q + n * cols + sb * QKK + 32 * blkno;
                        __m256 p = _mm256_cvtepi32_ps(madd32(g[k], _mm256_loadu_si256((const __m256i *)qa)));
                        __m256 scv = _mm256_mul_ps(s2, _mm256_set1_ps(ad[n * nb + sb * 8 + blkno]));
                        if (k & 1) acc1 = _mm256_fmadd_ps(p, scv, acc1);
                        else acc0 = _mm256_fmadd_ps(p, scv, acc0);
                    }
                }
            }
            continue;
        }
        int five = type == T_Q5_K;
        const uint8_t *blk = w + sb * (five ? 176 : 144), *qs = blk + (five ? 48 : 16);
        float d = h2f(blk), dmin = h2f(blk + 2);
        uint8_t sc[8], mn[8];
        kscales(blk + 4, sc, mn);
        __m256 scf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc))), _mm256_set1_ps(d));
        __m256 mnf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mn))), _mm256_set1_ps(dmin));
        __m256i h = five ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        __m256i lo[4], hi[4];
        for (int c = 0; c < 4; c++) k_codes(qs, h, five, c, &lo[c], &hi[c]);
        for (int n = 0; n < na; n++) {
            const int8_t *qa = q + n * cols + sb * QKK;
            const float *sa = asum + n * ap + sb * 16;
            /* per-32 activation sums: pairs of the per-16 ones */
            __m256 pairs = _mm256_permute4x64_pd_ps(_mm256_hadd_ps(_mm256_loadu_ps(sa), _mm256_loadu_ps(sa + 8)));
            _mm256_storeu_ps(comb, _mm256_mul_ps(scf, _mm256_loadu_ps(ad + n * nb + sb * 8)));
            offv = _mm256_fmadd_ps(mnf, pairs, offv);
            for (int c = 0; c < 4; c++) {
                __m256 p0 = _mm256_cvtepi32_ps(madd32(lo[c], _mm256_loadu_si256((const __m256i *)(qa + 64 * c))));
                __m256 p1 = _mm256_cvtepi32_ps(madd32(hi[c], _mm256_loadu_si256((const __m256i *)(qa + 64 * c + 32))));
                acc0 = _mm256_fmadd_ps(p0, _mm256_broadcast_ss(comb + 2 * c), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_broadcast_ss(comb + 2 * c + 1), acc1);
            }
        }
    }
    /* Q6_K's offsets enter with -32, the K-quants' mins with -1 */
    return hsum(_mm256_add_ps(acc0, acc1)) - (type == T_Q6_K ? 32.f : 1.f) * hsum(offv);
}

/* One instance per (type, na): the type's branches fold away (a runtime type left gcc computing both
   sides of a Q4_1 / Q5 select in every block, 15% slower). */
#define FUSED(na)                                                                                                          \
    static float dot_fused##na(int type, const uint8_t *w, const int8_t *q, const float *ad, const float *asum,           \
                               int64_t cols, int64_t ap) {                                                                 \
        switch (type) {                                                                                                    \
        case T_Q4_0: return dot_fused_n(T_Q4_0, w, q, ad, asum, cols, ap, na);                                             \
        case T_Q4_1: return dot_fused_n(T_Q4_1, w, q, ad, asum, cols, ap, na);                                             \
        case T_Q5_0: return dot_fused_n(T_Q5_0, w, q, ad, asum, cols, ap, na);                                             \
        case T_Q5_1: return dot_fused_n(T_Q5_1, w, q, ad, asum, cols, ap, na);                                             \
        case T_Q8_0: return dot_fused_n(T_Q8_0, w, q, ad, asum, cols, ap, na);                                             \
        case T_Q4_K: return dot_fused_n(T_Q4_K, w, q, ad, asum, cols, ap, na);                                             \
        case T_Q5_K: return dot_fused_n(T_Q5_K, w, q, ad, asum, cols, ap, na);                                             \
        default: return dot_fused_n(T_Q6_K, w, q, ad, asum, cols, ap, na);                                                 \
        }                                                                                                                  \
    }
FUSED(1)
FUSED(2)

/* ---- T > 1 (prefill): 8 rows decoded once into an interleaved tile, then every token against it ----
   llama.cpp's repacked-gemm layout (ggml-cpu repack.cpp, block_q4_0x8): the tile holds, per block of
   32 columns, 8 vectors V_k = [4 codes k of row 0 | ... | row 7]. One maddubs of V_k with a token's
   4 codes k (broadcast) gives every row's partial sum in its own lanes; 2-4 of them are added in
   int16 (no overflow for codes < 64), one madd widens, and one FMA applies 8 rows' scales. That is
   ~2 multiply-port ops per (row, token, block) instead of 4 for a row-by-row dot. */
#define TR 8

/* One row decoded: codes u (Q8_0: |w|, sg the signed codes for the sign trick), scale s and offset o per 16. */
static void decode_codes(int type, const uint8_t *w, int64_t cols, uint8_t *u, int8_t *sg, float *s, float *o) {
    row_scales(type, w, cols, s, o);
    if (type <= T_Q8_0) {
        const int bytes = block_bytes(type);
        for (int64_t b = 0; b < cols / QK; b++) {
            const uint8_t *blk = w + b * bytes;
            __m256i v;
            switch (type) {
            case T_Q4_0: v = nibbles(blk + 2); break;
            case T_Q4_1: v = nibbles(blk + 4); break;
            case T_Q5_0: case T_Q5_1: v = q5_codes(blk, bytes); break;
            default:
                v = _mm256_loadu_si256((const __m256i *)(blk + 2));
                _mm256_store_si256((__m256i *)(sg + b * QK), v);
                v = _mm256_sign_epi8(v, v);
            }
            _mm256_store_si256((__m256i *)(u + b * QK), v);
        }
        return;
    }
    for (int64_t sb = 0; sb < cols / QKK; sb++) {
        uint8_t *ub = u + sb * QKK;
        if (type == T_Q6_K) {
            const uint8_t *blk = w + sb * 210;
            for (int half = 0; half < 2; half++) {
                __m256i g[4];
                q6_codes(blk + 64 * half, blk + 128 + 32 * half, g);
                for (int k = 0; k < 4; k++) _mm256_store_si256((__m256i *)(ub + 128 * half + 32 * k), g[k]);
            }
            continue;
        }
        int five = type == T_Q5_K;
        const uint8_t *blk = w + sb * (five ? 176 : 144), *qs = blk + (five ? 48 : 16);
        __m256i h = five ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i lo, hi;
            k_codes(qs, h, five, c, &lo, &hi);
            _mm256_store_si256((__m256i *)(ub + 64 * c), lo);
            _mm256_store_si256((__m256i *)(ub + 64 * c + 32), hi);
        }
    }
}

/* 8 rows' block vectors (32 codes each) -> the 8 interleaved V_k: an 8 x 8 transpose of 4-byte groups. */
static inline void transpose8(const uint8_t *rows, int64_t stride, uint8_t *out) {
    __m256i r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_load_si256((const __m256i *)(rows + i * stride));
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* t0 = [r0.0 r1.0 r0.1 r1.1 | r0.4 r1.4 r0.5 r1.5], t1 = [.2 .3 | .6 .7], likewise t2/t3 (rows 2, 3) ... */
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);     /* k = 0 | 4, rows i..i+3 */
        r[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]); /* k = 1 | 5 */
        r[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]); /* k = 2 | 6 */
        r[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]); /* k = 3 | 7 */
    }
    for (int k = 0; k < 4; k++) {
        _mm256_store_si256((__m256i *)(out + 32 * k), _mm256_permute2x128_si256(r[k], r[4 + k], 0x20));
        _mm256_store_si256((__m256i *)(out + 32 * (k + 4)), _mm256_permute2x128_si256(r[k], r[4 + k], 0x31));
    }
}

/* y_t[0..7] = the 8 rows of the tile . activation row t, for RN (1 or 2) rows of q / ad / asum (strides
   cols, nb, ap). G maddubs are summed in int16 before widening: 4 for codes < 32, 2 for Q6_K's < 64,
   1 for Q8_0 (sgn: |w| codes with the signs moved onto the activations). */
static inline __attribute__((always_inline)) void micro8(const int RN, const int G, const int sgn, int64_t nb, int64_t cols,
                                                          int64_t ap, const uint8_t *codes, const int8_t *sgc, const float *sc,
                                                          const float *of, const int8_t *q, const float *ad, const float *asum,
                                                          float *y) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 A[4], B[4];
    for (int t = 0; t < RN; t++) A[t] = B[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *cb = codes + b * 256;
        const int8_t *sb = sgc + b * 256;
        __m256 slo = _mm256_load_ps(sc + b * 16), shi = _mm256_load_ps(sc + b * 16 + 8);
        for (int t = 0; t < RN; t++) {
            const int8_t *qa = q + t * cols + b * QK;
            __m256i S[2];
            for (int h = 0; h < 2; h++) {
                __m256i m[4];
                for (int kk = 0; kk < 4; kk++) {
                    int k = 4 * h + kk;
                    int32_t a4;
                    memcpy(&a4, qa + 4 * k, 4);
                    __m256i a = _mm256_set1_epi32(a4);
                    if (sgn) a = _mm256_sign_epi8(a, _mm256_load_si256((const __m256i *)(sb + 32 * k)));
                    m[kk] = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(cb + 32 * k)), a);
                }
                if (G == 4) S[h] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(m[0], m[1]), _mm256_add_epi16(m[2], m[3])), ones);
                else if (G == 2)
                    S[h] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(m[0], m[1]), ones),
                                            _mm256_madd_epi16(_mm256_add_epi16(m[2], m[3]), ones));
                else
                    S[h] = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(m[0], ones), _mm256_madd_epi16(m[1], ones)),
                                            _mm256_add_epi32(_mm256_madd_epi16(m[2], ones), _mm256_madd_epi16(m[3], ones)));
            }
            __m256 d = _mm256_broadcast_ss(ad + t * nb + b);
            A[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[0]), _mm256_mul_ps(slo, d), A[t]);
            B[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[1]), _mm256_mul_ps(shi, d), B[t]);
            if (!sgn) {
                A[t] = _mm256_fmadd_ps(_mm256_load_ps(of + b * 16), _mm256_broadcast_ss(asum + t * ap + 2 * b), A[t]);
                B[t] = _mm256_fmadd_ps(_mm256_load_ps(of + b * 16 + 8), _mm256_broadcast_ss(asum + t * ap + 2 * b + 1), B[t]);
            }
        }
    }
    for (int t = 0; t < RN; t++) _mm256_storeu_ps(y + t * TR, _mm256_add_ps(A[t], B[t]));
}

#define MICRO(RN, G, SGN)                                                                                                      \
    static void micro_##RN##_##G(int64_t nb, int64_t cols, int64_t ap, const uint8_t *codes, const int8_t *sgc, const float *sc, \
                                 const float *of, const int8_t *q, const float *ad, const float *asum, float *y) {          \
        micro8(RN, G, SGN, nb, cols, ap, codes, sgc, sc, of, q, ad, asum, y);                                             \
    }
MICRO(1, 4, 0)
MICRO(2, 4, 0)
MICRO(3, 4, 0)
MICRO(4, 4, 0)
MICRO(1, 2, 0)
MICRO(2, 2, 0)
MICRO(3, 2, 0)
MICRO(4, 2, 0)
MICRO(1, 1, 1)
MICRO(2, 1, 1)
MICRO(3, 1, 1)
MICRO(4, 1, 1)
#ifndef RN_MAX
#define RN_MAX 4
#endif
typedef void (*micro_fn)(int64_t, int64_t, int64_t, const uint8_t *, const int8_t *, const float *, const float *,
                         const int8_t *, const float *, const float *, float *);
static const micro_fn MICROS[3][5] = {{0, micro_1_4, micro_2_4, micro_3_4, micro_4_4},
                                      {0, micro_1_2, micro_2_2, micro_3_2, micro_4_2},
                                      {0, micro_1_1, micro_2_1, micro_3_1, micro_4_1}};

/* The tile for rows r0 .. r0 + n - 1 (n <= 8; missing rows are zeros, computed and dropped). */
static void decode_tile(int type, const uint8_t *w, int64_t rb, int64_t r0, int64_t n, int64_t cols, uint8_t *rowbuf,
                        int8_t *sgbuf, float *s16, float *o16, uint8_t *codes, int8_t *sgc, float *sc, float *of) {
    int64_t nb = cols / QK;
    for (int64_t i = 0; i < TR; i++) {
        if (i < n) decode_codes(type, w + (r0 + i) * rb, cols, rowbuf + i * cols, sgbuf + i * cols, s16 + i * 2 * nb, o16 + i * 2 * nb);
        else {
            memset(rowbuf + i * cols, 0, cols);
            memset(sgbuf + i * cols, 0, cols);
            memset(s16 + i * 2 * nb, 0, sizeof(float) * 2 * nb);
            memset(o16 + i * 2 * nb, 0, sizeof(float) * 2 * nb);
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        transpose8(rowbuf + b * QK, cols, codes + b * 256);
        if (type == T_Q8_0) transpose8((const uint8_t *)sgbuf + b * QK, cols, (uint8_t *)sgc + b * 256);
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < TR; i++) {
                sc[b * 16 + 8 * h + i] = s16[i * 2 * nb + 2 * b + h];
                of[b * 16 + 8 * h + i] = o16[i * 2 * nb + 2 * b + h];
            }
    }
}
#endif

#ifndef __AVX2__
/* Σ_b ad_b (s_lo dot_lo + s_hi dot_hi) + Σ_k o_k asum_k over a decoded row (the portable build). */
static float dot_decoded(const uint8_t *u, const float *s, const float *o, int is_signed,
                         const int8_t *q, const float *ad, const float *asum, int64_t cols) {
    int64_t nb = cols / QK;
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
}
#endif

/* ---- rows repacked at load, 8 at a time (llmchat_repack; a type code with RP set says so) ----
   The interleaved tile above, kept in memory instead of decoded per call: llama.cpp's repacked layout
   (block_q4_0x8 and kin) for every 4-6 bit type here. Per block of 32 columns, the 8 rows' codes are
   stored as the tile's 8 vectors V_k ([4 codes k of row 0 | ... | row 7]), two to a 32-byte vector as
   low / high nibbles (V_2j, V_2j+1), the fifth bit (Q5) or the top two (Q6_K) in vectors of their own,
   and the 8 rows' scales side by side. So one token (decode) is 8 maddubs per 8 rows and 32 columns,
   summed in int16, one madd, one FMA -- half the multiply-port work of a row-by-row dot, no per-call
   decoding for a prompt. Group layouts (8 rows; bytes = 8 x the file's, Q4_K / Q5_K 4 more a row):
     Q4_0 / Q4_1 / Q5_0 / Q5_1, per block: d[8] fp16, (m[8] fp16,) qs[128], (qh[32])
     Q4_K / Q5_K, per super-block: d[8], dmin[8] fp16, sc[8 blocks][8 rows], mn[8][8] u8, then per block
       qs[128] (qh[32])
     Q6_K, per super-block: d[8] fp16, sc[16][8] i8, then per block qs[128] qh[64]
     Q8_0, per block: d[8] fp16, then V_0 .. V_7 as whole bytes, code + 128 (w = d (u - 128)) */
#define RP 0x100
#ifndef RP_RN
#define RP_RN 4 /* activation rows a group's codes are unpacked for at a time */
#endif
/* Tokens of two fused passes a group's codes are unpacked for at a time (at most 4): 3, 1.07-1.12x faster than 2
   on ~1B matmuls at 200 tokens (bench/matmul.py), but 2 where a prompt's groups are unpacked once (Q6_K on AVX2,
   RP_DECODES below: 3 was 0.96-0.99x there) and 4 slower for most. -DRP_RN2=N fixes it (A/B). */
#ifdef RP_RN2
#if RP_RN2 < 1 || RP_RN2 > 4
#error "RP_RN2 must be 1 to 4 (the micro-kernels hold 4 tokens' accumulators)"
#endif
#define RP_FUSED_TOKENS(decode) RP_RN2
#else
#define RP_FUSED_TOKENS(decode) ((decode) ? 2 : 3)
#endif

static inline int q5_type(int type) { return type == T_Q5_0 || type == T_Q5_1 || type == T_Q5_K; }

static inline int rp_type(int type) {
    return type == T_Q4_0 || type == T_Q4_1 || type == T_Q5_0 || type == T_Q5_1 || type == T_Q4_K || type == T_Q5_K ||
           type == T_Q6_K || type == T_Q8_0;
}

/* Bytes a repacked row takes (8 rows = one group), or -1: the type is not repacked, or no AVX2 here. */
int64_t llmchat_rp_row_bytes(int type, int64_t cols) {
#ifndef __AVX2__
    (void)type; (void)cols;
    return -1;
#else
    if (!rp_type(type) || cols % (type >= T_Q4_K ? QKK : QK)) return -1;
    if (type == T_Q4_K) return cols / QKK * 148;
    if (type == T_Q5_K) return cols / QKK * 180;
    return llmchat_row_bytes(type, cols);
#endif
}

static inline int rp_k_bytes(int type) { return type == T_Q4_K ? 1184 : type == T_Q5_K ? 1440 : 1680; }

/* The codes of block columns c0 .. c0 + 31 of 8 decoded rows (u, stride cols) in the interleaved order. */
static void rp_put_codes(const uint8_t *u, int64_t cols, int64_t c0, int extra, uint8_t *qs, uint8_t *qh) {
    for (int r = 0; r < 8; r++)
        for (int i = 0; i < 4; i++) {
            const uint8_t *c = u + r * cols + c0 + i; /* c[4k] is code 4k + i of row r */
            for (int j = 0; j < 4; j++) qs[32 * j + 4 * r + i] = (c[8 * j] & 0xF) | (uint8_t)((c[8 * j + 4] & 0xF) << 4);
            if (extra == 5) {
                uint8_t h = 0;
                for (int k = 0; k < 8; k++) h |= ((c[4 * k] >> 4) & 1) << k;
                qh[4 * r + i] = h;
            } else if (extra == 6)
                for (int hh = 0; hh < 2; hh++) {
                    uint8_t h = 0;
                    for (int kk = 0; kk < 4; kk++) h |= ((c[4 * (4 * hh + kk)] >> 4) & 3) << (2 * kk);
                    qh[32 * hh + 4 * r + i] = h;
                }
        }
}

/* `rows` (a multiple of 8) GGUF rows -> the repacked groups. Returns 0, -1 (type or shape), -2 (memory). */
int llmchat_repack(int type, const uint8_t *w, int64_t rows, int64_t cols, uint8_t *out) {
    int64_t rb = llmchat_row_bytes(type, cols), prb = llmchat_rp_row_bytes(type, cols), nb = cols / QK;
    if (rb < 0 || prb < 0 || rows % 8) return -1;
    int five = q5_type(type), extra = five ? 5 : type == T_Q6_K ? 6 : 0, failed = 0;
#pragma omp parallel
    {
    uint8_t *u = malloc((size_t)(8 * cols));
    float *s = malloc(sizeof(float) * 2 * nb), *o = malloc(sizeof(float) * 2 * nb);
    if (!u || !s || !o) {
#pragma omp atomic write
        failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t g = 0; g < rows / 8; g++) {
        if (!u || !s || !o) continue;
        const uint8_t *src = w + 8 * g * rb;
        uint8_t *p = out + 8 * g * prb;
        if (type == T_Q8_0) { /* per block: d[8], then the codes + 128 (unsigned, as vpdpbusd takes them) as V_k */
            for (int64_t b = 0; b < nb; b++, p += 272)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *blk = src + r * rb + b * 34;
                    memcpy(p + 2 * r, blk, 2);
                    for (int k = 0; k < 8; k++)
                        for (int i = 0; i < 4; i++) p[16 + 32 * k + 4 * r + i] = blk[2 + 4 * k + i] ^ 0x80;
                }
            continue;
        }
        for (int r = 0; r < 8; r++) decode_row(type, src + r * rb, cols, u + r * cols, s, o);
        if (type < T_Q4_K) {
            int bytes = block_bytes(type), m = type == T_Q4_1 || type == T_Q5_1;
            for (int64_t b = 0; b < nb; b++) {
                for (int r = 0; r < 8; r++) {
                    memcpy(p + 2 * r, src + r * rb + b * bytes, 2);
                    if (m) memcpy(p + 16 + 2 * r, src + r * rb + b * bytes + 2, 2);
                }
                p += m ? 32 : 16;
                rp_put_codes(u, cols, b * QK, extra, p, p + 128);
                p += five ? 160 : 128;
            }
            continue;
        }
        int sbb = type == T_Q4_K ? 144 : type == T_Q5_K ? 176 : 210;
        for (int64_t sb = 0; sb < cols / QKK; sb++) {
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = src + r * rb + sb * sbb;
                if (type == T_Q6_K) {
                    memcpy(p + 2 * r, blk + 208, 2);
                    for (int k = 0; k < 16; k++) p[16 + 8 * k + r] = blk[192 + k];
                } else {
                    uint8_t sc[8], mn[8];
                    memcpy(p + 2 * r, blk, 2);
                    memcpy(p + 16 + 2 * r, blk + 2, 2);
                    kscales(blk + 4, sc, mn);
                    for (int j = 0; j < 8; j++) { p[32 + 8 * j + r] = sc[j]; p[96 + 8 * j + r] = mn[j]; }
                }
            }
            p += type == T_Q6_K ? 144 : 160;
            for (int j = 0; j < 8; j++) {
                rp_put_codes(u, cols, sb * QKK + 32 * j, extra, p, p + 128);
                p += type == T_Q6_K ? 192 : five ? 160 : 128;
            }
        }
    }
    free(u); free(s); free(o);
    }
    return failed ? -2 : 0;
}

/* Row r of a repacked group back to codes and per-16 scale / offset: decode_row's output, to the bit. */
static void rp_decode_row(int type, const uint8_t *grp, int r, int64_t cols, uint8_t *u, float *s, float *o) {
    int five = q5_type(type), six = type == T_Q6_K;
    int64_t nb = cols / QK;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p;
        if (type == T_Q8_0) { /* back to the signed codes decode_row gives */
            const uint8_t *blk = grp + b * 272;
            s[2 * b] = s[2 * b + 1] = h2f(blk + 2 * r);
            o[2 * b] = o[2 * b + 1] = 0.f;
            for (int k = 0; k < 8; k++)
                for (int i = 0; i < 4; i++) u[b * QK + 4 * k + i] = blk[16 + 32 * k + 4 * r + i] ^ 0x80;
            continue;
        }
        if (type < T_Q4_K) {
            int m = type == T_Q4_1 || type == T_Q5_1;
            const uint8_t *blk = grp + b * 8 * block_bytes(type);
            float d = h2f(blk + 2 * r);
            s[2 * b] = s[2 * b + 1] = d;
            o[2 * b] = o[2 * b + 1] = m ? h2f(blk + 16 + 2 * r) : type == T_Q5_0 ? -16.f * d : -8.f * d;
            p = blk + (m ? 32 : 16);
        } else {
            int64_t sb = b / 8, j = b % 8;
            const uint8_t *sbp = grp + sb * rp_k_bytes(type);
            float d = h2f(sbp + 2 * r);
            if (six) {
                for (int h = 0; h < 2; h++) {
                    s[2 * b + h] = d * (int8_t)sbp[16 + 8 * (2 * j + h) + r];
                    o[2 * b + h] = -32.f * s[2 * b + h];
                }
                p = sbp + 144 + 192 * j;
            } else {
                s[2 * b] = s[2 * b + 1] = d * sbp[32 + 8 * j + r];
                o[2 * b] = o[2 * b + 1] = -h2f(sbp + 16 + 2 * r) * sbp[96 + 8 * j + r];
                p = sbp + 160 + (five ? 160 : 128) * j;
            }
        }
        for (int k = 0; k < 8; k++)
            for (int i = 0; i < 4; i++) {
                uint8_t c = p[32 * (k / 2) + 4 * r + i], code = k & 1 ? c >> 4 : c & 0xF;
                if (five) code |= ((p[128 + 4 * r + i] >> k) & 1) << 4;
                if (six) code |= ((p[128 + 32 * (k / 4) + 4 * r + i] >> (2 * (k % 4))) & 3) << 4;
                u[b * QK + 4 * k + i] = code;
            }
    }
}

#ifdef __AVX2__
/* The parameters of rp_block and rp_block_pairs: a group's block at p, 8 rows' per-16 scales / offsets (lo, hi
   half), block b of the RN activation rows (q, ad, asum), their accumulators. */
#define RP_BLOCK_PARAMS                                                                                                 \
    const int type, const int RN, const uint8_t *p, __m256 slo, __m256 shi, __m256 olo, __m256 ohi, int64_t b,       \
        int64_t cols, int64_t nb, int64_t ap, const int8_t *q, const float *ad, const float *asum, __m256 *acc,      \
        __m256 *aco
/* The same with the block's 8 V_k already unpacked (a prompt's decoded group, rp_dec). */
#define RP_BLOCK_V_PARAMS                                                                                               \
    const int type, const int RN, const __m256i *V, __m256 slo, __m256 shi, __m256 olo, __m256 ohi, int64_t b,      \
        int64_t cols, int64_t nb, int64_t ap, const int8_t *q, const float *ad, const float *asum, __m256 *acc,      \
        __m256 *aco
#define RP_BLOCK_CONSTS                                                                                                 \
    const __m256i m4 = _mm256_set1_epi8(0xF), ones = _mm256_set1_epi16(1);                                         \
    const int five = q5_type(type), six = type == T_Q6_K

/* The 8 V_k of a group's block at p: codes 4k .. 4k + 3 of each of the 8 rows side by side, as bytes. */
static inline __attribute__((always_inline)) void rp_unpack(const int type, const uint8_t *p, __m256i V[8]) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const int five = q5_type(type), six = type == T_Q6_K;
    if (type == T_Q8_0) { /* whole bytes: the codes + 128 */
        for (int k = 0; k < 8; k++) V[k] = _mm256_loadu_si256((const __m256i *)(p + 32 * k));
        return;
    }
    for (int j = 0; j < 4; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * j));
        V[2 * j] = _mm256_and_si256(v, m4);
        V[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    if (five) { /* bit k of a qh byte is the fifth bit of V_k's byte */
        const __m256i b4 = _mm256_set1_epi8(0x10);
        __m256i h = _mm256_loadu_si256((const __m256i *)(p + 128));
        V[0] = _mm256_or_si256(V[0], _mm256_and_si256(_mm256_slli_epi16(h, 4), b4));
        V[1] = _mm256_or_si256(V[1], _mm256_and_si256(_mm256_slli_epi16(h, 3), b4));
        V[2] = _mm256_or_si256(V[2], _mm256_and_si256(_mm256_slli_epi16(h, 2), b4));
        V[3] = _mm256_or_si256(V[3], _mm256_and_si256(_mm256_slli_epi16(h, 1), b4));
        V[4] = _mm256_or_si256(V[4], _mm256_and_si256(h, b4));
        V[5] = _mm256_or_si256(V[5], _mm256_and_si256(_mm256_srli_epi16(h, 1), b4));
        V[6] = _mm256_or_si256(V[6], _mm256_and_si256(_mm256_srli_epi16(h, 2), b4));
        V[7] = _mm256_or_si256(V[7], _mm256_and_si256(_mm256_srli_epi16(h, 3), b4));
    }
    if (six) { /* bits 2kk, 2kk + 1 of qh vector k / 4 are the top two of V_k's byte */
        const __m256i b45 = _mm256_set1_epi8(0x30);
        for (int hh = 0; hh < 2; hh++) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * hh));
            V[4 * hh] = _mm256_or_si256(V[4 * hh], _mm256_and_si256(_mm256_slli_epi16(h, 4), b45));
            V[4 * hh + 1] = _mm256_or_si256(V[4 * hh + 1], _mm256_and_si256(_mm256_slli_epi16(h, 2), b45));
            V[4 * hh + 2] = _mm256_or_si256(V[4 * hh + 2], _mm256_and_si256(h, b45));
            V[4 * hh + 3] = _mm256_or_si256(V[4 * hh + 3], _mm256_and_si256(_mm256_srli_epi16(h, 2), b45));
        }
    }
}

/* The float step of a block for one activation row (or fused token): integer sums S of 8 rows (Q6_K: lo and hi,
   the two halves with a scale each) times the rows' scales and the activation's scale a into acc, the offsets
   times the activation's per-16 sums into aco. */
static inline __attribute__((always_inline)) void rp_fold(const int six, __m256i lo, __m256i hi, __m256 slo, __m256 shi,
                                                           __m256 olo, __m256 ohi, __m256 a, const float *sa, __m256 *acc,
                                                           __m256 *aco) {
    if (six) {
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(slo, a), *acc);
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(shi, a), *acc);
        *aco = _mm256_fmadd_ps(olo, _mm256_broadcast_ss(sa), *aco);
        *aco = _mm256_fmadd_ps(ohi, _mm256_broadcast_ss(sa + 1), *aco);
        return;
    }
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(slo, a), *acc);
    *aco = _mm256_fmadd_ps(olo, _mm256_set1_ps(sa[0] + sa[1]), *aco);
    (void)hi; (void)shi; (void)ohi;
}

/* One block of a group against RN activation rows: the 8 V_k from p, per-16 scales / offsets of 8 rows;
   products into acc, offsets into aco (two chains). */
static inline __attribute__((always_inline)) void rp_block_v(RP_BLOCK_V_PARAMS) {
    RP_BLOCK_CONSTS;
    (void)m4;
    for (int t = 0; t < RN; t++) {
        const int8_t *qa = q + t * cols + b * QK;
        __m256i m[8];
        for (int k = 0; k < 8; k++) {
            int32_t a4;
            memcpy(&a4, qa + 4 * k, 4);
            m[k] = _mm256_maddubs_epi16(V[k], _mm256_set1_epi32(a4));
        }
        __m256 a = _mm256_set1_ps(ad[t * nb + b]);
        const float *sa = asum + t * ap + 2 * b;
        if (six) { /* codes < 64: two int16 sums at a time; a scale per 16 */
            __m256i lo = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(m[0], m[1]), ones),
                                          _mm256_madd_epi16(_mm256_add_epi16(m[2], m[3]), ones));
            __m256i hi = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(m[4], m[5]), ones),
                                          _mm256_madd_epi16(_mm256_add_epi16(m[6], m[7]), ones));
            rp_fold(1, lo, hi, slo, shi, olo, ohi, a, sa, acc + t, aco + t);
            continue;
        }
        __m256i lo = _mm256_add_epi16(_mm256_add_epi16(m[0], m[1]), _mm256_add_epi16(m[2], m[3]));
        __m256i hi = _mm256_add_epi16(_mm256_add_epi16(m[4], m[5]), _mm256_add_epi16(m[6], m[7]));
        __m256i S = five ? _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones)) /* codes < 32 */
                         : _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones); /* codes < 16: 8 sums fit int16 */
        rp_fold(0, S, S, slo, shi, olo, ohi, a, sa, acc + t, aco + t);
    }
}

static inline __attribute__((always_inline)) void rp_block(RP_BLOCK_PARAMS) {
    __m256i V[8];
    rp_unpack(type, p, V);
    rp_block_v(type, RN, V, slo, shi, olo, ohi, b, cols, nb, ap, q, ad, asum, acc, aco);
}

/* The same for 5- and 6-bit codes (measured faster for them; rp_block for 4-bit ones). The 8 V_k are unpacked two at a time (V_2j, V_2j+1),
   each pair multiplied with every row at once, so that few registers are live (RN = 4 without spills):
   int16 sums of G products (8 for codes < 16, 4 for < 32, 2 for Q6_K's < 64) are widened, then folded
   into the row's accumulator with its scale (per 32, or per 16 for Q6_K). */
static inline __attribute__((always_inline)) void rp_block_pairs(RP_BLOCK_PARAMS) {
    RP_BLOCK_CONSTS;
    __m256i S16[4], S32[4];
    for (int t = 0; t < RN; t++) S16[t] = S32[t] = _mm256_setzero_si256();
    __m256i h5 = five ? _mm256_loadu_si256((const __m256i *)(p + 128)) : _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * j));
        __m256i V0 = _mm256_and_si256(v, m4), V1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (five) { /* bit k of a qh byte is the fifth bit of V_k's byte: k = 2j, 2j + 1 */
            const __m256i b4 = _mm256_set1_epi8(0x10);
            __m256i e0 = j < 2 ? _mm256_slli_epi16(h5, 4 - 2 * j) : j == 2 ? h5 : _mm256_srli_epi16(h5, 2);
            __m256i e1 = j < 2 ? _mm256_slli_epi16(h5, 3 - 2 * j) : _mm256_srli_epi16(h5, 2 * j - 3);
            V0 = _mm256_or_si256(V0, _mm256_and_si256(e0, b4));
            V1 = _mm256_or_si256(V1, _mm256_and_si256(e1, b4));
        }
        if (six) { /* bits 2kk, 2kk + 1 of qh vector k / 4 are the top two of V_k's byte, kk = k % 4 */
            const __m256i b45 = _mm256_set1_epi8(0x30);
            __m256i h = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * (j / 2)));
            int kk = 2 * (j % 2);
            __m256i e0 = kk == 0 ? _mm256_slli_epi16(h, 4) : h;
            __m256i e1 = kk == 0 ? _mm256_slli_epi16(h, 2) : _mm256_srli_epi16(h, 2);
            V0 = _mm256_or_si256(V0, _mm256_and_si256(e0, b45));
            V1 = _mm256_or_si256(V1, _mm256_and_si256(e1, b45));
        }
        for (int t = 0; t < RN; t++) {
            const int8_t *qa = q + t * cols + b * QK + 8 * j;
            int32_t a0, a1;
            memcpy(&a0, qa, 4);
            memcpy(&a1, qa + 4, 4);
            __m256i m = _mm256_add_epi16(_mm256_maddubs_epi16(V0, _mm256_set1_epi32(a0)),
                                         _mm256_maddubs_epi16(V1, _mm256_set1_epi32(a1)));
            if (six) { /* widen every pair; a scale per half (j < 2, j >= 2) */
                __m256i w = _mm256_madd_epi16(m, ones);
                S32[t] = j % 2 ? _mm256_add_epi32(S32[t], w) : w;
                if (j % 2) {
                    __m256 a = _mm256_set1_ps(ad[t * nb + b]);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S32[t]), _mm256_mul_ps(j < 2 ? slo : shi, a), acc[t]);
                }
            } else if (five) { /* widen every two pairs */
                S16[t] = j % 2 ? _mm256_add_epi16(S16[t], m) : m;
                if (j == 1) S32[t] = _mm256_madd_epi16(S16[t], ones);
                if (j == 3) S32[t] = _mm256_add_epi32(S32[t], _mm256_madd_epi16(S16[t], ones));
            } else
                S16[t] = j ? _mm256_add_epi16(S16[t], m) : m;
        }
    }
    for (int t = 0; t < RN; t++) {
        const float *sa = asum + t * ap + 2 * b;
        if (six) {
            aco[t] = _mm256_fmadd_ps(olo, _mm256_broadcast_ss(sa), aco[t]);
            aco[t] = _mm256_fmadd_ps(ohi, _mm256_broadcast_ss(sa + 1), aco[t]);
            continue;
        }
        __m256i S = five ? S32[t] : _mm256_madd_epi16(S16[t], ones);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_mul_ps(slo, _mm256_set1_ps(ad[t * nb + b])), acc[t]);
        aco[t] = _mm256_fmadd_ps(olo, _mm256_set1_ps(sa[0] + sa[1]), aco[t]);
    }
    (void)shi; (void)ohi;
}

/* Q8_0 groups without VNNI, two passes: codes + 128 (0..255) times int8 activations overflow maddubs' int16 pairs,
   so the two passes come joined as one int16 activation (`q` holds int16 rows, 254 q + q2, quantize_rem) and the
   codes are widened to int16 for madd: 4 codes of 4 rows against 4 broadcast activations, 16 madd a block and
   token (the sign trick, rp_block_q8s_v, would need a widening madd per product and pass: as many). Sums come
   out as rows 0 1 4 5 2 3 6 7 (hadd): scales and offsets take that order, rp_micro / rp_micro_dec put the rows
   back. */
#define RP16_ORDER _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)
static inline __attribute__((always_inline)) void rp_block16_v(RP_BLOCK_V_PARAMS) {
    const int16_t *qa = (const int16_t *)q + b * QK;
    __m256i lo[4], hi[4];
    for (int k = 0; k < 8; k++) {
        __m256i wl = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(V[k])), wh = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(V[k], 1));
        for (int t = 0; t < RN; t++) {
            long long a4;
            memcpy(&a4, qa + t * cols + 4 * k, 8);
            __m256i av = _mm256_set1_epi64x(a4);
            __m256i pl = _mm256_madd_epi16(wl, av), ph = _mm256_madd_epi16(wh, av);
            lo[t] = k ? _mm256_add_epi32(lo[t], pl) : pl;
            hi[t] = k ? _mm256_add_epi32(hi[t], ph) : ph;
        }
    }
    __m256 sp = _mm256_permutevar8x32_ps(slo, RP16_ORDER), op = _mm256_permutevar8x32_ps(olo, RP16_ORDER);
    for (int t = 0; t < RN; t++) {
        const float *sa = asum + t * ap + 2 * b;
        __m256 a = _mm256_set1_ps(ad[t * nb + b]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(lo[t], hi[t])), _mm256_mul_ps(sp, a), acc[t]);
        aco[t] = _mm256_fmadd_ps(op, _mm256_set1_ps(sa[0] + sa[1]), aco[t]);
    }
    (void)shi; (void)ohi; (void)type;
}

/* Q8_0 groups without VNNI, one pass: maddubs with the sign trick (|w| times a signed as w), as decode_tile's
   tiles do: the codes are signed again (u ^ 0x80 = w), each product pair widened at once (two would overflow
   int16), no offset (w = d q). */
static inline __attribute__((always_inline)) void rp_block_q8s_v(RP_BLOCK_V_PARAMS) {
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    __m256i S[4];
    for (int k = 0; k < 8; k++) {
        __m256i w = _mm256_xor_si256(V[k], flip), u = _mm256_abs_epi8(w);
        for (int t = 0; t < RN; t++) {
            int32_t a4;
            memcpy(&a4, q + t * cols + b * QK + 4 * k, 4);
            __m256i m = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(_mm256_set1_epi32(a4), w)), ones);
            S[t] = k ? _mm256_add_epi32(S[t], m) : m;
        }
    }
    for (int t = 0; t < RN; t++)
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[t]), _mm256_mul_ps(slo, _mm256_set1_ps(ad[t * nb + b])), acc[t]);
    (void)shi; (void)olo; (void)ohi; (void)asum; (void)ap; (void)aco; (void)type;
}

/* Two passes as one (llmchat_qmatmul_precise on repacked groups): token t's rows are q + 2t cols (x8, scale d)
   and the next (the remainder on d2 = d / 254, quantize_rem), `ad` the matching scales, `asum` one row per token
   (both passes' offsets summed). Each pass's maddubs sums stay int16 as in rp_block_v; the two are joined in
   int32 as 254 S1 + S2 (the 16-bit activation's dot, exact) and scaled once by d2: one cvt / mul / FMA and one
   offset FMA per block and token instead of two of each. */
static inline __attribute__((always_inline)) __m256i rp_sum16(const __m256i *V, const int8_t *qa, int k0, int n) {
    __m256i s = _mm256_setzero_si256();
    for (int k = k0; k < k0 + n; k++) {
        int32_t a4;
        memcpy(&a4, qa + 4 * k, 4);
        __m256i m = _mm256_maddubs_epi16(V[k], _mm256_set1_epi32(a4));
        s = k == k0 ? m : _mm256_add_epi16(s, m);
    }
    return s;
}
/* 254 x (the int16 sum of n maddubs of V_k0 .. with pass 1) + the same with pass 2, widened to int32: n = 2 for
   Q6_K's codes < 64, 4 for codes < 32, 8 for codes < 16 (what fits int16). */
static inline __attribute__((always_inline)) __m256i rp_join(const __m256i *V, const int8_t *q1, const int8_t *q2, int k0, int n) {
    return _mm256_add_epi32(_mm256_madd_epi16(rp_sum16(V, q1, k0, n), _mm256_set1_epi16(254)),
                            _mm256_madd_epi16(rp_sum16(V, q2, k0, n), _mm256_set1_epi16(1)));
}
static inline __attribute__((always_inline)) void rp_block2_v(RP_BLOCK_V_PARAMS) {
    const int five = q5_type(type), six = type == T_Q6_K;
    for (int t = 0; t < RN; t++) {
        const int8_t *q1 = q + 2 * t * cols + b * QK, *q2 = q1 + cols;
        __m256i lo, hi;
        if (six) { /* a scale per 16 */
            lo = _mm256_add_epi32(rp_join(V, q1, q2, 0, 2), rp_join(V, q1, q2, 2, 2));
            hi = _mm256_add_epi32(rp_join(V, q1, q2, 4, 2), rp_join(V, q1, q2, 6, 2));
        } else
            lo = hi = five ? _mm256_add_epi32(rp_join(V, q1, q2, 0, 4), rp_join(V, q1, q2, 4, 4)) : rp_join(V, q1, q2, 0, 8);
        rp_fold(six, lo, hi, slo, shi, olo, ohi, _mm256_set1_ps(ad[(2 * t + 1) * nb + b]), asum + t * ap + 2 * b, acc + t,
                aco + t);
    }
}

#if RP_VNNI
/* With AVX-512 VNNI (Zen 4, Ice Lake and later): one vpdpbusd multiplies V_k's 4 codes of each row with the
   4 broadcast activation codes and adds the sum to an int32 lane -- maddubs, the int16 adds and the
   widening madd in one instruction, exact (no int16 sums at all). Two chains per activation row (V_0..3,
   V_4..7: Q6_K's two per-16 scales). The same integers as rp_block, so the same floats (Q8_0 one pass aside:
   without VNNI it takes the sign trick on signed codes, rp_block_q8s_v, equal to float rounding). */
static inline __attribute__((always_inline)) void rp_block_vnni_v(RP_BLOCK_V_PARAMS) {
    const int six = type == T_Q6_K;
    for (int t = 0; t < RN; t++) {
        const int8_t *qa = q + t * cols + b * QK;
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            int32_t a0, a1;
            memcpy(&a0, qa + 4 * k, 4);
            memcpy(&a1, qa + 16 + 4 * k, 4);
            lo = _mm256_dpbusd_epi32(lo, V[k], _mm256_set1_epi32(a0));
            hi = _mm256_dpbusd_epi32(hi, V[k + 4], _mm256_set1_epi32(a1));
        }
        __m256 a = _mm256_set1_ps(ad[t * nb + b]);
        const float *sa = asum + t * ap + 2 * b;
        if (six)
            rp_fold(1, lo, hi, slo, shi, olo, ohi, a, sa, acc + t, aco + t);
        else
            rp_fold(0, _mm256_add_epi32(lo, hi), hi, slo, shi, olo, ohi, a, sa, acc + t, aco + t);
    }
}
/* rp_block2_v with vpdpbusd: the same integers (254 S1 + S2), so the same floats. */
static inline __attribute__((always_inline)) void rp_block2_vnni_v(RP_BLOCK_V_PARAMS) {
    const int six = type == T_Q6_K;
    const __m256i c254 = _mm256_set1_epi32(254);
    for (int t = 0; t < RN; t++) {
        const int8_t *q1 = q + 2 * t * cols + b * QK, *q2 = q1 + cols;
        __m256i lo1 = _mm256_setzero_si256(), hi1 = lo1, lo2 = lo1, hi2 = lo1;
        for (int k = 0; k < 4; k++) {
            int32_t a0, a1, r0, r1;
            memcpy(&a0, q1 + 4 * k, 4);
            memcpy(&a1, q1 + 16 + 4 * k, 4);
            memcpy(&r0, q2 + 4 * k, 4);
            memcpy(&r1, q2 + 16 + 4 * k, 4);
            lo1 = _mm256_dpbusd_epi32(lo1, V[k], _mm256_set1_epi32(a0));
            hi1 = _mm256_dpbusd_epi32(hi1, V[k + 4], _mm256_set1_epi32(a1));
            lo2 = _mm256_dpbusd_epi32(lo2, V[k], _mm256_set1_epi32(r0));
            hi2 = _mm256_dpbusd_epi32(hi2, V[k + 4], _mm256_set1_epi32(r1));
        }
        __m256 a = _mm256_set1_ps(ad[(2 * t + 1) * nb + b]);
        const float *sa = asum + t * ap + 2 * b;
        if (six)
            rp_fold(1, _mm256_add_epi32(_mm256_mullo_epi32(lo1, c254), lo2), _mm256_add_epi32(_mm256_mullo_epi32(hi1, c254), hi2),
                    slo, shi, olo, ohi, a, sa, acc + t, aco + t);
        else {
            __m256i S = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_add_epi32(lo1, hi1), c254), _mm256_add_epi32(lo2, hi2));
            rp_fold(0, S, S, slo, shi, olo, ohi, a, sa, acc + t, aco + t);
        }
    }
}
static inline __attribute__((always_inline)) void rp_block_vnni(RP_BLOCK_PARAMS) {
    __m256i V[8];
    rp_unpack(type, p, V);
    rp_block_vnni_v(type, RN, V, slo, shi, olo, ohi, b, cols, nb, ap, q, ad, asum, acc, aco);
}
#define RP_BLOCK(type, ...) rp_block_vnni(type, __VA_ARGS__)
#define RP_BLOCK_V(type, ...) rp_block_vnni_v(type, __VA_ARGS__)
#define RP_BLOCK2_V(type, ...) rp_block2_vnni_v(type, __VA_ARGS__)
#else
#define RP_BLOCK2_V(type, ...) rp_block2_v(type, __VA_ARGS__)
#endif
/* Q8_0 groups multiply int16 activations (rp_block16_v) where there is no VNNI. */
#if RP_VNNI
#define RP_WIDE(type) 0
#else
#define RP_WIDE(type) ((type) == T_Q8_0)
#define RP_BLOCK_V(type, ...) rp_block_v(type, __VA_ARGS__)
#define RP_BLOCK(type, ...) \
    ((type) == T_Q4_0 || (type) == T_Q4_1 || (type) == T_Q4_K ? rp_block(type, __VA_ARGS__) : rp_block_pairs(type, __VA_ARGS__))
#endif
/* A block whose 8 V_k are unpacked, against RN activation rows (fuse: RN tokens of two passes). */
static inline __attribute__((always_inline)) void rp_block_any_v(const int fuse, RP_BLOCK_V_PARAMS) {
    if (RP_WIDE(type) && fuse)
        rp_block16_v(type, RN, V, slo, shi, olo, ohi, b, cols, nb, ap, q, ad, asum, acc, aco);
    else if (RP_WIDE(type))
        rp_block_q8s_v(type, RN, V, slo, shi, olo, ohi, b, cols, nb, ap, q, ad, asum, acc, aco);
    else if (fuse)
        RP_BLOCK2_V(type, RN, V, slo, shi, olo, ohi, b, cols, nb, ap, q, ad, asum, acc, aco);
    else
        RP_BLOCK_V(type, RN, V, slo, shi, olo, ohi, b, cols, nb, ap, q, ad, asum, acc, aco);
}
/* y[t * 8 + i] = row i's sum for activation row (or token) t: rp_block16_v's rows put back in order. */
static inline __attribute__((always_inline)) void rp_store(const int type, const int RN, const int fuse, const __m256 *acc,
                                                            const __m256 *aco, float *y) {
    for (int t = 0; t < RN; t++) {
        __m256 v = _mm256_add_ps(acc[t], aco[t]);
        _mm256_storeu_ps(y + t * 8, RP_WIDE(type) && fuse ? _mm256_permutevar8x32_ps(v, RP16_ORDER) : v);
    }
    (void)type;
}

/* A block of a prompt's group unpacked once (rp_decode_group): its 8 V_k and the 8 rows' scales and offsets
   (per 16: lo, hi halves), 384 bytes, then multiplied with every activation row (rp_micro_dec). */
typedef struct {
    __m256i V[8];
    __m256 slo, shi, olo, ohi;
} rp_dec;

/* Block b of the group at p, its scales / offsets: multiplied with RN activation rows, or (dec) stored. */
#define RP_VISIT(P, SLO, SHI, OLO, OHI, B)                                                                            \
    do {                                                                                                                \
        if (store) {                                                                                                    \
            rp_unpack(type, (P), dec[B].V);                                                                            \
            dec[B].slo = (SLO), dec[B].shi = (SHI), dec[B].olo = (OLO), dec[B].ohi = (OHI);                            \
        } else if (fuse || RP_WIDE(type)) {                                                                             \
            __m256i V_[8];                                                                                              \
            rp_unpack(type, (P), V_);                                                                                   \
            rp_block_any_v(fuse, type, RN, V_, (SLO), (SHI), (OLO), (OHI), (B), cols, nb, ap, q, ad, asum, acc, aco);   \
        } else /* rp_block_pairs unpacks two V_k at a time itself */                                                    \
            RP_BLOCK(type, RN, (P), (SLO), (SHI), (OLO), (OHI), (B), cols, nb, ap, q, ad, asum, acc, aco);              \
    } while (0)

/* The walk over a group's blocks: each multiplied with RN activation rows (fuse: RN tokens of two passes,
   rp_block2_v) into acc / aco, or (store) unpacked into dec. */
static inline __attribute__((always_inline)) void rp_walk(const int type, const int RN, const int fuse, const uint8_t *grp,
                                                           int64_t cols, int64_t ap, const int8_t *q, const float *ad,
                                                           const float *asum, __m256 *acc, __m256 *aco, const int store,
                                                           rp_dec *dec) {
    const int64_t nb = cols / QK;
    if (type < T_Q4_K) {
        const int m = type == T_Q4_1 || type == T_Q5_1, bb = 8 * block_bytes(type);
        const __m256 off = _mm256_set1_ps(type == T_Q5_0 ? -16.f : type == T_Q8_0 ? -128.f : -8.f); /* Q8_0: codes + 128 */
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *p = grp + b * bb;
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
            __m256 o = m ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16))) : _mm256_mul_ps(d, off);
            RP_VISIT(p + (m ? 32 : 16), d, d, o, o, b);
        }
    } else {
        const int six = type == T_Q6_K, sbb = rp_k_bytes(type), per = type == T_Q4_K ? 128 : type == T_Q5_K ? 160 : 192;
        for (int64_t sb = 0; sb < cols / QKK; sb++) {
            const uint8_t *sp = grp + sb * sbb;
            __m256 D = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sp));
            if (six) {
                const __m256 m32 = _mm256_set1_ps(-32.f);
                for (int j = 0; j < 8; j++) {
                    __m128i sc = _mm_loadu_si128((const __m128i *)(sp + 16 + 16 * j));
                    __m256 slo = _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
                    __m256 shi = _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
                    RP_VISIT(sp + 144 + per * j, slo, shi, _mm256_mul_ps(slo, m32), _mm256_mul_ps(shi, m32), sb * 8 + j);
                }
            } else {
                __m256 M = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sp + 16))));
                for (int j = 0; j < 8; j++) {
                    __m256 s = _mm256_mul_ps(D, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sp + 32 + 8 * j)))));
                    __m256 o = _mm256_mul_ps(M, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sp + 96 + 8 * j)))));
                    RP_VISIT(sp + 160 + per * j, s, s, o, o, sb * 8 + j);
                }
            }
        }
    }
}

/* y[t * 8 + i] = row i of the group . activation row t (fuse: token t's two passes), t < RN. */
static inline __attribute__((always_inline)) void rp_micro(const int type, const int RN, const int fuse, const uint8_t *grp,
                                                            int64_t cols, int64_t ap, const int8_t *q, const float *ad,
                                                            const float *asum, float *y) {
    __m256 acc[4], aco[4];
    for (int t = 0; t < RN; t++) acc[t] = aco[t] = _mm256_setzero_ps();
    rp_walk(type, RN, fuse, grp, cols, ap, q, ad, asum, acc, aco, 0, NULL);
    rp_store(type, RN, fuse, acc, aco, y);
}

/* The same from the group's decoded blocks: loads where rp_micro unpacks and converts (the same numbers). */
static inline __attribute__((always_inline)) void rp_micro_dec(const int type, const int RN, const int fuse,
                                                                const rp_dec *dec, int64_t cols, int64_t ap, const int8_t *q,
                                                                const float *ad, const float *asum, float *y) {
    const int64_t nb = cols / QK;
    __m256 acc[4], aco[4];
    for (int t = 0; t < RN; t++) acc[t] = aco[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        rp_block_any_v(fuse, type, RN, dec[b].V, dec[b].slo, dec[b].shi, dec[b].olo, dec[b].ohi, b, cols, nb, ap, q, ad, asum,
                       acc, aco);
    rp_store(type, RN, fuse, acc, aco, y);
}

typedef void (*rp_fn)(const uint8_t *, int64_t, int64_t, const int8_t *, const float *, const float *, float *);
#define RPF(T, RN)                                                                                                         \
    static void rp_##T##_##RN(const uint8_t *g, int64_t cols, int64_t ap, const int8_t *q, const float *ad,              \
                              const float *asum, float *y) {                                                              \
        rp_micro(T, RN, 0, g, cols, ap, q, ad, asum, y);                                                                  \
    }                                                                                                                     \
    static void rp2_##T##_##RN(const uint8_t *g, int64_t cols, int64_t ap, const int8_t *q, const float *ad,             \
                               const float *asum, float *y) {                                                             \
        rp_micro(T, RN, 1, g, cols, ap, q, ad, asum, y);                                                                  \
    }
#define RPF4(T)                                                                                                     \
    RPF(T, 1) RPF(T, 2) RPF(T, 3) RPF(T, 4) RPD(T, 1) RPD(T, 2) RPD(T, 3) RPD(T, 4)                                   \
    static void rpg_##T(const uint8_t *g, int64_t cols, rp_dec *dec) {                                                 \
        rp_walk(T, 1, 0, g, cols, 0, NULL, NULL, NULL, NULL, NULL, 1, dec);                                               \
    }
typedef void (*rpd_fn)(const rp_dec *, int64_t, int64_t, const int8_t *, const float *, const float *, float *);
typedef void (*rpg_fn)(const uint8_t *, int64_t, rp_dec *);
#define RPD(T, RN)                                                                                                         \
    static void rpd_##T##_##RN(const rp_dec *d, int64_t cols, int64_t ap, const int8_t *q, const float *ad,             \
                               const float *asum, float *y) {                                                             \
        rp_micro_dec(T, RN, 0, d, cols, ap, q, ad, asum, y);                                                              \
    }                                                                                                                     \
    static void rpd2_##T##_##RN(const rp_dec *d, int64_t cols, int64_t ap, const int8_t *q, const float *ad,            \
                                const float *asum, float *y) {                                                            \
        rp_micro_dec(T, RN, 1, d, cols, ap, q, ad, asum, y);                                                              \
    }
RPF4(T_Q4_0) RPF4(T_Q4_1) RPF4(T_Q5_0) RPF4(T_Q5_1) RPF4(T_Q4_K) RPF4(T_Q5_K) RPF4(T_Q6_K)
#define RPROW(T) {0, rp_##T##_1, rp_##T##_2, rp_##T##_3, rp_##T##_4}
#define RPROW2(T) {0, rp2_##T##_1, rp2_##T##_2, rp2_##T##_3, rp2_##T##_4}
RPF4(T_Q8_0)
#define RPROW_Q8 RPROW(T_Q8_0)
#define RPROW2_Q8 RPROW2(T_Q8_0)
#define RPDROW_Q8 RPDROW(T_Q8_0)
#define RPDROW2_Q8 RPDROW2(T_Q8_0)
#define RPG_Q8 rpg_T_Q8_0
static inline int rp_index(int type) {
    return type == T_Q4_0 ? 0 : type == T_Q4_1 ? 1 : type == T_Q5_0 ? 2 : type == T_Q5_1 ? 3 : type == T_Q4_K ? 4
         : type == T_Q5_K ? 5 : type == T_Q6_K ? 6 : 7;
}
/* The micro-kernel for rn activation rows (fuse: rn tokens of two passes each). */
static rp_fn rp_pick(int type, int rn, int fuse) {
    static const rp_fn fns[2][8][5] = {{RPROW(T_Q4_0), RPROW(T_Q4_1), RPROW(T_Q5_0), RPROW(T_Q5_1), RPROW(T_Q4_K),
                                        RPROW(T_Q5_K), RPROW(T_Q6_K), RPROW_Q8},
                                       {RPROW2(T_Q4_0), RPROW2(T_Q4_1), RPROW2(T_Q5_0), RPROW2(T_Q5_1), RPROW2(T_Q4_K),
                                        RPROW2(T_Q5_K), RPROW2(T_Q6_K), RPROW2_Q8}};
    return fns[fuse][rp_index(type)][rn];
}
#define RPDROW(T) {0, rpd_##T##_1, rpd_##T##_2, rpd_##T##_3, rpd_##T##_4}
#define RPDROW2(T) {0, rpd2_##T##_1, rpd2_##T##_2, rpd2_##T##_3, rpd2_##T##_4}
static rpd_fn rpd_pick(int type, int rn, int fuse) {
    static const rpd_fn fns[2][8][5] = {{RPDROW(T_Q4_0), RPDROW(T_Q4_1), RPDROW(T_Q5_0), RPDROW(T_Q5_1), RPDROW(T_Q4_K),
                                         RPDROW(T_Q5_K), RPDROW(T_Q6_K), RPDROW_Q8},
                                        {RPDROW2(T_Q4_0), RPDROW2(T_Q4_1), RPDROW2(T_Q5_0), RPDROW2(T_Q5_1),
                                         RPDROW2(T_Q4_K), RPDROW2(T_Q5_K), RPDROW2(T_Q6_K), RPDROW2_Q8}};
    return fns[fuse][rp_index(type)][rn];
}
static rpg_fn rpg_pick(int type) {
    static const rpg_fn fns[8] = {rpg_T_Q4_0, rpg_T_Q4_1, rpg_T_Q5_0, rpg_T_Q5_1, rpg_T_Q4_K, rpg_T_Q5_K, rpg_T_Q6_K, RPG_Q8};
    return fns[rp_index(type)];
}
#endif

/* What this build's kernels use: 1 AVX2 (maddubs), 2 AVX-512 VNNI (vpdpbusd in the repacked groups), or 0,
   the portable loops. Both AVX paths give the same integers, so the same floats, but for Q8_0's one pass (the sign
   trick without VNNI: equal to float rounding; tests/test_qdot.py). */
int llmchat_features(void) {
#if defined(__AVX2__) && RP_VNNI
    return 3;
#elif defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}

/* ---- 16-bit float weights (F16 / BF16 safetensors or GGUF), one token: w . x in fp32, exactly the products
   of the widened weights (F16 -> fp32 and BF16 -> fp32 are exact), at 2 bytes a weight read. ---- */
static inline float bf2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static float dot_half(int type, const uint8_t *w, const float *x, int64_t cols) {
    int64_t j = 0;
    float total = 0.f;
#if defined(__AVX2__) && defined(__F16C__)
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; j + 32 <= cols; j += 32)
        for (int u = 0; u < 4; u++) {
            __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * (j + 8 * u)));
            __m256 wv = type == T_F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            acc[u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j + 8 * u), acc[u]);
        }
    total = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
#endif
    for (; j < cols; j++) total += (type == T_F16 ? h2f(w + 2 * j) : bf2f(w + 2 * j)) * x[j];
    return total;
}

static _Thread_local void *act_buf, *tile_buf, *dec_buf;
static _Thread_local size_t act_cap, tile_cap, dec_cap;
#ifdef __AVX2__
static _Thread_local void *sum_buf, *wide_buf; /* the repacked branch's per-token offsets and int16 rows */
static _Thread_local size_t sum_cap, wide_cap;
#endif
/* Whether a prompt's groups of this type are unpacked once (rp_dec) rather than per call of `per` tokens:
   Q6_K on AVX2, 1.11-1.16x on ~1B matmuls at 64-200 tokens (bench/matmul.py); the 4- and 5-bit types
   unpack in registers faster than they load 384 bytes a block (0.84-0.96x), and the VNNI build is unmeasured.
   -DRP_DECODE=0 turns it off (A/B). */
#ifndef RP_DECODE
#define RP_DECODE 1
#endif
#define RP_DECODES(type) (RP_DECODE && !RP_VNNI && (type) == T_Q6_K)

/* y[T, rows] = Σ_n (activation set n of each token) @ W^T: na = 1 is x quantized once; na = 2 adds the
   quantized remainder x - x8 (llmchat_qmatmul_precise). Activation row t * na + n. */
static int qmatmul(int type, const uint8_t *w, int64_t rows, int64_t cols, const float *x, int64_t T, int na, float *y) {
    const int rp = type & RP;
    type &= ~RP;
    int64_t rb = rp ? llmchat_rp_row_bytes(type, cols) : llmchat_row_bytes(type, cols), nb = cols / QK,
            ap = (2 * nb + 7) / 8 * 8, A = T * na;
    int block = (type == T_Q4_K || type == T_Q5_K || type == T_Q6_K) ? QKK : (type == T_F16 || type == T_BF16) ? 1 : QK;
    if (rb < 0 || cols % block || rows <= 0 || T <= 0 || (rp && rows % 8)) return -1;
    if (type == T_F16 || type == T_BF16) { /* (quant.py runs several tokens on torch's sgemm instead) */
        if (rp) return -1;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t t = 0; t < T; t++) y[t * rows + i] = dot_half(type, w + i * rb, x + t * cols, cols);
        return 0;
    }
    size_t qbytes = (size_t)(A * cols + 63) / 64 * 64;
    char *buf = scratch(&act_buf, &act_cap, qbytes + sizeof(float) * (size_t)(A * nb + A * ap));
    if (!buf) return -2;
    int8_t *q = (int8_t *)buf;
    float *ad = (float *)(buf + qbytes), *asum = ad + A * nb;
#pragma omp parallel for schedule(static) if (T * cols >= 4096)
    for (int64_t t = 0; t < T; t++) {
        int64_t a0 = t * na;
        quantize_act(x + t * cols, cols, q + a0 * cols, ad + a0 * nb, asum + a0 * ap, ap);
        if (na > 1)
            quantize_rem(x + t * cols, cols, q + a0 * cols, ad + a0 * nb, q + (a0 + 1) * cols, ad + (a0 + 1) * nb,
                         asum + (a0 + 1) * ap, ap);
    }
#ifdef __AVX2__
    if (rp) { /* every token against each group, `per` tokens a call sharing the unpacked codes. One pass: an int8 row
                 a token (4 a call). Two passes: fused (rp_block2_v, 2-3 tokens a call, their sums joined in integers),
                 or for Q8_0 without VNNI one int16 row a token (rp_block16_v, `wide`, through the fused functions). */
        const int wide = RP_WIDE(type) && na == 2, fuse = na == 2 && !wide;
        const int per = fuse ? RP_FUSED_TOKENS(RP_DECODES(type)) : RP_RN; /* tokens a call */
        const float *as = asum;
        if (na == 2) { /* one offset row per token: both passes' sums */
            float *comb = scratch(&sum_buf, &sum_cap, sizeof(float) * (size_t)(T * ap));
            if (!comb) return -2;
#pragma omp parallel for schedule(static) if (T * cols >= 4096)
            for (int64_t t = 0; t < T; t++)
                for (int64_t k = 0; k < ap; k++) comb[t * ap + k] = asum[2 * t * ap + k] + asum[(2 * t + 1) * ap + k];
            as = comb;
        }
        const int8_t *qs = q;
        const float *ds = ad;
        if (wide) { /* int16 rows: 254 x8 + the remainder's codes, on the remainder's scale d / 254 */
            size_t wbytes = (size_t)(T * cols) * sizeof(int16_t);
            char *wb = scratch(&wide_buf, &wide_cap, wbytes + sizeof(float) * (size_t)(T * nb));
            if (!wb) return -2;
            int16_t *a16 = (int16_t *)wb;
            float *d16 = (float *)(wb + wbytes);
#pragma omp parallel for schedule(static) if (T * cols >= 4096)
            for (int64_t t = 0; t < T; t++) {
                const int8_t *q1 = q + 2 * t * cols, *q2 = q1 + cols;
                for (int64_t c = 0; c < cols; c++) a16[t * cols + c] = (int16_t)(254 * q1[c] + q2[c]);
                memcpy(d16 + t * nb, ad + (2 * t + 1) * nb, sizeof(float) * (size_t)nb);
            }
            qs = (const int8_t *)a16, ds = d16;
        }
        /* several calls per group: the group is unpacked once (rp_dec, 12 bytes a weight: L1 / L2 sized) */
        const int decode = T > per && RP_DECODES(type);
#pragma omp parallel for schedule(static)
        for (int64_t g = 0; g < rows / 8; g++) {
            float out[4 * 8];
            rp_dec *dec = decode ? scratch(&dec_buf, &dec_cap, sizeof(rp_dec) * (size_t)nb) : NULL;
            if (dec) rpg_pick(type)(w + 8 * g * rb, cols, dec);
            for (int64_t t0 = 0; t0 < T; t0 += per) {
                int rn = T - t0 < per ? (int)(T - t0) : per;
                const int8_t *qt = wide ? qs + 2 * t0 * cols : q + t0 * (fuse ? 2 : 1) * cols;
                const float *at = ds + t0 * (fuse ? 2 : 1) * nb, *st = as + t0 * ap;
                if (dec)
                    rpd_pick(type, rn, na == 2)(dec, cols, ap, qt, at, st, out);
                else
                    rp_pick(type, rn, na == 2)(w + 8 * g * rb, cols, ap, qt, at, st, out);
                for (int j = 0; j < rn; j++) {
                    float *yr = y + (t0 + j) * rows + 8 * g;
                    for (int i = 0; i < 8; i++) yr[i] = out[j * 8 + i];
                }
            }
        }
        return 0;
    }
    if (T == 1) {
        if (na == 1) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < rows; i++) y[i] = dot_fused1(type, w + i * rb, q, ad, asum, cols, ap);
        } else {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < rows; i++) y[i] = dot_fused2(type, w + i * rb, q, ad, asum, cols, ap);
        }
        return 0;
    }
    if (na > 1)
        for (int64_t i = 0; i < T * rows; i++) y[i] = 0.f;
    int64_t tiles = (rows + TR - 1) / TR;
    int g = type == T_Q8_0 ? 2 : type == T_Q6_K ? 1 : 0, failed = 0;
#pragma omp parallel
    {
        size_t cb = (size_t)TR * cols, fb = sizeof(float) * TR * 2 * nb;
        char *t = scratch(&tile_buf, &tile_cap, 4 * cb + 4 * fb);
        if (!t) {
#pragma omp atomic write
            failed = 1;
        }
        uint8_t *rowbuf = (uint8_t *)t, *codes = (uint8_t *)t + 2 * cb;
        int8_t *sgbuf = (int8_t *)t + cb, *sgc = (int8_t *)t + 3 * cb;
        float *s16 = (float *)(t + 4 * cb), *o16 = s16 + TR * 2 * nb, *sc = o16 + TR * 2 * nb, *of = sc + TR * 2 * nb;
        float out[RN_MAX * TR];
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < tiles; tile++) {
            if (!t) continue;
            int64_t r0 = tile * TR, n = rows - r0 < TR ? rows - r0 : TR;
            decode_tile(type, w, rb, r0, n, cols, rowbuf, sgbuf, s16, o16, codes, sgc, sc, of);
            for (int64_t j0 = 0; j0 < A; j0 += RN_MAX) {
                int rn = A - j0 < RN_MAX ? (int)(A - j0) : RN_MAX;
                MICROS[g][rn](nb, cols, ap, codes, sgc, sc, of, q + j0 * cols, ad + j0 * nb, asum + j0 * ap, out);
                for (int j = 0; j < rn; j++) {
                    float *yr = y + ((j0 + j) / na) * rows + r0;
                    for (int64_t i = 0; i < n; i++) {
                        if (na > 1) yr[i] += out[j * TR + i];
                        else yr[i] = out[j * TR + i];
                    }
                }
            }
        }
    }
    return failed ? -2 : 0;
#else
    int is_signed = type == T_Q8_0, failed = 0;
    if (na > 1)
        for (int64_t i = 0; i < T * rows; i++) y[i] = 0.f;
#pragma omp parallel
    {
        size_t ub = (size_t)(cols + 63) / 64 * 64;
        char *t = scratch(&tile_buf, &tile_cap, ub + sizeof(float) * 4 * nb);
        if (!t) {
#pragma omp atomic write
            failed = 1;
        }
        uint8_t *u = (uint8_t *)t;
        float *s = (float *)(t + ub), *o = s + 2 * nb;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; i++) {
            if (!t) continue;
            decode_row(type, w + i * rb, cols, u, s, o);
            for (int64_t a = 0; a < A; a++) {
                float v = dot_decoded(u, s, o, is_signed, q + a * cols, ad + a * nb, asum + a * ap, cols);
                if (na > 1) y[(a / na) * rows + i] += v;
                else y[(a / na) * rows + i] = v;
            }
        }
    }
    return failed ? -2 : 0;
#endif
}

/* y[T, rows] = x[T, cols] @ W^T, W given as `rows` GGUF rows of `type`. Returns 0, or -1 on a bad type/shape. */
int llmchat_qmatmul(int type, const uint8_t *w, int64_t rows, int64_t cols, const float *x, int64_t T, float *y) {
    return qmatmul(type, w, rows, cols, x, T, 1, y);
}

/* The same product with the activations' int8 rounding error multiplied too: x = x8 + r, where x8
   is x as the kernel quantizes it and r the remainder, quantized again on a 254x finer scale (quantize_rem).
   An error ~100x smaller, for down_proj, whose SwiGLU input has outliers, and for every prompt row: both passes
   run in one sweep over the weights (each block decoded once, multiplied twice; on repacked groups the two
   int16 sums are joined as 254 S1 + S2 and scaled once, rp_block2_v: 1.05-1.28x the two rows apart). */
int llmchat_qmatmul_precise(int type, const uint8_t *w, int64_t rows, int64_t cols, const float *x, int64_t T, float *y) {
    return qmatmul(type, w, rows, cols, x, T, 2, y);
}

/* Rows `ids` of W dequantized to fp32 (an embedding lookup), exactly as GGUF defines them. */
int llmchat_dequant_rows(int type, const uint8_t *w, int64_t cols, const int64_t *ids, int64_t n, float *out) {
    const int rp = type & RP;
    type &= ~RP;
    int64_t rb = rp ? llmchat_rp_row_bytes(type, cols) : llmchat_row_bytes(type, cols), nb = cols / QK;
    if (rb < 0) return -1;
    if (type == T_F16 || type == T_BF16) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < cols; j++)
                out[i * cols + j] = type == T_F16 ? h2f(w + ids[i] * rb + 2 * j) : bf2f(w + ids[i] * rb + 2 * j);
        return 0;
    }
    uint8_t *u = malloc((size_t)cols);
    float *s = malloc(sizeof(float) * 2 * nb), *o = malloc(sizeof(float) * 2 * nb);
    if (!u || !s || !o) { free(u); free(s); free(o); return -2; }
    for (int64_t i = 0; i < n; i++) {
        if (rp) rp_decode_row(type, w + ids[i] / 8 * 8 * rb, (int)(ids[i] % 8), cols, u, s, o);
        else decode_row(type, w + ids[i] * rb, cols, u, s, o);
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

/* ---- a whole decode step (T = 1) in one call: Python's ~20 small torch ops a layer cost ~150 us ---- */

typedef struct {
    int32_t type, precise; /* a GGUF type; two int8 passes (llmchat_qmatmul_precise) */
    int64_t rows;
    const uint8_t *w;
} llmchat_qlin;

typedef struct {
    const float *attn_norm, *mlp_norm;
    llmchat_qlin qkv[3], o, gu[2], down; /* q, k, v fused or apart; gate, up likewise */
    int32_t nqkv, ngu;
} llmchat_layer;

static int run_lin(const llmchat_qlin *l, int64_t cols, const float *x, float *y) {
    return qmatmul(l->type, l->w, l->rows, cols, x, 1, l->precise ? 2 : 1, y);
}

/* RoPE on one head whose rows were interleaved at load: each pair (2i, 2i + 1) times cis[i] = (cos, sin). */
static void rope1(float *x, const float *cis, int64_t D) {
    for (int64_t i = 0; i < D / 2; i++) {
        float a = x[2 * i], b = x[2 * i + 1], c = cis[2 * i], s = cis[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

/* x[E] (the token's embedding) through `L` layers at position `pos`, as CpuLlama.forward does for one
   token: keys and values written into kc / vc ([L, KVH, cap, D]); cis is position pos's row
   ([D / 2] complex); work holds E + 2 (H + KVH) D + 3 F + E floats. Returns 0, or qmatmul's error. */
int llmchat_decode_step(const llmchat_layer *layers, int64_t L, int64_t E, int64_t H, int64_t KVH, int64_t D, int64_t F,
                        float eps, float scale, const float *cis, float *kc, float *vc, int64_t cap, int64_t pos,
                        float *x, float *work) {
    int64_t qs = H * D, kvs = KVH * D;
    float *h = work, *qkv = h + E, *attn = qkv + qs + 2 * kvs, *gu = attn + qs, *act = gu + 2 * F, *tmp = act + F;
    for (int64_t l = 0; l < L; l++) {
        const llmchat_layer *ly = layers + l;
        int rc = 0;
        llmchat_rmsnorm(x, ly->attn_norm, 1, E, eps, h);
        int64_t off = 0;
        for (int p = 0; p < ly->nqkv && !rc; p++) {
            rc = run_lin(&ly->qkv[p], E, h, qkv + off);
            off += ly->qkv[p].rows;
        }
        if (rc) return rc;
        for (int64_t hd = 0; hd < H; hd++) rope1(qkv + hd * D, cis, D);
        for (int64_t hd = 0; hd < KVH; hd++) {
            rope1(qkv + qs + hd * D, cis, D);
            memcpy(kc + ((l * KVH + hd) * cap + pos) * D, qkv + qs + hd * D, sizeof(float) * D);
            memcpy(vc + ((l * KVH + hd) * cap + pos) * D, qkv + qs + kvs + hd * D, sizeof(float) * D);
        }
        llmchat_attend1(qkv, kc + l * KVH * cap * D, vc + l * KVH * cap * D, H, KVH, cap, pos + 1, D, scale, attn);
        if ((rc = run_lin(&ly->o, qs, attn, tmp))) return rc;
        for (int64_t j = 0; j < E; j++) x[j] += tmp[j];
        llmchat_rmsnorm(x, ly->mlp_norm, 1, E, eps, h);
        off = 0;
        for (int p = 0; p < ly->ngu && !rc; p++) {
            rc = run_lin(&ly->gu[p], E, h, gu + off);
            off += ly->gu[p].rows;
        }
        if (rc) return rc;
        llmchat_swiglu(gu, 1, F, act);
        if ((rc = run_lin(&ly->down, F, act, tmp))) return rc;
        for (int64_t j = 0; j < E; j++) x[j] += tmp[j];
    }
    return 0;
}
