// Scenario B over two weeks: 30 mailboxes on 5 domains, 1,000 prospects,
// and a three-step sequence that rides across identities. The prospect's
// owner opens, the same mailbox bumps the thread two business days later,
// and a teammate drawn from the weighted pool follows up in the thread three
// business days after that. Midway one prospect unsubscribes, one address
// hard-bounces (a bounce message, as a Workspace mailbox receives it) and
// two prospects reply.
//
// Nothing here loops over sends: enrollments and the paced queue decide
// when each step goes and from whom, within every mailbox's caps, warm-up,
// window and gap. The demo only moves a simulated clock to the next moment
// the engine has work, and afterwards prints what happened, per mailbox and
// local day, per step, and per stopped enrollment.
//
//   ./build/examples/example_3_sales_fortnight [output-folder]
#include <algorithm>
#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <filesystem>
#include <mailers.hpp>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr int days_shown = 14;
constexpr const char* sequence_id = "q4-outbound";

struct domain_info {
    const char* name;
    const char* tz;
    int warm_days;  // days since the mailbox's warm-up started
};
constexpr domain_info domains[] = {{"brand.com", "America/New_York", 60},
                                   {"getbrand.com", "America/Chicago", 30},
                                   {"brandhq.io", "Europe/London", 14},
                                   {"trybrand.co", "Europe/Berlin", 5},
                                   {"brand.ai", "America/Los_Angeles", 1}};
constexpr const char* reps[] = {"alex", "blair", "casey", "drew", "emery", "finley"};
constexpr const char* first_names[] = {"Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"};

// A bounce as a Google Workspace mailbox receives it (RFC 3464), for the
// message `message_id` sent to `rcpt`.
std::string bounce_message(const std::string& rcpt, const std::string& message_id) {
    return "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
           "Subject: Delivery Status Notification (Failure)\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n"
           "\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           "Your message wasn't delivered to " +
           rcpt +
           " because the address couldn't be found.\r\n"
           "\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           "Reporting-MTA: dns; googlemail.com\r\n\r\n"
           "Final-Recipient: rfc822; " +
           rcpt +
           "\r\nAction: failed\r\nStatus: 5.1.1\r\n"
           "Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach "
           "does not exist.\r\n"
           "\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
           "Message-ID: <" +
           message_id + ">\r\nTo: " + rcpt + "\r\n\r\n--b--\r\n";
}

// Which step a send was, from the idempotency key the sequence gives it:
// "seq:<sequence>:<enrollment>:<step>".
int step_of(const std::string& key) {
    auto colon = key.rfind(':');
    return colon == std::string::npos ? 0 : std::atoi(key.c_str() + colon + 1);
}

std::string day_label(std::chrono::year_month_day d) {
    static constexpr const char* names[] = {"Su", "Mo", "Tu", "We", "Th", "Fr", "Sa"};
    return names[std::chrono::weekday(std::chrono::sys_days(d)).c_encoding()] +
           std::to_string(static_cast<unsigned>(d.day()));
}

}  // namespace

