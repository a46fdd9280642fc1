// hls::stream_of_blocks — the Vitis HLS channel that hands whole on-chip arrays (blocks) from one
// long-running dataflow process to another: the producer fills a block under a write_lock, the
// consumer reads it under a read_lock, `depth` blocks in flight (2 = a ping-pong buffer).
//
// Vitis HLS ships <hls_streamofblocks.h>; the ap_types headers this C-simulation builds against do
// not, so when the vendor header is absent this file gives the same interface on a queue. C-simulation
// runs dataflow processes one after the other, so the queue is unbounded there, as Vitis' own csim is.
// A fresh block is filled with a fixed non-zero pattern: a consumer that reads a position its producer
// never wrote gets garbage and fails the bit-exact tests (the hardware would read a stale block).
#pragma once

#if defined(__SYNTHESIS__) || __has_include(<hls_streamofblocks.h>)
#include <hls_streamofblocks.h>
#else
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>

namespace hls {

namespace sob_detail {
template <typename B> struct holder {
    B data;
};
template <typename B> using queue = std::deque<std::unique_ptr<holder<B>>>;
}  // namespace sob_detail

template <typename B, unsigned DEPTH = 2> class stream_of_blocks {
  public:
    stream_of_blocks() = default;
    explicit stream_of_blocks(const char*) {}
    stream_of_blocks(const stream_of_blocks&) = delete;
    stream_of_blocks& operator=(const stream_of_blocks&) = delete;
    bool empty() const { return q.empty(); }
    bool full() const { return false; }
    sob_detail::queue<B> q;
};

template <typename B> class write_lock {
  public:
    template <unsigned D>
    explicit write_lock(stream_of_blocks<B, D>& s) : q_(s.q), h_(new sob_detail::holder<B>) {
        std::memset(static_cast<void*>(&h_->data), 0x5a, sizeof(B));
    }
    ~write_lock() { q_.push_back(std::move(h_)); }
    write_lock(const write_lock&) = delete;
    write_lock& operator=(const write_lock&) = delete;
    auto& operator[](int i) { return h_->data[i]; }

  private:
    sob_detail::queue<B>& q_;
    std::unique_ptr<sob_detail::holder<B>> h_;
};

template <typename B> class read_lock {
  public:
    template <unsigned D> explicit read_lock(stream_of_blocks<B, D>& s) {
        if (s.q.empty()) {
            std::fprintf(stderr, "stream_of_blocks: read_lock on an empty stream (producer and consumer disagree)\n");
            std::abort();
        }
        h_ = std::move(s.q.front());
        s.q.pop_front();
    }
    read_lock(const read_lock&) = delete;
    read_lock& operator=(const read_lock&) = delete;
    const auto& operator[](int i) const { return h_->data[i]; }

  private:
    std::unique_ptr<sob_detail::holder<B>> h_;
};

}  // namespace hls
#endif
