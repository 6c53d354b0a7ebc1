// Sequences: a three-step cadence across identities (the owner opens, the
// same mailbox bumps the thread, the founder follows up), three prospects,
// a reply and an unsubscribe mid-run, on two simulated weeks.
//
// Build and run:  cmake --build build --target example_7_sequences &&
//                 ./build/examples/example_7_sequences
//
// Messages are written as .eml files by the file transport; the clock is a
// manual one, so two weeks pass in about a second.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <mailers.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main() {
    asio::io_context ioc;
    auto dir = std::filesystem::temp_directory_path() / "mailers-sequences";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);

    // Monday 2026-11-23 09:00 UTC.
    auto clock = std::make_shared<mailers::manual_clock>(
        mailers::time_point{std::chrono::seconds{1795424400}});
    mailers::engine_params params;
    params.storage =
        mailers::open_sqlite_store({(dir / "workspace.db").string(), mailers::open_mode::create});
    params.clock = clock;
    params.queue_poll_interval = 10ms;  // the demo's clock runs fast
    params.log = mailers::stderr_logger(mailers::log_level::warning);
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal me{"ops@brand.com", "Ops"};

    eng.add_provider(me, "files",
                     std::make_shared<mailers::file_transport>(ioc.get_executor(), dir / "out"));
    for (auto [id, zone] : {std::pair{"riley", "America/New_York"},
                            std::pair{"sam", "Europe/Berlin"}, std::pair{"founder", "UTC"}}) {
        mailers::mailbox_config m;
        m.id = id;
        m.from = {id, "brand.com", id};
        m.provider = "files";
        m.limits = {mailers::rate_limit::per_day(30)};
        m.time_zone = zone;
        eng.upsert_mailbox(me, m);
    }

    // The cadence: the owner opens; two business days later the same
    // mailbox replies in the thread; a week later the founder follows up.
    mailers::sequence_config c;
    c.id = "outbound";
    c.steps = {
        {.delay = {mailers::sequence_delay::unit::hours, 0},
         .content = {.subject = "{Quick|Short} question, {{first_name}}",
                     .text = "Hi {{first_name|there}}, would a call next week work?"},
         .sender = {mailers::sender_rule_kind::owner, "", ""}},
        {.delay = {mailers::sequence_delay::unit::business_days, 2},
         .content = {.text = "Bumping this, {{first_name}}."},
         .sender = {mailers::sender_rule_kind::previous_step, "", ""},
         .threading = mailers::step_threading::reply},
        {.delay = {mailers::sequence_delay::unit::days, 7},
         .content = {.text = "{{first_name}}, founder here: happy to help directly."},
         .sender = {mailers::sender_rule_kind::mailbox, "founder", ""},
         .threading = mailers::step_threading::reply},
    };
    eng.upsert_sequence(me, c);

    struct prospect {
        const char* address;
        const char* name;
        const char* owner;
    };
    std::vector<std::uint64_t> ids;
    for (auto p :
         {prospect{"ada@acme.example", "Ada", "riley"}, prospect{"bo@initech.example", "Bo", "sam"},
          prospect{"cy@globex.example", "Cy", "riley"}}) {
        mailers::enroll_options o;
        o.variables = {{"first_name", p.name}};
        o.owner = p.owner;
        ids.push_back(eng.enroll(me, "outbound", *mailers::parse_address(p.address), o).id);
    }

    eng.on_event([&](const mailers::event& e) {
        if (e.type == mailers::event_type::sent)
            std::cout << "  sent to " << e.recipient << " by " << e.mailbox << "\n";
    });

    // Two weeks in six-hour steps; the host's loop runs between them (the
    // work guard keeps it running while the queue's thread looks for work).
    auto work = asio::make_work_guard(ioc);
    for (int step = 0; step < 4 * 14; ++step) {
        ioc.run_for(30ms);
        if (step == 4 * 3) {
            std::cout << "day 3: Bo replies\n";
            eng.record_reply(me, "bo@initech.example");
        }
        if (step == 4 * 5) {
            std::cout << "day 5: Cy unsubscribes (from any mailbox, any sequence)\n";
            eng.suppress(me, mailers::suppression_kind::address, "cy@globex.example",
                         mailers::suppression_reason::unsubscribe, "one-click");
        }
        clock->advance(6h);
    }

    work.reset();
    std::cout << "\nenrollments:\n";
    for (auto id : ids) {
        auto e = eng.find_enrollment(id);
        std::cout << "  " << e->address << ": " << mailers::to_string(e->state);
        if (e->state == mailers::enrollment_state::stopped)
            std::cout << " (" << mailers::to_string(e->stop_reason) << ")";
        std::cout << ", " << e->step << " of 3 steps sent\n";
    }
    std::cout << "messages: " << (dir / "out") << "\n";
}
