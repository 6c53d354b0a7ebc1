#include <charconv>
#include <mailers/transports/smtp_transport.hpp>
#include <utility>
#include <vector>

#include "transports/smtp/pool.hpp"

namespace mailers {

struct smtp_transport::pool : detail::smtp::connection_pool {
    using connection_pool::connection_pool;
};

namespace {

bool is_label_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

// The EHLO argument goes into a command line: a domain or an address
// literal, nothing that could end the line or add a parameter.
bool valid_helo(std::string_view s) noexcept {
    if (s.empty() || s.size() > 255) return false;
    if (s.front() == '[') {
        if (s.back() != ']' || s.size() < 3) return false;
        for (char c : s.substr(1, s.size() - 2))
            if (!is_label_char(c) && c != ':') return false;
        return true;
    }
    for (char c : s)
        if (!is_label_char(c)) return false;
    return true;
}

bool has_control(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

// Why the parameters cannot work, or "" when they can.
std::string check_params(const smtp_params& p) {
    if (p.host.empty()) return "smtp: the host is empty";
    if (has_control(p.host) || p.host.find(' ') != std::string::npos)
        return "smtp: the host contains a space or control character";
    if (!p.helo_name.empty() && !valid_helo(p.helo_name))
        return "smtp: helo must be a domain name or an address literal in brackets";
    if (p.max_connections == 0) return "smtp: max_connections must be at least 1";
    if (has_control(p.username)) return "smtp: the user name contains a control character";
    if (p.password.reveal().find('\0') != std::string::npos)
        return "smtp: the password contains a NUL character";
    switch (p.auth) {
        case smtp_auth::plain:
        case smtp_auth::login:
            if (p.username.empty() || p.password.empty())
                return "smtp: auth=plain and auth=login need a user name and a password";
            break;
        case smtp_auth::xoauth2:
            if (p.username.empty() || (p.oauth2_token.empty() && !p.token_callback))
                return "smtp: auth=xoauth2 needs a user name and a token (the password, the token "
                       "option or a token callback)";
            break;
        case smtp_auth::automatic:
            if (!p.username.empty() && p.password.empty() && p.oauth2_token.empty() &&
                !p.token_callback)
                return "smtp: a user name is configured without a password or token";
            break;
        case smtp_auth::none:
            break;
    }
    return {};
}

smtp_params checked(smtp_params p) {
    if (auto why = check_params(p); !why.empty())
        throw exception(make_error_code(errc::invalid_argument), why);
    return p;
}

boost::system::result<smtp_params> fail(diagnostics* diag, std::string message) {
    if (diag != nullptr) {
        diag->clear();
        diag->message = std::move(message);
    }
    return make_error_code(errc::invalid_argument);
}

std::optional<bool> parse_bool(std::string_view v) {
    if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
    if (v == "false" || v == "0" || v == "no" || v == "off") return false;
    return std::nullopt;
}

std::optional<std::size_t> parse_count(std::string_view v, std::size_t max) {
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n > max) return std::nullopt;
    return n;
}

bool valid_region(std::string_view r) {
    if (r.empty() || r.size() > 32) return false;
    for (char c : r)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

constexpr std::string_view supported_schemes =
    "smtp, smtps, ses+smtp, sendgrid+smtp, postmark+smtp, mailgun+smtp";
constexpr std::string_view supported_options =
    "tls, verify, ca_file, auth, helo, max_connections, max_messages, pipelining, token, "
    "timeout, connect_timeout, greeting_timeout, command_timeout, mail_timeout, rcpt_timeout, "
    "data_init_timeout, data_block_timeout, data_end_timeout, idle_timeout";

// The per-phase timeout a `<field>_timeout` option sets, or null.
std::chrono::milliseconds* phase_timeout(smtp_timeouts& t, std::string_view option) noexcept {
    if (option == "connect_timeout") return &t.connect;
    if (option == "greeting_timeout") return &t.greeting;
    if (option == "command_timeout") return &t.command;
    if (option == "mail_timeout") return &t.mail;
    if (option == "rcpt_timeout") return &t.rcpt;
    if (option == "data_init_timeout") return &t.data_init;
    if (option == "data_block_timeout") return &t.data_block;
    if (option == "data_end_timeout") return &t.data_end;
    return nullptr;
}

std::string bad_duration(std::string_view option) {
    return "DSN option '" + std::string(option) +
           "' must be a duration greater than 0 and at most 24 hours: a whole number with a "
           "unit (1500ms, 30s, 5m) or a bare number of seconds";
}

}  // namespace

boost::system::result<smtp_params> smtp_params_from_dsn(const dsn& in, diagnostics* diag) {
    const bool plain_smtp = in.scheme == "smtp" || in.scheme == "smtps";
    const bool preset =
        in.variant == "smtp" && (in.transport == "ses" || in.transport == "sendgrid" ||
                                 in.transport == "postmark" || in.transport == "mailgun");
    if (!plain_smtp && !preset)
        return fail(diag, "DSN scheme '" + in.scheme + "' is not an SMTP scheme (supported: " +
                              std::string(supported_schemes) + ")");

    dsn d = in;
    if (auto r = resolve_secrets(d, diag); !r) return r.error();

    smtp_params p;
    p.username = d.user.reveal();
    p.password = d.password;
    std::optional<std::string> region;
    std::optional<std::string> tls_option;
    // `timeout` sets every phase; a phase's own option wins, in any order.
    std::optional<std::chrono::milliseconds> all_phases;
    std::vector<std::pair<std::string_view, std::chrono::milliseconds>> one_phase;

    for (const auto& [name, value] : d.options) {
        if (name == "tls") {
            tls_option = value;
        } else if (name == "verify") {
            const auto b = parse_bool(value);
            if (!b) return fail(diag, "DSN option 'verify' must be true or false");
            p.verify_peer = *b;
        } else if (name == "ca_file") {
            if (value.empty()) return fail(diag, "DSN option 'ca_file' is empty");
            p.ca_file = value;
        } else if (name == "auth") {
            if (value == "plain")
                p.auth = smtp_auth::plain;
            else if (value == "login")
                p.auth = smtp_auth::login;
            else if (value == "xoauth2")
                p.auth = smtp_auth::xoauth2;
            else if (value == "none")
                p.auth = smtp_auth::none;
            else if (value == "auto")
                p.auth = smtp_auth::automatic;
            else
                return fail(diag, "DSN option 'auth' must be plain, login, xoauth2, none or auto");
        } else if (name == "helo") {
            if (!valid_helo(value))
                return fail(diag,
                            "DSN option 'helo' must be a domain name or an address literal in "
                            "brackets");
            p.helo_name = value;
        } else if (name == "max_connections") {
            const auto n = parse_count(value, 1000);
            if (!n || *n == 0)
                return fail(diag, "DSN option 'max_connections' must be a number from 1 to 1000");
            p.max_connections = *n;
        } else if (name == "max_messages") {
            const auto n = parse_count(value, 1000000);
            if (!n)
                return fail(diag,
                            "DSN option 'max_messages' must be a number from 0 (no limit) to "
                            "1000000");
            p.max_messages_per_connection = *n;
        } else if (name == "pipelining") {
            const auto b = parse_bool(value);
            if (!b) return fail(diag, "DSN option 'pipelining' must be true or false");
            p.pipelining = *b;
        } else if (name == "token") {
            p.oauth2_token = secret(value);
        } else if (name == "timeout") {
            all_phases = parse_dsn_duration(value);
            if (!all_phases) return fail(diag, bad_duration(name));
        } else if (phase_timeout(p.timeouts, name) != nullptr) {
            const auto v = parse_dsn_duration(value);
            if (!v) return fail(diag, bad_duration(name));
            one_phase.emplace_back(name, *v);
        } else if (name == "idle_timeout") {
            const auto v = parse_dsn_duration(value);
            if (!v) return fail(diag, bad_duration(name));
            p.idle_timeout = *v;
        } else if (name == "region" && preset &&
                   (d.transport == "ses" || d.transport == "mailgun")) {
            if (!valid_region(value))
                return fail(diag, "DSN option 'region' must be a region name such as eu-west-1");
            region = value;
        } else {
            return fail(
                diag, "DSN option '" + name + "' is not known to " + d.scheme +
                          " (supported: " + std::string(supported_options) +
                          (preset && (d.transport == "ses" || d.transport == "mailgun") ? ", region"
                                                                                        : "") +
                          ")");
        }
    }

    if (all_phases) {
        auto& t = p.timeouts;
        t.connect = t.greeting = t.command = t.mail = t.rcpt = t.data_init = t.data_block =
            t.data_end = *all_phases;
    }
    for (const auto& [name, v] : one_phase) *phase_timeout(p.timeouts, name) = v;

    // Host: given, or the provider's for the presets ("default").
    const bool default_host = d.host.empty() || d.host == "default";
    if (plain_smtp) {
        if (default_host) return fail(diag, "DSN host is missing: " + d.scheme + " needs a server");
        p.host = d.host;
    } else if (!default_host) {
        p.host = d.host;  // an endpoint override (tests, proxies)
    } else if (d.transport == "ses") {
        p.host = "email-smtp." + region.value_or("us-east-1") + ".amazonaws.com";
    } else if (d.transport == "sendgrid") {
        p.host = "smtp.sendgrid.net";
    } else if (d.transport == "postmark") {
        p.host = "smtp.postmarkapp.com";
    } else {
        p.host = region == "eu" ? "smtp.eu.mailgun.org" : "smtp.mailgun.org";
    }
    if (d.transport == "sendgrid") {
        // SendGrid's SMTP user is the literal "apikey"; the key is the password.
        if (p.password.empty()) p.password = d.user;
        p.username = "apikey";
    } else if (d.transport == "postmark") {
        // Postmark takes the server token as both user name and password.
        if (p.password.empty()) p.password = d.user;
    }

    if (d.scheme == "smtps") {
        if (tls_option && *tls_option != "implicit")
            return fail(diag, "DSN option 'tls' cannot be '" + *tls_option +
                                  "' with smtps, which is TLS from the start (use smtp:// for "
                                  "STARTTLS)");
        p.tls = smtp_tls::implicit;
    } else if (tls_option) {
        if (*tls_option == "required")
            p.tls = smtp_tls::required;
        else if (*tls_option == "opportunistic")
            p.tls = smtp_tls::opportunistic;
        else if (*tls_option == "none")
            p.tls = smtp_tls::none;
        else if (*tls_option == "implicit")
            p.tls = smtp_tls::implicit;
        else
            return fail(diag, "DSN option 'tls' must be required, opportunistic, none or implicit");
    } else if (d.port == 465) {
        // Port 465 is submissions (RFC 8314): TLS from the first octet.
        p.tls = smtp_tls::implicit;
    }
    p.port = d.port.value_or(p.tls == smtp_tls::implicit ? 465 : 587);

    if (p.auth == smtp_auth::xoauth2 && p.oauth2_token.empty()) {
        p.oauth2_token = p.password;
        p.password = secret{};
    }
    if (!d.path.empty() && d.path != "/")
        return fail(diag, "DSN path is not used by " + d.scheme + "; remove it");

    if (auto why = check_params(p); !why.empty()) {
        // check_params speaks of parameters; name the DSN parts instead.
        if (why.find("user name") != std::string::npos ||
            why.find("password") != std::string::npos || why.find("token") != std::string::npos)
            return fail(diag, "DSN credentials are incomplete: " + why.substr(6));
        return fail(diag, "DSN is not usable: " + why.substr(6));
    }
    return p;
}

boost::system::result<std::shared_ptr<smtp_transport>> make_smtp_transport(
    boost::asio::any_io_executor ex, std::string_view dsn_text, diagnostics* diag) {
    auto d = parse_single_dsn(dsn_text, diag);
    if (!d) return d.error();
    auto p = smtp_params_from_dsn(*d, diag);
    if (!p) return p.error();
    try {
        return std::make_shared<smtp_transport>(std::move(ex), std::move(*p));
    } catch (const exception& e) {
        if (diag != nullptr) *diag = e.diag();
        return e.code();
    }
}

smtp_transport::smtp_transport(boost::asio::any_io_executor ex, smtp_params params)
    : provider_transport(ex), pool_(std::make_shared<pool>(ex, checked(std::move(params)))) {}

smtp_transport::~smtp_transport() {
    pool_->shutdown();
}

smtp_stats smtp_transport::stats() const {
    return pool_->stats();
}

const smtp_params& smtp_transport::params() const noexcept {
    return pool_->params();
}

void smtp_transport::do_check(any_check_handler handler) {
    pool_->check(std::move(handler));
}

void smtp_transport::do_send(std::shared_ptr<const outbound> out, any_send_handler handler) {
    pool_->submit({std::move(out), std::move(handler)});
}

}  // namespace mailers
