// EdgeSeg pre/post-processing kernels: one header shared by the CPU (ops_cpu.cpp) and CUDA (ops_cuda.cu)
// versions. Every number a kernel writes comes from the ES_HD functions below, called with the same operands in the
// same order on both sides, so the CPU and CUDA kernels agree bit for bit by construction. The numpy reference in
// edgeseg/runtime/ops_reference.py implements exactly the same arithmetic and the tests hold the CPU kernels to it.
//
// Conventions:
//  * resize coordinates (both resizes): src = (dst + 0.5) * src_size / dst_size - 0.5, computed EXACTLY in
//    integers as i + r / d (src_pos), never in float, so no platform can round it differently.
//  * preprocess: cv2.resize INTER_LINEAR for uint8, 11-bit fixed point: weight a1 = round_half_even(2048 * r / d),
//    a0 = 2048 - a1; horizontal s = p0 * a0 + p1 * a1 (exact); vertical
//    v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2 (cv2's VResizeLinear, a uint8). Columns
//    outside the image clamp the weight (a1 = 0, edge pixel), rows clamp only the row index (cv2 does both). cv2
//    computes the coordinate in float32, we compute it exactly: the weights differ by one step for a few per mille
//    of the columns/rows at large sizes, so results are within 1 LSB of cv2 and equal to it on most sizes.
//    Then out = fma(v, scale[c], bias[c]) in float32 with scale = 1 / (255 std), bias = -mean / std rounded once
//    from double (make_norm), so (v / 255 - mean) / std within an ulp; fp16 output rounds that float to nearest-even.
//  * upsample_argmax: torch bilinear (align_corners=False) by an integer stride in float32; weight w = r / d
//    (correctly rounded float division), clamped to 0 outside; vertical lerps first, then horizontal
//    (upsample_value), lerp(a, b, w) = a + w * (b - a) with two roundings, never fused into an fma.
//  * nearest resize: src = min(floor(dst * (1 / (dst_size / src_size))), src_size - 1), in double, which is
//    cv2.resize INTER_NEAREST bit for bit (including its rounding of the scale).
//  * argmax: the first maximum wins; a NaN counts as larger than every number and the first NaN wins
//    (np.argmax's rule). The update test is `!(v <= best) && best == best`.
//  * overlay blend: a8 = round(alpha * 256) in [0, 256];
//    out = (frame * (256 - a8) + colour * a8 + 128) >> 8, i.e. round-half-up of frame*(1-a)+colour*a with
//    a = a8/256. Class ids >= K (void, 255) get a8 = 0, so the frame pixel is unchanged.
//  * colorize: class ids >= K map to black (0, 0, 0).
//  * confidence (optional second output of argmax / upsample_argmax): the highest softmax probability
//    p = 1 / sum_c exp(l_c - l_max) as a uint8, floor(255 / sum + 0.5) = round(255 p), in the argmax's own pass
//    (online softmax: the running sum is rescaled whenever the maximum changes; see confidence_update). exp is
//    exp_nonpositive below, plain float32 operations that numpy repeats bit for bit. A pixel with a NaN logit gets 0.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define ES_HD __host__ __device__ __forceinline__
#else
#define ES_HD inline
#endif

