#include "transports/smtp/session.hpp"

#include <vector>

#include "mime/text.hpp"

namespace mailers::detail::smtp {
namespace {

void wipe(std::string& s) noexcept {
    volatile char* p = s.data();
    for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
    s.clear();
}

// "550 5.1.1 The email account ..." for a message: the first line only;
// diagnostics.provider_reply carries all of it.
std::string describe(const reply& r) {
    std::string out = std::to_string(r.code);
    std::string_view first = r.text;
    first = first.substr(0, first.find('\n'));
    if (!first.empty()) {
        out.push_back(' ');
        out.append(first);
    }
    return out;
}

std::vector<std::string_view> split_words(std::string_view s) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
        const std::size_t start = i;
        while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
        if (i > start) words.push_back(s.substr(start, i - start));
    }
    return words;
}

// RFC 2920: MAIL, every RCPT and DATA go in one group; the content waits
// for the 354.
void append_pipelined_group(std::string& out, const transaction& t) {
    append_mail_from(out, t.mail_from, t.params);
    for (const auto& r : t.rcpt_to) append_rcpt_to(out, r);
    out.append("DATA\r\n");
}

}  // namespace

std::string queue_id_from_reply(const reply& r) {
    const std::string_view t = r.first_line_text();
    if (const auto q = mime::ifind(t, "queued as "); q != std::string_view::npos) {
        std::string_view rest = t.substr(q + 10);
        std::size_t end = 0;
        while (end < rest.size() && rest[end] != ' ' && rest[end] != ';' && rest[end] != ',' &&
               rest[end] != ')')
            ++end;
        return std::string(rest.substr(0, end));
    }
    const auto words = split_words(t);
    for (auto w : words) {
        // Exchange: "2.6.0 <id@host> [InternalId=...] Queued mail for delivery"
        if (w.size() > 2 && w.front() == '<' && w.back() == '>')
            return std::string(w.substr(1, w.size() - 2));
    }
    if (words.size() >= 3 && words.back() == "gsmtp") return std::string(words[words.size() - 3]);
    if (words.size() == 2 && (words[0] == "Ok" || words[0] == "OK" || words[0] == "ok"))
        return std::string(words[1]);
    return {};
}

session::session(const session_config& cfg, bool tls_active) : cfg_(cfg), tls_active_(tls_active) {}

void session::begin_out() {
    if (out_secret_) {
        wipe(out_);
        out_secret_ = false;
    } else {
        out_.clear();
    }
}

step session::start() {
    state_ = state::greeting;
    phase_ = smtp_phase::greeting;
    return step::read;
}

step session::send_ehlo() {
    begin_out();
    out_.append("EHLO ");
    out_.append(cfg_.helo);
    out_.append("\r\n");
    state_ = state::ehlo;
    phase_ = smtp_phase::ehlo;
    return step::write_read;
}

step session::fail_setup(transport_errc e, std::string message, const reply* r) {
    result_ = {};
    result_.ec = make_error_code(e);
    result_.diag.message = std::move(message);
    if (r != nullptr) {
        result_.diag.provider_reply = r->verbatim();
        result_.diag.enhanced_status = r->enhanced;
        result_.diag.status = r->code;
    }
    return quit_after_setup_failure(r);
}

step session::quit_after_setup_failure(const reply* r) {
    // A server that refused a set-up step still awaits commands, and RFC
    // 5321 (sections 3.1, 3.8) asks the client to end with QUIT rather than
    // drop the connection; one that said 421 is closing it already.
    if (r != nullptr && r->code == 421) {
        state_ = state::closed;
        return step::close;
    }
    return start_quit();
}

void session::record_failure(const reply& r, smtp_phase phase, std::string context) {
    result_.ec = make_error_code(classify_smtp_reply(r.code, r.enhanced, r.text, phase));
    result_.diag.message = std::move(context);
    result_.diag.message.append(": ");
    result_.diag.message.append(describe(r));
    result_.diag.provider_reply = r.verbatim();
    result_.diag.enhanced_status = r.enhanced;
    result_.diag.status = r.code;
}

step session::fail_reply(const reply& r, smtp_phase phase, std::string context) {
    result_ = {};
    record_failure(r, phase, std::move(context));
    return quit_after_setup_failure(&r);
}

