// Pieces every HTTP provider shares: who receives the message, how
// addresses, forms and identifiers are written, small JSON reads, and the
// request the mailbox APIs (Gmail, Graph) have in common.
#pragma once

#include <boost/system/result.hpp>
#include <mailers/address.hpp>
#include <mailers/error.hpp>
#include <mailers/mime.hpp>
#include <mailers/provider_transport.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/client.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {

/// "local@domain" with the domain as a lower-case A-label.
boost::system::result<std::string> ascii_addr_spec(const address& a);

/// The envelope recipients, or the message's when the envelope names none,
/// each a valid addr-spec with a lower-case A-label domain. Fails with
/// errc::invalid_address (an address that cannot be sent) or
/// errc::invalid_argument (no recipient).
error_code envelope_recipients(const outbound& out, std::string_view provider,
                               std::vector<std::string>& rcpts, diagnostics& diag);

/// Recipients for a provider that delivers to every To and Cc address it is
/// given (fields or MIME headers): To and Cc from the message, each of which
/// must be in the envelope, and the rest of the envelope as Bcc.
struct recipient_lists {
    std::vector<const address*> to;
    std::vector<std::string> to_specs;  ///< ascii_addr_spec of each `to`
    std::vector<const address*> cc;
    std::vector<std::string> cc_specs;
    std::vector<std::string> bcc;  ///< addr-specs
};

error_code split_recipients(const outbound& out, std::string_view provider, recipient_lists& r,
                            diagnostics& diag);

/// Refuses a message whose envelope recipients (as envelope_recipients
/// counts them) are more than `limit`, with `errc::invalid_argument` and
/// `diag.message` giving both numbers. That count is also what To, Cc and
/// Bcc add up to once split_recipients has passed. Other faults of the
/// envelope are left to the provider's build().
error_code check_recipient_limit(const outbound& out, std::string_view provider, std::size_t limit,
                                 diagnostics& diag);

/// For the providers that take a message as fields rather than MIME
/// (SendGrid, Postmark): the message checked as rendering would check it
/// (`validate_message`), then its recipients split.
error_code check_and_split(const outbound& out, std::string_view provider, recipient_lists& r,
                           diagnostics& diag);

/// Appends `"Display Name" <spec>` (quoted only when the name needs it), or
/// the bare spec when there is no display name. The name stays UTF-8: the
/// JSON providers encode it themselves.
void append_mailbox(std::string& out, std::string_view display_name, std::string_view spec);

/// Base64 with the URL alphabet and no padding (RFC 4648 section 5).
void append_base64url(std::string& out, std::string_view data);

/// RFC 3986 percent-encoding; unreserved characters are kept.
void append_percent_encoded(std::string& out, std::string_view s);

/// Appends "name=value" to an application/x-www-form-urlencoded body.
void append_form_field(std::string& body, std::string_view name, std::string_view value);

/// `bytes` random bytes as lower-case hex.
std::string random_hex(std::size_t bytes);

/// Renders the message; on failure `diag.message` says why.
error_code render_mime(const outbound& out, const render_options& opts, std::string_view provider,
                       std::string& mime, diagnostics& diag);

/// The Message-ID of rendered MIME, without angle brackets ("" when absent).
std::string rendered_message_id(std::string_view mime);

/// Puts a Bcc field at the top of rendered MIME, for the providers that
/// deliver to the header recipients and strip Bcc (Gmail, Graph). The
/// addresses must be valid addr-specs.
void add_bcc_header(std::string& mime, std::span<const std::string> bcc);

/// The From address as the user to send as, for the mailbox APIs (Gmail,
/// Graph) when none is configured. Fails when it cannot be sent, with
/// `diag.message` saying so.
boost::system::result<std::string> from_address_user(const outbound& out, std::string_view provider,
                                                     diagnostics& diag);

/// What the mailbox APIs (Gmail, Graph) share: the message rendered into
/// `mime`, with the envelope recipients missing from To and Cc in a Bcc
/// header (both deliver to the header recipients and strip Bcc), and a
/// POST to `<api_root>/users/<ctx.user><action>` authorised by the bearer
/// token. Fills `p.message_id` and `p.req` but for the body and its
/// Content-Type, which are the caller's. Fails as split_recipients and
/// render_mime do.
error_code begin_user_mime_request(const outbound& out, const render_options& opts,
                                   std::string_view provider, std::string_view api_root,
                                   std::string_view action, const build_context& ctx, prepared& p,
                                   std::string& mime, diagnostics& diag);

/// What SendGrid and Postmark write their JSON from, once check_and_split
/// has passed: the From address as an ASCII addr-spec, and the fields that
/// keep threading and one-click unsubscribe working when the provider writes
/// the MIME (Message-ID, In-Reply-To, References, List-Unsubscribe,
/// List-Unsubscribe-Post) followed by the message's own extra headers.
struct json_message_parts {
    std::string from;
    std::vector<http::field> headers;
};

/// Fills `parts` and `message_id` (the message's own id, or a new one) and
/// empties `body`, reserving room for the whole JSON. Fails when the From
/// address cannot be sent.
error_code begin_json_message(const message& m, std::string_view provider,
                              json_message_parts& parts, std::string& message_id, std::string& body,
                              diagnostics& diag);

/// One member of a JSON object to read: strings unescaped, numbers and
/// booleans as written (a fraction as its integer part); left empty when
/// absent, of another type, or a number beyond 64 bits.
struct json_member {
    std::string_view key;
    std::string* value;
};

/// Reads top-level members of a JSON object. False when the body is not one.
bool read_json_members(std::string_view body, std::span<const json_member> members);

/// One member of a JSON object as read_json_members reads it; "" when absent
/// or when the body is not an object.
std::string read_json_member(std::string_view body, std::string_view key);

/// 1-253 of A-Z a-z 0-9 - . : the shape of a DNS name, for values that go
/// into a URL path or host (a Mailgun domain, a Microsoft tenant).
bool is_host_name_text(std::string_view s) noexcept;

/// A tag or metadata key providers accept everywhere: 1-256 of A-Z a-z 0-9 _ -.
bool is_tag_text(std::string_view s) noexcept;

}  // namespace mailers::detail
