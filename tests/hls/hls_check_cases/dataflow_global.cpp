// Bad: a file-scope buffer that a process's helper writes and the other process reads. The region's arguments
// do not show it, so Vitis cannot give it one producer and one consumer (and the C-sim hides the race).
static int hist[64];

void bump(int v) { hist[v & 63] += 1; }  // reached from the producer: the finding is here
void count(const int in[64]) {
    for (int i = 0; i < 64; ++i) bump(in[i]);
}
void report(int out[64]) {
    for (int i = 0; i < 64; ++i) out[i] = hist[i];
}
void top(const int in[64], int out[64]) {
#pragma HLS DATAFLOW
    count(in);
    report(out);
}
