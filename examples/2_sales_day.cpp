// Scenario B: a sales team with 30 mailboxes on 5 domains.
//
// Each mailbox has its own daily and hourly cap, a warm-up ramp (newer
// mailboxes send less), a send window in its own time zone, human spacing
// (minimum gap plus jitter) and a rotation weight. Prospects are owned by a
// rep; when the owner is out of capacity the send rotates through the
// weighted pool. One suppression list covers everybody. A simulated working
// day runs on a manual clock and every message lands as a .eml file.
//
//   ./build/examples/example_2_sales_day [output-folder]
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <filesystem>
#include <mailers.hpp>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

struct tally {
    int sent = 0, suppressed = 0, rotated_in = 0;
};

// Runs one send to completion on the (single-threaded) demo loop.
std::pair<mailers::error_code, mailers::send_result> send_now(asio::io_context& ioc,
                                                              mailers::engine& eng,
                                                              mailers::send_request req) {
    std::optional<std::pair<mailers::error_code, mailers::send_result>> out;
    eng.async_send(std::move(req), [&](mailers::error_code ec, mailers::send_result r) {
        out.emplace(ec, std::move(r));
    });
    ioc.restart();
    while (!out) ioc.run_one();
    return std::move(*out);
}

}  // namespace

int main(int argc, char** argv) {
    std::filesystem::path out_dir =
        argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "mailers-demo";
    std::filesystem::remove_all(out_dir);
    std::filesystem::create_directories(out_dir);

    asio::io_context ioc;
    // Monday 30 November 2026, 06:00 UTC: before anyone's window opens.
    auto start = mailers::time_point(
        std::chrono::sys_days(std::chrono::year(2026) / 11 / 30).time_since_epoch() + 6h);
    auto clock = std::make_shared<mailers::manual_clock>(start);

    mailers::engine_params params;
    params.storage = mailers::open_sqlite_store(
        {(out_dir / "workspace.db").string(), mailers::open_mode::open_or_create});
    params.clock = clock;
    params.random_seed = 2026;
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal ops{"ops@brand.com", "Sales Ops"};

    eng.add_provider(
        ops, "workspace-files",
        std::make_shared<mailers::file_transport>(ioc.get_executor(), out_dir / "eml"));

    // 5 domains x 6 reps. Older domains are warmed up; newer ones ramp.
    struct domain_info {
        const char* name;
        const char* tz;
        int warm_days;  // days since warm-up started
    };
    const domain_info domains[] = {{"brand.com", "America/New_York", 60},
                                   {"getbrand.com", "America/Chicago", 30},
                                   {"brandhq.io", "Europe/London", 14},
                                   {"trybrand.co", "Europe/Berlin", 5},
                                   {"brand.ai", "America/Los_Angeles", 1}};
    const char* reps[] = {"alex", "blair", "casey", "drew", "emery", "finley"};
    std::vector<std::string> ids;
    for (const auto& d : domains) {
        for (int r = 0; r < 6; ++r) {
            mailers::mailbox_config m;
            m.id = std::string(reps[r]) + "@" + d.name;
            m.from = {reps[r], d.name, std::string(reps[r]) + " at " + d.name};
            m.provider = "workspace-files";
            m.limits = {mailers::rate_limit::per_day(30 + 4 * r), mailers::rate_limit::per_hour(8)};
            m.warmup = {5, 5, 50, start - std::chrono::hours(24 * d.warm_days)};
            m.time_zone = d.tz;
            m.window = {9, 17, mailers::send_window::weekdays_mon_fri};
            m.min_gap = 3min;
            m.jitter = 4min;
            m.weight = 1 + static_cast<unsigned>(r % 3);
            eng.upsert_mailbox(ops, m);
            ids.push_back(m.id);
        }
    }
    mailers::pool_config pool{"outbound", ids, {}};
    pool.policy.kind = mailers::rotation_kind::weighted;
    eng.upsert_pool(ops, pool);

    // 3,000 prospects, each owned by a rep; 6% asked not to be contacted, and
    // one whole company's legal team asked for a domain-wide block.
    std::mt19937 rng(7);
    struct prospect {
        std::string email, owner;
    };
    std::vector<prospect> prospects;
    for (int i = 0; i < 3000; ++i)
        prospects.push_back(
            {"lead" + std::to_string(i) + "@company" + std::to_string(i % 400) + ".example",
             ids[static_cast<std::size_t>(i) % ids.size()]});
    std::size_t suppressed_entries = 0;
    for (const auto& p : prospects) {
        if (rng() % 100 < 6) {
            eng.suppress(ops, mailers::suppression_kind::address, p.email,
                         mailers::suppression_reason::unsubscribe, "crm-sync");
            ++suppressed_entries;
        }
    }
    eng.suppress(ops, mailers::suppression_kind::domain, "company13.example",
                 mailers::suppression_reason::legal, "legal-request");

    std::map<std::string, tally> per_mailbox;
    std::size_t next = 0, deferred = 0;
    auto end = start + 24h;
    while (clock->now() < end && next < prospects.size()) {
        const auto& p = prospects[next];
        mailers::send_request req;
        req.mailbox = p.owner;
        req.to = *mailers::parse_address(p.email);
        req.subject = "Idea for " + p.email.substr(p.email.find('@') + 1);
        req.text =
            "Hi,\n\nI noticed your team is hiring. Worth a short call?\n\n-- " + p.owner + "\n";
        req.idempotency_key = "demo:" + p.email;
        req.actor = ops;
        req.unsubscribe =
            mailers::list_unsubscribe{"https://brand.com/u/" + std::to_string(next), {}};
        auto [ec, r] = send_now(ioc, eng, req);
        if (ec == mailers::errc::no_capacity) {
            // The owner is out of capacity now: rotate through the pool.
            req.mailbox.clear();
            req.pool = "outbound";
            std::tie(ec, r) = send_now(ioc, eng, req);
            if (!ec) per_mailbox[r.mailbox].rotated_in++;
        }
        if (!ec) {
            per_mailbox[r.mailbox].sent++;
            ++next;
        } else if (ec == mailers::errc::suppressed) {
            per_mailbox[p.owner].suppressed++;
            ++next;
        } else if (ec == mailers::errc::no_capacity) {
            // Nobody can send right now: wait until someone can (deferred, not dropped).
            ++deferred;
            auto wait = r.retry_at ? *r.retry_at : clock->now() + 1min;
            if (wait > end) break;
            clock->set(std::max(wait, clock->now() + std::chrono::seconds(1)));
        } else {
            std::printf("unexpected: %s\n", ec.message().c_str());
            ++next;
        }
    }

    std::printf(
        "\nA simulated Monday for 30 mailboxes on 5 domains (file transport, manual clock)\n\n");
    std::printf("%-22s %-20s %5s %5s %6s %8s %10s\n", "mailbox", "time zone", "cap", "sent", "via",
                "skipped", "next send");
    std::printf("%-22s %-20s %5s %5s %6s %8s %10s\n", "", "", "today", "", "pool", "suppr.",
                "(UTC)");
    int total_sent = 0, total_supp = 0;
    bool caps_held = true;
    for (const auto& m : eng.mailboxes()) {
        auto st = eng.status(m.id);
        auto& t = per_mailbox[m.id];
        if (st.effective_daily_cap &&
            static_cast<std::uint64_t>(t.sent) > *st.effective_daily_cap)
            caps_held = false;
        total_sent += t.sent;
        total_supp += t.suppressed;
        char when[32] = "-";
        if (st.next_eligible) {
            auto tt = std::chrono::system_clock::to_time_t(
                std::chrono::time_point_cast<std::chrono::seconds>(*st.next_eligible));
            std::strftime(when, sizeof when, "%a %H:%M", std::gmtime(&tt));
        }
        std::printf("%-22s %-20s %5llu %5d %6d %8d %10s\n", m.id.c_str(), m.time_zone.c_str(),
                    static_cast<unsigned long long>(st.effective_daily_cap.value_or(0)), t.sent,
                    t.rotated_in,
                    t.suppressed, when);
    }
    std::printf(
        "\n%d sent, %d skipped because suppressed (%zu address entries + 1 domain), %zu waits for "
        "capacity,\n"
        "%zu prospects left for tomorrow. %s\n",
        total_sent, total_supp, suppressed_entries, deferred, prospects.size() - next,
        caps_held ? "Caps held: no mailbox sent more than its warm-up or daily cap."
                  : "A MAILBOX SENT MORE THAN ITS CAP.");
    std::printf("Messages: %s\nWorkspace (SQLite): %s\n", (out_dir / "eml").c_str(),
                (out_dir / "workspace.db").c_str());
    std::printf("Audit chain: %s\n", eng.verify_audit() ? "BROKEN" : "verifies");
    return 0;
}
