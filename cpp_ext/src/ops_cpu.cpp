// CPU versions of the kernels declared in ops.h: row-parallel on a small std::thread pool (see Pool),
// with inner loops written over contiguous x so the compiler can vectorise them. Scratch rows live in
// thread_local vectors that only grow, so steady-state calls do not allocate.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include <unistd.h>  // getpid
#include <thread>
#include <vector>

#include "ops.h"


namespace edgeseg {
namespace cpu {
namespace {

std::atomic<int> g_threads{0};  // 0: all hardware threads

int default_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

// A small persistent thread pool with chunk self-scheduling. The calling thread works too, and a call finishes as
// soon as every chunk is done: a helper that the OS has not scheduled yet (a busy device: decoder, inference and
// display threads share the cores) finds no chunk left and does nothing, instead of holding everyone at a barrier
// the way a static OpenMP split does. Concurrent callers do not queue: whoever finds the pool busy runs its job on
// its own thread.
class Pool {
public:
    static Pool& instance() {
        // Never destroyed and its threads are detached: nothing to join at interpreter exit, and a forked child
        // (which has none of the parent's threads) just starts its own helpers (see ensure_workers).
        static Pool* pool = new Pool;
        return *pool;
    }

    template <class Fn>
    void run(int chunks, int helpers, Fn& fn) {
        std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
        if (!busy.owns_lock() || helpers <= 0) {
            for (int i = 0; i < chunks; ++i) fn(i);
            return;
        }
        ensure_workers(helpers);
        Job job{&invoke<Fn>, &fn, chunks};
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = &job;
            helpers_wanted_ = helpers;
            ++generation_;
        }
        cv_work_.notify_all();
        work(job);
        std::unique_lock<std::mutex> lk(mu_);
        job_ = nullptr;  // late helpers no longer join
        cv_done_.wait(lk, [&] { return job.done.load() == chunks && active_ == 0; });
    }

private:
    struct Job {
        void (*call)(void*, int);
        void* fn;
        int chunks;
        std::atomic<int> next{0};
        std::atomic<int> done{0};
        Job(void (*c)(void*, int), void* f, int n) : call(c), fn(f), chunks(n) {}
    };

    template <class Fn>
    static void invoke(void* fn, int i) {
        (*static_cast<Fn*>(fn))(i);
    }

    void work(Job& job) {
        for (int i = job.next.fetch_add(1); i < job.chunks; i = job.next.fetch_add(1)) {
            job.call(job.fn, i);
            if (job.done.fetch_add(1) + 1 == job.chunks) {
                std::lock_guard<std::mutex> lk(mu_);
                cv_done_.notify_all();
            }
        }
    }

    void ensure_workers(int n) {
        std::lock_guard<std::mutex> lk(mu_);
        if (owner_pid_ != getpid()) {  // first use, or first use after fork(): the helpers are not ours
            owner_pid_ = getpid();
            workers_ = 0;
        }
        for (; workers_ < n; ++workers_) std::thread([this] { loop(); }).detach();
    }

    void loop() {
        std::unique_lock<std::mutex> lk(mu_);
        std::uint64_t seen = generation_;
        for (;;) {
            cv_work_.wait(lk, [&] { return generation_ != seen; });
            seen = generation_;
            if (job_ == nullptr || helpers_wanted_ <= 0) continue;
            --helpers_wanted_;
            Job* job = job_;
            ++active_;
            lk.unlock();
            work(*job);
            lk.lock();
            if (--active_ == 0) cv_done_.notify_all();
        }
    }

