// Giving back a replay token when a request's events were not applied.
#pragma once

#include <mailers/logger.hpp>
#include <mailers/webhook.hpp>
#include <string_view>

namespace mailers::webhooks {

/// Releases `token` (webhook_result::replay_token) from the replay cache
/// of `params`, for a request whose events could not be applied; "" or no
/// cache does nothing. A failure to release is logged (error), not thrown:
/// the caller is already answering the apply's failure, and the provider's
/// retry is then refused as a replay, as it was before release existed.
void release_replay_token(const webhook_params& params, std::string_view token, const logger& log);

}  // namespace mailers::webhooks
