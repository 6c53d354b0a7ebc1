// `mailers campaign`, `sequence`, `enrollment` and `forecast`.
#include <fmt/chrono.h>
#include <simdjson.h>

#include <array>
#include <fstream>
#include <mailers/forecast.hpp>
#include <mailers/sequence.hpp>
#include <map>
#include <sstream>

#include "cli.hpp"

namespace mailers_cli {
namespace {

std::string day_of(mailers::time_point t) {
    return fmt::format("{:%Y-%m-%d}", std::chrono::time_point_cast<std::chrono::seconds>(t));
}

// One line of RFC 4180 CSV (quoted fields with "" inside; no line breaks
// inside a field).
std::vector<std::string> csv_fields(std::string_view line, std::size_t line_no,
                                    const std::string& file) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char ch = line[i];
        if (quoted) {
            if (ch != '"')
                out.back() += ch;
            else if (i + 1 < line.size() && line[i + 1] == '"')
                out.back() += '"', ++i;
            else
                quoted = false;
        } else if (ch == '"' && out.back().empty()) {
            quoted = true;
        } else if (ch == ',') {
            out.emplace_back();
        } else {
            out.back() += ch;
        }
    }
    if (quoted) fail(exit_usage, fmt::format("{}, line {}: a quote is not closed", file, line_no));
    return out;
}

// Contacts as CSV with a header line: an `address` (or `email`) column,
// an optional `owner` column, and every other column a template variable.
std::vector<mailers::forecast_contact> read_contacts(const std::string& file) {
    std::istringstream in(read_file(file, "contacts file"));
    std::string line;
    std::vector<std::string> head;
    std::vector<mailers::forecast_contact> out;
    std::size_t n = 0, address_col = std::string::npos, owner_col = std::string::npos;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        auto f = csv_fields(line, n, file);
        if (head.empty()) {
            head = std::move(f);
            for (std::size_t i = 0; i < head.size(); ++i) {
                if (head[i] == "address" || head[i] == "email") address_col = i;
                if (head[i] == "owner") owner_col = i;
            }
            if (address_col == std::string::npos)
                fail(exit_usage, fmt::format("{}: the header line has no `address` column", file));
            continue;
        }
        if (f.size() != head.size())
            fail(exit_usage, fmt::format("{}, line {}: {} fields where the header has {}", file, n,
                                         f.size(), head.size()));
        auto to = mailers::parse_address(f[address_col]);
        if (!to)
            fail(exit_usage,
                 fmt::format("{}, line {}: '{}' is not a valid address", file, n, f[address_col]));
        mailers::forecast_contact c{*to, {}, {}};
        for (std::size_t i = 0; i < f.size(); ++i) {
            if (i == owner_col)
                c.owner = f[i];
            else if (i != address_col)
                c.variables[head[i]] = f[i];
        }
        out.push_back(std::move(c));
    }
    if (out.empty()) fail(exit_usage, fmt::format("{} lists no contacts", file));
    return out;
}

