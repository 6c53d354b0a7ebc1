// Provider DSNs: the one-line strings that configure a transport.
//
// Grammar (Symfony Mailer's, with RFC 3986 percent-encoding):
//
//     dsn       = scheme "://" [ user [ ":" password ] "@" ] host [ ":" port ] [ path ] [ "?"
//     options ] options   = name "=" value *( "&" name "=" value ) composite = ( "failover" |
//     "roundrobin" ) "(" item *( spaces item ) ")" item      = dsn | composite
//
// Examples:
//
//     smtp://user:pass@smtp.example.com:587
//     ses+api://KEY:SECRET@default?region=eu-west-1
//     postmark+api://TOKEN@default?stream=outbound
//     smtp://[::1]:2525
//     file:///var/mail/out
//     failover(sendgrid+api://KEY@default roundrobin(smtp://a@h1 smtp://b@h2))
//
// Rules worth knowing:
// - The scheme is lower-cased and split at its first '+' into transport and
//   variant ("ses+api" -> "ses", "api"). Whether a scheme is supported is the
//   transport factory's decision, not the parser's; see known_dsn_schemes().
// - User and password are both treated as secrets (the user is often an API
//   key) and are percent-decoded. They end at the last '@' before the query,
//   so the '/' and '+' of an AWS secret key need no encoding; a '?', '#' or
//   '%' inside them must be written %3F, %23 and %25.
// - The host is lower-cased; an IPv6 literal is written in brackets and
//   stored without them. A host is required except for the `file` scheme.
// - Option names and values are percent-decoded ('+' stays a plus sign, so a
//   base64 value survives). Options keep their order and may repeat.
// - Inside a composite, items are separated by spaces; a ')' that ends an item
//   closes the composite, so an item that ends in ')' must encode it as %29.
// - A secret may be given by reference: a user, password or secret option
//   value (see is_secret_option()) of the form `env:NAME` (an environment
//   variable) or `file:/path` (a file's content, trailing newlines removed).
//   parse_dsn() keeps references as written; resolve_secrets() replaces them.
//   Because the two steps are separate, a value that really starts with
//   "env:" or "file:" cannot be written literally. When the user itself is a
//   reference, the user/password separator is the ':' after the reference
//   name: `env:SMTP_USER:env:SMTP_PASS@host`.
//
// Secrets never appear in to_string(), in the stream and fmt output, or in a
// diagnostics message: errors name the part that is wrong and quote only
// parts that cannot hold a secret (scheme, host, port, option names,
// reference names).
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailers {

/// A credential. Its value is reachable only through reveal(); every way of
/// printing it (operator<<, fmt) writes "****".
class secret {
public:
    secret() = default;
    explicit secret(std::string value) noexcept : value_(std::move(value)) {}

    /// The credential itself, for the code that must send it.
    const std::string& reveal() const noexcept { return value_; }
    bool empty() const noexcept { return value_.empty(); }

    /// True for an `env:NAME` or `file:/path` reference not yet resolved.
    bool is_reference() const noexcept {
        return value_.starts_with("env:") || value_.starts_with("file:");
    }

    friend bool operator==(const secret&, const secret&) = default;

private:
    std::string value_;
};

MAILERS_API std::ostream& operator<<(std::ostream& os, const secret& s);

/// One transport's DSN, decoded.
struct dsn {
    std::string scheme;     ///< as written, lower-cased: "ses+api"
    std::string transport;  ///< scheme before the first '+': "ses"
    std::string variant;    ///< scheme after the first '+' ("api", "smtp", "https"), or ""
    secret user;            ///< percent-decoded; may be a reference until resolved
    secret password;        ///< percent-decoded; may be a reference until resolved
    std::string host;       ///< lower-cased; IPv6 without brackets; "default" means the provider's
    std::optional<std::uint16_t> port;  ///< 1..65535 when given
    std::string path;                   ///< percent-decoded, with its leading '/'; "" when absent
    /// Percent-decoded options in the order written. Values of secret options
    /// (is_secret_option()) may be references until resolved.
    std::vector<std::pair<std::string, std::string>> options;
    /// Set by resolve_secrets. From then on user, password and secret options
    /// hold values, even one that happens to start with "env:" or "file:":
    /// resolving again changes nothing and to_string() hides them all.
    bool secrets_resolved = false;

    /// Value of the first option called `name`.
    MAILERS_API std::optional<std::string> option(std::string_view name) const;
    /// Values of every option called `name`, in order.
    MAILERS_API std::vector<std::string> options_named(std::string_view name) const;

    /// The DSN with user, password and secret option values shown as "****"
    /// (references not yet resolved are shown as written: they name, not
    /// hold, a secret). Not meant to be parsed back.
    MAILERS_API std::string to_string() const;

    friend bool operator==(const dsn&, const dsn&) = default;
};

/// A single DSN, or a failover / round-robin group of DSNs and groups.
struct composite_dsn {
    enum class kind { single, failover, roundrobin };

    kind k = kind::single;
    dsn single;                           ///< when k == kind::single
    std::vector<composite_dsn> children;  ///< otherwise, at least one

    /// "failover(a b)" with every DSN redacted as by dsn::to_string().
    MAILERS_API std::string to_string() const;

    friend bool operator==(const composite_dsn&, const composite_dsn&) = default;
};

MAILERS_API std::ostream& operator<<(std::ostream& os, const dsn& d);
MAILERS_API std::ostream& operator<<(std::ostream& os, const composite_dsn& d);

/// Parses a DSN or a composite. Pure: reads no environment and no files.
/// On error returns errc::invalid_argument and, when `diag` is given, sets
/// diag->message to a sentence naming the part that is wrong.
MAILERS_API boost::system::result<composite_dsn> parse_dsn(std::string_view text,
                                                           diagnostics* diag = nullptr);

/// Parses a DSN that must not be a composite.
MAILERS_API boost::system::result<dsn> parse_single_dsn(std::string_view text,
                                                        diagnostics* diag = nullptr);

/// Replaces every `env:` / `file:` reference in user, password and secret
/// options by its value: getenv(NAME), or the file's content without trailing
/// CR/LF. An unset or empty variable, or an unreadable or empty file, fails
/// with errc::invalid_argument and a message naming the reference and the
/// field, never a value. On failure `d` is left unchanged.
MAILERS_API boost::system::result<void> resolve_secrets(dsn& d, diagnostics* diag = nullptr);
MAILERS_API boost::system::result<void> resolve_secrets(composite_dsn& d,
                                                        diagnostics* diag = nullptr);

/// True for option names whose value is a credential: key, secret, token,
/// password, client_secret, private_key, api_key, access_token, refresh_token.
MAILERS_API bool is_secret_option(std::string_view name) noexcept;

/// The longest duration parse_dsn_duration() accepts.
inline constexpr std::chrono::milliseconds max_dsn_duration = std::chrono::hours(24);

/// Reads a duration option value (a timeout): a whole number followed by a
/// unit, `ms`, `s` or `m` ("1500ms", "30s", "5m"), or a bare whole number,
/// which counts seconds ("30"). Empty when the value is anything else: no
/// number, a sign, a fraction, another unit, zero, or more than
/// max_dsn_duration.
MAILERS_API std::optional<std::chrono::milliseconds> parse_dsn_duration(
    std::string_view value) noexcept;

/// Schemes the bundled transport factories understand, for error messages
/// and documentation: smtp, smtps, ses+api, ses+smtp, ses+https, mailgun+api,
/// mailgun+smtp, sendgrid+api, sendgrid+smtp, postmark+api, postmark+smtp,
/// gmail+api, graph+api, null, file, capture.
MAILERS_API std::span<const std::string_view> known_dsn_schemes() noexcept;

}  // namespace mailers

// fmt support without making fmt a dependency of this header: the formatters
// exist when fmt was included first. Without them fmt refuses to format these
// types at compile time, so a secret can never be printed by accident.
#if defined(FMT_VERSION)
template <>
struct fmt::formatter<mailers::secret> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(const mailers::secret&, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format("****", ctx);
    }
};
template <>
struct fmt::formatter<mailers::dsn> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(const mailers::dsn& d, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(d.to_string(), ctx);
    }
};
template <>
struct fmt::formatter<mailers::composite_dsn> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(const mailers::composite_dsn& d, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(d.to_string(), ctx);
    }
};
#endif
