// `mailers webhook replay`.
#include <fstream>
#include <mailers/webhook.hpp>
#include <mailers/webhook_signing.hpp>
#include <sstream>

#include "cli.hpp"

namespace mailers_cli {
namespace {

// A secret given as VALUE, env:NAME or file:PATH (the forms the host's
// configuration uses), so it need not appear on the command line.
std::string secret_value(const std::string& v, std::string_view option) {
    if (v.starts_with("env:")) {
        const char* s = std::getenv(v.c_str() + 4);
        if (!s || !*s)
            fail(exit_usage,
                 fmt::format("{}: the environment variable {} is not set", option, v.substr(4)));
        return s;
    }
    if (v.starts_with("file:")) {
        auto s = read_file(v.substr(5), std::string(option) + " file");
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
        return s;
    }
    return v;
}

// "Name: value" into a header; false when the line is not one.
bool split_header(std::string_view line, std::pair<std::string, std::string>& out) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        line.substr(0, colon).find(' ') != std::string_view::npos)
        return false;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\r')) value.remove_suffix(1);
    out = {std::string(line.substr(0, colon)), std::string(value)};
    return true;
}

// What `webhook replay` means by its exit code, from the HTTP status the
// host would have answered.
int exit_for_webhook(const mailers::webhook_result& r) {
    if (r.accepted()) return exit_ok;
    if (r.http_status == 401 || r.http_status == 403) return exit_verify;
    if (r.http_status >= 500) return exit_other;
    return exit_usage;
}

}  // namespace