step session::on_reply(const reply& r) {
    switch (state_) {
        case state::greeting:
            if (r.code == 220) return send_ehlo();
            return fail_reply(r, smtp_phase::greeting, "the server refused the session");

        case state::ehlo:
            if (r.code == 250) {
                caps_ = parse_ehlo(r);
                return after_ehlo();
            }
            // RFC 5321 section 3.2: a server that does not know EHLO answers
            // with a permanent error, and the client falls back to HELO.
            if (r.permanent() && r.code != 554) {
                begin_out();
                out_.append("HELO ");
                out_.append(cfg_.helo);
                out_.append("\r\n");
                state_ = state::helo;
                return step::write_read;
            }
            return fail_reply(r, smtp_phase::ehlo, "EHLO refused");

        case state::helo:
            if (r.code == 250) {
                caps_ = {};
                return after_ehlo();
            }
            return fail_reply(r, smtp_phase::ehlo, "HELO refused");

        case state::starttls:
            if (r.code == 220) {
                state_ = state::tls_handshake;
                return step::tls_handshake;
            }
            if (cfg_.tls == tls_mode::opportunistic && r.code != 421) {
                starttls_refused_ = true;
                return start_auth();
            }
            return fail_reply(r, smtp_phase::starttls, "STARTTLS refused");

        case state::auth_plain:
        case state::auth_login_done:
        case state::auth_xoauth2:
            if (r.code == 235) return session_ready();
            if (state_ == state::auth_xoauth2 && r.code == 334) {
                // XOAUTH2 reports a refused token as a 334 challenge holding a
                // JSON status; the client answers with an empty line and the
                // server then sends the final error.
                decode_base64(r.first_line_text(), xoauth2_error_);
                begin_out();
                out_.append("\r\n");
                state_ = state::auth_xoauth2_error;
                return step::write_read;
            }
            return fail_reply(r, smtp_phase::auth, "AUTH " + auth_name_ + " refused");

        case state::auth_xoauth2_error:
            if (r.code == 235) return session_ready();
            {
                std::string context = "AUTH XOAUTH2 refused";
                if (!xoauth2_error_.empty() && is_ascii(xoauth2_error_)) {
                    context += " (";
                    context += xoauth2_error_;
                    context += ')';
                }
                return fail_reply(r, smtp_phase::auth, std::move(context));
            }

        case state::auth_login_user:
            if (r.code != 334) return fail_reply(r, smtp_phase::auth, "AUTH LOGIN refused");
            begin_out();
            append_base64_line(out_, cfg_.user);
            out_secret_ = true;
            state_ = state::auth_login_password;
            return step::write_read;

        case state::auth_login_password:
            if (r.code != 334)
                return fail_reply(r, smtp_phase::auth, "AUTH LOGIN refused the user name");
            begin_out();
            append_base64_line(out_, cfg_.password);
            out_secret_ = true;
            state_ = state::auth_login_done;
            return step::write_read;

        case state::mail:
        case state::rcpt:
        case state::data:
            return on_transaction_reply(r);

        case state::pipelined:
            return on_pipelined_reply(r);

        case state::data_end:
            transaction_replied_ = true;
            if (r.code >= 200 && r.code < 300) {
                result_.ec = {};
                result_.diag = {};
                result_.provider_message_id = queue_id_from_reply(r);
                result_.diag.provider_reply = r.verbatim();
                result_.diag.enhanced_status = r.enhanced;
                result_.diag.status = r.code;
                if (!refused_.empty()) {
                    result_.diag.message =
                        "accepted for " + std::to_string(result_.accepted_recipients) + " of " +
                        std::to_string(tx_.rcpt_to.size()) + " recipients; " + refused_;
                }
                return end_transaction();
            }
            result_.diag = {};
            record_failure(r, smtp_phase::data_end,
                           r.code < 400 ? "no verdict on the message after the end of data"
                                        : "message refused after the end of data");
            // 421 closes the session; a reply that is neither acceptance nor
            // refusal leaves it in a state nothing can rely on.
            if (r.code == 421 || r.code < 400) {
                state_ = state::closed;
                return step::close;
            }
            return end_transaction();

        case state::empty_data_end:
            if (r.code == 421) {
                state_ = state::closed;
                return step::close;
            }
            return send_rset();

        case state::rset:
        case state::noop:
            if (r.code == 250) {
                state_ = state::ready;
                return step::ready;
            }
            state_ = state::closed;
            return step::close;

        case state::quit:
            state_ = state::closed;
            return step::close;

        case state::tls_handshake:
        case state::ready:
        case state::next_queued:
        case state::content:
        case state::closed:
            break;
    }
    result_ = {};
    result_.ec = make_error_code(transport_errc::protocol_error);
    result_.diag.message = "the server sent a reply nobody asked for: " + describe(r);
    result_.diag.provider_reply = r.verbatim();
    result_.diag.status = r.code;
    state_ = state::closed;
    return step::close;
}

