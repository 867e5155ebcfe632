// CUDA versions of the kernels declared in ops.h. Device pointers in, asynchronous on the caller's stream,
// no allocation per call (the palette travels as a kernel parameter). One thread per output pixel; these kernels
// are memory-bound, so the maths stays simple and the loads coalesce along x.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "ops.h"

namespace edgeseg {
namespace cuda {
namespace {

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw CudaError(std::string("edgeseg CUDA kernel ") + what + " failed: " + cudaGetErrorName(err) + ": " +
                        cudaGetErrorString(err));
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

constexpr int kBX = 32, kBY = 8;
inline dim3 grid2d(int W, int H) { return dim3((W + kBX - 1) / kBX, (H + kBY - 1) / kBY); }

__device__ __forceinline__ float ld(const float* p, size_t i) { return __ldg(p + i); }
__device__ __forceinline__ float ld(const __half* p, size_t i) { return __half2float(p[i]); }

__device__ __forceinline__ void st(float* p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__half* p, size_t i, float v) { p[i] = __float2half_rn(v); }

// Per thread: the header's resize_tap_x/y, resize_h, resize_v and normalise, exactly what the CPU kernel computes.
template <class Out>
__global__ void preprocess_kernel(const uint8_t* __restrict__ src, int H, int W, long long stride,
                                  Out* __restrict__ dst, int h, int w, Norm norm) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    const FixedTap tx = resize_tap_x(x, w, W), ty = resize_tap_y(y, h, H);
    const uint8_t* r0 = src + ty.i0 * stride;
    const uint8_t* r1 = src + ty.i1 * stride;
    const size_t plane = static_cast<size_t>(h) * w, o = static_cast<size_t>(y) * w + x;
#pragma unroll
    for (int c = 0; c < 3; ++c) {  // c is the BGR source channel, written to RGB plane 2 - c
        const int s0 = resize_h(r0[3 * tx.i0 + c], r0[3 * tx.i1 + c], tx);
        const int s1 = resize_h(r1[3 * tx.i0 + c], r1[3 * tx.i1 + c], tx);
        const int oc = 2 - c;
        st(dst, oc * plane + o, normalise(resize_v(s0, s1, ty), norm.scale[oc], norm.bias[oc]));
    }
}

// With Conf, the online softmax of confidence_update (ops.h) runs next to the argmax and `conf` receives
// confidence_u8; without it the kernel is the plain argmax.
template <bool Conf, class In, class Out>
__global__ void argmax_kernel(const In* __restrict__ logits, int C, size_t N, Out* __restrict__ out,
                              uint8_t* __restrict__ conf) {
    const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float best = ld(logits, i), sum = 1.f;
    int idx = 0;
    for (int c = 1; c < C; ++c) {
        const float v = ld(logits, static_cast<size_t>(c) * N + i);
        const bool take = takes_over(v, best);
        if (Conf) sum = confidence_update(sum, v, best, take);
        if (take) {
            best = v;
            idx = c;
        }
    }
    out[i] = static_cast<Out>(idx);
    if (Conf) conf[i] = confidence_u8(sum, best);
}

struct ArgmaxAt {
    int idx;
    uint8_t conf;
};

template <bool Conf, class In>
__device__ __forceinline__ ArgmaxAt upsample_argmax_at(const In* __restrict__ logits, int C, int h, int w,
                                                       int stride, int x, int y) {
    const LinearTap tx = upsample_tap(x, stride, w), ty = upsample_tap(y, stride, h);
    const size_t plane = static_cast<size_t>(h) * w;
    const size_t o00 = static_cast<size_t>(ty.i0) * w + tx.i0, o01 = static_cast<size_t>(ty.i0) * w + tx.i1;
    const size_t o10 = static_cast<size_t>(ty.i1) * w + tx.i0, o11 = static_cast<size_t>(ty.i1) * w + tx.i1;
    float best = 0.f, sum = 1.f;
    int idx = 0;
    for (int c = 0; c < C; ++c) {
        const In* p = logits + c * plane;
        const float v = upsample_value(ld(p, o00), ld(p, o01), ld(p, o10), ld(p, o11), tx.w, ty.w);
        const bool take = c == 0 || takes_over(v, best);
        if (Conf && c > 0) sum = confidence_update(sum, v, best, take);
        if (take) {
            best = v;
            idx = c;
        }
    }
    return {idx, Conf ? confidence_u8(sum, best) : static_cast<uint8_t>(0)};
}

template <bool Conf, class In>
__global__ void upsample_argmax_kernel(const In* __restrict__ logits, int C, int h, int w, int stride,
                                       uint8_t* __restrict__ out, int H, int W, uint8_t* __restrict__ conf) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    const ArgmaxAt r = upsample_argmax_at<Conf>(logits, C, h, w, stride, x, y);
    const size_t i = static_cast<size_t>(y) * W + x;
    out[i] = static_cast<uint8_t>(r.idx);
    if (Conf) conf[i] = r.conf;
}

__device__ __forceinline__ void load_palette(const Palette& pal, uint8_t (&colour)[256][3], uint16_t (&weight)[256]) {
    const int t = threadIdx.y * blockDim.x + threadIdx.x, n = blockDim.x * blockDim.y;
    for (int k = t; k < 256; k += n) {
        colour[k][0] = pal.colour[k][0];
        colour[k][1] = pal.colour[k][1];
        colour[k][2] = pal.colour[k][2];
        weight[k] = pal.weight[k];
    }
    __syncthreads();
}

__global__ void colorize_kernel(const uint8_t* __restrict__ mask, int H, int W, const Palette pal,
                                uint8_t* __restrict__ out) {
    __shared__ uint8_t colour[256][3];
    __shared__ uint16_t weight[256];
    load_palette(pal, colour, weight);
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    const size_t i = static_cast<size_t>(y) * W + x;
    const int k = mask[i];
    out[3 * i + 0] = colour[k][0];
    out[3 * i + 1] = colour[k][1];
    out[3 * i + 2] = colour[k][2];
}

__global__ void overlay_kernel(const uint8_t* __restrict__ frame, int H, int W, const uint8_t* __restrict__ mask,
                               int h, int w, double ix, double iy, const Palette pal, uint8_t* __restrict__ out) {
    __shared__ uint8_t colour[256][3];
    __shared__ uint16_t weight[256];
    load_palette(pal, colour, weight);
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    const int k = mask[static_cast<size_t>(nearest_index(y, iy, h)) * w + nearest_index(x, ix, w)];
    const uint32_t a = weight[k];
    const size_t i = 3 * (static_cast<size_t>(y) * W + x);
    out[i + 0] = blend(frame[i + 0], colour[k][0], a);
    out[i + 1] = blend(frame[i + 1], colour[k][1], a);
    out[i + 2] = blend(frame[i + 2], colour[k][2], a);
}

}  // namespace

