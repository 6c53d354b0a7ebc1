// read_workspace_status against an engine started on the same store at the
// same instant: the same mailboxes, pauses (with the mailboxes they hold),
// statuses and suppression count, on SQLite and PostgreSQL, in random
// states (caps used, pauses at every scope, warm-up, send windows, gaps,
// quotas, time passing).
#include <libpq-fe.h>

#include <mailers/postgres_store.hpp>
#include <mailers/store.hpp>
#include <mailers/workspace_status.hpp>
#include <random>
#include <sstream>
#include <string>

#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

struct backend {
    std::string name;
    std::function<std::shared_ptr<store>()> open;
};

std::unique_ptr<fixture> engine_on(const backend& b, std::shared_ptr<manual_clock> clock,
                                   std::uint64_t seed) {
    auto f = std::make_unique<fixture>();
    f->eng.reset();
    f->clock = std::move(clock);
    f->store = b.open();
    engine_params p;
    p.storage = f->store;
    p.clock = f->clock;
    p.random_seed = seed;
    f->eng = std::make_unique<engine>(f->ioc.get_executor(), std::move(p));
    f->eng->add_provider(f->admin, "capture", f->capture);
    f->eng->add_provider(f->admin, "other", f->capture);
    return f;
}

std::string describe(const mailbox_status& s) {
    std::ostringstream os;
    os << s.id << " state=" << to_string(s.state) << " health=" << to_string(s.health)
       << " today=" << s.sent_today << " hour=" << s.sent_this_hour
       << " cap=" << (s.effective_daily_cap ? std::to_string(*s.effective_daily_cap) : "-")
       << " blocked=" << to_string(s.blocked) << " next="
       << (s.next_eligible ? std::to_string(s.next_eligible->time_since_epoch().count()) : "-");
    return os.str();
}

// What a freshly started engine answers at the clock's time, beside what
// the store alone gives.
void same_as_engine(const backend& b, const std::shared_ptr<manual_clock>& clock,
                    const char* when) {
    INFO(b.name << ": " << when);
    auto f = engine_on(b, clock, 7);
    auto& e = *f->eng;
    auto st = b.open();
    const auto got = read_workspace_status(*st, "default", clock->now());
    REQUIRE(got);
    CHECK(got->suppressions == e.suppression_count());
    // The defaults a third-party store inherits answer the same.
    CHECK(st->store::suppression_count("default") == got->suppressions);
    for (const char* kind : {"mailbox", "pause", "pool"}) {
        std::vector<stored_object> own, by_default;
        st->for_each_object("default", kind, [&](const stored_object& o) { own.push_back(o); });
        st->store::for_each_object("default", kind,
                                   [&](const stored_object& o) { by_default.push_back(o); });
        CHECK(own == by_default);
    }
    CHECK(got->mailboxes == e.mailboxes());
    const auto pauses = e.pauses();
    REQUIRE(got->pauses.size() == pauses.size());
    const auto boxes = e.mailboxes();
    const auto pools = e.pools();
    for (std::size_t i = 0; i < pauses.size(); ++i) {
        CHECK(got->pauses[i].pause == pauses[i]);
        CHECK(got->pauses[i].mailboxes_held == mailboxes_held(pauses[i].target, boxes, pools));
    }
    REQUIRE(got->statuses.size() == boxes.size());
    for (std::size_t i = 0; i < boxes.size(); ++i)
        CHECK(describe(got->statuses[i]) == describe(e.status(boxes[i].id)));
}

