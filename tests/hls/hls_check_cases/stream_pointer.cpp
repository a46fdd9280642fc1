// Bad: a struct keeps a pointer to a stream (Vitis cannot bind a stream reached through a pointer).
#include <hls_stream.h>

struct Sink {
    hls::stream<int>* out;
    void put(int v) { out->write(v); }
};

void top(hls::stream<int>& out, int v) {
    Sink s = {&out};
    s.put(v);
}
