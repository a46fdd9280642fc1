// The built design's numbers, printed as JSON for m3vit.hw.estimate.hls_estimate: compiled by g++ against the
// generated m3vit_config.h with ap_int types (M3V_AP_TYPES: the types Vitis synthesizes), it includes the top's
// source itself, so every constant, typedef width and on-chip array size below is the one the code is built with
// (nothing is retyped in Python). M3V_PROBE_CONSTANTS / M3V_PROBE_TYPES / M3V_PROBE_ARRAYS / M3V_PROBE_ARRAY_TYPES
// are X-macro lists
// given on the command line (-D) by the estimator.
#include "../src/m3vit_accel.cpp"

#include <cstdio>
#include <type_traits>

namespace probe {
template <class T> struct width_of { static constexpr int value = 8 * int(sizeof(T)); };
template <int W> struct width_of<ap_int<W>> { static constexpr int value = W; };
template <int W> struct width_of<ap_uint<W>> { static constexpr int value = W; };
template <class T> constexpr int elem_width() { return width_of<typename std::remove_all_extents<T>::type>::value; }
template <class T> constexpr long elems() {
    return long(sizeof(T) / sizeof(typename std::remove_all_extents<T>::type));
}
}  // namespace probe

int main() {
    using namespace m3v;
    const char* sep = "";
    std::printf("{\"constants\": {");
#define M3V_C(name) std::printf("%s\"%s\": %ld", sep, #name, long(name)), sep = ", ";
    M3V_PROBE_CONSTANTS
    std::printf("}, \"types\": {");
    sep = "";
#define M3V_T(name) std::printf("%s\"%s\": %d", sep, #name, probe::width_of<name>::value), sep = ", ";
    M3V_PROBE_TYPES
    std::printf("}, \"arrays\": {");
    sep = "";
// the top's own buffers (function-scope statics of m3vit_accel, out of reach here): the element type and count
// the estimator read from their declarations, evaluated with the built design's constants
#define M3V_A(name, type, count) \
    std::printf("%s\"%s\": [%d, %ld]", sep, #name, probe::width_of<type>::value, long(count)), sep = ", ";
    M3V_PROBE_ARRAYS
#define M3V_AT(name) \
    std::printf("%s\"%s\": [%d, %ld]", sep, #name, probe::elem_width<name>(), probe::elems<name>()), sep = ", ";
    M3V_PROBE_ARRAY_TYPES
    std::printf("}}\n");
    return 0;
}
