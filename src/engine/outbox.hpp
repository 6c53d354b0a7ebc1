// The engine's side of outbound webhooks: the endpoints' stored form, the
// outbox rows an event becomes, and the thread that delivers due rows.
//
// The store decides who holds a row (claim_webhook_deliveries); this side
// makes each attempt and records its outcome, retry time or end through the
// engine's commit writer.
#pragma once

#include <boost/system/result.hpp>
#include <condition_variable>
#include <cstdint>
#include <mailers/engine.hpp>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mailers::http {
class client;
}

namespace mailers::detail {

/// The kind of the stored objects that hold endpoints.
inline constexpr std::string_view webhook_endpoint_kind = "webhook.endpoint";

/// The stored form, secret included; with `redact`, the audit form: an
/// inline secret shows as "whsec_…", a reference as given.
std::string to_json(const webhook_endpoint& ep, bool redact);
boost::system::result<webhook_endpoint> webhook_endpoint_from_json(std::string_view json);
/// `ep` with an inline secret shown as "whsec_…".
webhook_endpoint redacted(webhook_endpoint ep);

/// Refuses (errc::invalid_argument) parameters no delivery can run with.
void check_webhook_params(const outbound_webhook_params& p);

/// Delivers the workspace's outbox for one engine: claims due rows on a
/// thread of its own (store calls block; never the host's executor), POSTs
/// each on the engine's executor, and records each attempt's end through
/// the commit writer.
class __attribute__((visibility("hidden"))) webhook_outbox {
public:
    explicit webhook_outbox(engine::impl& s);
    ~webhook_outbox();

    void start();
    /// Stops claiming and joins the thread; attempts in flight still record
    /// their outcome. Idempotent.
    void stop();
    /// Looks for due rows now rather than at the next poll.
    void wake();

private:
    void loop();
    void drain_once();
    void attempt(webhook_delivery row);
    void on_response(const webhook_delivery& row, int status, std::string detail, bool ok);
    /// Ends an attempt through the commit writer.
    void end(const webhook_delivery& row, webhook_delivery_state state, time_point due, int status,
             std::string detail);
    /// Disables the endpoints whose deliveries ran out of attempts with no
    /// success since (on this thread: it blocks on the store).
    void check_exhausted();
    void purge_ended();

    engine::impl& s_;
    std::unique_ptr<http::client> client_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, wake_ = false, started_ = false;
    std::size_t in_flight_ = 0;
    /// (endpoint, created_at) of deliveries that ran out of attempts.
    std::vector<std::pair<std::string, time_point>> exhausted_;
    std::mt19937_64 rng_;
    time_point last_purge_{};  // drain thread only
    std::thread thread_;
};

}  // namespace mailers::detail