namespace edgeseg {

// Raised by check() when a CUDA call fails; the bindings translate it to edgeseg.errors.CudaError.
struct CudaError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Largest frame / model side the resize accepts: keeps every product in src_pos and resize_weight inside int32
// (|n| < 2 * dst_size * src_size <= 2^31, r << 11 < 2^31), so the device needs no 64-bit division.
constexpr int kMaxResizeSide = 32767;
// Largest upsample stride: r and d (< 2 * stride) stay exact as floats.
constexpr int kMaxStride = 4096;

// ---- resize coordinates -------------------------------------------------------------------------------------------

struct SrcPos {
    int i;     // floor(src)
    int r, d;  // src - i = r / d exactly, 0 <= r < d
};

// src = (dst + 0.5) * p / q - 0.5 = ((2 dst + 1) p - q) / (2 q) for a resize by the ratio src/dst = p/q.
ES_HD SrcPos src_pos(int dst, int p, int q) {
    const int d = 2 * q, n = (2 * dst + 1) * p - q;
    int i = n / d, r = n % d;  // C++ truncates towards zero: step back to the floor for negative n
    if (r < 0) {
        r += d;
        --i;
    }
    return {i, r, d};
}

ES_HD int clamp_index(int i, int n) { return i < 0 ? 0 : (i > n - 1 ? n - 1 : i); }

constexpr int kResizeBits = 11, kResizeOne = 1 << kResizeBits;  // cv2's INTER_RESIZE_COEF_BITS / _SCALE

struct FixedTap {
    int i0, i1;  // source indices (clamped)
    int a0, a1;  // weights in 1/2048, a0 + a1 = 2048
};

// round_half_even(2048 * r / d): cv2 rounds its float weight with cvRound (ties to even).
ES_HD int resize_weight(int r, int d) {
    const int t = r << kResizeBits;
    int q = t / d;
    const int rem = t - q * d;
    if (2 * rem > d || (2 * rem == d && (q & 1))) ++q;
    return q;
}

// Columns: outside the image cv2 sets the weight to 0 and reads the edge pixel.
ES_HD FixedTap resize_tap_x(int x, int dst_w, int src_w) {
    const SrcPos s = src_pos(x, src_w, dst_w);
    int i0 = s.i, a1 = resize_weight(s.r, s.d);
    if (i0 < 0) {
        i0 = 0;
        a1 = 0;
    }
    if (i0 >= src_w - 1) {
        i0 = src_w - 1;
        a1 = 0;
    }
    return {i0, i0 + 1 < src_w ? i0 + 1 : src_w - 1, kResizeOne - a1, a1};
}

// Rows: cv2 keeps the weights and clamps only the row indices; with the truncating vertical step below that is
// not the same as clamping the weight, so follow cv2.
ES_HD FixedTap resize_tap_y(int y, int dst_h, int src_h) {
    const SrcPos s = src_pos(y, src_h, dst_h);
    const int a1 = resize_weight(s.r, s.d);
    return {clamp_index(s.i, src_h), clamp_index(s.i + 1, src_h), kResizeOne - a1, a1};
}

// Horizontal step: exact, at most 255 * 2048.
ES_HD int resize_h(int p0, int p1, const FixedTap& t) { return p0 * t.a0 + p1 * t.a1; }

// Vertical step, cv2's VResizeLinear<uchar> bit for bit (4 bits dropped, two 16x16 -> high-16 products, rounded
// shift): 0..255.
ES_HD int resize_v(int s0, int s1, const FixedTap& t) {
    return (((t.a0 * (s0 >> 4)) >> 16) + ((t.a1 * (s1 >> 4)) >> 16) + 2) >> 2;
}

// ---- normalisation ------------------------------------------------------------------------------------------------

struct Norm {
    float scale[3], bias[3];  // per output (RGB) channel
};

// Rounded once from double on the host, so every backend multiplies by the same two floats.
inline Norm make_norm(const float mean[3], const float std_[3]) {
    Norm n;
    for (int c = 0; c < 3; ++c) {
        n.scale[c] = static_cast<float>(1.0 / (255.0 * static_cast<double>(std_[c])));
        n.bias[c] = static_cast<float>(-static_cast<double>(mean[c]) / static_cast<double>(std_[c]));
    }
    return n;
}

// An explicit fma on both sides: left to itself, nvcc fuses v * scale + bias and a host compiler may not.
ES_HD float normalise(int v, float scale, float bias) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(static_cast<float>(v), scale, bias);
#else
    return std::fma(static_cast<float>(v), scale, bias);
#endif
}

// ---- upsample_argmax interpolation ---------------------------------------------------------------------------------

struct LinearTap {
    int i0, i1;
    float w;  // value = lerp(a[i0], a[i1], w)
};

ES_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);  // IEEE division even under --use_fast_math
#else
    return a / b;
#endif
}

// Source tap of output index `dst` for a bilinear upsampling by `stride` of `src_size` samples.
ES_HD LinearTap upsample_tap(int dst, int stride, int src_size) {
    const SrcPos s = src_pos(dst, 1, stride);
    int i0 = s.i;
    float w = div_rn(static_cast<float>(s.r), static_cast<float>(s.d));
    if (i0 < 0) {
        i0 = 0;
        w = 0.f;
    }
    if (i0 >= src_size - 1) {
        i0 = src_size - 1;
        w = 0.f;
    }
    return {i0, i0 + 1 < src_size ? i0 + 1 : src_size - 1, w};
}

// a + w * (b - a) with a rounding after each operation. Never an fma: the device intrinsics cannot be fused, and the
// host files are compiled with -ffp-contract=off (cpp_ext/CMakeLists.txt); numpy float32 computes the same.
ES_HD float lerp(float a, float b, float w) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a)));
#else
    return a + w * (b - a);
#endif
}

// The logit at one output pixel from its four low-res neighbours (aRC: row tap R, column tap C): vertical lerps
// first, then horizontal. The CPU kernel computes lerp(a0C, a1C, wy) once per low-res column and output row and
// reuses it across the row: the same operands in the same order.
ES_HD float upsample_value(float a00, float a01, float a10, float a11, float wx, float wy) {
    return lerp(lerp(a00, a10, wy), lerp(a01, a11, wy), wx);
}

