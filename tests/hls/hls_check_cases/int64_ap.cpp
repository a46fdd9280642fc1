// Bad: 64-bit and wider ap_int arithmetic in a synthesized function (a 64-bit multiplier, a 128-bit adder);
// the pointer to 128-bit words beside it is an address (an m_axi port), not a finding.
#include <ap_int.h>

int top(ap_uint<128>* mem, int a, int b, int i) {
    const ap_int<64> p = ap_int<64>(a) * b;
    const ap_uint<128> w = mem[i] + mem[i + 1];
    return int(p >> 3) + int(w.range(31, 0));
}
