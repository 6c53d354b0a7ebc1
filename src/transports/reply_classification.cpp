#include "transports/reply_classification.hpp"

#include <array>

#include "mime/text.hpp"

namespace mailers::detail {
namespace {

using enum transport_errc;

constexpr smtp_phases setup = phase_bit(smtp_phase::connect) | phase_bit(smtp_phase::greeting) |
                              phase_bit(smtp_phase::ehlo) | phase_bit(smtp_phase::starttls);
constexpr smtp_phases tls_or_auth = phase_bit(smtp_phase::starttls) | phase_bit(smtp_phase::auth);
constexpr smtp_phases greeting = phase_bit(smtp_phase::connect) | phase_bit(smtp_phase::greeting);
constexpr smtp_phases mail = phase_bit(smtp_phase::mail);
constexpr smtp_phases rcpt = phase_bit(smtp_phase::rcpt);
constexpr smtp_phases content = phase_bit(smtp_phase::data) | phase_bit(smtp_phase::data_end);
constexpr smtp_phases transaction = rcpt | content;
constexpr smtp_phases end_of_data = phase_bit(smtp_phase::data_end);
constexpr smtp_phases any = any_phase;

// clang-format off
constexpr std::array rules{
    // After the final dot only 2xx accepts and 4xx/5xx refuse; anything else
    // says neither, and the server may have taken the message.
    smtp_reply_rule{"3xx", "*", end_of_data, "", outcome_unknown, "354 (or any 3xx) in reply to the final dot: neither accepted nor refused"},

    // Provider-specific meanings first: providers reuse RFC 3463 codes for
    // their own limits, and those rows must win over the generic ones below.
    smtp_reply_rule{"4xx", "4.7.28", any, "", rate_limited, "421-4.7.28 Gmail: unusual rate of unsolicited mail from your IP, temporarily rate limited"},
    smtp_reply_rule{"xxx", "*.7.26", any, "", authentication_failed, "550-5.7.26 Gmail: this mail is unauthenticated (SPF/DKIM/DMARC)"},
    smtp_reply_rule{"xxx", "*.7.27", any, "", authentication_failed, "550-5.7.27 Gmail: SPF did not pass"},
    smtp_reply_rule{"xxx", "*.7.30", any, "", authentication_failed, "550-5.7.30 Gmail: DKIM did not pass"},
    smtp_reply_rule{"xxx", "*.7.32", any, "", authentication_failed, "550-5.7.32 Gmail: From header not aligned with SPF or DKIM"},
    smtp_reply_rule{"421", "4.7.0", any, "", rate_limited, "421 4.7.0 Gmail: Try again later, closing connection"},
    // The recipient's rate, not the route's: only this message waits.
    smtp_reply_rule{"45x", "4.2.1", any, "", temporary_reply, "450 4.2.1 Gmail: the user is receiving mail too quickly"},
    smtp_reply_rule{"4xx", "4.7.5xx", any, "", rate_limited, "451 4.7.500 Microsoft: Server busy, try again later"},
    smtp_reply_rule{"4xx", "4.7.6xx", any, "", rate_limited, "451 4.7.650 Microsoft: IP reputation throttling"},
    smtp_reply_rule{"4xx", "*", any, "concurrent", rate_limited, "421 4.3.2 Exchange: maximum number of concurrent connections exceeded"},
    smtp_reply_rule{"4xx", "*", any, "too many messages", rate_limited, "451 4.7.0 Too many messages from this sender, slow down"},
    smtp_reply_rule{"4xx", "*", any, "too many connections", rate_limited, "421 4.7.0 Too many connections from your host"},
    smtp_reply_rule{"4xx", "*", any, "rate limit", rate_limited, "451 4.7.1 Rate limited, try again later"},
    smtp_reply_rule{"4xx", "*", any, "throttl", rate_limited, "451 4.7.0 Throttling failure"},
    smtp_reply_rule{"5xx", "5.4.5", any, "", sender_quota_exhausted, "550 5.4.5 Gmail: Daily user sending quota exceeded"},
    smtp_reply_rule{"5xx", "5.7.233", any, "", sender_quota_exhausted, "550 5.7.233 Exchange Online: tenant exceeded its limit"},
    smtp_reply_rule{"5xx", "*", any, "SubmissionQuotaExceeded", sender_quota_exhausted, "554 5.2.0 Exchange: SubmissionQuotaExceededException"},
    smtp_reply_rule{"5xx", "5.7.515", any, "", authentication_failed, "550 5.7.515 Outlook.com: sending domain does not meet the required authentication level"},
    smtp_reply_rule{"5xx", "5.7.509", any, "", authentication_failed, "550 5.7.509 Outlook.com: does not pass DMARC, policy reject"},
    smtp_reply_rule{"5xx", "5.7.57", any, "", authentication_failed, "530 5.7.57 Exchange: client not authenticated to send mail"},
    smtp_reply_rule{"5xx", "5.7.60", any, "", configuration, "550 5.7.60 Exchange: client has no permission to send as this sender"},
    smtp_reply_rule{"5xx", "5.7.54", any, "", configuration, "550 5.7.54 Exchange: unable to relay recipient in non-accepted domain"},
    smtp_reply_rule{"5xx", "5.7.1", rcpt, "RESOLVER.RST", recipient_rejected, "550 5.7.1 RESOLVER.RST.NotAuthorized: the recipient does not accept from this sender"},
    smtp_reply_rule{"5xx", "*", rcpt | mail, "relay access denied", configuration, "554 5.7.1 Postfix: Relay access denied"},
    smtp_reply_rule{"5xx", "*", rcpt | mail, "relaying denied", configuration, "550 5.7.1 Relaying denied"},
    smtp_reply_rule{"5xx", "*", mail, "sender address rejected", configuration, "553 5.7.1 Postfix: Sender address rejected: not owned by user"},
    smtp_reply_rule{"5xx", "5.4.310", any, "", recipient_rejected, "550 5.4.310 Microsoft: DNS domain does not exist"},
    // Refusals that name the sending host or IP on a blocklist: a verdict
    // on the route, not on this message.
    smtp_reply_rule{"5xx", "5.7.6xx", any, "", sender_reputation, "550 5.7.606 Microsoft: Access denied, banned sending IP"},
    smtp_reply_rule{"5xx", "5.7.7xx", any, "", sender_reputation, "550 5.7.708 Microsoft: Access denied, traffic not accepted from this IP"},
    smtp_reply_rule{"5xx", "*", any, "blocked using", sender_reputation, "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"},
    smtp_reply_rule{"5xx", "*", any, "client host", sender_reputation, "554 5.7.1 Service unavailable; client host [192.0.2.1] blocked"},
    smtp_reply_rule{"5xx", "*", any, "blocklist", sender_reputation, "550 5.7.1 Your IP is on a blocklist"},
    smtp_reply_rule{"5xx", "*", any, "block list", sender_reputation, "550 5.7.1 Microsoft: part of their network is on our block list (S3150)"},
    smtp_reply_rule{"5xx", "*", any, "blacklist", sender_reputation, "550 5.7.1 Sending host is blacklisted"},

    // Authentication (RFC 4954 codes).
    smtp_reply_rule{"535", "*", any, "", authentication_failed, "535 5.7.8 Username and Password not accepted"},
    smtp_reply_rule{"534", "*", any, "", authentication_failed, "534 5.7.9 Application-specific password required"},
    smtp_reply_rule{"530", "*", any, "", authentication_failed, "530 5.7.0 Authentication required"},
    smtp_reply_rule{"538", "*", any, "", authentication_failed, "538 5.7.11 Encryption required for requested authentication mechanism"},
    smtp_reply_rule{"432", "*", any, "", authentication_failed, "432 4.7.12 A password transition is needed"},
    smtp_reply_rule{"454", "*", tls_or_auth, "", temporary_reply, "454 4.7.0 TLS not available / temporary authentication failure"},
    smtp_reply_rule{"5xx", "5.7.8", any, "", authentication_failed, "5.7.8 authentication credentials invalid"},

    // RFC 3463 classes. A policy (x.7.x) deferral is about this message
    // (greylisting above all): it waits, the mailbox does not. A permanent
    // policy refusal during the transaction refuses this message; the rate
    // limits and blocklists that concern the whole route are matched above.
    smtp_reply_rule{"4xx", "4.7.*", any, "", temporary_reply, "451 4.7.1 Greylisted, please try again later"},
    smtp_reply_rule{"5xx", "5.7.*", transaction, "", content_rejected, "554 5.7.1 Message rejected due to content restrictions"},
    smtp_reply_rule{"5xx", "5.1.7", any, "", configuration, "5.1.7 bad sender's mailbox address syntax"},
    smtp_reply_rule{"5xx", "5.1.8", any, "", configuration, "553 5.1.8 domain of sender address does not exist"},
    smtp_reply_rule{"5xx", "5.1.*", mail, "", configuration, "553 5.1.0 sender address rejected"},
    smtp_reply_rule{"5xx", "5.1.*", any, "", recipient_rejected, "550 5.1.1 The email account that you tried to reach does not exist"},
    smtp_reply_rule{"5xx", "5.2.1", any, "", recipient_rejected, "550 5.2.1 The email account that you tried to reach is disabled"},
    // A full mailbox is a soft bounce: suppressing would lose a live
    // contact, and failing over to another sender hits the same full box.
    smtp_reply_rule{"5xx", "5.2.2", any, "", content_rejected, "552 5.2.2 The recipient's inbox is out of storage space"},
    smtp_reply_rule{"5xx", "5.2.3", any, "", content_rejected, "552 5.2.3 message length exceeds administrative limit"},
    smtp_reply_rule{"5xx", "5.4.1", rcpt, "", recipient_rejected, "550 5.4.1 Microsoft: Recipient address rejected: Access denied"},
    smtp_reply_rule{"5xx", "5.4.4", rcpt, "", recipient_rejected, "550 5.4.4 unable to route: the domain has no mail server"},
    smtp_reply_rule{"5xx", "5.3.4", any, "", content_rejected, "552 5.3.4 Message size exceeds fixed limit"},
    smtp_reply_rule{"5xx", "5.6.*", any, "", content_rejected, "554 5.6.0 message content or media error"},
    smtp_reply_rule{"550", "5.5.0", rcpt, "", recipient_rejected, "550 5.5.0 Requested action not taken: mailbox unavailable"},
    // A bad command sequence is almost always a step the server requires
    // but did not announce (AUTH, STARTTLS): a setup problem, not the message.
    smtp_reply_rule{"503", "*", any, "", configuration, "503 5.5.1 bad sequence of commands"},
    smtp_reply_rule{"5xx", "5.5.*", any, "", content_rejected, "501 5.5.4 invalid command arguments"},

    // Basic codes without a telling enhanced code, by phase.
    smtp_reply_rule{"552", "*", any, "", content_rejected, "552 Message size exceeds fixed maximum message size"},
    smtp_reply_rule{"554", "*", greeting, "", sender_reputation, "554 No SMTP service here (refused at connect)"},
    smtp_reply_rule{"55x", "*", rcpt, "", recipient_rejected, "550 Requested action not taken: mailbox unavailable"},
    smtp_reply_rule{"5xx", "*", mail, "", configuration, "553 sender address not allowed"},
    smtp_reply_rule{"5xx", "*", setup | phase_bit(smtp_phase::auth), "", configuration, "502 command not implemented during session set-up"},
    smtp_reply_rule{"5xx", "*", content, "", content_rejected, "554 Transaction failed"},
    smtp_reply_rule{"5xx", "*", any, "", content_rejected, "any other permanent refusal: do not retry blindly"},
    smtp_reply_rule{"4xx", "*", any, "", temporary_reply, "421 Service not available, closing transmission channel"},
};
// clang-format on

bool code_matches(std::string_view pattern, int code) noexcept {
    if (code < 100 || code > 999 || pattern.size() != 3) return false;
    const char digits[3] = {static_cast<char>('0' + code / 100),
                            static_cast<char>('0' + code / 10 % 10),
                            static_cast<char>('0' + code % 10)};
    for (int i = 0; i < 3; ++i)
        if (pattern[i] != 'x' && pattern[i] != digits[i]) return false;
    return true;
}

// One dot-separated part: '*' matches any part, 'x' any single digit.
bool part_matches(std::string_view pattern, std::string_view part) noexcept {
    if (pattern == "*") return true;
    if (pattern.size() != part.size()) return false;
    for (std::size_t i = 0; i < part.size(); ++i)
        if (pattern[i] != 'x' && pattern[i] != part[i]) return false;
    return true;
}

bool enhanced_matches(std::string_view pattern, std::string_view code) noexcept {
    if (pattern == "*") return true;
    if (pattern.empty() || code.empty()) return pattern.empty() && code.empty();
    for (int i = 0; i < 3; ++i) {
        const auto pd = pattern.find('.');
        const auto cd = code.find('.');
        if ((pd == std::string_view::npos) != (cd == std::string_view::npos)) return false;
        if (!part_matches(pattern.substr(0, pd), code.substr(0, cd))) return false;
        if (pd == std::string_view::npos) return i == 2;
        pattern.remove_prefix(pd + 1);
        code.remove_prefix(cd + 1);
    }
    return false;
}

}  // namespace

std::span<const smtp_reply_rule> smtp_reply_rules() noexcept {
    return rules;
}

int match_smtp_reply_rule(int code, std::string_view enhanced, std::string_view text,
                          smtp_phase phase) noexcept {
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const auto& r = rules[i];
        if ((r.phases & phase_bit(phase)) == 0) continue;
        if (!code_matches(r.code, code)) continue;
        if (!enhanced_matches(r.enhanced, enhanced)) continue;
        if (!mime::icontains(text, r.text)) continue;
        return static_cast<int>(i);
    }
    return -1;
}

