// Bad: in a DATAFLOW region the channel `s` has two writers.
#include <hls_stream.h>

void produce(hls::stream<int>& s, int v) {
    for (int i = 0; i < 8; ++i) s.write(v + i);
}
void consume(hls::stream<int>& s, int out[16]) {
    for (int i = 0; i < 16; ++i) out[i] = s.read();
}
void top(int a, int b, int out[16]) {
#pragma HLS DATAFLOW
    hls::stream<int> s;
    produce(s, a);
    produce(s, b);
    consume(s, out);
}
