#include <openssl/evp.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <mailers/audit.hpp>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mailers {
namespace {

struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};

// Feeds fields as "<decimal length>:<bytes>" so that no two distinct field
// tuples produce the same byte stream (moving a byte from `actor` to `action`
// changes the prefixes). The format is frozen: stored chains must keep
// verifying across library versions.
class field_hasher {
public:
    field_hasher() : ctx_(EVP_MD_CTX_new()) {
        if (!ctx_) throw std::bad_alloc();
        if (EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
            throw std::runtime_error("audit hash: OpenSSL has no SHA-256 digest available");
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
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md.data(), &n) != 1)
            throw std::runtime_error("audit hash: SHA-256 finalisation failed");
        static constexpr char digits[] = "0123456789abcdef";
        std::string out(2 * std::size_t{n}, '\0');
        for (unsigned int i = 0; i < n; ++i) {
            out[2 * i] = digits[md[i] >> 4];
            out[2 * i + 1] = digits[md[i] & 0x0f];
        }
        return out;
    }

private:
    void update(std::string_view bytes) {
        // EVP_DigestUpdate fails only on a misconfigured context, which the
        // constructor already ruled out.
        EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size());
    }

    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx_;
};

error_code broken(std::uint64_t seq, std::uint64_t* bad_seq) {
    if (bad_seq) *bad_seq = seq;
    return make_error_code(errc::audit_chain_broken);
}

}  // namespace

std::string audit_hash(const audit_record& r) {
    field_hasher h;
    h.integer_field(r.seq);
    h.integer_field(r.at.time_since_epoch().count());
    h.field(r.actor);
    h.field(r.action);
    h.field(r.resource_type);
    h.field(r.resource_id);
    h.field(r.before);
    h.field(r.after);
    h.field(r.prev_hash);
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

}  // namespace mailers
