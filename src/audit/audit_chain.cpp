#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <mailers/audit.hpp>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "json/writer.hpp"

namespace mailers {
namespace {

struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};

struct mac_deleter {
    void operator()(EVP_MAC* mac) const noexcept { EVP_MAC_free(mac); }
};

struct mac_ctx_deleter {
    void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};

// Feeds fields as "<decimal length>:<bytes>" so that no two distinct field
// tuples produce the same byte stream (moving a byte from `actor` to `action`
// changes the prefixes). The format is frozen: stored chains must keep
// verifying across library versions.
// With a key, the same stream goes through HMAC-SHA256 instead.
class field_hasher {
public:
    explicit field_hasher(std::string_view key) {
        if (key.empty()) {
            ctx_.reset(EVP_MD_CTX_new());
            if (!ctx_) throw std::bad_alloc();
            if (EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
                throw std::runtime_error("audit hash: OpenSSL has no SHA-256 digest available");
            return;
        }
        std::unique_ptr<EVP_MAC, mac_deleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
        if (mac) mac_.reset(EVP_MAC_CTX_new(mac.get()));
        char digest[] = "SHA256";
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end()};
        if (!mac_ || EVP_MAC_init(mac_.get(), reinterpret_cast<const unsigned char*>(key.data()),
                                  key.size(), params) != 1)
            throw std::runtime_error("audit hash: OpenSSL has no HMAC-SHA256 available");
    }

    void field(std::string_view bytes) {
        std::array<char, 24> len{};
        char* end = std::to_chars(len.data(), len.data() + len.size(), bytes.size()).ptr;
        *end++ = ':';
        update(std::string_view(len.data(), static_cast<std::size_t>(end - len.data())));
        update(bytes);
    }

    template <class Int>
    void integer_field(Int v) {
        std::array<char, 24> digits{};
        const char* end = std::to_chars(digits.data(), digits.data() + digits.size(), v).ptr;
        field(std::string_view(digits.data(), static_cast<std::size_t>(end - digits.data())));
    }

    std::string hex_digest() {
        std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
        std::size_t n = 0;
        if (mac_) {
            if (EVP_MAC_final(mac_.get(), md.data(), &n, md.size()) != 1)
                throw std::runtime_error("audit hash: HMAC-SHA256 finalisation failed");
        } else {
            unsigned int len = 0;
            if (EVP_DigestFinal_ex(ctx_.get(), md.data(), &len) != 1)
                throw std::runtime_error("audit hash: SHA-256 finalisation failed");
            n = len;
        }
        static constexpr char digits[] = "0123456789abcdef";
        std::string out(2 * n, '\0');
        for (std::size_t i = 0; i < n; ++i) {
            out[2 * i] = digits[md[i] >> 4];
            out[2 * i + 1] = digits[md[i] & 0x0f];
        }
        return out;
    }

private:
    void update(std::string_view bytes) {
        // The updates fail only on a misconfigured context, which the
        // constructor already ruled out.
        if (mac_)
            EVP_MAC_update(mac_.get(), reinterpret_cast<const unsigned char*>(bytes.data()),
                           bytes.size());
        else
            EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size());
    }

    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx_;
    std::unique_ptr<EVP_MAC_CTX, mac_ctx_deleter> mac_;
};

error_code broken(std::uint64_t seq, std::uint64_t* bad_seq) {
    if (bad_seq) *bad_seq = seq;
    return make_error_code(errc::audit_chain_broken);
}

}  // namespace

std::string audit_hash(const audit_record& r) {
    return audit_hash(r, {});
}

std::string audit_hash(const audit_record& r, std::string_view key) {
    field_hasher h(key);
    h.integer_field(r.seq);
    h.integer_field(r.at.time_since_epoch().count());
    h.field(r.actor);
    h.field(r.action);
    h.field(r.resource_type);
    h.field(r.resource_id);
    h.field(r.before);
    h.field(r.after);
    h.field(r.prev_hash);
    // Appended, and only when set: a record from before change seqs were
    // kept hashes exactly as it did then.
    if (r.change_seq != 0) h.integer_field(r.change_seq);
    return h.hex_digest();
}

error_code verify_audit_chain(std::span<const audit_record> records, std::uint64_t* bad_seq) {
    for (std::size_t i = 0; i < records.size(); ++i) {
        const audit_record& r = records[i];
        if (i == 0) {
            // A chain may be checked from the middle (an export starting at
            // seq n): the first link can then only be checked by whoever
            // holds record n - 1. Record 1 has no predecessor at all.
            if (r.seq == 0 || (r.seq == 1 && !r.prev_hash.empty())) return broken(r.seq, bad_seq);
        } else {
            const audit_record& prev = records[i - 1];
            if (r.seq != prev.seq + 1 || r.prev_hash != prev.hash) return broken(r.seq, bad_seq);
        }
        if (r.hash != audit_hash(r)) return broken(r.seq, bad_seq);
    }
    return {};
}