transport_errc classify_smtp_reply(int code, std::string_view enhanced, std::string_view text,
                                   smtp_phase phase) noexcept {
    const int i = match_smtp_reply_rule(code, enhanced, text, phase);
    if (i >= 0) return rules[static_cast<std::size_t>(i)].result;
    if (phase == smtp_phase::data_end && (code < 400 || code > 599)) return outcome_unknown;
    return code >= 400 && code < 500 ? temporary_reply : content_rejected;
}

std::string_view phase_name(smtp_phase p) noexcept {
    switch (p) {
        case smtp_phase::connect:
            return "connect";
        case smtp_phase::greeting:
            return "greeting";
        case smtp_phase::ehlo:
            return "EHLO";
        case smtp_phase::starttls:
            return "STARTTLS";
        case smtp_phase::auth:
            return "AUTH";
        case smtp_phase::mail:
            return "MAIL FROM";
        case smtp_phase::rcpt:
            return "RCPT TO";
        case smtp_phase::data:
            return "DATA";
        case smtp_phase::data_end:
            return "end of data";
        case smtp_phase::rset:
            return "RSET";
        case smtp_phase::noop:
            return "NOOP";
        case smtp_phase::quit:
            return "QUIT";
    }
    return "?";
}

}  // namespace mailers::detail
