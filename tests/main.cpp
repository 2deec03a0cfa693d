// doctest main for psap's library tests: prints the seed every randomised
// test uses (PSAP_TEST_SEED overrides it) so any failure can be replayed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <support/seed.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    std::printf("psap tests: seed %llu (set PSAP_TEST_SEED to change)\n", static_cast<unsigned long long>(psap_test::seed()));
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
