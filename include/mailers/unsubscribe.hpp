// One-click unsubscribe (RFC 8058): the signed, expiring token a
// List-Unsubscribe URL carries, and the engine's settings for it.
//
// With `engine_params::unsubscribe` set, every send the engine renders
// without a List-Unsubscribe of its own gets
//   List-Unsubscribe: <https://...?t=TOKEN>[, <mailto:...>]
//   List-Unsubscribe-Post: List-Unsubscribe=One-Click
// and `engine::unsubscribe(token)` suppresses the token's recipient. The
// token names the workspace, the recipient and the send, and expires; it is
// an HMAC-SHA256 under a secret the engines share, so nobody without it can
// make one for another address, and a changed character is refused.
//
// RFC 8058 also asks that a DKIM signature covers both fields, and this
// library does not sign: check that the signature your provider adds lists
// both in its h= tag (look at a received message's DKIM-Signature), and
// include them when you sign raw messages yourself.
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

namespace mailers {

struct unsubscribe_settings {
    /// The https URL that takes the one-click POST (and shows a confirmation
    /// page on GET); the token is added as the query parameter `t`. Empty:
    /// the engine adds no List-Unsubscribe of its own.
    std::string url;
    /// The token key, or an "env:NAME" / "file:PATH" reference to it;
    /// required with `url`, at least 16 bytes. Every engine of a workspace
    /// and the endpoint that checks tokens need the same one. Changing it
    /// voids the links already sent.
    std::string secret;
    /// An optional mailto alternative (an address, without "mailto:").
    std::string mailto;
    /// How long a link works after its message was sent. Mailbox providers
    /// keep messages for years, so err long.
    std::chrono::seconds lifetime{std::chrono::hours(24 * 365)};
};

/// What a token says.
struct unsubscribe_claims {
    std::string workspace;
    std::string recipient;  ///< the normalised address to suppress
    std::uint64_t send_id = 0;
    time_point expires_at{};
    friend bool operator==(const unsubscribe_claims&, const unsubscribe_claims&) = default;
};

enum class unsubscribe_token_status {
    valid,
    malformed,  ///< not a token this library makes
    forged,     ///< well formed, but the signature does not match: altered, or another key
    expired,
};

MAILERS_API std::string_view to_string(unsubscribe_token_status s) noexcept;

struct unsubscribe_token_check {
    unsubscribe_token_status status = unsubscribe_token_status::malformed;
    /// Set for `valid` and `expired` tokens (an expired one is authentic).
    unsubscribe_claims claims;
};

/// A token for `claims` under `secret`: URL-safe (base64url and '.'), about
/// 100 characters for a typical address. The workspace and recipient must
/// not hold a newline (errc::invalid_argument).
MAILERS_API std::string make_unsubscribe_token(const unsubscribe_claims& claims,
                                               std::string_view secret);

/// Checks a token's form, then its signature (in constant time), then its
/// expiry against `now`. Never throws for anything in `token`.
MAILERS_API unsubscribe_token_check check_unsubscribe_token(std::string_view token,
                                                           std::string_view secret, time_point now);

/// `url` with the token added as the query parameter `t`.
MAILERS_API std::string unsubscribe_link(std::string_view url, std::string_view token);

}  // namespace mailers
