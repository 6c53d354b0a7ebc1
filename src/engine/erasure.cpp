// Erasure (GDPR Art. 17) and export (Art. 15) of one person's data, and the
// keyed-hash suppression entries that keep an erased person suppressed.
// The design and what it protects against are in docs/privacy.md.
// The SHA256_* functions are deprecated in OpenSSL 3 but kept; see
// keyed_sha256 for why they are used.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <fmt/chrono.h>
#include <openssl/sha.h>
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <thread>
#include <unordered_set>

#include "config/secret_ref.hpp"
#include "engine/engine_impl.hpp"
#include "engine/erasure_key.hpp"
#include "engine/queue.hpp"
#include "engine/serialize.hpp"
#include "json/writer.hpp"
#include "mime/random.hpp"
#include "webhooks/crypto.hpp"

namespace mailers {

using detail::fail;

namespace {

constexpr std::string_view erased_prefix = "erased:";

// Every set of folding rules a workspace can have. An erasure writes one
// entry per set, so that a later change of the rules (which re-keys plain
// entries but cannot re-key a hash) still finds the person.
constexpr std::array<suppression_options, 4> every_rule_set{{
    {false, false},
    {true, false},
    {false, true},
    {true, true},
}};

std::string_view rules_tag(const suppression_options& o) {
    static constexpr std::array<std::string_view, 4> tags{
        "plus=0;gmail=0\n", "plus=1;gmail=0\n", "plus=0;gmail=1\n", "plus=1;gmail=1\n"};
    return tags[(o.fold_plus_tags ? 1 : 0) + (o.fold_gmail_dots ? 2 : 0)];
}

// HMAC-SHA256 (RFC 2104) with the key's padded blocks absorbed once per
// thread and key: a check then costs two SHA-256 compressions of a short
// message, not HMAC()'s set-up, which would cost more than the rest of the
// suppression check. OpenSSL 3 keeps the SHA256_* functions, deprecated in
// favour of EVP, whose context copies allocate.
class keyed_sha256 {
public:
    void use(std::string_view key) {
        if (key == key_) return;
        key_.assign(key);
        std::array<unsigned char, 64> block{};
        if (key.size() > block.size())
            SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), block.data());
        else
            std::copy(key.begin(), key.end(), block.begin());
        std::array<unsigned char, 64> pad{};
        for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
        SHA256_Init(&inner_);
        SHA256_Update(&inner_, pad.data(), pad.size());
        for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
        SHA256_Init(&outer_);
        SHA256_Update(&outer_, pad.data(), pad.size());
    }
    std::array<unsigned char, 32> mac(std::string_view a, std::string_view b) const {
        std::array<unsigned char, 32> inner_hash{}, out{};
        SHA256_CTX c = inner_;
        SHA256_Update(&c, a.data(), a.size());
        SHA256_Update(&c, b.data(), b.size());
        SHA256_Final(inner_hash.data(), &c);
        c = outer_;
        SHA256_Update(&c, inner_hash.data(), inner_hash.size());
        SHA256_Final(out.data(), &c);
        return out;
    }

private:
    std::string key_;
    SHA256_CTX inner_{}, outer_{};
};

// The entry value an erased address keeps under `rules`: the rules are
// hashed with the key, so the entry made for one set of rules never matches
// an address checked under another (where it may fold to someone else).
std::string erased_value(std::string_view key, const suppression_options& rules,
                         std::string_view normalised) {
    thread_local keyed_sha256 hasher;
    hasher.use(key);
    const auto mac = hasher.mac(rules_tag(rules), normalised);
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(erased_prefix);
    out.reserve(erased_prefix.size() + 2 * mac.size());
    for (const unsigned char b : mac) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

std::string key_mark(std::string_view key) {
    return webhooks::to_hex(
        webhooks::as_view(webhooks::hmac_sha256(key, "mailers erasure key mark")));
}

std::optional<std::string> from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0) return std::nullopt;
    std::string out(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < out.size(); ++i) {
        int v = 0;
        for (int j = 0; j < 2; ++j) {
            const char c = hex[2 * i + j];
            const int d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : -1;
            if (d < 0) return std::nullopt;
            v = v * 16 + d;
        }
        out[i] = static_cast<char>(v);
    }
    return out;
}