// A campaign definition as JSON (docs/cli.md, "forecast"):
// {"id", "name", "subject", "text", "html", "pool" | "mailbox", "reply_to",
//  "not_before", "recipients": ["a@x" | {"to": "a@x", "variables": {...}}]}.
mailers::campaign_config read_campaign(const std::string& file) {
    const auto text = read_file(file, "campaign file");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (auto err = parser.parse(text).get(doc))
        fail(exit_usage, fmt::format("{}: not JSON ({})", file, simdjson::error_message(err)));
    simdjson::dom::object o;
    if (doc.get(o)) fail(exit_usage, fmt::format("{}: a campaign is a JSON object", file));
    auto bad = [&](std::string_view what) -> void {
        fail(exit_usage, fmt::format("{}: {}", file, what));
    };
    auto str = [&](simdjson::dom::element v, std::string_view name) {
        std::string_view s;
        if (v.get(s)) bad(fmt::format("\"{}\" must be a string", name));
        return std::string(s);
    };
    mailers::campaign_config c;
    for (auto [key, v] : o) {
        if (key == "id")
            c.id = str(v, key);
        else if (key == "name")
            c.name = str(v, key);
        else if (key == "subject")
            c.content.subject = str(v, key);
        else if (key == "text")
            c.content.text = str(v, key);
        else if (key == "html")
            c.content.html = str(v, key);
        else if (key == "pool")
            c.pool = str(v, key);
        else if (key == "mailbox")
            c.mailbox = str(v, key);
        else if (key == "not_before")
            c.not_before = parse_time(str(v, key), "not_before");
        else if (key == "reply_to") {
            auto a = mailers::parse_address(str(v, key));
            if (!a) bad("\"reply_to\" is not a valid address");
            c.reply_to = *a;
        } else if (key == "recipients") {
            simdjson::dom::array a;
            if (v.get(a)) bad("\"recipients\" must be an array");
            std::size_t i = 0;
            for (auto r : a) {
                ++i;
                mailers::campaign_recipient rec;
                std::string to;
                simdjson::dom::object ro;
                if (r.is_string()) {
                    to = str(r, "recipients");
                } else if (!r.get(ro)) {
                    for (auto [rk, rv] : ro) {
                        if (rk == "to") {
                            to = str(rv, "to");
                        } else if (rk == "variables") {
                            simdjson::dom::object vars;
                            if (rv.get(vars))
                                bad(fmt::format("recipient {}: \"variables\" must be an object",
                                                i));
                            for (auto [vk, vv] : vars) rec.variables[std::string(vk)] = str(vv, vk);
                        } else {
                            bad(fmt::format("recipient {}: unknown member \"{}\"", i, rk));
                        }
                    }
                } else {
                    bad(fmt::format("recipient {}: an address or {{\"to\", \"variables\"}}", i));
                }
                auto parsed = mailers::parse_address(to);
                if (!parsed) bad(fmt::format("recipient {}: '{}' is not a valid address", i, to));
                rec.to = *parsed;
                c.recipients.push_back(std::move(rec));
            }
        } else {
            bad(fmt::format("unknown member \"{}\"", key));
        }
    }
    return c;
}

json_object progress_json(const mailers::campaign_progress& p) {
    json_object by;
    for (const auto& [reason, n] : p.waiting_by_reason) by.num(reason.empty() ? "new" : reason, n);
    json_object o;
    o.num("total", p.total)
        .num("sent", p.sent)
        .num("failed", p.failed)
        .num("unknown", p.unknown)
        .num("suppressed_at_start", p.suppressed_at_start)
        .num("suppressed_at_handoff", p.suppressed_at_handoff)
        .num("cancelled", p.cancelled)
        .num("in_flight", p.in_flight)
        .num("waiting", p.waiting)
        .obj("waiting_by_reason", by)
        .num("not_queued", p.not_queued)
        .num("remaining", p.remaining)
        .boolean("finished", p.finished());
    if (p.next_due)
        o.str("next_due", iso8601(*p.next_due));
    else
        o.null("next_due");
    return o;
}

std::string campaign_state(const mailers::campaign_progress& p) {
    return p.cancelled_campaign ? "cancelled" : p.finished() ? "finished" : "running";
}

json_object campaign_json(const mailers::campaign_info& c, const mailers::campaign_progress& p) {
    return json_object()
        .str("id", c.id)
        .str("name", c.name)
        .str("pool", c.pool)
        .str("mailbox", c.mailbox)
        .str("subject", c.content.subject)
        .str("started_at", iso8601(c.started_at))
        .str("actor", c.actor)
        .str("not_before", c.not_before == mailers::time_point{} ? "" : iso8601(c.not_before))
        .str("state", campaign_state(p))
        .obj("progress", progress_json(p));
}

constexpr std::array enrollment_states{
    mailers::enrollment_state::active,    mailers::enrollment_state::paused,
    mailers::enrollment_state::completed, mailers::enrollment_state::stopped,
    mailers::enrollment_state::failed,    mailers::enrollment_state::unresolved};

// Enrollments of a sequence per state, in enrollment_states' order.
std::array<std::uint64_t, enrollment_states.size()> enrollment_counts(mailers::engine& e,
                                                                      const std::string& seq) {
    std::array<std::uint64_t, enrollment_states.size()> n{};
    mailers::enrollment_filter f;
    f.sequence_id = seq;
    for (const auto& en : e.enrollments(f))
        for (std::size_t i = 0; i < n.size(); ++i)
            if (en.state == enrollment_states[i]) ++n[i];
    return n;
}

