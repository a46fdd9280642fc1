// Every rule's accepted form: a stream passed by reference, a loop for log2 evaluated into a constant, 32-bit
// arithmetic, a canonical DATAFLOW region (each array to one process, the channel one writer and one reader),
// the top's buffer passed down as an array argument (a constant table may be read anywhere), a LOOP_TRIPCOUNT on
// the run-time bound, a storage decision on the large array.
#include <hls_stream.h>

constexpr int ilog2(unsigned v) {
    int n = 0;
    while (v > 1) {
        v >>= 1;
        ++n;
    }
    return n;
}
constexpr int SHIFT = ilog2(64);
const int ROUND[4] = {0, 1, 1, 2};  // a ROM: constant tables are fine in a process

void produce(const int in[64], int n, hls::stream<int>& s) {
PRODUCE:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
        s.write((in[i] >> SHIFT) + ROUND[in[i] & 3]);
    }
}
void consume(hls::stream<int>& s, int n, const int buf[4096], int out[64]) {
CONSUME:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
        out[i] = s.read() + buf[i];
    }
}
void stage(const int in[64], int n, const int buf[4096], int out[64]) {
#pragma HLS DATAFLOW
    hls::stream<int> s;
    produce(in, n, s);
    consume(s, n, buf, out);
}
void top(const int in[64], int n, int out[64]) {
    static int buf[4096];  // the top's own, persistent across calls, passed down by reference
#pragma HLS BIND_STORAGE variable = buf type = ram_2p impl = bram
    buf[n & 4095] = n;
    stage(in, n, buf, out);
}