step session::after_ehlo() {
    const bool want_tls = cfg_.tls == tls_mode::required || cfg_.tls == tls_mode::opportunistic;
    if (!tls_active_ && want_tls && !starttls_refused_) {
        if (caps_.starttls) {
            begin_out();
            out_.append("STARTTLS\r\n");
            state_ = state::starttls;
            phase_ = smtp_phase::starttls;
            return step::write_read;
        }
        if (cfg_.tls == tls_mode::required)
            return fail_setup(transport_errc::configuration,
                              "the server does not offer STARTTLS and tls=required: refusing to "
                              "send in clear text (configure tls=opportunistic or tls=none to "
                              "allow it)");
    }
    return start_auth();
}

step session::on_tls_established() {
    tls_active_ = true;
    // RFC 3207 section 4.2: forget everything learnt before the handshake.
    caps_ = {};
    return send_ehlo();
}

step session::start_auth() {
    const bool have_credentials = !cfg_.user.empty() || !cfg_.token.empty();
    if (cfg_.auth == auth_mode::none || (cfg_.auth == auth_mode::automatic && !have_credentials))
        return session_ready();
    if (!tls_active_ && cfg_.tls != tls_mode::none)
        return fail_setup(transport_errc::configuration,
                          "refusing to send credentials in clear text: the server did not "
                          "offer STARTTLS (configure tls=none to allow it)");

    auth_mode m = cfg_.auth;
    if (m == auth_mode::automatic) {
        if (!cfg_.token.empty())
            m = auth_mode::xoauth2;
        else if (caps_.auth_plain)
            m = auth_mode::plain;
        else if (caps_.auth_login)
            m = auth_mode::login;
        else if (caps_.auth_mechanisms.empty())
            return fail_setup(transport_errc::configuration,
                              "credentials are configured but the server does not offer AUTH");
        else
            return fail_setup(transport_errc::configuration,
                              "the server offers AUTH " + caps_.auth_mechanisms +
                                  ", none of which is supported (PLAIN, LOGIN, XOAUTH2)");
    }
    const bool offered = (m == auth_mode::plain && caps_.auth_plain) ||
                         (m == auth_mode::login && caps_.auth_login) ||
                         (m == auth_mode::xoauth2 && caps_.auth_xoauth2);
    auth_name_ = m == auth_mode::plain ? "PLAIN" : m == auth_mode::login ? "LOGIN" : "XOAUTH2";
    if (!offered) {
        std::string offers = caps_.auth_mechanisms.empty() ? std::string("no AUTH at all")
                                                           : "AUTH " + caps_.auth_mechanisms;
        return fail_setup(
            transport_errc::configuration,
            "the server does not offer AUTH " + auth_name_ + " (it offers " + offers + ")");
    }

    begin_out();
    switch (m) {
        case auth_mode::plain:
            append_auth_plain(out_, cfg_.user, cfg_.password);
            out_secret_ = true;
            state_ = state::auth_plain;
            break;
        case auth_mode::login:
            out_.append("AUTH LOGIN\r\n");
            state_ = state::auth_login_user;
            break;
        default:
            append_auth_xoauth2(out_, cfg_.user, cfg_.token);
            out_secret_ = true;
            state_ = state::auth_xoauth2;
            break;
    }
    phase_ = smtp_phase::auth;
    return step::write_read;
}

step session::session_ready() {
    begin_out();
    established_ = true;
    result_ = {};
    state_ = state::ready;
    return step::ready;
}

void session::reset_transaction(const transaction& t) {
    tx_ = t;
    next_rcpt_ = 0;
    pipelined_seen_ = 0;
    refused_.clear();
    content_sent_ = false;
    transaction_replied_ = false;
    transaction_failed_ = false;
    mail_failed_ = false;
    result_ = {};
}

step session::end_transaction() {
    // Only the end of data leads here, so queued commands went out with it.
    state_ = next_out_.empty() ? state::ready : state::next_queued;
    return step::ready;
}

bool session::can_queue_next() const noexcept {
    return state_ == state::content && cfg_.pipelining && caps_.pipelining && next_out_.empty();
}

void session::queue_next(const transaction& t) {
    next_tx_ = t;
    next_out_.clear();
    append_pipelined_group(next_out_, t);
}

step session::continue_next() {
    reset_transaction(next_tx_);
    next_out_.clear();
    state_ = state::pipelined;
    phase_ = smtp_phase::mail;
    return step::read;
}

step session::start_transaction(const transaction& t) {
    reset_transaction(t);
    if (t.rcpt_to.empty()) {
        result_.ec = make_error_code(errc::invalid_argument);
        result_.diag.message = "the envelope has no recipient";
        return step::ready;
    }
    begin_out();
    phase_ = smtp_phase::mail;
    if (cfg_.pipelining && caps_.pipelining) {
        append_pipelined_group(out_, t);
        state_ = state::pipelined;
    } else {
        append_mail_from(out_, t.mail_from, t.params);
        state_ = state::mail;
    }
    return step::write_read;
}

