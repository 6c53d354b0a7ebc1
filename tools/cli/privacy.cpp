// `mailers erase` and `mailers export`: one person's data (docs/privacy.md).
#include <fstream>

#include "cli.hpp"

namespace mailers_cli {

void add_privacy_commands(CLI::App& app, commands& reg) {
    // --- erasure and export of a person (docs/privacy.md) -----------------------
    auto& person_arg = reg.keep<std::string>();
    reg.add(&app, "erase",
            "Erase everything held about ADDRESS (GDPR Art. 17) and keep it suppressed as a "
            "keyed hash",
            "mailers --actor dpo erase jane@example.com",
            [&](context& c) {
                if (!mailers::normalise_address(person_arg))
                    fail(exit_usage, fmt::format("'{}' is not a valid address", person_arg));
                open_workspace(c, mailers::open_mode::existing);
                const auto r = c.engine().erase_person(c.who, person_arg);
                const auto& n = r.erased;
                const std::vector<std::pair<std::string, std::uint64_t>> counts{
                    {"suppression_rows", n.suppression_rows},
                    {"sends", n.sends},
                    {"queued", n.queued},
                    {"queue_cancelled", n.queue_cancelled},
                    {"enrollments", n.enrollments},
                    {"webhook_deliveries", n.webhook_deliveries},
                    {"recorded_keys", n.recorded_keys},
                    {"soft_bounces", n.soft_bounces}};
                json_object erased;
                for (const auto& [k, v] : counts) erased.num(k, v);
                emit(c, json_object()
                            .str("address", person_arg)
                            .str("hash", r.hash)
                            .str("at", iso8601(r.at))
                            .boolean("was_suppressed", r.was_suppressed)
                            .num("audit_seq", r.audit_seq)
                            .obj("erased", erased));
                if (!c.g.json) {
                    std::vector<std::pair<std::string, std::string>> fields{
                        {"erased", person_arg},
                        {"suppressed as", r.hash},
                        {"at", iso8601(r.at)},
                        {"was suppressed", r.was_suppressed ? "yes" : "no"},
                        {"audit seq", std::to_string(r.audit_seq)}};
                    for (const auto& [k, v] : counts) fields.emplace_back(k, std::to_string(v));
                    print_fields(fields);
                }
                return exit_ok;
            })
        ->add_option("ADDRESS", person_arg, "The person's address, in any spelling")
        ->required();

    auto& person_file = reg.keep<std::string>();
    auto* exp = reg.add(
        &app, "export",
        "Everything held about ADDRESS (GDPR Art. 15), as one JSON document on stdout or in "
        "--output FILE",
        "mailers export jane@example.com --output jane.json", [&](context& c) {
            if (!mailers::normalise_address(person_arg))
                fail(exit_usage, fmt::format("'{}' is not a valid address", person_arg));
            open_workspace(c, mailers::open_mode::existing);
            const auto doc = c.engine().export_person(c.who, person_arg);
            if (person_file.empty()) {
                fmt::print("{}\n", doc);
                return exit_ok;
            }
            std::ofstream out(person_file, std::ios::binary | std::ios::trunc);
            out << doc << '\n';
            out.close();
            if (!out) fail(exit_other, fmt::format("cannot write '{}'", person_file));
            emit(c, json_object().str("file", person_file).num("bytes", doc.size() + 1));
            if (!c.g.json) fmt::print("wrote {} ({} bytes)\n", person_file, doc.size() + 1);
            return exit_ok;
        });
    exp->add_option("ADDRESS", person_arg, "The person's address, in any spelling")->required();
    exp->add_option("--output,-o", person_file, "Write the document to FILE instead of stdout");
}

}  // namespace mailers_cli