bool is_delimiter(unsigned char c) {
    return c <= 0x20 || c == 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '(' ||
           c == ')' || c == ',' || c == ';' || c == ':' || c == '\\' || c == ']' || c == '[';
}

// One person, as the workspace's data can spell them.
class person {
public:
    person(std::string_view address, const suppression_options& rules) : rules_(rules) {
        if (detail::has_crlf(address)) fail(errc::invalid_address, "not a valid email address");
        auto key = normalise_address(address, rules);
        if (!key) fail(errc::invalid_address, "not a valid email address");
        key_ = std::move(*key);
        keys_.push_back(key_);
        // Rows written before a fold was turned on keep the spelling the
        // rules of their day made.
        if (auto plain = normalise_address(address, {}); plain && *plain != key_)
            keys_.push_back(std::move(*plain));
        // Folding only removes characters, so a valid key stays valid under
        // every rule set; the workspace's key stands in should one not.
        for (const auto& r : every_rule_set) {
            auto k = normalise_address(address, r);
            per_rules_.push_back(k ? std::move(*k) : key_);
        }
    }

    const std::string& key() const { return key_; }
    const std::vector<std::string>& keys() const { return keys_; }
    const std::string& key_under(std::size_t rule_set) const { return per_rules_[rule_set]; }

    /// Whether `addr` (any spelling, with or without a display name) is
    /// this person under the workspace's rules.
    bool is(std::string_view addr) const {
        if (std::find(keys_.begin(), keys_.end(), addr) != keys_.end()) return true;
        auto k = normalise_address(addr, rules_);
        return k && *k == key_;
    }

    /// Whether a text mentions this person: every token around an '@' is
    /// read as an address (a trailing dot, as at the end of a sentence, is
    /// tried without).
    bool mentioned_in(std::string_view text) const {
        for (std::size_t at = text.find('@'); at != std::string_view::npos;
             at = text.find('@', at + 1)) {
            std::size_t begin = at;
            while (begin > 0 && at - begin < 300 &&
                   !is_delimiter(static_cast<unsigned char>(text[begin - 1])))
                --begin;
            std::size_t end = at + 1;
            if (end < text.size() && text[end] == '[') {
                const auto close = text.find(']', end);
                end = close == std::string_view::npos ? text.size() : close + 1;
            } else {
                while (end < text.size() && end - at < 300 &&
                       !is_delimiter(static_cast<unsigned char>(text[end])))
                    ++end;
            }
            if (begin == at || end == at + 1) continue;
            auto token = text.substr(begin, end - begin);
            if (is(token)) return true;
            while (token.ends_with('.')) {
                token.remove_suffix(1);
                if (is(token)) return true;
            }
        }
        return false;
    }

    /// Whether a queued request (encode_request's bytes) is to or about
    /// this person.
    bool in_request(std::string_view bytes) const {
        auto req = detail::decode_request(bytes);
        if (!req) return mentioned_in(bytes);
        const auto named = [&](const address& a) { return is(a.addr_spec()); };
        if (named(req->to) || std::any_of(req->cc.begin(), req->cc.end(), named) ||
            std::any_of(req->bcc.begin(), req->bcc.end(), named) ||
            (req->reply_to && named(*req->reply_to)))
            return true;
        if (mentioned_in(req->subject) || mentioned_in(req->text) || mentioned_in(req->html) ||
            mentioned_in(req->raw) || mentioned_in(req->idempotency_key))
            return true;
        return std::any_of(req->headers.begin(), req->headers.end(),
                           [&](const header_field& h) { return mentioned_in(h.value); });
    }

private:
    suppression_options rules_;
    std::string key_;
    std::vector<std::string> keys_;
    std::vector<std::string> per_rules_;
};

