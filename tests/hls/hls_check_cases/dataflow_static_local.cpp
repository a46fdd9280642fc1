// Bad: a function-scope static inside a process of a DATAFLOW region: state the region's arguments do not show
// (the accumulators of the MAC array were one, in mac_block, until they became the engine's local).
void accumulate(const int in[64], int out[64]) {
    static int acc[64];
    for (int i = 0; i < 64; ++i) {
        acc[i] += in[i];
        out[i] = acc[i];
    }
}
void scale(const int in[64], int out[64]) {
    for (int i = 0; i < 64; ++i) out[i] = 2 * in[i];
}
void top(const int in[64], int out[64]) {
#pragma HLS DATAFLOW
    int mid[64];
    accumulate(in, mid);
    scale(mid, out);
}
