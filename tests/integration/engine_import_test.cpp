// Suppression imports through the engine: one audited, all-or-nothing change
// that reaches the other engines of the workspace like a single suppress,
// and what a restart loads back.
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <sstream>
#include <string>

#include "engine_fixture.hpp"
#include "forwarding_store.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

// A store that commits other changes around an import, as other processes
// would while a long import runs: `before` just before it, `after` just
// after it.
class busy_store final : public forwarding_store {
public:
    using forwarding_store::forwarding_store;
    std::vector<store_op> before, after;

    suppression_import_result import_suppressions(std::string_view ws,
                                                  const suppression_import& job) override {
        if (!before.empty()) inner_->commit(ws, std::exchange(before, {}));
        auto r = inner_->import_suppressions(ws, job);
        if (!after.empty()) inner_->commit(ws, std::exchange(after, {}));
        return r;
    }
    change_set changes_since(std::string_view ws, std::uint64_t after_seq) override {
        auto cs = inner_->changes_since(ws, after_seq);
        largest_read = std::max(largest_read.load(), cs.suppressions.size());
        return cs;
    }

    /// The most suppressions one changes_since returned.
    std::atomic<std::size_t> largest_read{0};
};

suppression_entry entry(suppression_kind kind, std::string value) {
    suppression_entry e;
    e.kind = kind;
    e.value = std::move(value);
    e.reason = suppression_reason::manual;
    e.source = "elsewhere";
    return e;
}

}  // namespace

TEST_CASE("an import is one audited change, with a digest of its values") {
    fixture f;
    const auto audit_before = f.eng->audit_log().size();
    std::istringstream csv(
        "value,kind,reason\n"
        "Ann@Example.com,address,unsubscribe\n"
        "blocked.example,domain,legal\n"
        "bob@example.com,,hard_bounce\n"
        "ann@example.com,address,complaint\n");
    CHECK(f.eng->import_suppressions(f.admin, csv, "list.csv") == 4);
    CHECK(f.eng->suppression_count() == 3);
    CHECK(f.eng->is_suppressed("ann@example.com"));
    CHECK(f.eng->is_suppressed("x@sub.blocked.example"));
    CHECK(f.eng->is_suppressed("bob@example.com"));
    // The later line for a key is the one stored.
    auto ann = f.eng->find_suppression("ann@example.com");
    REQUIRE(ann);
    CHECK(ann->reason == suppression_reason::complaint);
    CHECK(ann->source == "list.csv");

    auto log = f.eng->audit_log();
    REQUIRE(log.size() == audit_before + 1);
    CHECK(log.back().action == "suppression.import");
    CHECK(log.back().resource_id == "*");
    const std::string digest =
        sha256_hex("ann@example.com\nblocked.example\nbob@example.com\nann@example.com\n");
    // The rows digest covers every entry given, the displaced one too.
    suppression_hasher hasher;
    suppression_set_digest rows;
    const auto t = test_epoch();
    rows.add(hasher({suppression_kind::address, "ann@example.com", suppression_reason::unsubscribe,
                     "list.csv", t}));
    rows.add(hasher(
        {suppression_kind::domain, "blocked.example", suppression_reason::legal, "list.csv", t}));
    rows.add(hasher({suppression_kind::address, "bob@example.com", suppression_reason::hard_bounce,
                     "list.csv", t}));
    rows.add(hasher(*ann));
    CHECK(log.back().after == R"({"count":4,"source":"list.csv","sha256":")" + digest +
                                  R"(","rows_digest":")" + rows.hex() +
                                  R"(","digest_key":"sha256"})");
    CHECK(f.eng->verify_audit() == error_code{});
    CHECK(f.eng->verify_suppressions().ok);
}

TEST_CASE("an import with a bad line imports nothing") {
    fixture f;
    f.eng->suppress(f.admin, suppression_kind::address, "kept@example.com",
                    suppression_reason::manual);
    const auto audit_before = f.eng->audit_log().size();
    std::string text = "value,kind\n";
    for (int i = 0; i < 20000; ++i) text += "u" + std::to_string(i) + "@example.com,address\n";
    text += "not an address,address\n";
    std::istringstream csv(text);
    try {
        f.eng->import_suppressions(f.admin, csv, "bad.csv");
        FAIL("the import succeeded");
    } catch (const exception& e) {
        CHECK(e.code() == errc::invalid_csv);
        CHECK(e.diag().message.find("line 20002") != std::string::npos);
    }
    CHECK(f.eng->suppression_count() == 1);
    CHECK_FALSE(f.eng->is_suppressed("u1@example.com"));
    CHECK(f.eng->audit_log().size() == audit_before);
    std::size_t stored = 0;
    f.store->for_each_suppression("default", [&](const suppression_entry&) { ++stored; });
    CHECK(stored == 1);
    // The engine goes on working.
    std::istringstream good("u1@example.com\n");
    CHECK(f.eng->import_suppressions(f.admin, good, "good.csv") == 1);
    CHECK(f.eng->is_suppressed("u1@example.com"));
}

TEST_CASE("another engine has an import in memory once the import returns") {
    db_file db("import-two");
    fixture a(db.path.string());
    fixture b(db.path.string(), 7);
    std::string text;
    for (int i = 0; i < 5000; ++i) text += "p" + std::to_string(i) + "@example.com\n";
    std::istringstream csv(text);
    CHECK(a.eng->import_suppressions(a.admin, csv, "list") == 5000);
    CHECK(b.eng->is_suppressed("p0@example.com"));
    CHECK(b.eng->is_suppressed("p4999@example.com"));
    CHECK(b.eng->suppression_count() == 5000);

    // A restart loads every entry back.
    a.eng.reset();
    a.store = open_sqlite_store({db.path.string(), open_mode::existing});
    a.open();
    CHECK(a.eng->suppression_count() == 5000);
    CHECK(a.eng->is_suppressed("p1234@example.com"));
}

TEST_CASE("changes others commit around an import are applied in their order") {
    db_file db("import-busy");
    auto sqlite = open_sqlite_store({db.path.string(), open_mode::open_or_create});
    auto busy = std::make_shared<busy_store>(sqlite);
    fixture f(db.path.string());
    f.eng.reset();
    f.store = busy;
    f.open();
    f.eng->suppress(f.admin, suppression_kind::address, "gone@example.com",
                    suppression_reason::manual);
    // Before the import: one new entry, and one delete of a key the import
    // puts back. After it: a delete of an imported key.
    busy->before = {
        store_ops::put_suppression{entry(suppression_kind::address, "other@example.com")},
        store_ops::delete_suppression{suppression_kind::address, "gone@example.com"}};
    busy->after = {store_ops::delete_suppression{suppression_kind::address, "q3@example.com"}};
    std::string text = "gone@example.com\n";
    for (int i = 0; i < 1000; ++i) text += "q" + std::to_string(i) + "@example.com\n";
    std::istringstream csv(text);
    CHECK(f.eng->import_suppressions(f.admin, csv, "list") == 1001);
    // The import itself was not read back.
    CHECK(busy->largest_read.load() < 100);
    f.eng->flush();
    // Memory matches the store: other's entry is in, the import re-added
    // gone@, and the later delete of q3@ stands.
    CHECK(f.eng->is_suppressed("other@example.com"));
    CHECK(f.eng->is_suppressed("gone@example.com"));
    CHECK(f.eng->is_suppressed("q999@example.com"));
    CHECK_FALSE(f.eng->is_suppressed("q3@example.com"));
    CHECK(f.eng->suppression_count() == 1001);
}
