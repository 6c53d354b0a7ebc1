// Sequence definitions: validation, step timing and the send each step of
// an enrollment becomes.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <charconv>
#include <mailers/sequence.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/schedule.hpp"
#include "mime/text.hpp"

namespace mailers {

std::string_view to_string(sender_rule_kind k) noexcept {
    switch (k) {
        case sender_rule_kind::pool:
            return "pool";
        case sender_rule_kind::mailbox:
            return "mailbox";
        case sender_rule_kind::previous_step:
            return "previous_step";
        case sender_rule_kind::owner:
            return "owner";
    }
    return "unknown";
}

std::string_view to_string(step_threading t) noexcept {
    switch (t) {
        case step_threading::new_thread:
            return "new_thread";
        case step_threading::reply:
            return "reply";
    }
    return "unknown";
}

std::string_view to_string(stop_scope s) noexcept {
    switch (s) {
        case stop_scope::this_sequence:
            return "this_sequence";
        case stop_scope::every_sequence:
            return "every_sequence";
    }
    return "unknown";
}

std::string sequence_error::to_string() const {
    std::string where = step == 0 ? std::string("sequence") : fmt::format("step {}", step);
    if (!field.empty()) where += " " + field;
    if (at) return fmt::format("{}: {}", where, at->to_string());
    return fmt::format("{}: {}", where, message);
}

struct sequence::impl {
    sequence_config config;
    std::vector<message_template> templates;
    detail::business_calendar calendar;  // the sequence's own weekdays and holidays
    detail::zone_ptr zone = nullptr;
};

namespace {

bool valid_id(std::string_view id) {
    return !id.empty() && id.size() <= max_sequence_id_size &&
           std::all_of(id.begin(), id.end(), [](unsigned char c) {
               return mime::is_alnum(c) || c == '.' || c == '_' || c == '-';
           });
}

bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

std::optional<std::int32_t> parse_date(std::string_view s) {
    if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
    int y = 0;
    unsigned m = 0, d = 0;
    auto num = [&](std::size_t at, std::size_t len, auto& out) {
        auto r = std::from_chars(s.data() + at, s.data() + at + len, out);
        return r.ec == std::errc{} && r.ptr == s.data() + at + len;
    };
    if (!num(0, 4, y) || !num(5, 2, m) || !num(8, 2, d)) return std::nullopt;
    std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{m},
                                    std::chrono::day{d}};
    if (!ymd.ok()) return std::nullopt;
    return static_cast<std::int32_t>(std::chrono::sys_days(ymd).time_since_epoch().count());
}

detail::step_delay to_detail(const sequence_delay& d) {
    detail::step_delay out;
    out.amount = d.amount;
    switch (d.in) {
        case sequence_delay::unit::hours:
            out.in = detail::step_delay::unit::hours;
            break;
        case sequence_delay::unit::days:
            out.in = detail::step_delay::unit::days;
            break;
        case sequence_delay::unit::business_days:
            out.in = detail::step_delay::unit::business_days;
            break;
    }
    return out;
}

std::uint32_t delay_limit(sequence_delay::unit u) {
    return u == sequence_delay::unit::hours ? max_step_delay_days * 24 : max_step_delay_days;
}

boost::system::error_code refuse(sequence_error* error, std::size_t step, std::string field,
                                 std::string message) {
    if (error) *error = sequence_error{step, std::move(field), std::nullopt, std::move(message)};
    return make_error_code(errc::invalid_argument);
}

bool starts_with_re(std::string_view subject) {
    return mime::istarts_with(subject, "re:");
}

}  // namespace

sequence::sequence(std::shared_ptr<const impl> p) noexcept : impl_(std::move(p)) {}

