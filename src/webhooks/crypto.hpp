// Encodings and digests the webhook checks share.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace mailers::webhooks {

/// Decodes standard base64 (RFC 4648 section 4), padding optional;
/// nullopt on any other character or an impossible length.
std::optional<std::string> base64_decode(std::string_view in);

std::string base64_encode(std::string_view bytes);

std::string to_hex(std::string_view bytes);

using digest = std::array<unsigned char, 32>;

digest sha256(std::string_view data);
digest hmac_sha256(std::string_view key, std::string_view data);

inline std::string_view as_view(const digest& d) {
    return {reinterpret_cast<const char*>(d.data()), d.size()};
}

}  // namespace mailers::webhooks
