// AVX2/FMA/F16C twins of kernels/ref/ops_ref.c: blocked attention over a KV cache (scores for
// a block of positions by 8-row dot products, one vectorised exp per block, V accumulated in
// registers), RMSNorm (f64 sum of squares like the reference) and SwiGLU with a vector exp.
// Invariant: same math as the reference up to f32 rounding and the exp polynomial (~2 ulp).
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

// Cephes-style exp: range reduction by log2(e), degree-6 polynomial, 2^n by exponent bits.
AI __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

AI float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hmax(__m256 a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// {sum a0, ..., sum a7}
AI __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                  __m256 a7) {
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

enum { ATT_B = 32 }; // cached positions per block

// Rows [p0, p0 + n) of a cache as f32 rows of hd floats in buf (or a direct pointer for F32).
AI const float *kv_block(enum lfmd_dtype kvt, const void *base, size_t stride, int p0, int n,
                         int hd, float *buf, int64_t *ld) {
    const uint8_t *b = (const uint8_t *)base + (size_t)p0 * stride;
    if (kvt == LFMD_DTYPE_F32) {
        *ld = (int64_t)(stride / sizeof(float));
        return (const float *)b;
    }
    *ld = hd;
    // A head's rows are stride bytes apart (one row holds every KV head): ask for the same rows
    // of the next block while converting this one (no fault past the end: a prefetch is a hint).
    const size_t rb = kvt == LFMD_DTYPE_F16 ? (size_t)hd * 2 : (size_t)hd / QK8_0 * sizeof(struct block_q8_0);
    for (int p = 0; p < n; p++) {
        const uint8_t *row = b + (size_t)p * stride;
        for (size_t off = 0; off < rb; off += 64)
            _mm_prefetch((const char *)row + (size_t)ATT_B * stride + off, _MM_HINT_T0);
        float *o = buf + (size_t)p * hd;
        if (kvt == LFMD_DTYPE_F16) {
            for (int d = 0; d < hd; d += 8)
                _mm256_storeu_ps(o + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * d))));
        } else { // Q8_0
            const struct block_q8_0 *q = (const struct block_q8_0 *)row;
            for (int i = 0; i < hd / QK8_0; i++) {
                __m256 dv = _mm256_set1_ps(_cvtsh_ss(q[i].d));
                for (int k = 0; k < QK8_0; k += 8) {
                    __m128i v = _mm_loadl_epi64((const __m128i *)(q[i].qs + k));
                    _mm256_storeu_ps(o + i * QK8_0 + k,
                                     _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
                }
            }
        }
    }
    return buf;
}

AI float dot_hd(const float *a, const float *b, int hd) {
    __m256 s = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s);
    return hsum(s);
}