std::string compiler_version() {
    return std::to_string(__CUDACC_VER_MAJOR__) + "." + std::to_string(__CUDACC_VER_MINOR__);
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error so later calls report their own
        return 0;
    }
    return n;
}

void preprocess(const uint8_t* src, int H, int W, std::ptrdiff_t src_row_stride, void* dst, int h, int w,
                const float mean[3], const float std_[3], bool fp16, void* stream) {
    const Norm norm = make_norm(mean, std_);
    const dim3 block(kBX, kBY), grid = grid2d(w, h);
    if (fp16)
        preprocess_kernel<<<grid, block, 0, as_stream(stream)>>>(src, H, W, src_row_stride, static_cast<__half*>(dst),
                                                                 h, w, norm);
    else
        preprocess_kernel<<<grid, block, 0, as_stream(stream)>>>(src, H, W, src_row_stride, static_cast<float*>(dst),
                                                                 h, w, norm);
    check(cudaGetLastError(), "preprocess");
}

namespace {
template <bool Conf>
void launch_argmax(const void* logits, bool fp16, int C, size_t N, void* out, bool out_int32, cudaStream_t s,
                   uint8_t* conf) {
    const int block = 256;
    const unsigned grid = static_cast<unsigned>((N + block - 1) / block);
    if (fp16) {
        auto in = static_cast<const __half*>(logits);
        if (out_int32)
            argmax_kernel<Conf><<<grid, block, 0, s>>>(in, C, N, static_cast<int32_t*>(out), conf);
        else
            argmax_kernel<Conf><<<grid, block, 0, s>>>(in, C, N, static_cast<uint8_t*>(out), conf);
    } else {
        auto in = static_cast<const float*>(logits);
        if (out_int32)
            argmax_kernel<Conf><<<grid, block, 0, s>>>(in, C, N, static_cast<int32_t*>(out), conf);
        else
            argmax_kernel<Conf><<<grid, block, 0, s>>>(in, C, N, static_cast<uint8_t*>(out), conf);
    }
}

template <bool Conf>
void launch_upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H,
                            int W, cudaStream_t s, uint8_t* conf) {
    const dim3 block(kBX, kBY), grid = grid2d(W, H);
    if (fp16)
        upsample_argmax_kernel<Conf><<<grid, block, 0, s>>>(static_cast<const __half*>(logits), C, h, w, stride, out,
                                                            H, W, conf);
    else
        upsample_argmax_kernel<Conf><<<grid, block, 0, s>>>(static_cast<const float*>(logits), C, h, w, stride, out,
                                                            H, W, conf);
}
}  // namespace

