/* A vectorisable exp for the kernels' inner loops.
 *
 * Why: every kernel row computes exp of K shifted values, and glibc's scalar
 * exp (about 6 ns) is what bounds the E-step and the gate loss.  The
 * function below has no branches and no libm call, so a compiler vectorises a
 * loop over it: with AVX2 and FMA, four exps in about 6 ns, 3x faster than
 * libm at K >= 8 (measured on the build machine; see benchmarks/README.md).
 *
 * Portability: AVX2 cannot be assumed in a wheel, so the row loop is compiled
 * twice, once for the baseline instruction set and once with
 * __attribute__((target("avx2,fma"))), and skmoe_select_simd() picks one at
 * import from the running CPU (GCC and clang on x86).  Elsewhere only the
 * baseline loop exists; it is exact all the same.
 *
 * Accuracy: relative error below 3e-16 for -708 <= x <= 709, i.e. about an
 * ulp like libm.  exp(x) is 0 for x < -708 (libm returns a subnormal there,
 * under 3e-308) and exp(709) for x > 709 (the kernels only take x <= 0).
 * NaN gives NaN.
 */
#ifndef SKMOE_FASTEXP_H
#define SKMOE_FASTEXP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline double skmoe_exp(double x)
{
    /* exp(x) = 2**n exp(r) with n = round(x / ln 2) and |r| <= ln(2) / 2. */
    const double log2e = 1.4426950408889634;
    const double ln2_hi = 6.93147180369123816490e-01; /* ln 2 split in two so */
    const double ln2_lo = 1.90821492927058770002e-10; /* that n * ln2_hi is exact */
    const double round_shift = 6755399441055744.0;   /* 1.5 * 2**52 */
    double xc = x < -708.0 ? -708.0 : x;
    xc = xc > 709.0 ? 709.0 : xc;
    /* Adding 1.5 * 2**52 rounds to an integer, which then sits in the low
     * bits of t's mantissa, two's complement. */
    double t = xc * log2e + round_shift;
    double n = t - round_shift;
    double r = (xc - n * ln2_hi) - n * ln2_lo;
    /* Taylor polynomial of degree 13: truncation error r**14 / 14! < 5e-18. */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2**n: the biased exponent n + 1023 shifted into place (-1022 <= n <= 1023). */
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double result = p * scale;
    return x < -708.0 ? 0.0 : result;
}

/* values[i] = exp(values[i]) for i < n. */
#define SKMOE_EXP_INPLACE_BODY                                      \
    {                                                               \
        ptrdiff_t i;                                                \
        for (i = 0; i < n; i++) values[i] = skmoe_exp(values[i]);   \
    }

static void skmoe_exp_inplace_baseline(double *values, ptrdiff_t n)
SKMOE_EXP_INPLACE_BODY

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define SKMOE_HAVE_AVX2_PATH 1
__attribute__((target("avx2,fma")))
static void skmoe_exp_inplace_avx2(double *values, ptrdiff_t n)
SKMOE_EXP_INPLACE_BODY
#endif

typedef void (*skmoe_exp_inplace_fn)(double *, ptrdiff_t);

/* The path every kernel calls; set once by skmoe_select_simd().  The two
 * paths may differ in the last bit of an exp (FMA rounds once). */
static skmoe_exp_inplace_fn skmoe_exp_inplace = skmoe_exp_inplace_baseline;

/* Use the AVX2 path if wanted and the CPU has it; returns 1 if it is now in use. */
static int skmoe_select_simd(int wanted)
{
    skmoe_exp_inplace = skmoe_exp_inplace_baseline;
#ifdef SKMOE_HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (wanted && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        skmoe_exp_inplace = skmoe_exp_inplace_avx2;
        return 1;
    }
#else
    (void)wanted;
#endif
    return 0;
}

#endif /* SKMOE_FASTEXP_H */