json_object enrollment_counts_json(const std::array<std::uint64_t, enrollment_states.size()>& n) {
    json_object o;
    for (std::size_t i = 0; i < n.size(); ++i) o.num(to_string(enrollment_states[i]), n[i]);
    return o;
}

std::string delay_text(const mailers::sequence_delay& d) {
    using u = mailers::sequence_delay::unit;
    const char* unit = d.in == u::hours ? "hours" : d.in == u::days ? "days" : "business days";
    return fmt::format("{} {}", d.amount, unit);
}

std::string sender_text(const mailers::sender_rule& s) {
    std::string out(to_string(s.kind));
    if (!s.id.empty()) out += " " + s.id;
    if (!s.fallback_pool.empty()) out += " (else pool " + s.fallback_pool + ")";
    return out;
}

json_object enrollment_json(const mailers::enrollment& e) {
    json_object o;
    o.num("id", e.id)
        .str("sequence", e.sequence_id)
        .str("address", e.address)
        .str("state", to_string(e.state))
        .str("stop_reason", to_string(e.stop_reason))
        .num("steps_sent", e.step)
        .str("owner", e.owner)
        .str("detail", e.detail)
        .str("enrolled_at", iso8601(e.enrolled_at));
    if (e.next_due)
        o.str("next_due", iso8601(*e.next_due));
    else
        o.null("next_due");
    return o;
}

// A forecast's plan, summed up for people and for scripts.
// Sends of `follow` (forecast_request::follow) count as the request's.
int report_forecast(const context& c, const mailers::forecast_plan& plan, bool list_sends,
                    const std::string& follow) {
    std::map<std::pair<std::string, std::string>, std::uint64_t> per_day;  // (day, mailbox)
    std::map<std::string, std::uint64_t> bounds, unsent_reasons;
    std::uint64_t planned = 0, existing = 0, waiting = 0;
    std::optional<mailers::time_point> first;
    for (const auto& s : plan.sends) {
        if (s.existing && (follow.empty() || s.origin != follow)) {
            ++existing;
            continue;
        }
        ++planned;
        if (!first) first = s.at;
        ++per_day[{day_of(s.at), s.mailbox}];
        ++bounds[s.bound.empty() ? "none" : s.bound];
    }
    for (const auto& u : plan.unsent) {
        ++unsent_reasons[u.reason];
        if (u.waiting) ++waiting;
    }
    if (c.g.json) {
        std::vector<json_object> days, sends, unsent;
        for (const auto& [k, n] : per_day)
            days.push_back(
                json_object().str("day", k.first).str("mailbox", k.second).num("sends", n));
        for (const auto& s : plan.sends)
            sends.push_back(json_object()
                                .str("at", iso8601(s.at))
                                .str("due", iso8601(s.due))
                                .str("mailbox", s.mailbox)
                                .str("recipient", s.recipient)
                                .str("origin", s.origin)
                                .num("step", s.step)
                                .str("bound", s.bound)
                                .boolean("existing", s.existing));
        for (const auto& u : plan.unsent)
            unsent.push_back(json_object()
                                 .str("recipient", u.recipient)
                                 .str("origin", u.origin)
                                 .num("step", u.step)
                                 .str("reason", u.reason)
                                 .str("detail", u.detail)
                                 .boolean("waiting", u.waiting));
        json_object b;
        for (const auto& [k, n] : bounds) b.num(k, n);
        json_object o;
        o.str("start", iso8601(plan.start)).str("end", iso8601(plan.end));
        if (first)
            o.str("first", iso8601(*first));
        else
            o.null("first");
        if (plan.last)
            o.str("last", iso8601(*plan.last));
        else
            o.null("last");
        emit(c, o.boolean("complete", plan.complete)
                    .num("planned", planned)
                    .num("existing", existing)
                    .num("unsent", plan.unsent.size())
                    .arr("days", days)
                    .obj("held_by", b)
                    .arr("unsent_messages", unsent)
                    .arr("sends", sends));
        return exit_ok;
    }
    print_fields(
        {{"from", iso8601(plan.start)},
         {"until", iso8601(plan.end)},
         {"sends", fmt::format("{} of this request, {} already queued", planned, existing)},
         {"first send", first ? iso8601(*first) : "-"},
         {"last send", plan.last ? iso8601(*plan.last) : "-"},
         {"unsent", fmt::format("{} ({} still waiting at the end)", plan.unsent.size(), waiting)},
         {"complete", plan.complete ? "yes" : "no: messages still wait at the end"}});
    if (!per_day.empty()) {
        fmt::print("\n");
        std::vector<std::vector<std::string>> rows;
        for (const auto& [k, n] : per_day) rows.push_back({k.first, k.second, std::to_string(n)});
        print_table({"DAY", "MAILBOX", "SENDS"}, rows);
        fmt::print("\n");
        rows.clear();
        for (const auto& [k, n] : bounds) rows.push_back({k, std::to_string(n)});
        print_table({"HELD BY", "SENDS"}, rows);
    }
    if (!plan.unsent.empty()) {
        fmt::print("\n");
        std::vector<std::vector<std::string>> rows;
        for (const auto& [k, n] : unsent_reasons) rows.push_back({k, std::to_string(n)});
        print_table({"UNSENT BECAUSE", "MESSAGES"}, rows);
    }
    if (list_sends && !plan.sends.empty()) {
        fmt::print("\n");
        std::vector<std::vector<std::string>> rows;
        for (const auto& s : plan.sends)
            rows.push_back(
                {iso8601(s.at), s.mailbox, s.recipient, s.origin, s.bound.empty() ? "-" : s.bound});
        print_table({"AT", "MAILBOX", "RECIPIENT", "ORIGIN", "HELD BY"}, rows);
    }
    return exit_ok;
}