boost::system::result<sequence> sequence::compile(sequence_config config, sequence_error* error) {
    if (!valid_id(config.id))
        return refuse(error, 0, "id",
                      fmt::format("must be 1 to {} of A-Z a-z 0-9 . _ -", max_sequence_id_size));
    if (!mime::is_valid_utf8(config.name) || has_control(config.name))
        return refuse(error, 0, "name", "must be UTF-8 without control characters");
    if (config.steps.empty()) return refuse(error, 0, "steps", "a sequence needs a step");
    if (config.steps.size() > max_sequence_steps)
        return refuse(error, 0, "steps",
                      fmt::format("{} steps; at most {}", config.steps.size(), max_sequence_steps));

    auto p = std::make_shared<impl>();
    p->zone = detail::find_zone(config.time_zone);
    if (!p->zone)
        return refuse(error, 0, "time_zone", fmt::format("unknown time zone '{}'", config.time_zone));
    if ((config.business_weekdays & 0x7f) == 0 || (config.business_weekdays & 0x80) != 0)
        return refuse(error, 0, "business_weekdays",
                      "needs at least one of the seven weekday bits and no other");
    std::set<std::int32_t> holidays;
    for (const auto& h : config.holidays) {
        auto day = parse_date(h);
        if (!day)
            return refuse(error, 0, "holidays",
                          fmt::format("'{}' is not a date as YYYY-MM-DD", h));
        holidays.insert(*day);
    }
    p->calendar.weekdays = config.business_weekdays;
    p->calendar.holidays.assign(holidays.begin(), holidays.end());

    for (std::size_t i = 0; i < config.steps.size(); ++i) {
        const auto& s = config.steps[i];
        const std::size_t n = i + 1;
        if (s.delay.amount > delay_limit(s.delay.in))
            return refuse(error, n, "delay",
                          fmt::format("{} is longer than {} days", s.delay.amount,
                                      max_step_delay_days));
        const auto& r = s.sender;
        switch (r.kind) {
            case sender_rule_kind::pool:
            case sender_rule_kind::mailbox:
                if (r.id.empty())
                    return refuse(error, n, "sender",
                                  fmt::format("a {} rule needs the {} id", to_string(r.kind),
                                              to_string(r.kind)));
                if (!r.fallback_pool.empty())
                    return refuse(error, n, "sender",
                                  "only previous_step and owner rules take a fallback pool");
                break;
            case sender_rule_kind::previous_step:
                if (i == 0)
                    return refuse(error, n, "sender", "the first step has no step before it");
                [[fallthrough]];
            case sender_rule_kind::owner:
                if (!r.id.empty())
                    return refuse(error, n, "sender",
                                  fmt::format("a {} rule names no id; give a fallback_pool instead",
                                              to_string(r.kind)));
                break;
        }
        if (has_control(r.id) || has_control(r.fallback_pool))
            return refuse(error, n, "sender", "ids hold no control characters");
        if (s.threading == step_threading::reply && i == 0)
            return refuse(error, n, "threading", "the first step has no thread to reply in");
        if (s.threading == step_threading::new_thread && s.content.subject.empty())
            return refuse(error, n, "content",
                          "a step that starts a thread needs a subject");
        if (s.content.text.empty() && s.content.html.empty())
            return refuse(error, n, "content", "a step needs a text or an HTML body");
        template_error te;
        auto t = message_template::compile(s.content, &te);
        if (!t) {
            if (error) *error = sequence_error{n, "content", te, te.message};
            return t.error();
        }
        p->templates.push_back(std::move(*t));
    }
    p->config = std::move(config);
    return sequence(std::move(p));
}

const sequence_config& sequence::config() const noexcept {
    return impl_->config;
}

std::size_t sequence::size() const noexcept {
    return impl_->templates.size();
}

const message_template& sequence::step_template(std::size_t index) const {
    if (index >= impl_->templates.size())
        throw exception(make_error_code(errc::invalid_argument),
                        fmt::format("sequence '{}' has no step {}", impl_->config.id, index + 1));
    return impl_->templates[index];
}

std::vector<std::string> sequence::required_variables() const {
    std::set<std::string> all;
    for (const auto& t : impl_->templates)
        for (auto& v : t.required_variables())
            if (!is_reserved_template_variable(v)) all.insert(std::move(v));
    return {all.begin(), all.end()};
}

