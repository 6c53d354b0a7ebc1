#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <charconv>
#include <mailers/suppression_audit.hpp>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

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

constexpr char hex_digits[] = "0123456789abcdef";

}  // namespace

// The keyed context is set up once and copied per row: fetching HMAC and
// deriving the key's pads per row would cost more than hashing the row.
struct __attribute__((visibility("hidden"))) suppression_hasher::impl {
    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> md;
    std::unique_ptr<EVP_MAC_CTX, mac_ctx_deleter> keyed;
    std::unique_ptr<EVP_MAC_CTX, mac_ctx_deleter> row;
    std::string mark;
    std::string buf;

    void field(std::string_view bytes) {
        std::array<char, 24> len{};
        char* end = std::to_chars(len.data(), len.data() + len.size(), bytes.size()).ptr;
        *end++ = ':';
        buf.append(len.data(), end);
        buf.append(bytes);
    }
};

suppression_hasher::suppression_hasher(std::string_view key) : impl_(std::make_unique<impl>()) {
    if (key.empty()) {
        impl_->md.reset(EVP_MD_CTX_new());
        if (!impl_->md) throw std::bad_alloc();
        impl_->mark = "sha256";
        return;
    }
    std::unique_ptr<EVP_MAC, mac_deleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (mac) impl_->keyed.reset(EVP_MAC_CTX_new(mac.get()));
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (!impl_->keyed ||
        EVP_MAC_init(impl_->keyed.get(), reinterpret_cast<const unsigned char*>(key.data()),
                     key.size(), params) != 1)
        throw std::runtime_error("suppression hash: OpenSSL has no HMAC-SHA256 available");
    // The mark is a MAC of a fixed label, so it names the key without
    // revealing anything that helps to forge a digest.
    static constexpr std::string_view label = "mailers suppression digest key";
    std::unique_ptr<EVP_MAC_CTX, mac_ctx_deleter> m(EVP_MAC_CTX_dup(impl_->keyed.get()));
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    std::size_t n = 0;
    if (!m ||
        EVP_MAC_update(m.get(), reinterpret_cast<const unsigned char*>(label.data()),
                       label.size()) != 1 ||
        EVP_MAC_final(m.get(), md.data(), &n, md.size()) != 1)
        throw std::runtime_error("suppression hash: HMAC-SHA256 failed");
    impl_->mark = "hmac:";
    for (std::size_t i = 0; i < 8; ++i) {
        impl_->mark += hex_digits[md[i] >> 4];
        impl_->mark += hex_digits[md[i] & 0x0f];
    }
}

suppression_hasher::~suppression_hasher() = default;
suppression_hasher::suppression_hasher(suppression_hasher&&) noexcept = default;
suppression_hasher& suppression_hasher::operator=(suppression_hasher&&) noexcept = default;

const std::string& suppression_hasher::key_mark() const noexcept {
    return impl_->mark;
}

suppression_row_hash suppression_hasher::operator()(const suppression_entry& e) {
    impl& s = *impl_;
    s.buf.clear();
    s.field(to_string(e.kind));
    s.field(e.value);
    s.field(to_string(e.reason));
    s.field(e.source);
    std::array<char, 24> digits{};
    const char* end = std::to_chars(digits.data(), digits.data() + digits.size(),
                                    e.created_at.time_since_epoch().count())
                          .ptr;
    s.field(std::string_view(digits.data(), static_cast<std::size_t>(end - digits.data())));
    suppression_row_hash out{};
    const auto* bytes = reinterpret_cast<const unsigned char*>(s.buf.data());
    if (s.keyed) {
        s.row.reset(EVP_MAC_CTX_dup(s.keyed.get()));
        std::size_t n = 0;
        if (!s.row || EVP_MAC_update(s.row.get(), bytes, s.buf.size()) != 1 ||
            EVP_MAC_final(s.row.get(), out.data(), &n, out.size()) != 1 || n != out.size())
            throw std::runtime_error("suppression hash: HMAC-SHA256 failed");
        return out;
    }
    unsigned int n = 0;
    if (EVP_DigestInit_ex(s.md.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(s.md.get(), bytes, s.buf.size()) != 1 ||
        EVP_DigestFinal_ex(s.md.get(), out.data(), &n) != 1 || n != out.size())
        throw std::runtime_error("suppression hash: SHA-256 failed");
    return out;
}

std::string suppression_set_digest::hex() const {
    std::string out;
    out.reserve(64);
    for (std::uint64_t lane : lanes)
        for (int shift = 60; shift >= 0; shift -= 4) out += hex_digits[(lane >> shift) & 0x0f];
    return out;
}

std::optional<std::array<std::uint64_t, 4>> suppression_set_digest::parse_lanes(
    std::string_view s) {
    if (s.size() != 64) return std::nullopt;
    std::array<std::uint64_t, 4> out{};
    for (std::size_t lane = 0; lane < 4; ++lane) {
        const char* first = s.data() + lane * 16;
        auto [ptr, ec] = std::from_chars(first, first + 16, out[lane], 16);
        if (ec != std::errc{} || ptr != first + 16) return std::nullopt;
    }
    return out;
}

}  // namespace mailers
