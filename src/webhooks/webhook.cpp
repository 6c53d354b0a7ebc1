// The entry point: request checks every provider shares, then the
// provider's reader.
#include <exception>
#include <mailers/webhook.hpp>
#include <new>

#include "webhooks/common.hpp"
#include "webhooks/replay.hpp"

namespace mailers {

std::string_view to_string(webhook_provider p) noexcept {
    switch (p) {
        case webhook_provider::ses:
            return "ses";
        case webhook_provider::mailgun:
            return "mailgun";
        case webhook_provider::sendgrid:
            return "sendgrid";
        case webhook_provider::postmark:
            return "postmark";
    }
    return "invalid webhook_provider";
}

boost::system::result<webhook_provider> parse_webhook_provider(std::string_view s) {
    std::string lower(s);
    for (auto& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    for (auto p : {webhook_provider::ses, webhook_provider::mailgun, webhook_provider::sendgrid,
                   webhook_provider::postmark})
        if (lower == to_string(p)) return p;
    return make_error_code(errc::invalid_argument);
}

std::string_view to_string(webhook_outcome o) noexcept {
    switch (o) {
        case webhook_outcome::events:
            return "events";
        case webhook_outcome::subscription_confirmation:
            return "subscription_confirmation";
        case webhook_outcome::unsubscribe_confirmation:
            return "unsubscribe_confirmation";
        case webhook_outcome::ignored:
            return "ignored";
        case webhook_outcome::certificate_needed:
            return "certificate_needed";
        case webhook_outcome::rejected:
            return "rejected";
    }
    return "invalid webhook_outcome";
}

void webhooks::release_replay_token(const webhook_params& params, std::string_view token,
                                    const logger& log) {
    if (token.empty() || !params.mailgun.replay) return;
    try {
        params.mailgun.replay->release(token);
    } catch (const std::exception& e) {
        log.log(log_level::error,
                std::string("a replay token could not be released; the provider's retry will be "
                            "refused as a replay: ") +
                    e.what());
    }
}

void memory_replay_cache::do_release(std::string_view token) {
    std::lock_guard lock{mutex_};
    tokens_.erase(std::string(token));
}

std::size_t memory_replay_cache::size() const {
    std::lock_guard lock{mutex_};
    return tokens_.size();
}

bool memory_replay_cache::do_first_use(std::string_view token, time_point expires_at,
                                       time_point now) {
    std::lock_guard lock{mutex_};
    std::string key(token);
    if (auto it = tokens_.find(key); it != tokens_.end()) {
        if (it->second > now) return false;
        it->second = expires_at;
        return true;
    }
    if (capacity_ == 0) return true;
    if (tokens_.size() >= capacity_) {
        std::erase_if(tokens_, [&](const auto& kv) { return kv.second <= now; });
        if (tokens_.size() >= capacity_) {
            auto soonest = tokens_.begin();
            for (auto it = tokens_.begin(); it != tokens_.end(); ++it)
                if (it->second < soonest->second) soonest = it;
            tokens_.erase(soonest);
        }
    }
    tokens_.emplace(std::move(key), expires_at);
    return true;
}

webhook_result parse_webhook(webhook_provider provider, const webhook_request& request,
                             const webhook_params& params) {
    webhook_result result;
    webhooks::outcome_builder b{params, result};
    std::string method(request.method);
    for (auto& c : method)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (method != "POST") {
        b.reject(405, "webhooks are POST requests");
        return result;
    }
    if (request.body.size() > params.max_body_bytes) {
        b.reject(413, "the body is larger than webhook_params::max_body_bytes (" +
                          std::to_string(params.max_body_bytes) + ")");
        return result;
    }
    try {
        switch (provider) {
            case webhook_provider::ses: {
                // SNS posts JSON as text/plain; application/json is accepted too.
                if (auto ct = webhooks::find_header(request.headers, "content-type")) {
                    const auto t = webhooks::media_type(*ct);
                    if (t != "text/plain" && t != "application/json") {
                        b.reject(415, "SNS messages are text/plain or application/json");
                        return result;
                    }
                }
                webhooks::parse_ses(request, params, result);
                break;
            }
            case webhook_provider::mailgun:
                webhooks::parse_mailgun(request, params, result);
                break;
            case webhook_provider::sendgrid:
                webhooks::parse_sendgrid(request, params, result);
                break;
            case webhook_provider::postmark:
                webhooks::parse_postmark(request, params, result);
                break;
            default:
                b.reject(400, "unknown webhook provider");
                break;
        }
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        // Only OpenSSL failing outright lands here; nothing in a request does.
        b.reject(500, std::string("webhook check failed: ") + e.what());
    }
    return result;
}

}  // namespace mailers