variable_check sequence::check(const template_variables& variables) const {
    std::set<std::string> missing, invalid;
    for (const auto& t : impl_->templates) {
        auto c = t.check(variables);
        for (auto& m : c.missing)
            if (!is_reserved_template_variable(m)) missing.insert(std::move(m));
        for (auto& m : c.invalid) invalid.insert(std::move(m));
    }
    return variable_check{{missing.begin(), missing.end()}, {invalid.begin(), invalid.end()}};
}

std::optional<time_point> sequence::due(std::size_t index, time_point from, std::string_view zone,
                                        std::uint8_t weekdays) const {
    const auto& step = impl_->config.steps.at(index);
    auto z = detail::find_zone(zone);
    if (!z)
        throw exception(make_error_code(errc::invalid_argument),
                        fmt::format("unknown time zone '{}'", zone));
    detail::business_calendar cal;
    cal.weekdays = weekdays;
    cal.holidays = impl_->calendar.holidays;
    return detail::step_due(to_detail(step.delay), z, cal, from);
}

std::optional<time_point> sequence::due(std::size_t index, time_point from) const {
    const auto& step = impl_->config.steps.at(index);
    return detail::step_due(to_detail(step.delay), impl_->zone, impl_->calendar, from);
}

boost::system::result<send_request> sequence::step_request(std::size_t index,
                                                           const enrolled_contact& contact,
                                                           const previous_send* previous,
                                                           sequence_error* error) const {
    const auto& cfg = impl_->config;
    if (index >= impl_->templates.size())
        return refuse(error, 0, "steps",
                      fmt::format("sequence '{}' has no step {}", cfg.id, index + 1));
    const auto& step = cfg.steps[index];
    const std::size_t n = index + 1;
    send_request req;

    switch (step.sender.kind) {
        case sender_rule_kind::pool:
            req.pool = step.sender.id;
            break;
        case sender_rule_kind::mailbox:
            req.mailbox = step.sender.id;
            break;
        case sender_rule_kind::previous_step:
        case sender_rule_kind::owner: {
            std::string mailbox;
            if (step.sender.kind == sender_rule_kind::owner)
                mailbox = contact.owner;
            else if (previous)
                mailbox = previous->mailbox;
            if (!mailbox.empty())
                req.mailbox = std::move(mailbox);
            else if (!step.sender.fallback_pool.empty())
                req.pool = step.sender.fallback_pool;
            else
                return refuse(error, n, "sender",
                              step.sender.kind == sender_rule_kind::owner
                                  ? "the enrollment has no owner and the rule no fallback pool"
                                  : "the step before has no sender and the rule no fallback pool");
            break;
        }
    }

    template_error te;
    auto rendered =
        impl_->templates[index].render(contact.variables, template_seed(contact.enrollment_id, n), &te);
    if (!rendered) {
        if (error) *error = sequence_error{n, "content", te, te.message};
        return rendered.error();
    }

    req.subject = std::move(rendered->subject);
    req.text = std::move(rendered->text);
    req.html = std::move(rendered->html);
    if (step.threading == step_threading::reply) {
        if (!previous || previous->message_id.empty())
            return refuse(error, n, "threading",
                          "a reply needs the Message-ID of the step before");
        if (req.subject.empty())
            req.subject = starts_with_re(previous->subject) ? previous->subject
                                                            : "Re: " + previous->subject;
        req.in_reply_to = previous->message_id;
        std::vector<std::string> refs = previous->references;
        refs.push_back(previous->message_id);
        if (refs.size() > max_thread_references) {
            // The thread's root stays first, then the most recent ids.
            std::vector<std::string> kept;
            kept.push_back(std::move(refs.front()));
            kept.insert(kept.end(),
                        std::make_move_iterator(refs.end() - (max_thread_references - 1)),
                        std::make_move_iterator(refs.end()));
            refs = std::move(kept);
        }
        req.references = std::move(refs);
    }
    req.to = contact.to;
    req.idempotency_key = fmt::format("seq:{}:{}:{}", cfg.id, contact.enrollment_id, n);
    return req;
}

}  // namespace mailers
