// Bad: a loop bounded by a run-time value with no LOOP_TRIPCOUNT (Vitis reports its latency as "?").
int top(const int x[256], int n) {
    int s = 0;
SUM:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        s += x[i];
    }
    return s;
}
