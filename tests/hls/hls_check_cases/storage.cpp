// Bad: a 128 Kbit array with no partition, reshape or storage decision (BRAM, URAM or LUTRAM by default).
static int buf[4096];

int top(int i, int v) {
    buf[i & 4095] = v;
    return buf[(i + 1) & 4095];
}