void add_campaign_commands(CLI::App& app, commands& reg) {
    // --- campaigns --------------------------------------------------------------
    auto* camp =
        app.add_subcommand("campaign", "Campaigns started by the host (docs/campaigns.md)");
    camp->require_subcommand(1);
    reg.add(camp, "list", "List campaigns with their progress", "mailers campaign list",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                std::vector<json_object> items;
                std::vector<std::vector<std::string>> rows;
                for (const auto& k : e.campaigns()) {
                    const auto p = e.campaign_progress(k.id);
                    items.push_back(campaign_json(k, p));
                    rows.push_back(
                        {k.id, k.pool.empty() ? "mailbox " + k.mailbox : "pool " + k.pool,
                         iso8601(k.started_at), campaign_state(p), std::to_string(p.total),
                         std::to_string(p.sent), std::to_string(p.failed + p.unknown),
                         std::to_string(p.waiting + p.in_flight), std::to_string(p.remaining)});
                }
                emit(c, json_object().arr("campaigns", items));
                if (!c.g.json)
                    print_table({"ID", "THROUGH", "STARTED", "STATE", "TOTAL", "SENT", "FAILED",
                                 "WAITING", "REMAINING"},
                                rows);
                return exit_ok;
            });

    auto& campaign_id = reg.keep<std::string>();
    reg.add(camp, "show",
            "Show a campaign and where it stands: sent, failed, suppressed, waiting and why",
            "mailers campaign show q4-launch",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                auto k = e.find_campaign(campaign_id);
                if (!k) fail(exit_no, fmt::format("no campaign '{}'", campaign_id));
                const auto p = e.campaign_progress(campaign_id);
                emit(c, campaign_json(*k, p));
                if (c.g.json) return exit_ok;
                std::string by;
                for (const auto& [reason, n] : p.waiting_by_reason)
                    by += fmt::format("{}{} {}", by.empty() ? "" : ", ", n,
                                      reason.empty() ? "new" : reason);
                print_fields(
                    {{"id", k->id},
                     {"name", k->name},
                     {"through", k->pool.empty() ? "mailbox " + k->mailbox : "pool " + k->pool},
                     {"subject", k->content.subject},
                     {"started", fmt::format("{} by {}", iso8601(k->started_at), k->actor)},
                     {"not before",
                      k->not_before == mailers::time_point{} ? "-" : iso8601(k->not_before)},
                     {"state", campaign_state(p)},
                     {"recipients", std::to_string(p.total)},
                     {"sent", std::to_string(p.sent)},
                     {"failed", std::to_string(p.failed)},
                     {"unknown outcome", std::to_string(p.unknown)},
                     {"suppressed", fmt::format("{} at start, {} at hand-off",
                                                p.suppressed_at_start, p.suppressed_at_handoff)},
                     {"cancelled", std::to_string(p.cancelled)},
                     {"in flight", std::to_string(p.in_flight)},
                     {"waiting", p.waiting ? fmt::format("{} ({})", p.waiting, by) : "0"},
                     {"not queued", std::to_string(p.not_queued)},
                     {"remaining", std::to_string(p.remaining)},
                     {"next due", p.next_due ? iso8601(*p.next_due) : "-"}});
                return exit_ok;
            })
        ->add_option("ID", campaign_id, "The campaign id")
        ->required();

    reg.add(camp, "cancel",
            "Withdraw every waiting message of a campaign and mark it cancelled (items being "
            "handed off this moment still go)",
            "mailers --actor ops campaign cancel q4-launch",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                if (!e.find_campaign(campaign_id))
                    fail(exit_no, fmt::format("no campaign '{}'", campaign_id));
                const auto n = e.cancel_campaign(c.who, campaign_id);
                emit(c, json_object()
                            .str("id", campaign_id)
                            .num("withdrawn", n)
                            .boolean("cancelled", true));
                if (!c.g.json)
                    fmt::print("cancelled campaign {}: {} waiting messages withdrawn\n",
                               campaign_id, n);
                return exit_ok;
            })
        ->add_option("ID", campaign_id, "The campaign id")
        ->required();
}