void argmax(const void* logits, bool fp16, int C, int H, int W, void* out, bool out_int32, void* stream,
            uint8_t* confidence) {
    const size_t N = static_cast<size_t>(H) * W;
    if (confidence != nullptr)
        launch_argmax<true>(logits, fp16, C, N, out, out_int32, as_stream(stream), confidence);
    else
        launch_argmax<false>(logits, fp16, C, N, out, out_int32, as_stream(stream), nullptr);
    check(cudaGetLastError(), "argmax");
}

void upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H, int W,
                     void* stream, uint8_t* confidence) {
    if (confidence != nullptr)
        launch_upsample_argmax<true>(logits, fp16, C, h, w, stride, out, H, W, as_stream(stream), confidence);
    else
        launch_upsample_argmax<false>(logits, fp16, C, h, w, stride, out, H, W, as_stream(stream), nullptr);
    check(cudaGetLastError(), "upsample_argmax");
}

void colorize(const uint8_t* mask, int H, int W, const Palette& palette, uint8_t* out, void* stream) {
    colorize_kernel<<<grid2d(W, H), dim3(kBX, kBY), 0, as_stream(stream)>>>(mask, H, W, palette, out);
    check(cudaGetLastError(), "colorize");
}

void overlay(const uint8_t* frame, int H, int W, const uint8_t* mask, int h, int w, const Palette& palette,
             uint8_t* out, void* stream) {
    overlay_kernel<<<grid2d(W, H), dim3(kBX, kBY), 0, as_stream(stream)>>>(
        frame, H, W, mask, h, w, nearest_inv_scale(W, w), nearest_inv_scale(H, h), palette, out);
    check(cudaGetLastError(), "overlay");
}

void upsample_argmax_overlay(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* mask, int Hm,
                             int Wm, const uint8_t* frame, int H, int W, const Palette& palette, uint8_t* out,
                             void* stream) {
    upsample_argmax(logits, fp16, C, h, w, stride, mask, Hm, Wm, stream);
    overlay(frame, H, W, mask, Hm, Wm, palette, out, stream);
}

}  // namespace cuda
}  // namespace edgeseg