// cv2 INTER_NEAREST: inv_scale = 1 / (dst_size / src_size) computed in double, exactly as OpenCV does.
ES_HD double nearest_inv_scale(int dst_size, int src_size) {
    return 1.0 / (static_cast<double>(dst_size) / static_cast<double>(src_size));
}
ES_HD int nearest_index(int dst, double inv_scale, int src_size) {
    const int s = static_cast<int>(floor(static_cast<double>(dst) * inv_scale));
    return s < src_size - 1 ? s : src_size - 1;
}

// Argmax update rule shared by every kernel (see the header comment).
ES_HD bool takes_over(float v, float best) { return !(v <= best) && best == best; }

// ---- confidence -----------------------------------------------------------------------------------------------------
// Float operations rounded one at a time on both sides: nvcc would otherwise fuse a * b + c into an fma (the host
// files are compiled with -ffp-contract=off).
ES_HD float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
ES_HD float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
ES_HD float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

// 2^n for an integer n in [-126, 127], built from its exponent bits (exact).
ES_HD float pow2_int(int n) {
    const int bits = (n + 127) << 23;
#if defined(__CUDA_ARCH__)
    return __int_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

// exp(x) for x <= 0 (NaN allowed): 2^t with t = x log2(e) clamped to >= -124 (which also turns a NaN into -124;
// below that a term cannot change a sum >= 1), t = n + f with n = trunc(t), f = t - n in (-1, 0] (exact), and
// 2^f = 1 + f (c1 + f (c2 + f c3)), a cubic fitted for relative error on [-1, 0] with 2^0 = 1 exactly (so equal
// logits give exact halves, thirds...): relative error < 1e-4, far below the 2e-3 that moves a uint8 probability by
// one step. Branch-free, so the CPU loops vectorise; the same float32 operations in the same order as numpy's
// reference (ops_reference.exp_nonpositive).
ES_HD float exp_nonpositive(float x) {
    constexpr float kLog2e = 1.4426950408889634f;
    constexpr float c1 = 0.6915874481201172f, c2 = 0.2311585396528244f, c3 = 0.039615824818611145f;
    float t = f_mul(x, kLog2e);
    t = t >= -124.f ? t : -124.f;
    const int n = static_cast<int>(t);
    const float f = f_sub(t, static_cast<float>(n));
    float p = f_add(f_mul(c3, f), c2);
    p = f_add(f_mul(p, f), c1);
    p = f_add(f_mul(p, f), 1.f);
    return f_mul(p, pow2_int(n));
}

// One class of the online softmax, next to takes_over(v, best) with the same `best` (before the update):
// sum holds sum_c exp(l_c - best). When v takes over, the old terms are rescaled by exp(best - v) and v adds 1;
// otherwise v adds exp(v - best). Both factors are exp(-|v - best|): one exp per class. Start with sum = 1.
ES_HD float confidence_update(float sum, float v, float best, bool take) {
    const float e = exp_nonpositive(-fabsf(f_sub(v, best)));
    const float rescaled = f_add(f_mul(sum, e), 1.f), grown = f_add(sum, e);  // both, then a select: vectorises
    return take ? rescaled : grown;
}

// The uint8 confidence of a pixel from its final sum (>= 1) and maximum: round(255 / sum), 0 for a NaN maximum.
ES_HD uint8_t confidence_u8(float sum, float best) {
    const float q = f_add(div_rn(255.f, sum), 0.5f);  // in (0.5, 255.5]
    return best == best ? static_cast<uint8_t>(static_cast<int>(q)) : static_cast<uint8_t>(0);
}

// Colour table for colorize and overlay, passed by value to CUDA kernels (1.3 KB, below the 4 KB parameter limit)
// so a call needs no device allocation and concurrent streams never share state.
struct Palette {
    uint8_t colour[256][3];
    uint16_t weight[256];  // overlay: a8 for valid classes, 0 for void / out-of-range ids
};

inline int alpha_to_a8(float alpha) {
    long a = std::lround(static_cast<double>(alpha) * 256.0);
    return static_cast<int>(a < 0 ? 0 : (a > 256 ? 256 : a));
}

inline Palette make_palette(const uint8_t* palette, int num_colours, float alpha) {
    Palette p{};
    const int a8 = alpha_to_a8(alpha);
    for (int k = 0; k < 256; ++k) {
        const bool valid = k < num_colours;
        for (int c = 0; c < 3; ++c) p.colour[k][c] = valid ? palette[3 * k + c] : 0;
        p.weight[k] = static_cast<uint16_t>(valid ? a8 : 0);
    }
    return p;
}

ES_HD uint8_t blend(uint8_t frame, uint8_t colour, uint32_t a8) {
    return static_cast<uint8_t>((frame * (256u - a8) + colour * a8 + 128u) >> 8);
}

// IEEE half <-> float without compiler support for _Float16 (branch-light; round-to-nearest-even like numpy).
inline float half_to_float(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } o, magic;
    magic.u = 113u << 23;
    const uint32_t shifted_exp = 0x7c00u << 13;
    o.u = (h & 0x7fffu) << 13;
    const uint32_t exp = shifted_exp & o.u;
    o.u += (127u - 15u) << 23;
    if (exp == shifted_exp) {
        o.u += (128u - 16u) << 23;  // Inf / NaN
    } else if (exp == 0) {
        o.u += 1u << 23;  // zero / subnormal
        o.f -= magic.f;
    }
    o.u |= static_cast<uint32_t>(h & 0x8000u) << 16;
    return o.f;
}