void random_states(const backend& b, std::uint64_t seed) {
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    const auto pick = [&](std::uint64_t n) { return rng() % n; };
    auto clock = std::make_shared<manual_clock>(test_epoch());
    auto f = engine_on(b, clock, seed);
    auto& e = *f->eng;

    // Nothing configured yet: an engine has stored its settings.
    same_as_engine(b, clock, "empty");

    const char* zones[] = {"UTC", "America/New_York", "Asia/Kolkata", "Europe/Berlin"};
    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) {
        const auto id = "mb" + std::to_string(i);
        auto m = f->mailbox(id, id + "@" + (i % 2 ? "brand.example" : "mail.other.example"));
        m.provider = i == 5 ? "other" : "capture";
        const auto kind = pick(2) ? window_kind::calendar : window_kind::rolling;
        if (pick(3)) m.limits.push_back(rate_limit::per_day(2 + pick(12), kind));
        if (pick(2)) m.limits.push_back(rate_limit::per_hour(1 + pick(5), kind));
        if (pick(4) == 0) m.limits.push_back({3 + pick(20), std::chrono::hours(72)});
        if (pick(3) == 0)
            m.warmup = {static_cast<std::uint32_t>(1 + pick(3)), 2, 40,
                        clock->now() - std::chrono::hours(24 * pick(4))};
        m.time_zone = zones[pick(std::size(zones))];
        if (pick(3) == 0) m.window = {static_cast<std::uint8_t>(8 + pick(4)), 18, 0x7f};
        if (pick(3) == 0) m.min_gap = std::chrono::seconds(60 * (1 + pick(30)));
        if (i == 4 && pick(2)) m.state = mailbox_state::retired;
        e.upsert_mailbox(f->admin, m);
        ids.push_back(id);
    }
    f->add_pool("all", ids);
    f->add_pool("some", {"mb1", "mb2"});
    if (pick(2))
        e.set_quota(f->admin, {quota_scope::provider, "capture", {rate_limit::per_day(25)}, "UTC"});
    if (pick(2))
        e.set_quota(
            f->admin,
            {quota_scope::sender_domain, "brand.example", {rate_limit::per_hour(4)}, "UTC"});

    // Sends over two simulated days, with suppressions changing between.
    int n = 0;
    for (int round = 0; round < 40; ++round) {
        clock->advance(std::chrono::minutes(5 + pick(120)));
        const auto sends = pick(4);
        for (std::uint64_t k = 0; k < sends; ++k) {
            const auto to = "p" + std::to_string(n++) + "@example.com";
            if (pick(3) == 0)
                f->send(fixture::direct(ids[pick(ids.size())], to));
            else
                f->send(fixture::request("all", to));
        }
        switch (pick(6)) {
            case 0:
                e.suppress(f->admin, suppression_kind::address,
                           "s" + std::to_string(pick(30)) + "@x.example",
                           suppression_reason::manual);
                break;
            case 1:
                e.unsuppress(f->admin, suppression_kind::address,
                             "s" + std::to_string(pick(30)) + "@x.example");
                break;
            case 2: {
                std::istringstream csv("i" + std::to_string(pick(9)) + "@y.example\ni" +
                                       std::to_string(pick(9)) + "@y.example\nblocked.example\n");
                e.import_suppressions(f->admin, csv, "test");
                break;
            }
            default:
                break;
        }
        if (round % 10 == 9) same_as_engine(b, clock, "while sending");
    }

    // Pauses at every scope, then time passing.
    const std::vector<pause_target> targets{{pause_scope::mailbox, "mb" + std::to_string(pick(6))},
                                            {pause_scope::pool, "some"},
                                            {pause_scope::provider, "other"},
                                            {pause_scope::sender_domain, "other.example"},
                                            {pause_scope::workspace, ""}};
    for (const auto& t : targets) {
        if (pick(3) == 0) continue;
        e.pause(f->admin, t, "reason " + std::to_string(pick(100)));
        clock->advance(std::chrono::minutes(1 + pick(10)));
    }
    same_as_engine(b, clock, "paused");
    for (const auto step :
         {std::chrono::minutes(20), std::chrono::minutes(50), std::chrono::minutes(300),
          std::chrono::minutes(60 * 20), std::chrono::minutes(60 * 80)}) {
        clock->advance(step);
        same_as_engine(b, clock, "later");
    }
}

void on_both_stores(const std::function<void(const backend&)>& fn) {
    {
        db_file db{"wsstatus"};
        const std::string path = db.path.string();
        fn({"sqlite", [path] { return open_sqlite_store({path, open_mode::open_or_create}); }});
    }
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (!c || !*c) {
        const char* req = std::getenv("MAILERS_REQUIRE_PG");
        if (req && std::string_view{req} == "1")
            FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset");
        MESSAGE("skipped on PostgreSQL: set MAILERS_TEST_PG to a conninfo to run it");
        return;
    }
    std::random_device rd;
    postgres_store_params p;
    p.conninfo = c;
    p.schema = "wsstatus_" + std::to_string(rd()) + std::to_string(rd());
    p.mode = open_mode::open_or_create;
    struct drop {
        std::string conninfo, schema;
        ~drop() {
            PGconn* c = PQconnectdb(conninfo.c_str());
            PQclear(PQexec(c, ("SET client_min_messages = warning; DROP SCHEMA IF EXISTS " +
                               schema + " CASCADE")
                                  .c_str()));
            PQfinish(c);
        }
    } dropper{c, p.schema};
    fn({"postgres", [p] { return open_postgres_store(p); }});
}

}  // namespace

TEST_CASE("read_workspace_status answers as a freshly started engine") {
    for (int i = 0; i < 3; ++i) {
        const std::uint64_t seed = std::random_device{}();
        on_both_stores([&](const backend& b) { random_states(b, seed); });
    }
}

TEST_CASE("read_workspace_status: nothing where only an engine can answer") {
    on_both_stores([](const backend& b) {
        auto st = b.open();
        // No engine has stored its suppression settings.
        CHECK_FALSE(read_workspace_status(*st, "default", test_epoch()));
        {
            auto clock = std::make_shared<manual_clock>(test_epoch());
            auto f = engine_on(b, clock, 1);
            f->eng->upsert_mailbox(f->admin, f->mailbox("rep1", "rep1@brand.example"));
        }
        CHECK(read_workspace_status(*st, "default", test_epoch()));
        // A mailbox an engine cannot read stops its start: not answered here.
        st->commit("default", std::vector<store_op>{
                                  store_ops::put_object{{"mailbox", "broken", "{not json"}}});
        CHECK_FALSE(read_workspace_status(*st, "default", test_epoch()));
    });
}