    std::mutex run_mu_, mu_;
    std::condition_variable cv_work_, cv_done_;
    int workers_ = 0;
    pid_t owner_pid_ = 0;
    Job* job_ = nullptr;
    std::uint64_t generation_ = 0;
    int helpers_wanted_ = 0, active_ = 0;
};

// Split [0, n) into ranges and call fn(begin, end) on the pool. `work` is a rough count of elements touched;
// small jobs stay on the calling thread, where waking helpers costs more than it saves.
template <class Fn>
void parallel_ranges(int n, long long work, Fn&& fn) {
    int threads = num_threads();
    const long long min_work_per_thread = 1 << 15;
    threads = static_cast<int>(std::min<long long>(threads, std::max<long long>(1, work / min_work_per_thread)));
    threads = std::max(1, std::min(threads, n));
    if (threads == 1) {
        if (n > 0) fn(0, n);
        return;
    }
    const int chunks = std::min(n, threads * 4);  // a few chunks per thread to balance uneven progress
    auto chunk = [&](int i) {
        const int begin = static_cast<int>(static_cast<long long>(n) * i / chunks);
        const int end = static_cast<int>(static_cast<long long>(n) * (i + 1) / chunks);
        if (begin < end) fn(begin, end);
    };
    Pool::instance().run(chunks, threads - 1, chunk);
}

template <class T>
T* scratch(std::vector<T>& buf, std::size_t n) {
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

inline float load(const float* p, std::size_t i) { return p[i]; }
inline float load(const uint16_t* p, std::size_t i) { return half_to_float(p[i]); }

// --- preprocess --------------------------------------------------------------------------------------------------

// Horizontal step of one source row into three planar int rows in RGB order (resize_h, exact).
void hresize_row(const uint8_t* row, int w, const FixedTap* tx, int32_t* r, int32_t* g, int32_t* b) {
    for (int x = 0; x < w; ++x) {
        const FixedTap& t = tx[x];
        const uint8_t* p0 = row + 3 * t.i0;
        const uint8_t* p1 = row + 3 * t.i1;
        b[x] = resize_h(p0[0], p1[0], t);
        g[x] = resize_h(p0[1], p1[1], t);
        r[x] = resize_h(p0[2], p1[2], t);
    }
}

// The vertical step gives a uint8, so normalise() is a 256-entry table per channel: the same floats the CUDA kernel
// computes per pixel, for a table look-up here.
template <class Out>
Out normalised(int v, float scale, float bias);
template <>
float normalised<float>(int v, float scale, float bias) {
    return normalise(v, scale, bias);
}
template <>
uint16_t normalised<uint16_t>(int v, float scale, float bias) {
    return float_to_half(normalise(v, scale, bias));
}

template <class Out>
void vresize_row(Out* dst, const int32_t* s0, const int32_t* s1, const FixedTap& ty, const Out* lut, int w) {
    for (int x = 0; x < w; ++x) dst[x] = lut[resize_v(s0[x], s1[x], ty)];
}

template <class Out>
void preprocess_impl(const uint8_t* src, int H, int W, std::ptrdiff_t stride, Out* dst, int h, int w,
                     const float mean[3], const float std_[3]) {
    std::vector<FixedTap> tx(w);
    for (int x = 0; x < w; ++x) tx[x] = resize_tap_x(x, w, W);
    const Norm norm = make_norm(mean, std_);
    Out lut[3][256];
    for (int c = 0; c < 3; ++c)  // output channel c is RGB; mean/std are given in RGB order
        for (int v = 0; v < 256; ++v) lut[c][v] = normalised<Out>(v, norm.scale[c], norm.bias[c]);
    const std::size_t plane = static_cast<std::size_t>(h) * w;
    parallel_ranges(h, static_cast<long long>(h) * w * 3, [&](int y_begin, int y_end) {
        thread_local std::vector<int32_t> buf;
        int32_t* rows = scratch(buf, static_cast<std::size_t>(6) * w);
        int32_t* slot[2] = {rows, rows + 3 * w};  // two cached source rows, planar RGB
        int slot_row[2] = {-1, -1};
        auto get_row = [&](int sy_row, int avoid) -> int32_t* {
            for (int s = 0; s < 2; ++s)
                if (slot_row[s] == sy_row) return slot[s];
            const int s = (slot_row[0] == avoid) ? 1 : 0;
            int32_t* p = slot[s];
            hresize_row(src + stride * sy_row, w, tx.data(), p, p + w, p + 2 * w);
            slot_row[s] = sy_row;
            return p;
        };
        for (int y = y_begin; y < y_end; ++y) {
            const FixedTap ty = resize_tap_y(y, h, H);
            int32_t* r0 = get_row(ty.i0, -1);
            int32_t* r1 = ty.i1 == ty.i0 ? r0 : get_row(ty.i1, ty.i0);
            for (int c = 0; c < 3; ++c)
                vresize_row<Out>(dst + c * plane + static_cast<std::size_t>(y) * w, r0 + c * w, r1 + c * w, ty, lut[c],
                                 w);
        }
    });
}

// --- argmax ------------------------------------------------------------------------------------------------------

// x86-64 Linux: the confidence loop is compiled three times (AVX-512, AVX2, the baseline's SSE2) and the loader picks
// the widest the CPU has (target_clones, an ifunc). The clones run the same IEEE float operations in the same order,
// only more lanes at a time (no fma: -ffp-contract=off), so they give the same bits. Measured on a 2-core AVX-512
// Xeon/EPYC: the confidence's exp per class and pixel costs ~4x the argmax on SSE2, ~2x on AVX2, ~1.15x on AVX-512.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define ES_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ES_VECTOR_CLONES
#endif

// Class c (> 0) of the argmax over n pixels with its online softmax (confidence_update): v holds the class's
// values, best / sum / idx the running state. Branch-free selects so the loop vectorises.
ES_VECTOR_CLONES void argmax_confidence_step(const float* __restrict__ v, float* __restrict__ best,
                                             float* __restrict__ sum, int32_t* __restrict__ idx, int n, int c) {
    for (int i = 0; i < n; ++i) {
        const float x = v[i], b = best[i];
        const bool take = !(x <= b) & (b == b);  // takes_over()
        sum[i] = confidence_update(sum[i], x, b, take);
        best[i] = take ? x : b;
        idx[i] = take ? c : idx[i];
    }
}

// A row of float values: the row itself for float32, converted into `buf` for float16 (exact).
inline const float* float_row(const float* row, int, float*) { return row; }
inline const float* float_row(const uint16_t* row, int n, float* buf) {
    for (int i = 0; i < n; ++i) buf[i] = half_to_float(row[i]);
    return buf;
}

template <class In, class Out>
void argmax_impl(const In* logits, int C, std::size_t N, Out* out) {
    constexpr int kBlock = 1024;
    const int blocks = static_cast<int>((N + kBlock - 1) / kBlock);
    parallel_ranges(blocks, static_cast<long long>(N) * C, [&](int b_begin, int b_end) {
        float best[kBlock];
        int32_t idx[kBlock];
        for (int b = b_begin; b < b_end; ++b) {
            const std::size_t start = static_cast<std::size_t>(b) * kBlock;
            const int n = static_cast<int>(std::min<std::size_t>(kBlock, N - start));
            for (int i = 0; i < n; ++i) {
                best[i] = load(logits, start + i);
                idx[i] = 0;
            }
            for (int c = 1; c < C; ++c) {
                const In* plane = logits + static_cast<std::size_t>(c) * N + start;
                for (int i = 0; i < n; ++i) {  // branch-free selects so the loop vectorises
                    const float v = load(plane, i), b = best[i];
                    const bool take = !(v <= b) & (b == b);
                    best[i] = take ? v : b;
                    idx[i] = take ? c : idx[i];
                }
            }
            for (int i = 0; i < n; ++i) out[start + i] = static_cast<Out>(idx[i]);
        }
    });
}

// argmax_impl plus the confidence plane (confidence_u8 of the online softmax), in the same pass over the logits.
template <class In, class Out>
void argmax_confidence_impl(const In* logits, int C, std::size_t N, Out* out, uint8_t* conf) {
    constexpr int kBlock = 1024;
    const int blocks = static_cast<int>((N + kBlock - 1) / kBlock);
    parallel_ranges(blocks, static_cast<long long>(N) * C, [&](int b_begin, int b_end) {
        float best[kBlock], sum[kBlock], buf[kBlock];
        int32_t idx[kBlock];
        for (int b = b_begin; b < b_end; ++b) {
            const std::size_t start = static_cast<std::size_t>(b) * kBlock;
            const int n = static_cast<int>(std::min<std::size_t>(kBlock, N - start));
            for (int i = 0; i < n; ++i) {
                best[i] = load(logits, start + i);
                sum[i] = 1.f;
                idx[i] = 0;
            }
            for (int c = 1; c < C; ++c)
                argmax_confidence_step(float_row(logits + static_cast<std::size_t>(c) * N + start, n, buf), best, sum,
                                       idx, n, c);
            for (int i = 0; i < n; ++i) out[start + i] = static_cast<Out>(idx[i]);
            for (int i = 0; i < n; ++i) conf[start + i] = confidence_u8(sum[i], best[i]);
        }
    });
}

// --- upsample_argmax ---------------------------------------------------------------------------------------------

struct Run {
    int begin, end, i0, i1;  // output columns [begin, end) all read low-res columns i0 and i1
};

// Vertical lerps of upsample_value for one output row, once per class and low-res column, into t (C, w).
template <class In>
void vertical_lerps(const In* logits, int C, int h, int w, const LinearTap& ty, float* t) {
    const std::size_t plane = static_cast<std::size_t>(h) * w;
    for (int c = 0; c < C; ++c) {
        const In* r0 = logits + c * plane + static_cast<std::size_t>(ty.i0) * w;
        const In* r1 = logits + c * plane + static_cast<std::size_t>(ty.i1) * w;
        float* tc = t + static_cast<std::size_t>(c) * w;
        for (int x = 0; x < w; ++x) tc[x] = lerp(load(r0, x), load(r1, x), ty.w);
    }
}

template <class In>
void upsample_argmax_rows(const In* logits, int C, int h, int w, int stride, uint8_t* out, int W, int y_begin,
                          int y_end, const std::vector<Run>& runs, const float* wx) {
    thread_local std::vector<float> tbuf, bbuf;
    thread_local std::vector<int32_t> ibuf;
    float* t = scratch(tbuf, static_cast<std::size_t>(C) * w);
    float* best = scratch(bbuf, static_cast<std::size_t>(W));
    int32_t* idx = scratch(ibuf, static_cast<std::size_t>(W));
    for (int y = y_begin; y < y_end; ++y) {
        vertical_lerps(logits, C, h, w, upsample_tap(y, stride, h), t);
        for (int c = 0; c < C; ++c) {  // its horizontal lerp, fused with the running argmax
            const float* tc = t + static_cast<std::size_t>(c) * w;
            for (const Run& run : runs) {
                const float a = tc[run.i0], b = tc[run.i1];
                const int x_begin = run.begin, x_end = run.end;  // locals: idx (int32) could alias the Run
                if (c == 0) {
                    for (int x = x_begin; x < x_end; ++x) {
                        best[x] = lerp(a, b, wx[x]);
                        idx[x] = 0;
                    }
                } else {
                    for (int x = x_begin; x < x_end; ++x) {
                        const float v = lerp(a, b, wx[x]), bv = best[x];
                        const bool take = !(v <= bv) & (bv == bv);  // takes_over(), branch-free
                        best[x] = take ? v : bv;
                        idx[x] = take ? c : idx[x];
                    }
                }
            }
        }
        uint8_t* o = out + static_cast<std::size_t>(y) * W;
        for (int x = 0; x < W; ++x) o[x] = static_cast<uint8_t>(idx[x]);
    }
}

// upsample_argmax_rows plus the confidence: each class's upsampled row is written out whole (the same lerps), then
// one argmax_confidence_step over all W columns, a long loop that vectorises better than the short runs.
template <class In>
void upsample_argmax_confidence_rows(const In* logits, int C, int h, int w, int stride, uint8_t* out, uint8_t* conf,
                                     int W, int y_begin, int y_end, const std::vector<Run>& runs, const float* wx) {
    thread_local std::vector<float> tbuf, bbuf, sbuf, vbuf;
    thread_local std::vector<int32_t> ibuf;
    float* t = scratch(tbuf, static_cast<std::size_t>(C) * w);
    float* best = scratch(bbuf, static_cast<std::size_t>(W));
    float* sum = scratch(sbuf, static_cast<std::size_t>(W));
    float* values = scratch(vbuf, static_cast<std::size_t>(W));
    int32_t* idx = scratch(ibuf, static_cast<std::size_t>(W));
    for (int y = y_begin; y < y_end; ++y) {
        vertical_lerps(logits, C, h, w, upsample_tap(y, stride, h), t);
        for (int c = 0; c < C; ++c) {
            const float* tc = t + static_cast<std::size_t>(c) * w;
            float* row = c == 0 ? best : values;
            for (const Run& run : runs) {
                const float a = tc[run.i0], b = tc[run.i1];
                for (int x = run.begin; x < run.end; ++x) row[x] = lerp(a, b, wx[x]);
            }
            if (c == 0) {
                for (int x = 0; x < W; ++x) {
                    sum[x] = 1.f;
                    idx[x] = 0;
                }
            } else {
                argmax_confidence_step(values, best, sum, idx, W, c);
            }
        }
        uint8_t* o = out + static_cast<std::size_t>(y) * W;
        uint8_t* q = conf + static_cast<std::size_t>(y) * W;
        for (int x = 0; x < W; ++x) o[x] = static_cast<uint8_t>(idx[x]);
        for (int x = 0; x < W; ++x) q[x] = confidence_u8(sum[x], best[x]);
    }
}

void upsample_argmax_any(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H,
                         int W, uint8_t* conf = nullptr) {
    std::vector<float> wx(W);
    std::vector<Run> runs;
    for (int x = 0; x < W; ++x) {
        const LinearTap c = upsample_tap(x, stride, w);
        wx[x] = c.w;
        if (runs.empty() || runs.back().i0 != c.i0 || runs.back().i1 != c.i1) runs.push_back({x, x, c.i0, c.i1});
        runs.back().end = x + 1;
    }
    parallel_ranges(H, static_cast<long long>(H) * W * C, [&](int y0, int y1) {
        if (conf != nullptr && fp16)
            upsample_argmax_confidence_rows(static_cast<const uint16_t*>(logits), C, h, w, stride, out, conf, W, y0,
                                            y1, runs, wx.data());
        else if (conf != nullptr)
            upsample_argmax_confidence_rows(static_cast<const float*>(logits), C, h, w, stride, out, conf, W, y0, y1,
                                            runs, wx.data());
        else if (fp16)
            upsample_argmax_rows(static_cast<const uint16_t*>(logits), C, h, w, stride, out, W, y0, y1, runs,
                                 wx.data());
        else
            upsample_argmax_rows(static_cast<const float*>(logits), C, h, w, stride, out, W, y0, y1, runs, wx.data());
    });
}

// --- overlay -----------------------------------------------------------------------------------------------------

void overlay_any(const uint8_t* frame, int H, int W, const uint8_t* mask, int h, int w, const Palette& pal,
                 uint8_t* out) {
    std::vector<int> xs(W);
    const double ix = nearest_inv_scale(W, w), iy = nearest_inv_scale(H, h);
    for (int x = 0; x < W; ++x) xs[x] = nearest_index(x, ix, w);
    parallel_ranges(H, static_cast<long long>(H) * W * 3, [&](int y_begin, int y_end) {
        for (int y = y_begin; y < y_end; ++y) {
            const uint8_t* m = mask + static_cast<std::size_t>(nearest_index(y, iy, h)) * w;
            const uint8_t* f = frame + static_cast<std::size_t>(y) * W * 3;
            uint8_t* o = out + static_cast<std::size_t>(y) * W * 3;
            for (int x = 0; x < W; ++x) {
                const int k = m[xs[x]];
                const uint32_t a = pal.weight[k];
                const uint8_t* col = pal.colour[k];
                o[3 * x + 0] = blend(f[3 * x + 0], col[0], a);
                o[3 * x + 1] = blend(f[3 * x + 1], col[1], a);
                o[3 * x + 2] = blend(f[3 * x + 2], col[2], a);
            }
        }
    });
}

}  // namespace

int num_threads() {
    const int n = g_threads.load();
    return n > 0 ? n : default_threads();
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

void preprocess(const uint8_t* src, int H, int W, std::ptrdiff_t src_row_stride, void* dst, int h, int w,
                const float mean[3], const float std_[3], bool fp16) {
    if (fp16)
        preprocess_impl(src, H, W, src_row_stride, static_cast<uint16_t*>(dst), h, w, mean, std_);
    else
        preprocess_impl(src, H, W, src_row_stride, static_cast<float*>(dst), h, w, mean, std_);
}

void argmax(const void* logits, bool fp16, int C, int H, int W, void* out, bool out_int32, uint8_t* confidence) {
    const std::size_t N = static_cast<std::size_t>(H) * W;
    auto run = [&](auto in) {
        if (confidence != nullptr) {
            if (out_int32)
                argmax_confidence_impl(in, C, N, static_cast<int32_t*>(out), confidence);
            else
                argmax_confidence_impl(in, C, N, static_cast<uint8_t*>(out), confidence);
        } else if (out_int32) {
            argmax_impl(in, C, N, static_cast<int32_t*>(out));
        } else {
            argmax_impl(in, C, N, static_cast<uint8_t*>(out));
        }
    };
    if (fp16)
        run(static_cast<const uint16_t*>(logits));
    else
        run(static_cast<const float*>(logits));
}

void upsample_argmax(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* out, int H, int W,
                     uint8_t* confidence) {
    upsample_argmax_any(logits, fp16, C, h, w, stride, out, H, W, confidence);
}

void colorize(const uint8_t* mask, int H, int W, const Palette& pal, uint8_t* out) {
    parallel_ranges(H, static_cast<long long>(H) * W * 3, [&](int y_begin, int y_end) {
        for (int y = y_begin; y < y_end; ++y) {
            const uint8_t* m = mask + static_cast<std::size_t>(y) * W;
            uint8_t* o = out + static_cast<std::size_t>(y) * W * 3;
            for (int x = 0; x < W; ++x) std::memcpy(o + 3 * x, pal.colour[m[x]], 3);
        }
    });
}

void overlay(const uint8_t* frame, int H, int W, const uint8_t* mask, int h, int w, const Palette& pal,
             uint8_t* out) {
    overlay_any(frame, H, W, mask, h, w, pal, out);
}

void upsample_argmax_overlay(const void* logits, bool fp16, int C, int h, int w, int stride, uint8_t* mask, int Hm,
                             int Wm, const uint8_t* frame, int H, int W, const Palette& pal, uint8_t* out) {
    upsample_argmax_any(logits, fp16, C, h, w, stride, mask, Hm, Wm);
    overlay_any(frame, H, W, mask, Hm, Wm, pal, out);
}

}  // namespace cpu
}  // namespace edgeseg
