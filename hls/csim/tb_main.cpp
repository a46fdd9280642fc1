// Standalone C-simulation testbench of the top function (also the testbench of Vitis HLS csim_design
// and cosim_design). It reads test vectors written by `python -m m3vit.hw.run.vectors` from the folder
// given as argv[1] — payload.bin (pack payload), program.bin (layer program), images.bin, tokens.bin
// (the integer reference's tokens), run.txt ("task num_frames") — runs the top and compares every
// token. Exit status 0 when all are equal; otherwise it names the first differing index.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "m3vit_accel.h"

using namespace m3v;

static bool read_file(const std::string& path, std::vector<uint8_t>& out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return true;
}

// The bytes as 128-bit words, padded with zeros to at least `depth` words: the m_axi depth of the argument
// (AXI_DEPTH_*, generated), which a Vitis co-simulation copies in full.
static std::vector<word_t> to_words(const std::vector<uint8_t>& bytes, uint32_t depth) {
    const size_t n = bytes.size() / 16 + 2;
    std::vector<word_t> w(n > depth ? n : depth);
    for (auto& x : w) {
        word_set(x, 0, 64, 0);
        word_set(x, 64, 64, 0);
    }
    for (size_t i = 0; i < bytes.size(); ++i) word_set(w[i / 16], int(i % 16) * 8, 8, bytes[i]);
    return w;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s VECTOR_DIR (written by python -m m3vit.hw.run.vectors)\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    std::vector<uint8_t> payload, program, images, expect, run;
    const char* names[5] = {"payload.bin", "program.bin", "images.bin", "tokens.bin", "run.txt"};
    std::vector<uint8_t>* bufs[5] = {&payload, &program, &images, &expect, &run};
    for (int i = 0; i < 5; ++i) {
        if (!read_file(dir + "/" + names[i], *bufs[i])) {
            std::fprintf(stderr, "cannot read %s/%s: write the vectors with python -m m3vit.hw.run.vectors\n",
                         dir.c_str(), names[i]);
            return 2;
        }
    }
    unsigned task = 0, frames = 0;
    if (std::sscanf(std::string(run.begin(), run.end()).c_str(), "%u %u", &task, &frames) != 2 || frames == 0) {
        std::fprintf(stderr, "%s/run.txt must hold \"task num_frames\"\n", dir.c_str());
        return 2;
    }
    const size_t count = size_t(frames) * N_TOK * DIM;
    if (expect.size() != count * RESID_BYTES) {
        std::fprintf(stderr, "tokens.bin has %zu bytes, expected %zu: vectors of another config?\n", expect.size(),
                     count * RESID_BYTES);
        return 2;
    }
    // payload.bin also holds the host's task heads (after the backbone): the weights depth covers the backbone.
    std::vector<word_t> w = to_words(payload, AXI_DEPTH_WEIGHTS), p = to_words(program, AXI_DEPTH_PROGRAM);
    std::vector<word_t> im = to_words(images, AXI_DEPTH_IMAGES);
    std::vector<word_t> out = to_words(std::vector<uint8_t>(count * RESID_BYTES, 0), AXI_DEPTH_TOKENS);
    std::vector<word_t> scratch = to_words(std::vector<uint8_t>(), AXI_DEPTH_SCRATCH);
    m3vit_accel(w.data(), w.data(), w.data(), p.data(), im.data(), out.data(), scratch.data(), task, frames);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < count; ++i) {
        int64_t v = 0;
        for (int b = RESID_BYTES - 1; b >= 0; --b) v = (v << 8) | expect[i * RESID_BYTES + size_t(b)];
        if (RESID_BYTES < 8 && (v >> (8 * RESID_BYTES - 1)) & 1) v -= int64_t(1) << (8 * RESID_BYTES);
        const int64_t got = mem_int(out.data(), uint32_t(i * RESID_BYTES), RESID_BYTES);
        if (got != v && bad++ == 0) first = i;
    }
    if (bad) {
        std::printf("FAIL: %zu of %zu tokens differ, first at frame %zu token %zu feature %zu\n", bad, count,
                    first / (N_TOK * DIM), first / DIM % N_TOK, first % DIM);
        return 1;
    }
    std::printf("PASS: %u frame(s), task %u, %zu token values bit-exact\n", frames, task, count);
    return 0;
}
