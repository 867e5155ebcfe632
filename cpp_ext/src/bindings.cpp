// edgeseg._C: the private extension module. Users call edgeseg.runtime.ops, which validates every argument with
// clear EdgeSegError messages first; the checks here are a second line of defence so that a direct call with bad
// arguments raises ValueError instead of reading out of bounds. Outputs are always passed in (the Python layer
// allocates them when the user gives no out=), so the kernels never allocate result memory. The GIL is released
// around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>

#include "ops.h"

namespace py = pybind11;
using namespace edgeseg;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw py::value_error("edgeseg._C: " + msg); }

enum class Kind { U8, I32, F16, F32, Other };

Kind kind_of(const py::array& a) {
    const py::dtype d = a.dtype();
    const char k = d.kind();
    const auto n = d.itemsize();
    if (k == 'u' && n == 1) return Kind::U8;
    if (k == 'i' && n == 4) return Kind::I32;
    if (k == 'f' && n == 2) return Kind::F16;
    if (k == 'f' && n == 4) return Kind::F32;
    return Kind::Other;
}

bool is_contig(const py::array& a) { return (a.flags() & py::array::c_style) != 0; }

void need(const py::array& a, const char* name, int ndim, bool writeable = false) {
    if (a.ndim() != ndim) fail(std::string(name) + " must have " + std::to_string(ndim) + " dimensions");
    if (!is_contig(a)) fail(std::string(name) + " must be C-contiguous");
    if (writeable && !a.writeable()) fail(std::string(name) + " must be writeable");
}

void need_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
    int i = 0;
    for (auto s : shape) {
        if (a.shape(i) != s) fail(std::string(name) + " has the wrong shape");
        ++i;
    }
}

bool float_kind(const py::array& a, const char* name) {
    const Kind k = kind_of(a);
    if (k != Kind::F32 && k != Kind::F16) fail(std::string(name) + " must be float32 or float16");
    return k == Kind::F16;
}

void need_u8(const py::array& a, const char* name) {
    if (kind_of(a) != Kind::U8) fail(std::string(name) + " must be uint8");
}

Palette palette_from(const py::array& palette, float alpha) {
    need(palette, "palette", 2);
    need_u8(palette, "palette");
    if (palette.shape(1) != 3 || palette.shape(0) < 1 || palette.shape(0) > 256)
        fail("palette must have shape (K, 3) with 1 <= K <= 256");
    return make_palette(static_cast<const uint8_t*>(palette.data()), static_cast<int>(palette.shape(0)), alpha);
}

inline int I(py::ssize_t v) { return static_cast<int>(v); }

void need_resize_sizes(long long H, long long W, long long h, long long w) {
    if (H < 1 || W < 1 || h < 1 || w < 1) fail("sizes must be >= 1");
    if (H > kMaxResizeSide || W > kMaxResizeSide || h > kMaxResizeSide || w > kMaxResizeSide)
        fail("frame and output sides must be at most " + std::to_string(kMaxResizeSide));
}

void need_stride(int stride) {
    if (stride < 1 || stride > kMaxStride) fail("stride must be in 1.." + std::to_string(kMaxStride));
}

// edgeseg.errors.CudaError, looked up once at import; kept for the life of the process (never decref'd at exit).
PyObject* g_cuda_error = nullptr;

void preprocess(const py::array& frame, py::array& out, std::array<float, 3> mean, std::array<float, 3> std_) {
    need_u8(frame, "frame");
    if (frame.ndim() != 3 || frame.shape(2) != 3 || frame.strides(2) != 1 || frame.strides(1) != 3 ||
        frame.strides(0) < 3 * frame.shape(1))
        fail("frame must be (H, W, 3) uint8 with contiguous rows");
    need(out, "out", 4, true);
    const bool fp16 = float_kind(out, "out");
    if (out.shape(0) != 1 || out.shape(1) != 3) fail("out must have shape (1, 3, h, w)");
    need_resize_sizes(frame.shape(0), frame.shape(1), out.shape(2), out.shape(3));
    const int H = I(frame.shape(0)), W = I(frame.shape(1)), h = I(out.shape(2)), w = I(out.shape(3));
    for (int c = 0; c < 3; ++c)
        if (!(std_[c] != 0.f)) fail("std must be non-zero");
    const auto* src = static_cast<const uint8_t*>(frame.data());
    void* dst = out.mutable_data();
    const std::ptrdiff_t stride = frame.strides(0);
    py::gil_scoped_release release;
    cpu::preprocess(src, H, W, stride, dst, h, w, mean.data(), std_.data(), fp16);
}

