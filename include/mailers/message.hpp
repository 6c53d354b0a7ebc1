// The message model: what a send is made of before it is rendered to
// RFC 5322 bytes. One place owns both the model and its rendering
// (`render_message` in mime.hpp), so every transport sends the same bytes.
#pragma once

#include <mailers/address.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mailers {

/// One header field. Values are UTF-8; the writer encodes them (RFC 2047)
/// and folds them. CR, LF and NUL in names or values are refused.
struct header_field {
    std::string name;
    std::string value;
    friend bool operator==(const header_field&, const header_field&) = default;
};

/// A file attached to the message, or an inline part referenced by
/// `cid:<content_id>` from the HTML body when `content_id` is set.
struct attachment {
    std::string filename;      ///< UTF-8; encoded per RFC 2231 when needed
    std::string content_type;  ///< e.g. "application/pdf"; default octet-stream
    std::string data;          ///< raw bytes
    std::string content_id;    ///< non-empty for inline parts (without <>)
    friend bool operator==(const attachment&, const attachment&) = default;
};

/// RFC 8058 one-click unsubscribe. When `url` is set the writer emits
/// `List-Unsubscribe: <url>[, <mailto:...>]` and
/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
struct list_unsubscribe {
    std::string url;     ///< https URL that accepts the one-click POST
    std::string mailto;  ///< optional mailto: address (without the scheme)
    friend bool operator==(const list_unsubscribe&, const list_unsubscribe&) = default;
};

/// An email message. `from`, at least one of `to`/`cc`/`bcc`, and a body are
/// required to render. `message_id` and `date` are filled in when empty.
struct message {
    address from;
    std::vector<address> to;
    std::vector<address> cc;
    std::vector<address> bcc;  ///< never rendered into the headers
    std::optional<address> reply_to;
    std::string subject;  ///< UTF-8
    std::string text;     ///< text/plain body, UTF-8
    std::string html;     ///< text/html body, UTF-8
    std::vector<attachment> attachments;
    std::vector<header_field> headers;    ///< extra headers, in order
    std::string message_id;               ///< without <>; generated when empty
    std::optional<time_point> date;       ///< now when empty
    std::string in_reply_to;              ///< message id (without <>) this replies to
    std::vector<std::string> references;  ///< message ids, oldest first
    std::optional<list_unsubscribe> unsubscribe;

    friend bool operator==(const message&, const message&) = default;
};

/// Who the transport delivers to, independent of the headers (bcc lives
/// here only). Built from the message when not given explicitly.
struct envelope {
    std::string mail_from;             ///< bare addr-spec, may be empty (null sender)
    std::vector<std::string> rcpt_to;  ///< bare addr-specs
    friend bool operator==(const envelope&, const envelope&) = default;

    /// mail_from = message.from, rcpt_to = to + cc + bcc, in that order, each
    /// mailbox once (local parts compared exactly, domains without case).
    /// Domains are converted to A-labels unless the local part is UTF-8 (which
    /// needs SMTPUTF8 anyway). Does not validate: render or validate the
    /// message first. A `from` with empty local part and domain gives the null
    /// sender.
    MAILERS_API static envelope from_message(const message& m);
};

}  // namespace mailers
