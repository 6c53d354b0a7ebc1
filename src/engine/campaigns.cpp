// Campaigns: one template sent once to each recipient of a list, through the
// paced send queue (docs/campaigns.md).
//
// A campaign adds nothing to the store's schema. Its definition (without
// the list) is an object of kind "campaign", which every engine reads
// through the change feed; each recipient is a queue item with origin
// "campaign:<id>" under the key "campaign:<id>:<normalised address>", which
// the store holds once, so however often and wherever a campaign is
// started, a recipient is queued once, and its send is reserved under the
// same key, so it is sent once. Progress is a scan of those items.
#include <fmt/format.h>

#include <algorithm>
#include <mailers/campaign.hpp>
#include <set>

#include "engine/engine_impl.hpp"
#include "engine/queue.hpp"
#include "engine/serialize.hpp"
#include "mime/text.hpp"

namespace mailers {

using namespace detail;

namespace {

constexpr std::string_view campaign_kind = "campaign";
/// Items per enqueue commit: big enough to queue a large list quickly,
/// small enough that one commit holds the writer briefly.
constexpr std::size_t enqueue_batch = 500;
/// Problems a refused start lists before "and N more".
constexpr std::size_t max_listed_problems = 10;

bool valid_campaign_id(std::string_view id) {
    if (id.empty() || id.size() > max_campaign_id_size) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

bool has_control_char(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

std::string campaign_origin(std::string_view id) {
    return fmt::format("campaign:{}", id);
}

/// The access-control target of a campaign: its pool, else its mailbox.
std::pair<std::string_view, std::string_view> target_of(const campaign_info& c) {
    if (!c.pool.empty()) return {"pool", c.pool};
    return {"mailbox", c.mailbox};
}

/// Appends `s` length-prefixed, so that no two different definitions give
/// the same bytes.
void put_field(std::string& out, std::string_view s) {
    out += std::to_string(s.size());
    out += ':';
    out += s;
}

/// One recipient, validated.
struct checked_recipient {
    std::string key;  ///< normalised address
    const campaign_recipient* source = nullptr;
};

/// A stable digest of everything a start sends: the definition and every
/// distinct recipient with its variables, in list order. template_seed is
/// fixed by the library's documentation, so every version and process
/// computes the same one.
std::string digest_of(const campaign_config& c, const std::vector<checked_recipient>& list) {
    std::string bytes;
    for (std::string_view f :
         {std::string_view(c.id), std::string_view(c.name), std::string_view(c.content.subject),
          std::string_view(c.content.text), std::string_view(c.content.html),
          std::string_view(c.pool), std::string_view(c.mailbox)})
        put_field(bytes, f);
    put_field(bytes, c.reply_to ? c.reply_to->addr_spec() : "");
    put_field(bytes, c.reply_to ? c.reply_to->display_name : "");
    put_field(bytes, std::to_string(c.not_before.time_since_epoch().count()));
    for (const auto& r : list) {
        put_field(bytes, r.key);
        put_field(bytes, r.source->to.display_name);
        put_field(bytes, std::to_string(r.source->variables.size()));
        for (const auto& [k, v] : r.source->variables) {
            put_field(bytes, k);
            put_field(bytes, v);
        }
    }
    return fmt::format("{:016x}", template_seed(bytes, list.size()));
}

/// errc::invalid_argument (or `code`) naming the first problems.
[[noreturn]] void refuse(errc code, const std::string& id, const std::vector<std::string>& problems,
                         std::size_t count) {
    std::string text;
    for (std::size_t i = 0; i < problems.size(); ++i) text += (i ? "; " : "") + problems[i];
    if (count > problems.size()) text += fmt::format("; and {} more", count - problems.size());
    fail(code, fmt::format("campaign '{}': {}; nothing was queued", id, text));
}

campaign_info must_find(const engine::impl& s, const std::string& id) {
    std::lock_guard lock(s.mu);
    auto it = s.campaigns.find(id);
    if (it == s.campaigns.end()) fail(errc::not_found, fmt::format("no campaign '{}'", id));
    return it->second;
}

/// The send-outcome word the queue writes first in a done item's detail
/// (queue.cpp): a ledger state, "suppressed" or "refused".
std::string_view outcome_of(std::string_view detail) {
    return detail.substr(0, detail.find(':'));
}

}  // namespace

void engine::impl::apply_campaign_object(const stored_object& o) {
    auto c = campaign_info_from_json(o.json);
    if (!c) {
        params.log.log(log_level::error,
                       fmt::format("campaign '{}' in the store cannot be read; this process does "
                                   "not list it",
                                   o.id));
        campaigns.erase(o.id);
        return;
    }
    campaigns.insert_or_assign(o.id, std::move(*c));
}

campaign_info engine::start_campaign(const principal& who, const campaign_config& cfg) {
    auto& s = *impl_;
    if (!valid_campaign_id(cfg.id))
        fail(errc::invalid_argument,
             fmt::format("a campaign id must be 1 to {} of A-Z a-z 0-9 . _ -; nothing was queued",
                         max_campaign_id_size));
    if (!mime::is_valid_utf8(cfg.name) || has_control_char(cfg.name))
        refuse(errc::invalid_argument, cfg.id,
               {"the name must be UTF-8 without control characters"}, 1);
    if (cfg.pool.empty() == cfg.mailbox.empty())
        refuse(errc::invalid_argument, cfg.id, {"name exactly one of a pool and a mailbox"}, 1);
    {
        std::lock_guard lock(s.mu);
        if (!cfg.pool.empty() && !s.pools.count(cfg.pool))
            refuse(errc::unknown_pool, cfg.id, {fmt::format("no pool '{}'", cfg.pool)}, 1);
        if (!cfg.mailbox.empty() && !s.mailboxes.count(cfg.mailbox))
            refuse(errc::unknown_mailbox, cfg.id, {fmt::format("no mailbox '{}'", cfg.mailbox)}, 1);
    }
    if (cfg.recipients.empty()) refuse(errc::invalid_argument, cfg.id, {"the list is empty"}, 1);
    if (cfg.recipients.size() > max_campaign_recipients)
        refuse(errc::invalid_argument, cfg.id,
               {fmt::format("{} recipients; at most {}", cfg.recipients.size(),
                            max_campaign_recipients)},
               1);
    template_error terr;
    auto tmpl = message_template::compile(cfg.content, &terr);
    if (!tmpl)
        refuse(errc::invalid_argument, cfg.id, {fmt::format("template: {}", terr.to_string())}, 1);
    const bool by_pool = !cfg.pool.empty();
    s.authorize(who, "campaign.start", by_pool ? "pool" : "mailbox",
                by_pool ? cfg.pool : cfg.mailbox);

    // Every recipient first: one bad one refuses the whole start.
    std::vector<checked_recipient> list;
    list.reserve(cfg.recipients.size());
    std::set<std::string, std::less<>> seen;
    std::vector<std::string> problems;
    std::size_t bad = 0;
    errc code = errc::invalid_argument;
    const auto problem = [&](errc c, std::string text) {
        if (bad++ == 0) code = c;
        if (problems.size() < max_listed_problems) problems.push_back(std::move(text));
    };
    for (std::size_t i = 0; i < cfg.recipients.size(); ++i) {
        const auto& r = cfg.recipients[i];
        auto key = normalise_address(r.to.addr_spec(), s.suppression_opts());
        if (!key) {
            problem(errc::invalid_address, fmt::format("recipient {} ('{}') is not a valid email "
                                                       "address",
                                                       i + 1, r.to.addr_spec()));
            continue;
        }
        if (has_crlf(r.to.display_name)) {
            problem(errc::invalid_argument,
                    fmt::format("recipient {} ({}): the display name holds CR or LF", i + 1, *key));
            continue;
        }
        if (auto check = tmpl->check(r.variables); !check.ok()) {
            problem(errc::invalid_argument,
                    fmt::format("recipient {} ({}): {}", i + 1, *key, check.to_string()));
            continue;
        }
        if (!seen.insert(*key).second) continue;  // listed before: queued once
        list.push_back({std::move(*key), &r});
    }
    if (bad > 0) refuse(code, cfg.id, problems, bad);

    // Each send is rendered and checked before anything is stored, then
    // rendered again batch by batch as it is queued, so a long list never
    // holds every message in memory at once.
    const auto now = s.clk->now();
    const auto origin = campaign_origin(cfg.id);
    // Recipient i's item, or why not; a suppressed recipient is refused
    // unless `anyway` (its item is then checked again at hand-off).
    const auto build = [&](std::size_t i, bool anyway, queued_send& item) -> error_code {
        const auto& r = list[i];
        send_request req;
        req.pool = cfg.pool;
        req.mailbox = cfg.mailbox;
        req.to = r.source->to;
        req.reply_to = cfg.reply_to;
        req.idempotency_key = fmt::format("{}:{}", origin, r.key);
        req.actor = who;
        auto vars = r.source->variables;
        ledger_row row;
        row.recipient = r.key;
        if (auto u = s.unsubscribe_for(row, now))
            vars.insert_or_assign("unsubscribe_url", u->url);
        else
            vars.try_emplace("unsubscribe_url", "");
        auto out = tmpl->render(vars, template_seed(req.idempotency_key, 1), &terr);
        if (!out) {
            problem(out.error() == errc::message_too_large ? errc::message_too_large
                                                           : errc::invalid_argument,
                    fmt::format("recipient {} ({}): {}", i + 1, r.key, terr.to_string()));
            return out.error();
        }
        req.subject = std::move(out->subject);
        req.text = std::move(out->text);
        req.html = std::move(out->html);
        std::string why, domain;
        if (auto ec = s.check_send(req, why, domain); ec && !(anyway && ec == errc::suppressed)) {
            if (ec == errc::suppressed) return ec;
            if (ec == errc::permission_denied) throw exception(ec, why);
            errc c = errc::invalid_argument;
            for (auto e : {errc::invalid_address, errc::header_injection, errc::message_too_large})
                if (ec == e) c = e;
            problem(c, fmt::format("recipient {} ({}): {}", i + 1, r.key, why));
            return ec;
        }
        item.idempotency_key = req.idempotency_key;
        item.pool = req.pool;
        item.mailbox = req.mailbox;
        item.recipient_domain = std::move(domain);
        item.origin = origin;
        item.enqueued_at = now;
        item.not_before = cfg.not_before == time_point{} ? now : cfg.not_before;
        item.request = encode_request(req);
        return {};
    };
    std::vector<bool> skip(list.size());
    std::uint64_t suppressed = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
        queued_send item;
        if (s.suppressed(list[i].key) || build(i, false, item) == errc::suppressed) {
            skip[i] = true;
            ++suppressed;
        }
    }
    if (bad > 0) refuse(code, cfg.id, problems, bad);

    campaign_info info;
    info.id = cfg.id;
    info.name = cfg.name;
    info.content = cfg.content;
    info.pool = cfg.pool;
    info.mailbox = cfg.mailbox;
    info.not_before = cfg.not_before;
    info.started_at = now;
    info.actor = who.id;
    info.total = list.size();
    info.suppressed_at_start = suppressed;
    info.digest = digest_of(cfg, list);
    std::optional<campaign_info> before;
    {
        std::lock_guard lock(s.mu);
        if (auto it = s.campaigns.find(cfg.id); it != s.campaigns.end()) before = it->second;
    }
    if (before && before->digest != info.digest)
        fail(errc::duplicate,
             fmt::format("campaign '{}' was started with another definition or list; nothing "
                         "was queued",
                         cfg.id));
    if (before && before->cancelled) return *before;
    if (before) {
        // Started before (perhaps cut short): queue what has no item yet.
        commit_now(s,
                   {store_ops::append_audit{s.next_audit(who, "campaign.start", "campaign", cfg.id,
                                                         to_json(*before), to_json(*before)),
                                            s.params.audit_key}});
        info = *before;
    } else {
        const auto json = to_json(info);
        s.mutate(who, "campaign.start", "campaign", cfg.id, {}, json,
                 {store_ops::put_object{stored_object{std::string(campaign_kind), cfg.id, json}}},
                 [&] {
                     std::lock_guard lock(s.mu);
                     s.campaigns.insert_or_assign(cfg.id, info);
                 });
    }
    // Counted at start, queued as counted: one suppressed since is queued
    // and found suppressed at hand-off.
    std::vector<store_op> ops;
    const auto flush = [&] {
        if (ops.empty()) return;
        commit_now(s, std::move(ops));
        ops.clear();
        if (s.queue) s.queue->wake();
    };
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (skip[i]) continue;
        queued_send item;
        if (auto ec = build(i, true, item))
            throw exception(
                ec, fmt::format("campaign '{}': recipient {} ({}) could no longer be queued ({}); "
                                "start it again once that is mended: what was queued stays, once",
                                cfg.id, i + 1, list[i].key,
                                problems.empty() ? ec.message() : problems.back()));
        ops.push_back(store_ops::enqueue{std::move(item)});
        if (ops.size() == enqueue_batch) flush();
    }
    flush();
    return info;
}

std::uint64_t engine::cancel_campaign(const principal& who, const std::string& id) {
    auto& s = *impl_;
    auto info = must_find(s, id);
    const auto [type, target] = target_of(info);
    s.authorize(who, "campaign.cancel", type, target);
    if (!info.cancelled) {
        auto after = info;
        after.cancelled = true;
        const auto json = to_json(after);
        s.mutate(who, "campaign.cancel", "campaign", id, to_json(info), json,
                 {store_ops::put_object{stored_object{std::string(campaign_kind), id, json}}}, [&] {
                     std::lock_guard lock(s.mu);
                     s.campaigns.insert_or_assign(id, after);
                 });
    }
    // Every engine now knows it is cancelled and drops an item of it that
    // it claims (queue.cpp), so the items this sweep misses (queued by a
    // start racing it) never go either.
    std::vector<std::uint64_t> waiting;
    queue_filter f;
    f.state = queue_state::waiting;
    f.origin_prefix = campaign_origin(id);
    s.with_store([&](store& st) {
        st.for_each_queued(s.params.workspace, f, [&](const queued_send& q) {
            if (q.origin == f.origin_prefix) waiting.push_back(q.id);
        });
    });
    std::uint64_t cancelled = 0;
    const auto now = s.clk->now();
    for (std::size_t from = 0; from < waiting.size(); from += enqueue_batch) {
        std::vector<store_op> ops;
        const auto to = std::min(waiting.size(), from + enqueue_batch);
        for (auto i = from; i < to; ++i)
            ops.push_back(store_ops::cancel_queued{
                waiting[i], fmt::format("cancelled with campaign '{}' by {}", id, who.id), now});
        for (const auto& r : commit_now(s, std::move(ops)).ops) cancelled += r.applied;
    }
    return cancelled;
}

campaign_progress engine::campaign_progress(const std::string& id) const {
    const auto info = must_find(*impl_, id);
    mailers::campaign_progress p;
    p.id = id;
    p.total = info.total;
    p.suppressed_at_start = info.suppressed_at_start;
    p.cancelled_campaign = info.cancelled;
    std::map<std::string, std::uint64_t> reasons;
    queue_filter f;
    f.origin_prefix = campaign_origin(id);
    std::uint64_t items = 0;
    impl_->with_store([&](store& st) {
        st.for_each_queued(impl_->params.workspace, f, [&](const queued_send& q) {
            if (q.origin != f.origin_prefix) return;  // another campaign's id starts with this one
            ++items;
            switch (q.state) {
                case queue_state::waiting:
                    ++p.waiting;
                    ++reasons[q.wait_reason];
                    if (!p.next_due || q.due_at < *p.next_due) p.next_due = q.due_at;
                    break;
                case queue_state::claimed:
                    ++p.in_flight;
                    break;
                case queue_state::cancelled:
                    ++p.cancelled;
                    break;
                case queue_state::done: {
                    const auto word = outcome_of(q.detail);
                    if (word == "suppressed")
                        ++p.suppressed_at_handoff;
                    else if (word == "accepted")
                        ++p.sent;
                    else if (word == "unknown" || word == "reserved")
                        ++p.unknown;
                    else
                        ++p.failed;
                    break;
                }
            }
        });
    });
    p.waiting_by_reason.assign(reasons.begin(), reasons.end());
    const auto accounted = items + p.suppressed_at_start;
    p.not_queued = p.total > accounted ? p.total - accounted : 0;
    p.remaining = p.waiting + p.in_flight + (info.cancelled ? 0 : p.not_queued);
    return p;
}

std::optional<campaign_info> engine::find_campaign(const std::string& id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->campaigns.find(id);
    if (it == impl_->campaigns.end()) return std::nullopt;
    return it->second;
}

std::vector<campaign_info> engine::campaigns() const {
    std::lock_guard lock(impl_->mu);
    std::vector<campaign_info> out;
    for (const auto& [id, c] : impl_->campaigns) out.push_back(c);
    return out;
}

}  // namespace mailers
