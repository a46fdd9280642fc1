// Bad: in a DATAFLOW region the array `table` is read by two processes.
void scale(const int table[64], const int in[64], int mid[64]) {
    for (int i = 0; i < 64; ++i) mid[i] = in[i] * table[i];
}
void offset(const int table[64], const int mid[64], int out[64]) {
    for (int i = 0; i < 64; ++i) out[i] = mid[i] + table[i];
}
void top(const int table[64], const int in[64], int out[64]) {
#pragma HLS DATAFLOW
    int mid[64];
    scale(table, in, mid);
    offset(table, mid, out);
}