void add_sequence_and_enrollment_commands(CLI::App& app, commands& reg) {
    // --- sequences and enrollments ----------------------------------------------
    auto* seq =
        app.add_subcommand("sequence", "Sequences and their enrollments (docs/sequences.md)");
    seq->require_subcommand(1);
    reg.add(seq, "list", "List sequences with their enrollments per state", "mailers sequence list",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                std::vector<json_object> items;
                std::vector<std::vector<std::string>> rows;
                for (const auto& s : e.sequences()) {
                    const auto n = enrollment_counts(e, s.id);
                    const bool paused = e.is_sequence_paused(s.id);
                    items.push_back(json_object()
                                        .str("id", s.id)
                                        .str("name", s.name)
                                        .num("steps", s.steps.size())
                                        .boolean("paused", paused)
                                        .obj("enrollments", enrollment_counts_json(n)));
                    std::vector<std::string> r{s.id, std::to_string(s.steps.size()),
                                               paused ? "yes" : "no"};
                    for (auto x : n) r.push_back(std::to_string(x));
                    rows.push_back(std::move(r));
                }
                emit(c, json_object().arr("sequences", items));
                if (!c.g.json)
                    print_table({"ID", "STEPS", "SEQUENCE PAUSED", "ACTIVE", "PAUSED", "COMPLETED",
                                 "STOPPED", "FAILED"},
                                rows);
                return exit_ok;
            });

    auto& sequence_id = reg.keep<std::string>();
    reg.add(seq, "show", "Show a sequence's steps and its enrollments per state",
            "mailers sequence show outreach",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                auto s = e.find_sequence(sequence_id);
                if (!s) fail(exit_no, fmt::format("no sequence '{}'", sequence_id));
                const auto& cfg = s->config();
                const auto n = enrollment_counts(e, sequence_id);
                const bool paused = e.is_sequence_paused(sequence_id);
                if (c.g.json) {
                    std::vector<json_object> steps;
                    for (const auto& st : cfg.steps)
                        steps.push_back(json_object()
                                            .str("delay", delay_text(st.delay))
                                            .str("sender", sender_text(st.sender))
                                            .str("threading", to_string(st.threading))
                                            .str("subject", st.content.subject));
                    emit(c, json_object()
                                .str("id", cfg.id)
                                .str("name", cfg.name)
                                .str("time_zone", cfg.time_zone)
                                .boolean("paused", paused)
                                .arr("steps", steps)
                                .obj("enrollments", enrollment_counts_json(n)));
                    return exit_ok;
                }
                std::vector<std::pair<std::string, std::string>> fields{
                    {"id", cfg.id},
                    {"name", cfg.name},
                    {"time zone", cfg.time_zone.empty() ? "-" : cfg.time_zone},
                    {"paused", paused ? "yes" : "no"}};
                std::string counts;
                for (std::size_t i = 0; i < n.size(); ++i)
                    counts += fmt::format("{}{} {}", i ? ", " : "", n[i],
                                          to_string(enrollment_states[i]));
                fields.emplace_back("enrollments", counts);
                print_fields(fields);
                fmt::print("\n");
                std::vector<std::vector<std::string>> rows;
                for (std::size_t i = 0; i < cfg.steps.size(); ++i) {
                    const auto& st = cfg.steps[i];
                    rows.push_back({std::to_string(i + 1), delay_text(st.delay),
                                    sender_text(st.sender), std::string(to_string(st.threading)),
                                    st.content.subject});
                }
                print_table({"STEP", "AFTER", "SENDER", "THREAD", "SUBJECT"}, rows);
                return exit_ok;
            })
        ->add_option("ID", sequence_id, "The sequence id")
        ->required();

    auto* enr = app.add_subcommand("enrollment", "Contacts enrolled in sequences");
    enr->require_subcommand(1);
    auto& enr_state = reg.keep<std::string>();
    auto& enr_after = reg.keep<std::uint64_t>(0);
    auto& enr_limit = reg.keep<std::uint64_t>(0);
    auto* elist = reg.add(
        enr, "list", "List a sequence's enrollments: state, steps sent, next step due",
        "mailers enrollment list --sequence outreach --state active --limit 50", [&](context& c) {
            mailers::enrollment_filter f;
            f.sequence_id = sequence_id;
            f.after_id = enr_after;
            f.limit = enr_limit;
            if (!enr_state.empty()) {
                for (auto s : enrollment_states)
                    if (enr_state == to_string(s)) f.state = s;
                if (!f.state)
                    fail(exit_usage, fmt::format("unknown state '{}': use active, paused, "
                                                 "completed, stopped, failed or unresolved",
                                                 enr_state));
            }
            open_workspace(c, mailers::open_mode::existing);
            auto& e = c.engine();
            if (!e.find_sequence(sequence_id))
                fail(exit_no, fmt::format("no sequence '{}'", sequence_id));
            const auto list = e.enrollments(f);
            if (c.g.json) {
                std::vector<json_object> items;
                for (const auto& x : list) items.push_back(enrollment_json(x));
                emit(c, json_object().arr("enrollments", items));
                return exit_ok;
            }
            std::vector<std::vector<std::string>> rows;
            for (const auto& x : list)
                rows.push_back({std::to_string(x.id), x.address,
                                x.state == mailers::enrollment_state::stopped
                                    ? fmt::format("stopped ({})", to_string(x.stop_reason))
                                    : std::string(to_string(x.state)),
                                std::to_string(x.step), x.next_due ? iso8601(*x.next_due) : "-",
                                iso8601(x.enrolled_at), x.detail.empty() ? "-" : x.detail});
            print_table({"ID", "ADDRESS", "STATE", "SENT", "NEXT DUE", "ENROLLED", "DETAIL"}, rows);
            return exit_ok;
        });
    elist->add_option("--sequence", sequence_id, "The sequence")->required();
    elist->add_option("--state", enr_state,
                      "Only active, paused, completed, stopped, failed or unresolved");
    elist->add_option("--after", enr_after, "Only ids above this one (paging)");
    elist->add_option("--limit", enr_limit, "At most this many (0: all)");

    auto& enr_id = reg.keep<std::uint64_t>(0);
    auto& enr_sent = reg.keep<bool>(false);
    auto& enr_not_sent = reg.keep<bool>(false);
    auto* eres = reg.add(
        enr, "resolve",
        "Say what became of a step whose send ended unknown (state unresolved): --sent goes on "
        "with the next step, --not-sent sends the step again, once, under a send key of its own "
        "(exit 1 if it is not unresolved)",
        "mailers enrollment resolve 42 --sent", [&](context& c) {
            if (enr_sent == enr_not_sent) fail(exit_usage, "give one of --sent or --not-sent");
            open_workspace(c, mailers::open_mode::existing);
            auto& e = c.engine();
            if (!e.find_enrollment(enr_id)) fail(exit_no, fmt::format("no enrollment {}", enr_id));
            if (!e.resolve_unknown_step(
                    c.who, enr_id,
                    enr_sent ? mailers::step_resolution::sent : mailers::step_resolution::not_sent))
                fail(exit_no,
                     fmt::format("enrollment {} is not unresolved; nothing changed", enr_id));
            const auto x = e.find_enrollment(enr_id);
            emit(c, enrollment_json(*x));
            if (!c.g.json) fmt::print("enrollment {}: {}\n", enr_id, to_string(x->state));
            return exit_ok;
        });
    eres->add_option("ID", enr_id, "The enrollment id")->required();
    eres->add_flag("--sent", enr_sent, "The message went (found at the provider or the inbox)");
    eres->add_flag("--not-sent", enr_not_sent, "The message did not go: send the step again");
}