void session::record_rejected_recipient(const reply& r, std::string_view rcpt) {
    std::string context = "RCPT TO:<";
    context.append(rcpt);
    context.append("> refused");
    if (refused_.empty()) {
        record_failure(r, smtp_phase::rcpt, context);
        refused_ = "refused: ";
    } else {
        refused_.append("; ");
    }
    refused_.append(context.substr(8));  // "<addr> refused"
    refused_.append(": ");
    refused_.append(describe(r));
}

step session::send_rset() {
    begin_out();
    out_.append("RSET\r\n");
    state_ = state::rset;
    phase_ = smtp_phase::rset;
    return step::write_read;
}

step session::finish_transaction_failure(const reply& r) {
    transaction_failed_ = true;
    if (r.code == 421) {
        state_ = state::closed;
        return step::close;
    }
    return send_rset();
}

step session::on_transaction_reply(const reply& r) {
    transaction_replied_ = true;
    const bool ok = r.code >= 200 && r.code < 300;
    if (state_ == state::mail) {
        if (!ok) {
            record_failure(r, smtp_phase::mail,
                           "MAIL FROM:<" + std::string(tx_.mail_from) + "> refused");
            return finish_transaction_failure(r);
        }
    } else if (state_ == state::rcpt) {
        if (ok)
            ++result_.accepted_recipients;
        else
            record_rejected_recipient(r, tx_.rcpt_to[next_rcpt_]);
        if (r.code == 421) {
            record_failure(r, smtp_phase::rcpt, "the server closed the session");
            return finish_transaction_failure(r);
        }
        ++next_rcpt_;
    } else {
        return after_data_reply(r);
    }

    begin_out();
    if (next_rcpt_ < tx_.rcpt_to.size()) {
        append_rcpt_to(out_, tx_.rcpt_to[next_rcpt_]);
        state_ = state::rcpt;
        phase_ = smtp_phase::rcpt;
        return step::write_read;
    }
    if (result_.accepted_recipients == 0) return finish_transaction_failure(r);
    out_.append("DATA\r\n");
    state_ = state::data;
    phase_ = smtp_phase::data;
    return step::write_read;
}

step session::after_data_reply(const reply& r) {
    if (r.code == 354) {
        state_ = state::content;
        phase_ = smtp_phase::data;
        return step::write_data;
    }
    record_failure(r, smtp_phase::data, "DATA refused");
    return finish_transaction_failure(r);
}

step session::on_pipelined_reply(const reply& r) {
    transaction_replied_ = true;
    const std::size_t index = pipelined_seen_++;
    const std::size_t n = tx_.rcpt_to.size();
    const bool ok = r.code >= 200 && r.code < 300;
    const smtp_phase reply_phase = phase_;
    if (index == 0) {
        if (!ok) {
            record_failure(r, smtp_phase::mail,
                           "MAIL FROM:<" + std::string(tx_.mail_from) + "> refused");
            mail_failed_ = true;
        }
        phase_ = smtp_phase::rcpt;
    } else if (index <= n) {
        if (ok) {
            if (!mail_failed_) ++result_.accepted_recipients;
        } else if (!mail_failed_) {
            record_rejected_recipient(r, tx_.rcpt_to[index - 1]);
        }
        if (index == n) phase_ = smtp_phase::data;
    } else {
        const bool can_send = !mail_failed_ && result_.accepted_recipients > 0;
        if (r.code == 354) {
            if (can_send) {
                state_ = state::content;
                return step::write_data;
            }
            // RFC 2920 section 3.1: a server may accept DATA after refusing
            // every recipient; the client ends that empty message at once.
            begin_out();
            out_.append(".\r\n");
            state_ = state::empty_data_end;
            phase_ = smtp_phase::data_end;
            transaction_failed_ = true;
            return step::write_read;
        }
        if (can_send) record_failure(r, smtp_phase::data, "DATA refused");
        return finish_transaction_failure(r);
    }
    if (r.code == 421) {
        // The server is closing: the replies still owed will not come, and
        // its reason outranks an earlier recipient's refusal.
        if (index != 0) record_failure(r, reply_phase, "the server closed the session");
        return finish_transaction_failure(r);
    }
    return step::read;
}

step session::on_data_written() {
    content_sent_ = true;
    state_ = state::data_end;
    phase_ = smtp_phase::data_end;
    return step::read;
}

step session::start_noop() {
    begin_out();
    out_.append("NOOP\r\n");
    state_ = state::noop;
    phase_ = smtp_phase::noop;
    return step::write_read;
}

step session::start_quit() {
    begin_out();
    out_.append("QUIT\r\n");
    state_ = state::quit;
    phase_ = smtp_phase::quit;
    return step::write_read;
}

}  // namespace mailers::detail::smtp