// The optional (H, W) uint8 confidence plane of argmax / upsample_argmax (None: not computed).
uint8_t* confidence_plane(const py::object& confidence, int H, int W) {
    if (confidence.is_none()) return nullptr;
    if (!py::isinstance<py::array>(confidence)) fail("confidence must be a numpy array or None");
    py::array a = py::reinterpret_borrow<py::array>(confidence);
    need(a, "confidence", 2, true);
    need_u8(a, "confidence");
    need_shape(a, "confidence", {H, W});
    return static_cast<uint8_t*>(a.mutable_data());
}

void argmax(const py::array& logits, py::array& out, const py::object& confidence) {
    need(logits, "logits", 3);
    const bool fp16 = float_kind(logits, "logits");
    need(out, "out", 2, true);
    const Kind ok = kind_of(out);
    if (ok != Kind::U8 && ok != Kind::I32) fail("out must be uint8 or int32");
    const int C = I(logits.shape(0)), H = I(logits.shape(1)), W = I(logits.shape(2));
    if (C < 1) fail("logits must have at least one class");
    if (ok == Kind::U8 && C > 256) fail("more than 256 classes need an int32 output");
    need_shape(out, "out", {H, W});
    uint8_t* conf = confidence_plane(confidence, H, W);
    const void* in = logits.data();
    void* o = out.mutable_data();
    py::gil_scoped_release release;
    cpu::argmax(in, fp16, C, H, W, o, ok == Kind::I32, conf);
}

void upsample_argmax(const py::array& logits, int stride, py::array& out, const py::object& confidence) {
    need(logits, "logits", 3);
    const bool fp16 = float_kind(logits, "logits");
    need(out, "out", 2, true);
    need_u8(out, "out");
    const int C = I(logits.shape(0)), h = I(logits.shape(1)), w = I(logits.shape(2));
    const int H = I(out.shape(0)), W = I(out.shape(1));
    if (C < 1 || C > 256 || h < 1 || w < 1) fail("logits must be (C, h, w) with 1 <= C <= 256");
    need_stride(stride);
    if (H < 1 || W < 1 || H > static_cast<long long>(h) * stride || W > static_cast<long long>(w) * stride)
        fail("out size must be within (h * stride, w * stride)");
    uint8_t* conf = confidence_plane(confidence, H, W);
    const void* in = logits.data();
    auto* o = static_cast<uint8_t*>(out.mutable_data());
    py::gil_scoped_release release;
    cpu::upsample_argmax(in, fp16, C, h, w, stride, o, H, W, conf);
}

void colorize(const py::array& mask, const py::array& palette, py::array& out) {
    need(mask, "mask", 2);
    need_u8(mask, "mask");
    need(out, "out", 3, true);
    need_u8(out, "out");
    need_shape(out, "out", {mask.shape(0), mask.shape(1), 3});
    const Palette pal = palette_from(palette, 1.f);
    const auto* m = static_cast<const uint8_t*>(mask.data());
    auto* o = static_cast<uint8_t*>(out.mutable_data());
    const int H = I(mask.shape(0)), W = I(mask.shape(1));
    py::gil_scoped_release release;
    cpu::colorize(m, H, W, pal, o);
}

void check_overlay_args(const py::array& frame, const py::array& mask, py::array& out) {
    need(frame, "frame", 3);
    need_u8(frame, "frame");
    if (frame.shape(2) != 3) fail("frame must be (H, W, 3)");
    need(mask, "mask", 2);
    need_u8(mask, "mask");
    if (mask.shape(0) < 1 || mask.shape(1) < 1 || frame.shape(0) < 1 || frame.shape(1) < 1) fail("empty input");
    need(out, "out", 3, true);
    need_u8(out, "out");
    need_shape(out, "out", {frame.shape(0), frame.shape(1), 3});
}

void overlay(const py::array& frame, const py::array& mask, const py::array& palette, float alpha, py::array& out) {
    check_overlay_args(frame, mask, out);
    const Palette pal = palette_from(palette, alpha);
    const auto* f = static_cast<const uint8_t*>(frame.data());
    const auto* m = static_cast<const uint8_t*>(mask.data());
    auto* o = static_cast<uint8_t*>(out.mutable_data());
    const int H = I(frame.shape(0)), W = I(frame.shape(1)), h = I(mask.shape(0)), w = I(mask.shape(1));
    py::gil_scoped_release release;
    cpu::overlay(f, H, W, m, h, w, pal, o);
}