std::string iso(time_point t) {
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                       std::chrono::floor<std::chrono::seconds>(
                           std::chrono::time_point_cast<std::chrono::system_clock::duration>(t)));
}

void counts_json(json::writer& w, const erasure_counts& n) {
    w.begin_object()
        .member("suppression_rows", n.suppression_rows)
        .member("sends", n.sends)
        .member("queued", n.queued)
        .member("queue_cancelled", n.queue_cancelled)
        .member("enrollments", n.enrollments)
        .member("webhook_deliveries", n.webhook_deliveries)
        .member("recorded_keys", n.recorded_keys)
        .member("soft_bounces", n.soft_bounces)
        .end_object();
}

void add_counts(erasure_counts& a, const erasure_counts& b) {
    a.suppression_rows += b.suppression_rows;
    a.sends += b.sends;
    a.queued += b.queued;
    a.queue_cancelled += b.queue_cancelled;
    a.enrollments += b.enrollments;
    a.webhook_deliveries += b.webhook_deliveries;
    a.recorded_keys += b.recorded_keys;
    a.soft_bounces += b.soft_bounces;
}

// The workspace's erasure key, made by the first erasure (or export) when
// there is none. The record_key guard makes two engines racing to make it
// agree on one: the second commit changes nothing and reads the first's.
std::string ensure_erasure_key(engine::impl& s) {
    {
        std::shared_lock lock(s.supp_mu);
        if (s.erasure_key_conflict)
            fail(errc::invalid_argument,
                 "this engine's erasure_key disagrees with the workspace's erasure key");
        if (!s.erasure_key.empty()) return s.erasure_key;
    }
    const bool host = !s.params.erasure_key.empty();
    std::string key = s.params.erasure_key;
    if (!host) {
        std::array<unsigned char, 32> bytes{};
        mime::random_bytes(bytes.data(), bytes.size());
        key.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    std::string object, after;
    {
        json::writer w(object);
        w.begin_object().member("mode", host ? "host" : "stored");
        if (host)
            w.member("mark", key_mark(key));
        else
            w.member("key", webhooks::to_hex(key));
        w.end_object();
    }
    json::writer(after)
        .begin_object()
        .member("mode", host ? "host" : "stored")
        .member("mark", key_mark(key))
        .end_object();
    const auto now = s.clk->now();
    std::vector<store_op> ops;
    ops.push_back(store_ops::record_key{"erasure", "workspace-key", now,
                                        now + std::chrono::hours(24 * 365 * 100), 2});
    ops.push_back(store_ops::put_object{stored_object{"settings", "erasure", object}});
    s.mutate(principal::system(), "erasure.key", "settings", "erasure", {}, std::move(after),
             std::move(ops), [&] { s.apply_erasure_object({"settings", "erasure", object}); });
    // Another engine made it first: its object reaches us through the feed.
    for (int i = 0; i < 200; ++i) {
        {
            std::shared_lock lock(s.supp_mu);
            if (s.erasure_key_conflict)
                fail(errc::invalid_argument,
                     "this engine's erasure_key disagrees with the workspace's erasure key");
            if (!s.erasure_key.empty()) return s.erasure_key;
        }
        s.pull_changes();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    fail(errc::store_error, "the workspace's erasure key could not be read back");
}

}  // namespace

// --- the check ----------------------------------------------------------------

bool engine::impl::suppressed_locked(std::string_view normalised) const {
    if (index.contains_address(normalised)) return true;
    if (erased_entries == 0) return false;
    // Entries this engine cannot check: refusing every send is the only
    // answer that never reaches an erased person.
    if (erasure_key.empty()) return true;
    return index.contains(suppression_kind::address,
                          erased_value(erasure_key, supp_opts, normalised));
}

bool engine::impl::erased(std::string_view normalised) const {
    std::shared_lock lock(supp_mu);
    return erased_entries != 0 && !erasure_key.empty() &&
           index.contains(suppression_kind::address,
                          erased_value(erasure_key, supp_opts, normalised));
}

std::string engine::impl::erased_value_of(std::string_view normalised) const {
    return erasure_key.empty() ? std::string() : erased_value(erasure_key, supp_opts, normalised);
}

void engine::impl::index_insert(suppression_kind kind, std::string_view value) {
    if (index.insert(kind, value) && is_erased_value(value))
        ++erased_entries;
}

void engine::impl::index_erase(suppression_kind kind, std::string_view value) {
    if (index.erase(kind, value) && is_erased_value(value) && erased_entries > 0)
        --erased_entries;
}

bool engine::impl::mask_erased(event& ev) const {
    if (ev.recipient.empty()) return false;
    const auto key = normalise_address(ev.recipient, suppression_opts());
    if (!key || !erased(*key)) return false;
    std::shared_lock lock(supp_mu);
    const auto hash = erased_value_of(*key);
    if (ev.idempotency_key.find('@') != std::string::npos) ev.idempotency_key.clear();
    if (ev.detail.find('@') != std::string::npos) ev.detail.clear();
    ev.recipient = hash;
    return true;
}

std::string detail::workspace_erasure_key(std::string_view json, std::string_view host_key,
                                          std::string& why) {
    thread_local simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    simdjson::dom::object obj;
    std::string_view mode, value;
    std::string key;
    if (parser.parse(padded).get(obj) != simdjson::SUCCESS ||
        obj["mode"].get(mode) != simdjson::SUCCESS) {
        why = "the workspace's erasure key settings cannot be read";
    } else if (mode == "stored") {
        auto k = obj["key"].get(value) == simdjson::SUCCESS ? from_hex(value) : std::nullopt;
        if (!k || k->empty())
            why = "the workspace's stored erasure key cannot be read";
        else if (!host_key.empty())
            why = "the workspace keeps its own erasure key in the store; this engine was given "
                  "engine_params.erasure_key, which it does not use";
        else
            key = std::move(*k);
    } else if (mode == "host") {
        if (obj["mark"].get(value) != simdjson::SUCCESS)
            why = "the workspace's erasure key settings cannot be read";
        else if (host_key.empty())
            why = "the workspace's erasure key is held by its hosts; this engine needs "
                  "engine_params.erasure_key";
        else if (key_mark(host_key) != value)
            why = "engine_params.erasure_key is not the key the workspace's erasures used";
        else
            key = std::string(host_key);
    } else {
        why = fmt::format("the workspace's erasure key settings name an unknown mode '{}'", mode);
    }
    return key;
}

std::string detail::erased_entry_value(std::string_view key, const suppression_options& rules,
                                       std::string_view normalised) {
    return erased_value(key, rules, normalised);
}

std::string engine::impl::apply_erasure_object(const stored_object& o) {
    std::string why;
    std::string key = detail::workspace_erasure_key(o.json, params.erasure_key, why);
    std::unique_lock lock(supp_mu);
    erasure_key = std::move(key);
    erasure_key_conflict = !why.empty();
    return why.empty() ? why : fmt::format("workspace '{}': {}", params.workspace, why);
}

void resolve_erasure_key(engine::impl& s) {
    std::string error;
    if (!detail::resolve_value(s.params.erasure_key, "engine_params.erasure_key", error))
        fail(errc::invalid_argument, std::move(error));
}

// --- erasure --------------------------------------------------------------------

erasure_report engine::erase_person(const principal& who, std::string_view address) {
    auto& s = *impl_;
    const auto rules = s.suppression_opts();
    const person p(address, rules);
    s.authorize(who, "person.erase", "person", "");
    const std::string key = ensure_erasure_key(s);
    const auto now = s.clk->now();

    erasure_report report;
    report.at = now;
    report.hash = erased_value(key, rules, p.key());
    {
        std::shared_lock lock(s.supp_mu);
        report.was_suppressed = s.index.contains(suppression_kind::address, p.key());
    }
    std::vector<suppression_entry> entries;
    suppression_hasher hasher(s.params.audit_key);
    suppression_set_digest digest;
    for (std::size_t i = 0; i < every_rule_set.size(); ++i) {
        entries.push_back({suppression_kind::address,
                           erased_value(key, every_rule_set[i], p.key_under(i)),
                           suppression_reason::legal, "erasure", now});
        digest.add(hasher(entries.back()));
    }
    // The audited single changes of the address: their rows go, and the
    // verifier must know why (docs/audit.md).
    std::vector<std::uint64_t> voided;
    s.with_store([&](store& st) {
        st.for_each_audit(s.params.workspace, 1, [&](const audit_record& r) {
            if ((r.action == "suppression.add" || r.action == "suppression.remove") &&
                r.resource_type == "suppression" && p.is(r.resource_id))
                voided.push_back(r.seq);
        });
    });

    person_erasure job;
    job.keys = p.keys();
    job.mentions = [&p](std::string_view t) { return p.mentioned_in(t); };
    job.request_mentions = [&p](std::string_view b) { return p.in_request(b); };
    job.entries = entries;
    job.at = now;
    job.audit = [&](const erasure_counts& n, std::span<const erased_row> removed) {
        std::string after;
        json::writer w(after);
        w.begin_object()
            .member("hash", report.hash)
            .member("count", entries.size())
            .member("rows_digest", digest.hex())
            .member("digest_key", hasher.key_mark())
            .key("entries")
            .begin_array();
        for (const auto& e : entries) w.value(e.value);
        w.end_array().key("voided").begin_array();
        for (auto seq : voided) w.value(seq);
        w.end_array().key("removed").begin_array();
        for (const auto& r : removed) w.begin_array().value(r.seq).value(r.by_seq).end_array();
        w.end_array().key("erased");
        counts_json(w, n);
        w.end_object();
        return store_ops::append_audit{
            s.next_audit(who, "person.erase", "person", report.hash, {}, std::move(after)),
            s.params.audit_key};
    };

    // As mutate() does for one change: the sync thread leaves the feed to
    // us until our change is applied here.
    impl::own_change_scope guard(s);
    person_erasure_result r;
    s.with_store([&](store& st) { r = st.erase_person(s.params.workspace, job); });
    report.erased = r.counts;
    report.audit_seq = r.audit_seq;
    s.catch_up(r.change_seq, [&] {
        std::unique_lock lock(s.supp_mu);
        for (const auto& e : entries) s.index_insert(e.kind, e.value);
        for (const auto& k : p.keys()) s.index_erase(suppression_kind::address, k);
    });
    guard.release();
    s.wait_acked(r.change_seq);

    // Sends decided before every engine had the erasure may have written
    // their rows and events since the first pass; none can now.
    job.entries.clear();
    job.audit = nullptr;
    s.with_store([&](store& st) {
        add_counts(report.erased, st.erase_person(s.params.workspace, job).counts);
    });
    {
        std::lock_guard lock(s.mu);
        for (auto& [id, pool] : s.pools)
            for (const auto& k : p.keys()) pool.sticky.erase(k);
    }
    return report;
}

// --- export ---------------------------------------------------------------------

std::string engine::export_person(const principal& who, std::string_view address) {
    auto& s = *impl_;
    const auto rules = s.suppression_opts();
    const person p(address, rules);
    s.authorize(who, "person.export", "person", "");
    const std::string key = ensure_erasure_key(s);
    const std::string hash = erased_value(key, rules, p.key());
    const auto entry = find_suppression(p.key());

    std::string out;
    json::writer w(out);
    const auto put_entry = [&](const suppression_entry& e) {
        w.begin_object()
            .member("kind", to_string(e.kind))
            .member("value", e.value)
            .member("reason", to_string(e.reason))
            .member("source", e.source)
            .member("created_at", iso(e.created_at))
            .end_object();
    };
    w.begin_object()
        .member("address", std::string(address))
        .member("key", p.key())
        .member("erased_hash", hash)
        .member("exported_at", iso(s.clk->now()))
        .member("suppressed", entry.has_value())
        .key("suppression");
    if (entry)
        put_entry(*entry);
    else
        w.null();
    std::uint64_t sends = 0, events = 0, enrollments = 0, queued = 0, audits = 0, history = 0;
    s.with_store([&](store& st) {
        const auto& ws = s.params.workspace;
        w.key("suppression_history").begin_array();
        st.for_each_suppression_version(ws, [&](const suppression_version& v) {
            if (v.entry.kind != suppression_kind::address ||
                (!p.is(v.entry.value) && v.entry.value != hash))
                return;
            ++history;
            w.begin_object().key("entry");
            put_entry(v.entry);
            w.member("seq", v.seq).member("by_seq", v.by_seq).end_object();
        });
        w.end_array().key("sends").begin_array();
        st.for_each_send(ws, time_point{}, s.clk->now() + std::chrono::hours(24 * 366),
                         [&](const ledger_row& row) {
                             if (!p.is(row.recipient) && !p.mentioned_in(row.detail)) return;
                             ++sends;
                             w.begin_object()
                                 .member("id", row.id)
                                 .member("idempotency_key", row.idempotency_key)
                                 .member("mailbox", row.mailbox)
                                 .member("provider", row.provider)
                                 .member("pool", row.pool)
                                 .member("recipient", row.recipient)
                                 .member("message_id", row.message_id)
                                 .member("state", to_string(row.state))
                                 .member("attempt", row.attempt)
                                 .member("reserved_at", iso(row.reserved_at))
                                 .member("updated_at", iso(row.updated_at))
                                 .member("provider_message_id", row.provider_message_id)
                                 .member("detail", row.detail)
                                 .end_object();
                         });
        w.end_array().key("events").begin_array();
        st.for_each_webhook_delivery(ws, {}, [&](const webhook_delivery& d) {
            if (!p.mentioned_in(d.payload)) return;
            ++events;
            w.begin_object()
                .member("endpoint", d.endpoint)
                .member("event_type", d.event_type)
                .member("state", to_string(d.state))
                .member("created_at", iso(d.created_at))
                .key("payload")
                .raw(d.payload)
                .end_object();
        });
        w.end_array().key("enrollments").begin_array();
        for (const auto& k : p.keys()) {
            enrollment_filter f;
            f.address = k;
            st.for_each_enrollment(ws, f, [&](const enrollment& e) {
                ++enrollments;
                w.begin_object()
                    .member("id", e.id)
                    .member("sequence", e.sequence_id)
                    .member("address", e.address)
                    .member("display_name", e.display_name)
                    .member("variables", e.variables)
                    .member("owner", e.owner)
                    .member("state", to_string(e.state))
                    .member("stop_reason", to_string(e.stop_reason))
                    .member("step", e.step)
                    .member("enrolled_at", iso(e.enrolled_at))
                    .member("last_sent_at", iso(e.last_sent_at))
                    .member("prev_subject", e.prev_subject)
                    .end_object();
            });
        }
        w.end_array().key("queued").begin_array();
        st.for_each_queued(ws, {}, [&](const queued_send& q) {
            if (!p.in_request(q.request) && !p.mentioned_in(q.idempotency_key)) return;
            ++queued;
            w.begin_object()
                .member("id", q.id)
                .member("origin", q.origin)
                .member("state", to_string(q.state))
                .member("enqueued_at", iso(q.enqueued_at))
                .member("not_before", iso(q.not_before));
            if (auto req = detail::decode_request(q.request)) {
                w.member("to", req->to.addr_spec())
                    .member("subject", req->subject)
                    .member("text", req->text)
                    .member("html", req->html);
            }
            w.end_object();
        });
        w.end_array().key("audit").begin_array();
        st.for_each_audit(ws, 1, [&](const audit_record& r) {
            if (!p.is(r.resource_id) && !p.mentioned_in(r.before) && !p.mentioned_in(r.after))
                return;
            ++audits;
            w.begin_object()
                .member("seq", r.seq)
                .member("at", iso(r.at))
                .member("actor", r.actor)
                .member("action", r.action)
                .member("resource_type", r.resource_type)
                .member("resource_id", r.resource_id)
                .member("before", r.before)
                .member("after", r.after)
                .end_object();
        });
        w.end_array();
    });
    w.end_object();

    std::string after;
    json::writer(after)
        .begin_object()
        .member("hash", hash)
        .member("suppression_history", history)
        .member("sends", sends)
        .member("events", events)
        .member("enrollments", enrollments)
        .member("queued", queued)
        .member("audit", audits)
        .end_object();
    s.mutate(who, "person.export", "person", hash, {}, std::move(after), {}, {});
    return out;
}

// --- retention --------------------------------------------------------------------

retention_report engine::purge_retained(const principal& who, const retention_policy& policy) {
    auto& s = *impl_;
    constexpr std::chrono::seconds shortest_ledger{8 * 86400};
    if (policy.sends.count() < 0 || policy.webhook_deliveries.count() < 0 ||
        policy.audit.count() < 0 || policy.counts.count() < 0)
        fail(errc::invalid_argument, "a retention window cannot be negative");
    if (policy.sends.count() != 0 && policy.sends < shortest_ledger)
        fail(errc::invalid_argument,
             fmt::format("a ledger retention of {} s is shorter than the longest cap window "
                         "(8 days with margin): caps count the sends in their window",
                         policy.sends.count()));
    if (policy.counts.count() != 0 && policy.counts < std::chrono::days(detail::longest_count_window_days))
        fail(errc::invalid_argument,
             fmt::format("a daily counts retention of {} s is shorter than the longest window "
                         "that reads them ({} days: pause rules, the soft-bounce policy)",
                         policy.counts.count(), detail::longest_count_window_days));
    s.authorize(who, "retention.purge", "workspace", "");
    retention_report out;
    out.at = s.clk->now();
    if (policy.audit.count() != 0) {
        const auto purged = purge_audit(who, out.at - policy.audit);
        out.audit_records = purged.purged;
        out.anchor = purged.anchor;
    } else {
        out.anchor = audit_anchor();
    }
    s.with_store([&](store& st) {
        if (policy.sends.count() != 0)
            out.sends = st.purge_sends(s.params.workspace, out.at - policy.sends);
        if (policy.webhook_deliveries.count() != 0)
            out.webhook_deliveries = st.purge_webhook_deliveries(
                s.params.workspace, out.at - policy.webhook_deliveries);
        if (policy.counts.count() != 0)
            out.counts = st.purge_counts(s.params.workspace,
                                         utc_day(out.at - std::chrono::duration_cast<duration>(
                                                              policy.counts)));
    });
    std::string after;
    json::writer(after)
        .begin_object()
        .member("sends_retention_s", static_cast<std::int64_t>(policy.sends.count()))
        .member("sends", out.sends)
        .member("webhook_deliveries_retention_s",
                static_cast<std::int64_t>(policy.webhook_deliveries.count()))
        .member("webhook_deliveries", out.webhook_deliveries)
        .member("audit_retention_s", static_cast<std::int64_t>(policy.audit.count()))
        .member("audit_records", out.audit_records)
        .member("counts_retention_s", static_cast<std::int64_t>(policy.counts.count()))
        .member("counts", out.counts)
        .end_object();
    const auto r = s.mutate(who, "retention.purge", "workspace", "", {}, std::move(after), {}, {});
    if (!r.empty()) out.audit_seq = r.back().audit_seq;
    return out;
}

audit_purge_result engine::purge_audit(const principal& who, time_point before,
                                       std::uint64_t keep_from) {
    auto& s = *impl_;
    s.authorize(who, "audit.purge", "workspace", "");
    audit_purge job;
    job.before = before;
    job.keep_from = keep_from;
    job.at = s.clk->now();
    job.audit = [&](const mailers::audit_anchor& anchor, std::uint64_t purged) {
        return store_ops::append_audit{s.next_audit(who, audit_purge_action, "audit", "", {},
                                                    audit_purge_body(anchor, before, purged)),
                                       s.params.audit_key};
    };
    audit_purge_result out;
    s.with_store([&](store& st) { out = st.purge_audit(s.params.workspace, job); });
    return out;
}

}  // namespace mailers