void add_forecast_commands(CLI::App& app, commands& reg) {
    // --- forecast -----------------------------------------------------------------
    auto* fc = app.add_subcommand(
        "forecast",
        "What a campaign or an enrollment would send, when and from which mailbox, and what "
        "holds it back: a dry run that sends, stores and audits nothing (docs/campaigns.md)");
    fc->require_subcommand(1);
    auto& fc_days = reg.keep<unsigned>(30);
    auto& fc_no_queue = reg.keep<bool>(false);
    auto& fc_sends = reg.keep<bool>(false);
    auto& fc_file = reg.keep<std::string>();
    auto& sequence_id = reg.keep<std::string>();
    auto forecast_options = [&](CLI::App* sub) {
        sub->add_option("--days", fc_days, "How far ahead to simulate, in days")
            ->capture_default_str();
        sub->add_flag("--no-queue", fc_no_queue,
                      "Leave out the sends already waiting in the queue (they compete for the "
                      "same caps otherwise)");
        sub->add_flag("--sends", fc_sends, "Also list every planned send (--json always does)");
    };
    // Copied into the handlers below: it outlives this function only so.
    auto run_forecast = [&](context& c, mailers::forecast_request req) {
        if (fc_days == 0 || fc_days > 366) fail(exit_usage, "--days must be between 1 and 366");
        req.horizon = std::chrono::hours(24 * fc_days);
        req.include_queue = !fc_no_queue;
        return report_forecast(c, c.engine().forecast(req), fc_sends, req.follow);
    };
    auto* fcc = reg.add(
        fc, "campaign",
        "Forecast what is left of a started campaign (ID), or starting the campaign defined in "
        "a JSON file (id, name, subject, text, html, pool or mailbox, not_before, recipients)",
        "mailers forecast campaign q4-launch.json --days 14", [&, run_forecast](context& c) {
            mailers::forecast_request req;
            open_workspace(c, mailers::open_mode::existing);
            if (auto k = c.engine().find_campaign(fc_file)) {
                if (fc_no_queue)
                    fail(exit_usage,
                         "a started campaign's messages wait in the queue: "
                         "--no-queue would leave none to forecast");
                req.follow = "campaign:" + k->id;
                return run_forecast(c, std::move(req));
            }
            if (!std::ifstream(fc_file))
                fail(exit_no,
                     fmt::format("no campaign '{}', and no campaign file of that name", fc_file));
            req.campaign = read_campaign(fc_file);
            if (auto k = c.engine().find_campaign(req.campaign->id))
                fail(exit_usage,
                     fmt::format("campaign '{}' is already started: `mailers forecast campaign {}` "
                                 "forecasts what is left of it",
                                 k->id, k->id));
            return run_forecast(c, std::move(req));
        });
    fcc->add_option("CAMPAIGN", fc_file,
                    "A started campaign's id, or a JSON file defining one not yet started")
        ->required();
    forecast_options(fcc);
    auto* fcs = reg.add(
        fc, "sequence",
        "Forecast enrolling the contacts of a CSV file (header line: address, optional owner, "
        "then template variables) in a stored sequence",
        "mailers forecast sequence outreach --contacts leads.csv", [&, run_forecast](context& c) {
            mailers::forecast_request req;
            req.sequence_id = sequence_id;
            req.contacts = read_contacts(fc_file);
            open_workspace(c, mailers::open_mode::existing);
            if (!c.engine().find_sequence(sequence_id))
                fail(exit_no, fmt::format("no sequence '{}'", sequence_id));
            return run_forecast(c, std::move(req));
        });
    fcs->add_option("ID", sequence_id, "The sequence id")->required();
    fcs->add_option("--contacts", fc_file, "CSV file of the contacts to enroll")->required();
    forecast_options(fcs);
}

}  // namespace

void add_workflow_commands(CLI::App& app, commands& reg) {
    add_campaign_commands(app, reg);
    add_sequence_and_enrollment_commands(app, reg);
    add_forecast_commands(app, reg);
}

}  // namespace mailers_cli
