// Bad: 64-bit arithmetic in a synthesized function (a 3-10 DSP multiplier and a 64-bit shifter).
#include <cstdint>

int top(int a, int b, int s) {
    const int64_t p = int64_t(a) * b;
    return int(p >> s);
}