int main(int argc, char** argv) {
    std::filesystem::path out_dir =
        argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "mailers-fortnight";
    std::filesystem::remove_all(out_dir);
    std::filesystem::create_directories(out_dir);

    asio::io_context ioc;
    // Monday 30 November 2026, 06:00 UTC: before anyone's window opens.
    const auto first_day = std::chrono::year(2026) / 11 / 30;
    const auto start =
        mailers::time_point(std::chrono::sys_days(first_day).time_since_epoch() + 6h);
    const auto end = start + std::chrono::days(days_shown);
    auto clock = std::make_shared<mailers::manual_clock>(start);

    mailers::engine_params params;
    params.storage = mailers::open_sqlite_store(
        {(out_dir / "workspace.db").string(), mailers::open_mode::create});
    params.clock = clock;
    params.random_seed = 2026;
    params.queue_poll_interval = 1ms;  // simulated time moves faster than real time
    params.log = mailers::stderr_logger(mailers::log_level::warning);
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal ops{"ops@brand.com", "Sales Ops"};

    eng.add_provider(
        ops, "workspace",
        std::make_shared<mailers::file_transport>(ioc.get_executor(), out_dir / "eml"));

    // 5 domains x 6 reps; the newer domains are still warming up.
    std::vector<std::string> ids;
    std::map<std::string, mailers::mailbox_config> boxes;
    for (const auto& d : domains) {
        for (int r = 0; r < 6; ++r) {
            mailers::mailbox_config m;
            m.id = std::string(reps[r]) + "@" + d.name;
            m.from = {reps[r], d.name, std::string(reps[r]) + " at " + d.name};
            m.provider = "workspace";
            m.limits = {mailers::rate_limit::per_day(30 + 4 * r), mailers::rate_limit::per_hour(8)};
            m.warmup = {5, 5, 50, start - std::chrono::hours(24 * d.warm_days)};
            m.time_zone = d.tz;
            m.window = {9, 17, mailers::send_window::weekdays_mon_fri};
            m.min_gap = 3min;
            m.jitter = 4min;
            m.weight = 1 + static_cast<unsigned>(r % 3);
            eng.upsert_mailbox(ops, m);
            ids.push_back(m.id);
            boxes.emplace(m.id, m);
        }
    }
    mailers::pool_config pool{"outbound", ids, {}};
    pool.policy.kind = mailers::rotation_kind::weighted;
    eng.upsert_pool(ops, pool);

    // The owner opens; two business days later the same mailbox bumps its
    // own thread; three business days after that a teammate from the pool
    // follows up in the thread. Business days count in the sender's zone.
    mailers::sequence_config seq;
    seq.id = sequence_id;
    seq.steps = {
        {.delay = {mailers::sequence_delay::unit::hours, 0},
         .content = {.subject = "{Quick|Short} question about {{company}}",
                     .text = "Hi {{first_name|there}},\n\nI noticed {{company}} is hiring. "
                             "Worth a short call next week?\n"},
         .sender = {mailers::sender_rule_kind::owner, "", "outbound"}},
        {.delay = {mailers::sequence_delay::unit::business_days, 2},
         .content = {.text = "Bumping this, {{first_name|there}}: does next week work?\n"},
         .sender = {mailers::sender_rule_kind::previous_step, "", ""},
         .threading = mailers::step_threading::reply},
        {.delay = {mailers::sequence_delay::unit::business_days, 3},
         .content = {.text = "{{first_name|Hi}}, I work with {{owner_name}} and wanted to "
                             "close the loop: is hiring still a priority at {{company}}?\n"},
         .sender = {mailers::sender_rule_kind::pool, "outbound", ""},
         .threading = mailers::step_threading::reply},
    };
    eng.upsert_sequence(ops, seq);

    // 1,000 prospects at 250 companies, each owned by a rep.
    std::map<std::string, std::string> owner_of;  // address -> owner mailbox
    for (int i = 0; i < 1000; ++i) {
        const std::string company = "company" + std::to_string(i % 250);
        const std::string address = "lead" + std::to_string(i) + "@" + company + ".example";
        const std::string& owner = ids[static_cast<std::size_t>(i) % ids.size()];
        mailers::enroll_options o;
        o.variables = {{"first_name", first_names[i % 8]},
                       {"company", company},
                       {"owner_name", owner.substr(0, owner.find('@'))}};
        o.owner = owner;
        eng.enroll(ops, sequence_id, *mailers::parse_address(address), o);
        owner_of[address] = owner;
    }

    // What was sent, from the engine's events.
    struct sent_message {
        std::string mailbox, recipient, message_id;
        int step;
        mailers::time_point at;
    };
    std::vector<sent_message> sent;
    eng.on_event([&](const mailers::event& e) {
        if (e.type == mailers::event_type::sent)
            sent.push_back(
                {e.mailbox, e.recipient, e.message_id, step_of(e.idempotency_key), e.at});
    });

    // The script: who does what, when (UTC).
    const std::string unsubscriber = "lead17@company17.example";
    const std::string bouncer = "lead42@company42.example";
    const std::array<std::string, 2> repliers = {"lead5@company5.example",
                                                 "lead300@company50.example"};
    struct cue {
        mailers::time_point at;
        int what;  // 0 unsubscribe, 1 bounce, 2 replies
        bool done = false;
    };
    std::vector<cue> script = {
        {start + 24h + 8h, 0}, {start + 48h + 10h, 1}, {start + 72h + 9h, 2}};
    auto play = [&](cue& c) {
        c.done = true;
        if (c.what == 0) {
            eng.suppress(ops, mailers::suppression_kind::address, unsubscriber,
                         mailers::suppression_reason::unsubscribe, "one-click");
        } else if (c.what == 1) {
            auto first = std::find_if(sent.begin(), sent.end(), [&](const sent_message& s) {
                return s.recipient == bouncer;
            });
            if (first != sent.end())
                eng.ingest_delivery_report(bounce_message(bouncer, first->message_id));
        } else {
            for (const auto& r : repliers) eng.record_reply(ops, r);
        }
    };

    // Let the engine do what it can at this moment: nothing claimed and
    // nothing due until the clock moves.
    auto settle = [&] {
        for (;;) {
            ioc.run_for(1ms);
            if (eng.queue_counts().claimed != 0) continue;
            auto next = eng.next_due();
            if (!next || *next > clock->now()) return;
        }
    };
    auto work = asio::make_work_guard(ioc);
    for (;;) {
        settle();
        for (auto& c : script)
            if (!c.done && c.at <= clock->now()) play(c);
        auto next = eng.next_due();
        for (const auto& c : script)
            if (!c.done && (!next || c.at < *next)) next = c.at;
        if (!next || *next >= end) break;
        clock->set(std::max(*next, clock->now() + 1s));
    }
    work.reset();

    // Per mailbox and local day: sends, and the day's cap (warm-up or daily,
    // whichever is lower); '!' would mark a day over it.
    std::printf(
        "\nScenario B: 30 mailboxes on 5 domains, 1,000 prospects, a 3-step sequence, "
        "two simulated weeks\n\nSends per mailbox and local day (sent/cap that day):\n\n");
    std::printf("%-21s", "mailbox");
    for (int d = 0; d < days_shown; ++d)
        std::printf(" %5s",
                    day_label(std::chrono::sys_days(first_day) + std::chrono::days(d)).c_str());
    std::printf("\n");
    std::map<std::string, std::map<std::chrono::sys_days, int>> per_day;
    for (const auto& s : sent)
        ++per_day[s.mailbox]
                 [std::chrono::sys_days(mailers::local_date(s.at, boxes.at(s.mailbox).time_zone))];
    int over_cap = 0;
    for (const auto& id : ids) {
        const auto& m = boxes.at(id);
        std::printf("%-21s", id.c_str());
        for (int d = 0; d < days_shown; ++d) {
            const auto day = std::chrono::sys_days(first_day) + std::chrono::days(d);
            const int n = per_day[id][day];
            // The warm-up ramp's cap for this local day, as mailbox.hpp defines it.
            const auto warm_start =
                std::chrono::sys_days(mailers::local_date(m.warmup.start_date, m.time_zone));
            const auto ramp = std::min<std::uint64_t>(
                m.warmup.start +
                    m.warmup.step * static_cast<std::uint64_t>((day - warm_start).count()),
                m.warmup.target);
            const auto cap = std::min<std::uint64_t>(m.limits.front().max, ramp);
            if (static_cast<std::uint64_t>(n) > cap) ++over_cap;
            if (n == 0)
                std::printf(" %5s", "-");
            else
                std::printf(" %2d/%-2llu%s", n, static_cast<unsigned long long>(cap),
                            static_cast<std::uint64_t>(n) > cap ? "!" : "");
        }
        std::printf("\n");
    }

    // Who sent each step, and why.
    struct step_tally {
        int sent = 0, by_owner = 0, by_previous = 0;
    };
    std::array<step_tally, 4> steps{};
    std::map<std::string, std::string> last_sender;  // recipient -> mailbox of the step before
    std::vector<sent_message> in_order = sent;
    std::stable_sort(in_order.begin(), in_order.end(),
                     [](const auto& a, const auto& b) { return a.at < b.at; });
    for (const auto& s : in_order) {
        if (s.step < 1 || s.step > 3) continue;
        auto& t = steps[static_cast<std::size_t>(s.step)];
        ++t.sent;
        if (owner_of[s.recipient] == s.mailbox) ++t.by_owner;
        if (last_sender[s.recipient] == s.mailbox) ++t.by_previous;
        last_sender[s.recipient] = s.mailbox;
    }
    const char* rules[] = {"", "the prospect's owner, new thread",
                           "the mailbox that sent step 1, in its thread",
                           "a teammate from pool 'outbound' (weighted), in the thread"};
    std::printf("\nWho sent each step, and why:\n\n%-5s %-58s %5s %9s %13s\n", "step",
                "sender rule", "sent", "by owner", "as step before");
    for (int i = 1; i <= 3; ++i)
        std::printf("%-5d %-58s %5d %9d %13d\n", i, rules[i], steps[i].sent, steps[i].by_owner,
                    i == 1 ? 0 : steps[i].by_previous);

    std::printf("\nEnrollments that stopped:\n\n");
    for (const auto& e : eng.enrollments({.sequence_id = sequence_id})) {
        if (e.state != mailers::enrollment_state::stopped) continue;
        std::printf("  %-28s %-13s after %u of 3 steps: %s\n", e.address.c_str(),
                    std::string(mailers::to_string(e.stop_reason)).c_str(), e.step,
                    e.detail.c_str());
    }
    std::map<std::string, int> by_state;
    for (const auto& e : eng.enrollments({.sequence_id = sequence_id}))
        ++by_state[std::string(mailers::to_string(e.state))];
    std::printf("\nEnrollments by state:");
    for (const auto& [state, n] : by_state) std::printf(" %s %d;", state.c_str(), n);
    std::printf("\n%zu messages sent. %s\n", sent.size(),
                over_cap == 0 ? "No mailbox sent more than its cap on any local day."
                              : "A MAILBOX SENT MORE THAN ITS CAP.");
    std::printf("Messages: %s\nWorkspace (SQLite): %s\nAudit chain: %s\n",
                (out_dir / "eml").c_str(), (out_dir / "workspace.db").c_str(),
                eng.verify_audit() ? "BROKEN" : "verifies");
    return over_cap == 0 ? 0 : 1;
}