inline uint16_t float_to_half(float value) {
    union {
        uint32_t u;
        float f;
    } f, f32infty, f16max, denorm_magic;
    f.f = value;
    f32infty.u = 255u << 23;
    f16max.u = (127u + 16u) << 23;
    denorm_magic.u = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    const uint32_t sign = f.u & 0x80000000u;
    f.u ^= sign;
    uint16_t o;
    if (f.u >= f16max.u) {
        o = (f.u > f32infty.u) ? 0x7e00 : 0x7c00;  // NaN -> qNaN, overflow -> Inf
    } else if (f.u < (113u << 23)) {
        f.f += denorm_magic.f;  // subnormal: let the FPU round
        o = static_cast<uint16_t>(f.u - denorm_magic.u);
    } else {
        const uint32_t mant_odd = (f.u >> 13) & 1u;
        f.u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
        f.u += mant_odd;
        o = static_cast<uint16_t>(f.u >> 13);
    }
    return static_cast<uint16_t>(o | (sign >> 16));
}

// ---------------------------------------------------------------------------------------------------------------
// CPU kernels: host pointers, C-contiguous buffers (preprocess accepts a row stride in bytes for the frame).
// Multithreaded over rows; called with the GIL released. Shapes are validated by the caller.
namespace cpu {
int num_threads();
void set_num_threads(int n);

void preprocess(const uint8_t* src, int H, int W, std::ptrdiff_t src_row_stride, void* dst, int h, int w,
                const float mean[3], const float std[3], bool fp16);
// `confidence` (H, W) uint8 or nullptr: also write each pixel's highest softmax probability (confidence_u8).
void argmax(const void* logits, bool fp16, int C, int H, int W, void* out, bool out_int32,
            uint8_t* confidence = nullptr);
void upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H, int W,
                     uint8_t* confidence = nullptr);
void colorize(const uint8_t* mask, int H, int W, const Palette& palette, uint8_t* out);
void overlay(const uint8_t* frame, int H, int W, const uint8_t* mask, int h, int w, const Palette& palette,
             uint8_t* out);
// upsample_argmax into `mask` (Hm, Wm), then overlay of that mask on the frame (H, W), in one call.
void upsample_argmax_overlay(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* mask, int Hm,
                             int Wm, const uint8_t* frame, int H, int W, const Palette& palette, uint8_t* out);
}  // namespace cpu

// ---------------------------------------------------------------------------------------------------------------
// CUDA kernels: device pointers, a cudaStream_t passed as void*, no allocation, asynchronous on `stream`.
// Launch errors are turned into CudaError by check(). Compiled only when EDGESEG_WITH_CUDA is defined.
namespace cuda {
int device_count();  // 0 when there is no driver or no device (never throws)
std::string compiler_version();  // nvcc version the kernels were built with, e.g. "13.0"

void preprocess(const uint8_t* src, int H, int W, std::ptrdiff_t src_row_stride, void* dst, int h, int w,
                const float mean[3], const float std[3], bool fp16, void* stream);
void argmax(const void* logits, bool fp16, int C, int H, int W, void* out, bool out_int32, void* stream,
            uint8_t* confidence = nullptr);
void upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H, int W,
                     void* stream, uint8_t* confidence = nullptr);
void colorize(const uint8_t* mask, int H, int W, const Palette& palette, uint8_t* out, void* stream);
void overlay(const uint8_t* frame, int H, int W, const uint8_t* mask, int h, int w, const Palette& palette,
             uint8_t* out, void* stream);
void upsample_argmax_overlay(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* mask, int Hm,
                             int Wm, const uint8_t* frame, int H, int W, const Palette& palette, uint8_t* out,
                             void* stream);
}  // namespace cuda

}  // namespace edgeseg
