// Campaigns: 200 leads through a pool of four mailboxes capped at 25 a day.
// First the forecast says what would go when, from which mailbox and what
// holds it back, changing nothing; then the campaign runs on the same
// simulated clock, with its progress read each day.
//
// Build and run:  cmake --build build --target example_8_campaigns &&
//                 ./build/examples/example_8_campaigns
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <iostream>
#include <mailers.hpp>
#include <map>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

std::int64_t day_of(mailers::time_point t, mailers::time_point start) {
    return std::chrono::floor<std::chrono::days>(t).time_since_epoch().count() -
           std::chrono::floor<std::chrono::days>(start).time_since_epoch().count();
}

}  // namespace

int main() {
    asio::io_context ioc;
    // Monday 2026-11-23 09:00 UTC.
    const mailers::time_point start{std::chrono::seconds{1795424400}};
    auto clock = std::make_shared<mailers::manual_clock>(start);
    mailers::engine_params params;
    params.storage = mailers::open_sqlite_store({":memory:", mailers::open_mode::create});
    params.clock = clock;
    params.random_seed = 7;
    params.queue_poll_interval = 10ms;  // the demo's clock runs fast
    params.log = mailers::stderr_logger(mailers::log_level::warning);
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal me{"ops@brand.com", "Ops"};

    eng.add_provider(me, "null", std::make_shared<mailers::null_transport>(ioc.get_executor()));
    mailers::pool_config pool{.id = "sdr"};
    for (auto id : {"riley", "sam", "kim", "lee"}) {
        mailers::mailbox_config m;
        m.id = id;
        m.from = {id, "brand.com", id};
        m.provider = "null";
        m.limits = {mailers::rate_limit::per_day(25)};
        eng.upsert_mailbox(me, m);
        pool.mailboxes.push_back(id);
    }
    eng.upsert_pool(me, pool);
    eng.suppress(me, mailers::suppression_kind::address, "lead7@example.com",
                 mailers::suppression_reason::unsubscribe);

    mailers::campaign_config c;
    c.id = "q4-launch";
    c.name = "Q4 launch";
    c.content = {.subject = "{Hi|Hello} {{first_name|there}}",
                 .text = "We shipped the thing you asked about, {{first_name|friend}}."};
    c.pool = "sdr";
    for (int i = 0; i < 200; ++i)
        c.recipients.push_back(
            {*mailers::parse_address("lead" + std::to_string(i) + "@example.com"),
             {{"first_name", "Lead " + std::to_string(i)}}});

    // The dry run.
    mailers::forecast_request fr;
    fr.campaign = c;
    fr.horizon = 24h * 7;
    const auto plan = eng.forecast(fr);
    std::map<std::pair<std::int64_t, std::string>, int> per_day;
    std::map<std::string, int> bound;
    for (const auto& s : plan.sends) {
        ++per_day[{day_of(s.at, start), s.mailbox}];
        ++bound[s.bound.empty() ? "nothing" : s.bound];
    }
    std::cout << "forecast: " << plan.sends.size() << " sends, " << plan.unsent.size()
              << " unsent (" << (plan.unsent.empty() ? "" : plan.unsent.front().reason)
              << "), last on day " << day_of(*plan.last, start) << "\n";
    for (const auto& [k, n] : per_day)
        std::cout << "  day " << k.first << " " << k.second << ": " << n << "\n";
    for (const auto& [b, n] : bound) std::cout << "  held by " << b << ": " << n << "\n";
    std::cout << "campaigns after the forecast: " << eng.campaigns().size() << "\n\n";

    // The real run. The host's loop runs until the queue has done what it
    // can, then the clock jumps to the next due time, as a timer would.
    std::map<std::pair<std::int64_t, std::string>, int> real;
    eng.on_event([&](const mailers::event& e) {
        if (e.type == mailers::event_type::sent && e.campaign == "q4-launch")
            ++real[{day_of(e.at, start), e.mailbox}];
    });
    eng.start_campaign(me, c);
    auto work = asio::make_work_guard(ioc);
    auto settle = [&] {
        for (;;) {
            ioc.run_for(5ms);
            auto q = eng.queue_counts();
            if (q.claimed == 0 && (!q.next_due || *q.next_due > clock->now())) return q;
        }
    };
    std::int64_t shown = -1;
    for (;;) {
        const auto q = settle();
        const auto p = eng.campaign_progress("q4-launch");
        if (day_of(clock->now(), start) != shown || p.finished()) {
            shown = day_of(clock->now(), start);
            std::cout << "day " << shown << ": sent " << p.sent << ", waiting " << p.waiting
                      << ", suppressed " << p.suppressed_at_start + p.suppressed_at_handoff
                      << ", remaining " << p.remaining << "\n";
        }
        if (p.finished() || !q.next_due) break;
        clock->set(std::max(*q.next_due, clock->now() + 1s));
    }
    ioc.run_for(50ms);  // the last events
    std::cout << "the real run " << (real == per_day ? "matches" : "differs from")
              << " the forecast, per mailbox and day\n";
}
