// EdgeSeg pre/post-processing kernels: one header shared by the CPU (ops_cpu.cpp) and CUDA (ops_cuda.cu)
// versions, so both use the same index maths, the same palette table and the same rounding.
//
// Conventions (the numpy reference in edgeseg/runtime/ops_reference.py implements exactly these):
//  * linear resize: src = (dst + 0.5) * (src_size / dst_size) - 0.5, i0 = floor(src) clamped to [0, n-1],
//    i1 = min(i0 + 1, n-1), weight = src - i0 (0 when clamped). This is cv2.resize INTER_LINEAR and
//    torch F.interpolate(mode="bilinear", align_corners=False).
//  * nearest resize: src = min(floor(dst * (1 / (dst_size / src_size))), src_size - 1), in double, which is
//    cv2.resize INTER_NEAREST bit for bit (including its rounding of the scale).
//  * argmax: the first maximum wins; a NaN counts as larger than every number and the first NaN wins
//    (np.argmax's rule). The update test is `!(v <= best) && best == best`.
//  * overlay blend: a8 = round(alpha * 256) in [0, 256];
//    out = (frame * (256 - a8) + colour * a8 + 128) >> 8, i.e. round-half-up of frame*(1-a)+colour*a with
//    a = a8/256. Class ids >= K (void, 255) get a8 = 0, so the frame pixel is unchanged.
//  * colorize: class ids >= K map to black (0, 0, 0).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define ES_HD __host__ __device__ __forceinline__
#else
#define ES_HD inline
#endif

namespace edgeseg {

// Raised by check() when a CUDA call fails; the bindings turn it into edgeseg._C.CudaError (a RuntimeError).
struct CudaError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct LinearCoord {
    int i0, i1;
    float w;  // value = a[i0] + w * (a[i1] - a[i0])
};

// `scale` is src_size / dst_size (or 1/stride for upsample_argmax). T is double on the CPU (tables are built once
// per call) and float on the GPU (computed per thread).
template <class T>
ES_HD LinearCoord linear_coord(int dst, T scale, int src_size) {
    T f = (static_cast<T>(dst) + T(0.5)) * scale - T(0.5);
    int i0 = static_cast<int>(floor(f));
    T w = f - static_cast<T>(i0);
    if (i0 < 0) {
        i0 = 0;
        w = T(0);
    }
    if (i0 >= src_size - 1) {
        i0 = src_size - 1;
        w = T(0);
    }
    const int i1 = i0 + 1 < src_size ? i0 + 1 : src_size - 1;
    return {i0, i1, static_cast<float>(w)};
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
void argmax(const void* logits, bool fp16, int C, int H, int W, void* out, bool out_int32);
void upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H, int W);
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
void argmax(const void* logits, bool fp16, int C, int H, int W, void* out, bool out_int32, void* stream);
void upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H, int W,
                     void* stream);
void colorize(const uint8_t* mask, int H, int W, const Palette& palette, uint8_t* out, void* stream);
void overlay(const uint8_t* frame, int H, int W, const uint8_t* mask, int h, int w, const Palette& palette,
             uint8_t* out, void* stream);
void upsample_argmax_overlay(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* mask, int Hm,
                             int Wm, const uint8_t* frame, int H, int W, const Palette& palette, uint8_t* out,
                             void* stream);
}  // namespace cuda

}  // namespace edgeseg