void add_webhook_commands(CLI::App& app, commands& reg) {
    // --- webhook replay -------------------------------------------------------------
    auto* wh = app.add_subcommand("webhook", "Provider webhooks (docs/webhooks.md)");
    wh->require_subcommand(1);
    auto& wh_provider = reg.keep<std::string>();
    auto& wh_file = reg.keep<std::string>();
    auto& wh_headers_file = reg.keep<std::string>();
    auto& wh_received_at = reg.keep<std::string>();
    auto& wh_signing_key = reg.keep<std::string>();
    auto& wh_public_key = reg.keep<std::string>();
    auto& wh_basic_user = reg.keep<std::string>();
    auto& wh_basic_password = reg.keep<std::string>();
    auto& wh_auth_header = reg.keep<std::string>();
    auto& wh_headers = reg.keep<std::vector<std::string>>();
    auto& wh_certificates = reg.keep<std::vector<std::string>>();
    auto& wh_topics = reg.keep<std::vector<std::string>>();
    auto& wh_no_verify = reg.keep<bool>(false);
    auto& wh_no_cert_dates = reg.keep<bool>(false);
    auto& wh_tolerance = reg.keep<std::int64_t>(-1);
    auto* whr = reg.add(
        wh, "replay",
        "Push a saved provider request body through ingest, as the host's endpoint would: "
        "verified with the same settings (or --no-verify for a body verified before), "
        "suppressing hard bounces, complaints and unsubscribes; events already applied count as "
        "duplicates and change nothing",
        "mailers webhook replay sendgrid body.json --headers-file body.headers.txt "
        "--public-key MFkw... --received-at 2020-09-09T15:04:48Z",
        [&](context& c) {
            auto provider = mailers::parse_webhook_provider(wh_provider);
            if (!provider)
                fail(exit_usage, fmt::format("unknown provider '{}': use ses, mailgun, sendgrid "
                                             "or postmark",
                                             wh_provider));
            const auto body = read_file(wh_file, "webhook body");
            std::string method = "POST";
            std::vector<std::pair<std::string, std::string>> headers;
            if (!wh_headers_file.empty()) {
                std::istringstream in(read_file(wh_headers_file, "headers file"));
                std::string line;
                for (std::size_t n = 1; std::getline(in, line); ++n) {
                    std::pair<std::string, std::string> h;
                    if (split_header(line, h)) {
                        headers.push_back(std::move(h));
                    } else if (n == 1 && line.find(" HTTP/") != std::string::npos) {
                        method = line.substr(0, line.find(' '));  // the request line
                    } else if (!line.empty() && line != "\r") {
                        fail(exit_usage,
                             fmt::format("{}, line {}: not 'Name: value'", wh_headers_file, n));
                    }
                }
            }
            for (const auto& s : wh_headers) {
                std::pair<std::string, std::string> h;
                if (!split_header(s, h))
                    fail(exit_usage, fmt::format("--header '{}' is not 'Name: value'", s));
                headers.push_back(std::move(h));
            }
            mailers::webhook_params p;
            p.verify = !wh_no_verify;
            if (!wh_received_at.empty()) p.now = parse_time(wh_received_at, "--received-at");
            p.mailgun.signing_key = secret_value(wh_signing_key, "--signing-key");
            p.sendgrid.public_key = wh_public_key;
            p.postmark.basic_user = wh_basic_user;
            p.postmark.basic_password = secret_value(wh_basic_password, "--basic-password");
            if (!wh_auth_header.empty()) {
                std::pair<std::string, std::string> h;
                if (!split_header(secret_value(wh_auth_header, "--auth-header"), h))
                    fail(exit_usage, "--auth-header is not 'Name: value'");
                p.postmark.header_name = h.first;
                p.postmark.header_value = h.second;
            }
            if (wh_tolerance >= 0) {
                p.mailgun.tolerance = std::chrono::seconds(wh_tolerance);
                p.sendgrid.tolerance = std::chrono::seconds(wh_tolerance);
            }
            auto certs = std::make_shared<mailers::memory_sns_certificate_store>();
            for (const auto& spec : wh_certificates) {
                const auto eq = spec.rfind('=');
                if (eq == std::string::npos)
                    fail(exit_usage, fmt::format("--sns-certificate '{}' is not URL=FILE", spec));
                if (auto r = certs->add(spec.substr(0, eq),
                                        read_file(spec.substr(eq + 1), "certificate file"));
                    !r)
                    fail(exit_usage,
                         fmt::format("--sns-certificate '{}': {}", spec, r.error().message()));
            }
            p.ses.certificates = certs;
            p.ses.check_certificate_dates = !wh_no_cert_dates;
            p.ses.allowed_topic_arns = wh_topics;
            std::vector<mailers::http_header> hs;
            for (const auto& [n, v] : headers) hs.push_back({n, v});
            mailers::webhook_request req;
            req.method = method;
            req.headers = hs;
            req.body = body;
            open_workspace(c, mailers::open_mode::existing);
            const auto r = c.engine().ingest_webhook(*provider, req, p);
            const auto& w = r.webhook;
            const auto applied = w.events.size() - std::min(w.events.size(), r.duplicates);
            std::vector<json_object> events;
            for (const auto& ev : w.events)
                events.push_back(json_object()
                                     .str("type", to_string(ev.type))
                                     .str("recipient", ev.recipient)
                                     .str("send_id", ev.send_id)
                                     .str("dedup_key", ev.dedup_key));
            emit(c, json_object()
                        .str("provider", to_string(*provider))
                        .str("file", wh_file)
                        .num("http_status", static_cast<std::uint64_t>(w.http_status))
                        .str("outcome", to_string(w.outcome))
                        .str("reason", w.reason)
                        .num("events", w.events.size())
                        .num("applied", applied)
                        .num("duplicates", r.duplicates)
                        .num("suppressed", r.suppressed)
                        .num("already_suppressed", r.already_suppressed)
                        .num("skipped", w.skipped)
                        .arr("event_list", events));
            const int code = exit_for_webhook(w);
            if (!c.g.json) {
                std::vector<std::pair<std::string, std::string>> f{
                    {"status", fmt::format("{} {}", w.http_status, to_string(w.outcome))},
                    {"events", fmt::format("{} ({} applied, {} duplicates)", w.events.size(),
                                           applied, r.duplicates)},
                    {"suppressed",
                     fmt::format("{} ({} already were)", r.suppressed, r.already_suppressed)}};
                if (w.skipped) f.emplace_back("skipped", std::to_string(w.skipped));
                if (!w.reason.empty()) f.emplace_back("reason", w.reason);
                if (!w.certificate_url.empty())
                    f.emplace_back("certificate needed", w.certificate_url);
                print_fields(f);
                std::vector<std::vector<std::string>> rows;
                for (const auto& ev : w.events)
                    rows.push_back({std::string(to_string(ev.type)), ev.recipient,
                                    ev.send_id.empty() ? "-" : ev.send_id});
                if (!rows.empty()) {
                    fmt::print("\n");
                    print_table({"EVENT", "RECIPIENT", "SEND"}, rows);
                }
            }
            if (code != exit_ok)
                std::fprintf(stderr, "mailers: the %s request was not accepted (%d): %s\n",
                             std::string(to_string(*provider)).c_str(), w.http_status,
                             w.reason.c_str());
            return code;
        });
    whr->add_option("PROVIDER", wh_provider, "ses, mailgun, sendgrid or postmark")->required();
    whr->add_option("FILE", wh_file, "The request body, byte for byte as received")->required();
    whr->add_option("--header", wh_headers, "A request header 'Name: value' (repeat)")
        ->allow_extra_args(false);
    whr->add_option("--headers-file", wh_headers_file,
                    "File of 'Name: value' lines, after an optional request line");
    whr->add_flag("--no-verify", wh_no_verify,
                  "Skip signature and credential checks: only for a body verified before");
    whr->add_option("--received-at", wh_received_at,
                    "When the request was received (UTC, or @UNIX_SECONDS): timestamps are "
                    "checked against it instead of now");
    whr->add_option("--tolerance", wh_tolerance,
                    "Seconds a signed timestamp may be off (Mailgun, SendGrid; default as the "
                    "library's)");
    whr->add_option("--signing-key", wh_signing_key,
                    "Mailgun's webhook signing key, as VALUE, env:NAME or file:PATH");
    whr->add_option("--public-key", wh_public_key, "SendGrid's verification key (base64 DER)");
    whr->add_option("--basic-user", wh_basic_user, "Postmark: the URL's basic-auth user");
    whr->add_option("--basic-password", wh_basic_password,
                    "Postmark: its password, as VALUE, env:NAME or file:PATH");
    whr->add_option("--auth-header", wh_auth_header,
                    "Postmark: the custom header 'Name: secret', as VALUE, env:NAME or file:PATH");
    whr->add_option("--sns-certificate", wh_certificates,
                    "SES: URL=FILE, the PEM the message's SigningCertURL names (repeat)")
        ->allow_extra_args(false);
    whr->add_flag("--no-certificate-dates", wh_no_cert_dates,
                  "SES: accept an SNS certificate outside its validity dates (an old capture)");
    whr->add_option("--topic-arn", wh_topics, "SES: a TopicArn to accept (repeat; none: any)")
        ->allow_extra_args(false);
}

}  // namespace mailers_cli
