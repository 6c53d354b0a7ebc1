#include <fmt/format.h>

#include <algorithm>
#include <mailers/dsn.hpp>
#include <mailers/transport_factory.hpp>
#include <mailers/transports/capture_transport.hpp>
#include <mailers/transports/composite_transport.hpp>
#include <mailers/transports/file_transport.hpp>
#include <mailers/transports/http_transports.hpp>
#include <mailers/transports/null_transport.hpp>
#include <mailers/transports/smtp_transport.hpp>
#include <variant>

namespace mailers {

namespace {

using transport_result = boost::system::result<std::shared_ptr<provider_transport>>;

error_code invalid(diagnostics* diag, std::string message) {
    if (diag) diag->message = std::move(message);
    return make_error_code(errc::invalid_argument);
}

bool is_smtp_scheme(std::string_view s) {
    return s == "smtp" || s == "smtps" || s.ends_with("+smtp");
}

std::string supported_schemes() {
    std::string out;
    for (auto s : known_dsn_schemes()) {
        if (!out.empty()) out += ", ";
        out += s;
    }
    return out + ", failover(...), roundrobin(...)";
}

transport_result build(const boost::asio::any_io_executor& ex, const composite_dsn& c,
                       const logger& log, diagnostics* diag) {
    if (c.k != composite_dsn::kind::single) {
        std::vector<std::shared_ptr<provider_transport>> children;
        for (const auto& child : c.children) {
            auto t = build(ex, child, log, diag);
            if (!t) return t.error();
            children.push_back(std::move(*t));
        }
        auto m = c.k == composite_dsn::kind::failover ? composite_transport::mode::failover
                                                      : composite_transport::mode::roundrobin;
        return std::shared_ptr<provider_transport>(
            std::make_shared<composite_transport>(ex, m, std::move(children)));
    }
    const dsn& d = c.single;
    try {
        if (is_smtp_scheme(d.scheme)) {
            auto p = smtp_params_from_dsn(d, diag);
            if (!p) return p.error();
            p->log = log;
            return std::shared_ptr<provider_transport>(
                std::make_shared<smtp_transport>(ex, std::move(*p)));
        }
        auto http = http_transport_schemes();
        if (std::find(http.begin(), http.end(), d.scheme) != http.end()) {
            auto p = http_params_from_dsn(d, diag);
            if (!p) return p.error();
            std::visit([&](auto& provider) { provider.http.log = log; }, *p);
            return std::shared_ptr<provider_transport>(
                std::make_shared<http_transport>(ex, std::move(*p)));
        }
        if (d.scheme == "null")
            return std::shared_ptr<provider_transport>(std::make_shared<null_transport>(ex));
        if (d.scheme == "capture")
            return std::shared_ptr<provider_transport>(std::make_shared<capture_transport>(ex));
        if (d.scheme == "file") {
            if (d.path.empty())
                return invalid(diag,
                               "file DSN needs a folder path, e.g. file:///var/spool/mailers");
            return std::shared_ptr<provider_transport>(
                std::make_shared<file_transport>(ex, d.path));
        }
    } catch (const exception& e) {
        if (diag) *diag = e.diag();
        return e.code();
    }
    return invalid(diag, fmt::format("unsupported DSN scheme; supported: {}", supported_schemes()));
}

// The first field of `d` that holds a credential inline, or "".
std::string inline_secret(const dsn& d) {
    const auto inline_value = [](const secret& s) { return !s.empty() && !s.is_reference(); };
    if (d.scheme != "mailgun+api" && inline_value(d.password)) return "the password";
    const bool user_is_key =
        d.scheme == "sendgrid+api" || d.scheme == "postmark+api" || d.scheme == "mailgun+api" ||
        ((d.scheme == "sendgrid+smtp" || d.scheme == "postmark+smtp") && d.password.empty());
    if (user_is_key && inline_value(d.user)) return "the user (the API key)";
    for (const auto& [name, value] : d.options)
        if (is_secret_option(name) && inline_value(secret(value)))
            return fmt::format("option {}", name);
    return {};
}

error_code find_inline_secret(const composite_dsn& c, diagnostics* diag) {
    if (c.k != composite_dsn::kind::single) {
        for (const auto& child : c.children)
            if (auto ec = find_inline_secret(child, diag)) return ec;
        return {};
    }
    auto field = inline_secret(c.single);
    if (field.empty()) return {};
    return invalid(diag, fmt::format("{} DSN holds {} inline: a stored DSN names its secrets by "
                                     "reference, env:NAME or file:/path",
                                     c.single.scheme, field));
}

}  // namespace

boost::system::result<void> require_secret_references(std::string_view dsn_text,
                                                      diagnostics* diag) {
    auto parsed = parse_dsn(dsn_text, diag);
    if (!parsed) return parsed.error();
    if (auto ec = find_inline_secret(*parsed, diag)) return ec;
    return {};
}

transport_result make_transport(boost::asio::any_io_executor ex, std::string_view dsn_text,
                                diagnostics* diag) {
    return make_transport(std::move(ex), dsn_text, logger{}, diag);
}

transport_result make_transport(boost::asio::any_io_executor ex, std::string_view dsn_text,
                                const logger& log, diagnostics* diag) {
    auto parsed = parse_dsn(dsn_text, diag);
    if (!parsed) return parsed.error();
    if (auto r = resolve_secrets(*parsed, diag); !r) return r.error();
    return build(ex, *parsed, log, diag);
}

}  // namespace mailers
