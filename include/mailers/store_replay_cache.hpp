// A replay cache kept in the store, shared by every process of a workspace.
#pragma once

#include <mailers/config.hpp>
#include <mailers/store.hpp>
#include <mailers/webhook.hpp>
#include <memory>
#include <string>
#include <string_view>

namespace mailers {

/// A replay_cache whose tokens are recorded in `storage` (namespace
/// "mailgun-token" of `workspace`, as store_ops::record_key), so a Mailgun
/// token used once is refused by every process on that store, not only by
/// the one that saw it. Each first use is one commit, and so is each
/// release (of a request whose events could not be applied). Expired tokens are
/// forgotten by `store::purge_keys`, which engines on the workspace call
/// now and then.
///
/// Thread safety: as safe as the store, which must be safe from several
/// threads. Errors: a store failure throws from `first_use` (and so from
/// parse_webhook / ingest_webhook); answer 5xx then, so Mailgun retries.
class MAILERS_API store_replay_cache final : public replay_cache {
public:
    store_replay_cache(std::shared_ptr<store> storage, std::string workspace);

protected:
    bool do_first_use(std::string_view token, time_point expires_at, time_point now) override;
    /// Forgets the token (store::forget_key).
    void do_release(std::string_view token) override;

private:
    std::shared_ptr<store> store_;
    std::string workspace_;
};

}  // namespace mailers