void upsample_argmax_overlay(const py::array& logits, int stride, py::array& mask, const py::array& frame,
                             const py::array& palette, float alpha, py::array& out) {
    need(logits, "logits", 3);
    const bool fp16 = float_kind(logits, "logits");
    need(mask, "mask", 2, true);
    check_overlay_args(frame, mask, out);
    const int C = I(logits.shape(0)), h = I(logits.shape(1)), w = I(logits.shape(2));
    const int Hm = I(mask.shape(0)), Wm = I(mask.shape(1));
    if (C < 1 || C > 256 || h < 1 || w < 1) fail("logits must be (C, h, w) with 1 <= C <= 256");
    need_stride(stride);
    if (Hm > static_cast<long long>(h) * stride || Wm > static_cast<long long>(w) * stride)
        fail("mask size must be within (h * stride, w * stride)");
    const Palette pal = palette_from(palette, alpha);
    const void* in = logits.data();
    auto* m = static_cast<uint8_t*>(mask.mutable_data());
    const auto* f = static_cast<const uint8_t*>(frame.data());
    auto* o = static_cast<uint8_t*>(out.mutable_data());
    const int H = I(frame.shape(0)), W = I(frame.shape(1));
    py::gil_scoped_release release;
    cpu::upsample_argmax_overlay(in, fp16, C, h, w, stride, m, Hm, Wm, f, H, W, pal, o);
}

#ifdef EDGESEG_WITH_CUDA
// CUDA entry points: raw device pointers and a cudaStream_t as Python ints. Validation of shapes and dtypes is
// done by edgeseg.runtime.ops from __cuda_array_interface__; nothing here can check a device pointer.
template <class T>
T* ptr(std::uintptr_t p) {
    return reinterpret_cast<T*>(p);
}
inline void* stream_of(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

Palette palette_from_bytes(const py::bytes& palette, float alpha) {
    const std::string p = palette;
    if (p.size() % 3 != 0 || p.empty() || p.size() > 256 * 3) fail("palette must be 3*K bytes, 1 <= K <= 256");
    return make_palette(reinterpret_cast<const uint8_t*>(p.data()), static_cast<int>(p.size() / 3), alpha);
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "EdgeSeg's compiled pre/post-processing kernels (private: use edgeseg.runtime.ops).";
    // One CUDA error class for the whole package: a failed launch raises edgeseg.errors.CudaError (an
    // EdgeSegError the CLI reports), whoever called the kernel. _C.CudaError is that same class.
    py::object cuda_error = py::module_::import("edgeseg.errors").attr("CudaError");
    g_cuda_error = cuda_error.inc_ref().ptr();
    m.attr("CudaError") = cuda_error;
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const CudaError& e) {
            PyErr_SetString(g_cuda_error, e.what());
        }
    });

#ifdef EDGESEG_WITH_CUDA
    m.def("has_cuda", [] { return true; }, "True when the CUDA kernels were compiled into this module.");
    m.def("cuda_device_count", &cuda::device_count, "Number of visible CUDA devices (0 without a driver).");
#else
    m.def("has_cuda", [] { return false; }, "True when the CUDA kernels were compiled into this module.");
    m.def("cuda_device_count", [] { return 0; }, "Number of visible CUDA devices (0 without a driver).");
#endif
    py::dict info;