std::string audit_purge_body(const audit_anchor& anchor, time_point before, std::uint64_t purged) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("anchor_seq", anchor.seq)
        .member("anchor_hash", anchor.hash)
        .member("anchor_keyed", anchor.keyed)
        .member("before", static_cast<std::int64_t>(before.time_since_epoch().count()))
        .member("purged", purged)
        .end_object();
    return out;
}

std::optional<audit_anchor> audit_purge_anchor(std::string_view after) {
    thread_local simdjson::dom::parser parser;
    simdjson::padded_string padded(after);
    simdjson::dom::object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return std::nullopt;
    audit_anchor a;
    std::string_view hash;
    if (o["anchor_seq"].get(a.seq) != simdjson::SUCCESS ||
        o["anchor_hash"].get(hash) != simdjson::SUCCESS ||
        o["anchor_keyed"].get(a.keyed) != simdjson::SUCCESS || a.seq < 2)
        return std::nullopt;
    a.hash = std::string(hash);
    return a;
}

error_code verify_audit_chain(std::span<const audit_record> records,
                              const audit_verify_options& options, std::uint64_t* bad_seq) {
    const audit_head* checkpoint = options.checkpoint ? &*options.checkpoint : nullptr;
    const audit_anchor* anchor =
        options.anchor && options.anchor->seq != 0 ? &*options.anchor : nullptr;
    // The anchors the kept purge records name, oldest first: the newest must
    // be the store's, and each proves the hash of the record before it.
    std::vector<std::pair<std::uint64_t, audit_anchor>> purges;
    for (const audit_record& r : records) {
        if (r.action != audit_purge_action) continue;
        auto a = audit_purge_anchor(r.after);
        if (!a || a->seq > r.seq) return broken(r.seq, bad_seq);
        purges.emplace_back(r.seq, std::move(*a));
    }
    if (!purges.empty()) {
        // Records removed from the front behind the library's back, or an
        // anchor moved to hide a bigger cut, or removed: the first record
        // the newest purge says is kept is the one that went missing.
        const audit_anchor& named = purges.back().second;
        if (!anchor || anchor->seq != named.seq || anchor->hash != named.hash ||
            anchor->keyed != named.keyed)
            return broken(named.seq, bad_seq);
    } else if (anchor) {
        // An anchor no purge record vouches for: the purge records went
        // with the records before it, or were cut from the end.
        return broken(anchor->seq, bad_seq);
    }
    // The chain starts at the genesis (a full chain, an archive joined to
    // what is kept) or at the anchor.
    const bool from_anchor = anchor && !records.empty() && records.front().seq != 1;
    const std::uint64_t first = from_anchor ? anchor->seq : 1;
    bool keyed = from_anchor && anchor->keyed;
    for (std::size_t i = 0; i < records.size(); ++i) {
        const audit_record& r = records[i];
        if (r.seq != first + i) return broken(r.seq, bad_seq);
        const std::string& prev =
            i != 0 ? records[i - 1].hash : (from_anchor ? anchor->hash : std::string{});
        if (r.prev_hash != prev) return broken(r.seq, bad_seq);
        if (anchor && r.seq == anchor->seq && r.prev_hash != anchor->hash)
            return broken(r.seq, bad_seq);
        if (r.action == audit_key_action) {
            // Unkeyed, the rest cannot be checked; with the key it is
            // checked from here on, so a rewrite of it needs the key.
            if (options.key.empty()) return broken(r.seq, bad_seq);
            keyed = true;
        }
        if (keyed && options.key.empty()) return broken(r.seq, bad_seq);
        if (r.hash != (keyed ? audit_hash(r, options.key) : audit_hash(r)))
            return broken(r.seq, bad_seq);
        if (checkpoint && checkpoint->seq == r.seq && checkpoint->hash != r.hash)
            return broken(r.seq, bad_seq);
    }
    const std::uint64_t next = first + records.size();
    if (checkpoint && checkpoint->seq != 0 && checkpoint->seq < first) {
        // The record is gone; a kept purge record that cut right after it
        // names its hash, which the chain covers. Any other is unprovable.
        const bool proved = std::any_of(purges.begin(), purges.end(), [&](const auto& p) {
            return p.second.seq == checkpoint->seq + 1 && p.second.hash == checkpoint->hash;
        });
        if (!proved) return broken(checkpoint->seq, bad_seq);
    }
    // A chain cut below the checkpoint, or rewritten without the key (which
    // leaves no record hashed with it), ends too early.
    if (checkpoint && checkpoint->seq >= next) return broken(next, bad_seq);
    if (!options.key.empty() && !keyed) return broken(next, bad_seq);
    return {};
}

}  // namespace mailers