// Queries are handled 8 at a time per block of positions: a K/V block is converted once and
// reused by every query of the call (the heads of one KV group, or several tokens).
void kern_attention_avx2(enum lfmd_dtype kvt, const float *q, int64_t ldq, int n_q, const void *K,
                         const void *V, size_t stride, int n_pos, int hd, float scale, float *out,
                         int64_t ldo) {
    if (hd % 8 || hd > KERN_ATTN_MAX_HD || (kvt == LFMD_DTYPE_Q8_0 && hd % QK8_0)) {
        kern_attention_ref(kvt, q, ldq, n_q, K, V, stride, n_pos, hd, scale, out, ldo);
        return;
    }
    _Alignas(32) float kbuf[ATT_B * KERN_ATTN_MAX_HD], vbuf[ATT_B * KERN_ATTN_MAX_HD];
    _Alignas(32) float s[ATT_B];
    float mx[KERN_ATTN_QB], l[KERN_ATTN_QB];
    for (int q0 = 0; q0 < n_q; q0 += KERN_ATTN_QB) {
        int nq = n_q - q0 < KERN_ATTN_QB ? n_q - q0 : KERN_ATTN_QB;
        for (int qi = 0; qi < nq; qi++) {
            mx[qi] = -INFINITY;
            l[qi] = 0;
            memset(out + (q0 + qi) * ldo, 0, (size_t)hd * sizeof(float));
        }
        for (int p0 = 0; p0 < n_pos; p0 += ATT_B) {
            int nb = n_pos - p0 < ATT_B ? n_pos - p0 : ATT_B;
            int64_t ldk, ldv;
            const float *kb = kv_block(kvt, K, stride, p0, nb, hd, kbuf, &ldk);
            const float *vb = kv_block(kvt, V, stride, p0, nb, hd, vbuf, &ldv);
            for (int qi = 0; qi < nq; qi++) {
                const float *qq = q + (q0 + qi) * ldq;
                float *o = out + (q0 + qi) * ldo;
                int p = 0;
                for (; p + 8 <= nb; p += 8) {
                    __m256 a[8];
                    for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
                    for (int d = 0; d < hd; d += 8) {
                        __m256 qv = _mm256_loadu_ps(qq + d);
#pragma GCC unroll 8
                        for (int k = 0; k < 8; k++)
                            a[k] = _mm256_fmadd_ps(_mm256_loadu_ps(kb + (p + k) * ldk + d), qv, a[k]);
                    }
                    _mm256_store_ps(s + p, _mm256_mul_ps(reduce8(a[0], a[1], a[2], a[3], a[4], a[5],
                                                                 a[6], a[7]),
                                                         _mm256_set1_ps(scale)));
                }
                for (; p < nb; p++) s[p] = dot_hd(qq, kb + p * ldk, hd) * scale;
                // online softmax over the block
                float bm = -INFINITY;
                for (p = 0; p + 8 <= nb; p += 8) bm = fmaxf(bm, hmax(_mm256_load_ps(s + p)));
                for (; p < nb; p++) bm = fmaxf(bm, s[p]);
                float m_new = fmaxf(mx[qi], bm);
                float corr = expf(mx[qi] - m_new);
                mx[qi] = m_new;
                __m256 mv = _mm256_set1_ps(m_new), sum = _mm256_setzero_ps();
                for (p = 0; p + 8 <= nb; p += 8) {
                    __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(s + p), mv));
                    _mm256_store_ps(s + p, e);
                    sum = _mm256_add_ps(sum, e);
                }
                float ls = hsum(sum);
                for (; p < nb; p++) {
                    s[p] = expf(s[p] - m_new);
                    ls += s[p];
                }
                l[qi] = l[qi] * corr + ls;
                // o = o * corr + sum_p e[p] V[p], 64 floats of o in registers at a time
                __m256 cv = _mm256_set1_ps(corr);
                int d = 0;
                for (; d + 64 <= hd; d += 64) {
                    __m256 acc[8];
#pragma GCC unroll 8
                    for (int k = 0; k < 8; k++) acc[k] = _mm256_mul_ps(_mm256_loadu_ps(o + d + 8 * k), cv);
                    for (p = 0; p < nb; p++) {
                        __m256 e = _mm256_set1_ps(s[p]);
                        const float *vr = vb + p * ldv + d;
#pragma GCC unroll 8
                        for (int k = 0; k < 8; k++)
                            acc[k] = _mm256_fmadd_ps(e, _mm256_loadu_ps(vr + 8 * k), acc[k]);
                    }
#pragma GCC unroll 8
                    for (int k = 0; k < 8; k++) _mm256_storeu_ps(o + d + 8 * k, acc[k]);
                }
                for (; d < hd; d += 8) {
                    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv);
                    for (p = 0; p < nb; p++)
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(s[p]), _mm256_loadu_ps(vb + p * ldv + d), acc);
                    _mm256_storeu_ps(o + d, acc);
                }
            }
        }
        for (int qi = 0; qi < nq; qi++) {
            float *o = out + (q0 + qi) * ldo;
            __m256 il = _mm256_set1_ps(l[qi] > 0 ? 1.0f / l[qi] : 0.0f);
            for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), il));
        }
    }
}

void kern_rmsnorm_avx2(const float *x, const float *w, int n, float eps, float *out) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    __m256 iv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), iv)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * inv);
}

void kern_swiglu_avx2(float *g, const float *u, size_t n) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp256(_mm256_xor_ps(x, sign));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
