// Bad: a function that calls itself (even a constexpr one: -O0 builds call it at run time).
constexpr int ilog2(unsigned v) { return v <= 1 ? 0 : 1 + ilog2(v >> 1); }

int top(unsigned v) { return ilog2(v); }
