// libFuzzer entry for the suppression CSV import (not built by default).
//
// Beyond "does not crash", every accepted entry must survive export and
// re-import unchanged, and its value must already be a normalisation fixed
// point, since exports are re-imported through the same normaliser.
//
//     clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
//         tests/fuzz/fuzz_csv.cpp -Lbuild -lmailers -o fuzz_csv
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "suppression/csv.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const mailers::suppression_options opts{.fold_plus_tags = (size % 2) == 1,
                                            .fold_gmail_dots = (size % 3) == 1};
    std::vector<mailers::suppression_entry> entries;
    mailers::detail::csv_parse_report report;
    const auto ec = mailers::detail::parse_suppression_csv(
        text, opts, [&](mailers::suppression_entry&& e) { entries.push_back(std::move(e)); },
        report);
    if (ec) {
        check(report.error_line >= 1 && !report.diag.message.empty());
        return 0;
    }
    check(report.records == entries.size());

    std::string csv;
    for (const auto& e : entries) {
        // With the header, as exports write it: a lone record whose value is
        // the domain "value" would otherwise read as a header itself.
        csv = "value,kind,reason,source,created_at\r\n";
        mailers::detail::append_suppression_csv(csv, e);
        std::vector<mailers::suppression_entry> back;
        mailers::detail::csv_parse_report again;
        const auto ec2 = mailers::detail::parse_suppression_csv(
            csv, opts, [&](mailers::suppression_entry&& b) { back.push_back(std::move(b)); },
            again);
        check(!ec2);
        check(back.size() == 1 && back.front() == e);
    }
    return 0;
}