#if defined(__clang__)
    info["cxx"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    info["cxx"] = std::string("gcc ") + __VERSION__;
#else
    info["cxx"] = "unknown";
#endif
#ifdef EDGESEG_WITH_CUDA
    info["cuda"] = cuda::compiler_version();
    info["cuda_architectures"] = EDGESEG_CUDA_ARCHS;
#else
    info["cuda"] = py::none();
    info["cuda_architectures"] = py::none();
#endif
    m.attr("build_info") = info;
    m.attr("threading") = "std::thread pool";
    m.def("num_threads", &cpu::num_threads, "Threads the CPU kernels use.");
    m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"), "Threads for the CPU kernels (0: all cores).");

    m.def("preprocess", &preprocess, py::arg("frame"), py::arg("out"), py::arg("mean"), py::arg("std"));
    m.def("argmax", &argmax, py::arg("logits"), py::arg("out"), py::arg("confidence") = py::none());
    m.def("upsample_argmax", &upsample_argmax, py::arg("logits"), py::arg("stride"), py::arg("out"),
          py::arg("confidence") = py::none());
    m.def("colorize", &colorize, py::arg("mask"), py::arg("palette"), py::arg("out"));
    m.def("overlay", &overlay, py::arg("frame"), py::arg("mask"), py::arg("palette"), py::arg("alpha"),
          py::arg("out"));
    m.def("upsample_argmax_overlay", &upsample_argmax_overlay, py::arg("logits"), py::arg("stride"), py::arg("mask"),
          py::arg("frame"), py::arg("palette"), py::arg("alpha"), py::arg("out"));

#ifdef EDGESEG_WITH_CUDA
    m.def(
        "preprocess_cuda",
        [](std::uintptr_t src, int H, int W, long long src_stride, std::uintptr_t dst, int h, int w,
           std::array<float, 3> mean, std::array<float, 3> std_, bool fp16, std::uintptr_t stream) {
            need_resize_sizes(H, W, h, w);
            if (src_stride < 3LL * W) fail("src_stride must be at least 3 * W bytes");
            py::gil_scoped_release release;
            cuda::preprocess(ptr<const uint8_t>(src), H, W, src_stride, ptr<void>(dst), h, w, mean.data(),
                             std_.data(), fp16, stream_of(stream));
        },
        py::arg("src_ptr"), py::arg("H"), py::arg("W"), py::arg("src_stride"), py::arg("dst_ptr"), py::arg("h"),
        py::arg("w"), py::arg("mean"), py::arg("std"), py::arg("fp16"), py::arg("stream"));
    m.def(
        "argmax_cuda",
        [](std::uintptr_t logits, bool fp16, int C, int H, int W, std::uintptr_t out, bool out_int32,
           std::uintptr_t stream, std::uintptr_t confidence) {
            py::gil_scoped_release release;
            cuda::argmax(ptr<const void>(logits), fp16, C, H, W, ptr<void>(out), out_int32, stream_of(stream),
                         ptr<uint8_t>(confidence));
        },
        py::arg("logits_ptr"), py::arg("fp16"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("out_ptr"),
        py::arg("out_int32"), py::arg("stream"), py::arg("confidence_ptr") = 0);
    m.def(
        "upsample_argmax_cuda",
        [](std::uintptr_t logits, bool fp16, int C, int h, int w, int stride, std::uintptr_t out, int H, int W,
           std::uintptr_t stream, std::uintptr_t confidence) {
            need_stride(stride);
            py::gil_scoped_release release;
            cuda::upsample_argmax(ptr<const void>(logits), fp16, C, h, w, stride, ptr<uint8_t>(out), H, W,
                                  stream_of(stream), ptr<uint8_t>(confidence));
        },
        py::arg("logits_ptr"), py::arg("fp16"), py::arg("C"), py::arg("h"), py::arg("w"), py::arg("stride"),
        py::arg("out_ptr"), py::arg("H"), py::arg("W"), py::arg("stream"), py::arg("confidence_ptr") = 0);
    m.def(
        "colorize_cuda",
        [](std::uintptr_t mask, int H, int W, const py::bytes& palette, std::uintptr_t out, std::uintptr_t stream) {
            const Palette pal = palette_from_bytes(palette, 1.f);
            py::gil_scoped_release release;
            cuda::colorize(ptr<const uint8_t>(mask), H, W, pal, ptr<uint8_t>(out), stream_of(stream));
        },
        py::arg("mask_ptr"), py::arg("H"), py::arg("W"), py::arg("palette"), py::arg("out_ptr"), py::arg("stream"));
    m.def(
        "overlay_cuda",
        [](std::uintptr_t frame, int H, int W, std::uintptr_t mask, int h, int w, const py::bytes& palette,
           float alpha, std::uintptr_t out, std::uintptr_t stream) {
            const Palette pal = palette_from_bytes(palette, alpha);
            py::gil_scoped_release release;
            cuda::overlay(ptr<const uint8_t>(frame), H, W, ptr<const uint8_t>(mask), h, w, pal, ptr<uint8_t>(out),
                          stream_of(stream));
        },
        py::arg("frame_ptr"), py::arg("H"), py::arg("W"), py::arg("mask_ptr"), py::arg("h"), py::arg("w"),
        py::arg("palette"), py::arg("alpha"), py::arg("out_ptr"), py::arg("stream"));
    m.def(
        "upsample_argmax_overlay_cuda",
        [](std::uintptr_t logits, bool fp16, int C, int h, int w, int stride, std::uintptr_t mask, int Hm, int Wm,
           std::uintptr_t frame, int H, int W, const py::bytes& palette, float alpha, std::uintptr_t out,
           std::uintptr_t stream) {
            need_stride(stride);
            const Palette pal = palette_from_bytes(palette, alpha);
            py::gil_scoped_release release;
            cuda::upsample_argmax_overlay(ptr<const void>(logits), fp16, C, h, w, stride, ptr<uint8_t>(mask), Hm, Wm,
                                          ptr<const uint8_t>(frame), H, W, pal, ptr<uint8_t>(out),
                                          stream_of(stream));
        },
        py::arg("logits_ptr"), py::arg("fp16"), py::arg("C"), py::arg("h"), py::arg("w"), py::arg("stride"),
        py::arg("mask_ptr"), py::arg("Hm"), py::arg("Wm"), py::arg("frame_ptr"), py::arg("H"), py::arg("W"),
        py::arg("palette"), py::arg("alpha"), py::arg("out_ptr"), py::arg("stream"));
#endif
}
