// JSON forms of configuration objects: what the store keeps and what the
// audit log records as before/after. Secrets never appear here.
#pragma once

#include <boost/system/result.hpp>
#include <mailers/campaign.hpp>
#include <mailers/engine.hpp>
#include <mailers/sequence.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mailers::detail {

std::string to_json(const mailbox_config& m);
std::string to_json(const pool_config& p);
std::string to_json(const quota& q);
std::string to_json(const suppression_entry& e);

boost::system::result<mailbox_config> mailbox_from_json(std::string_view json);
boost::system::result<pool_config> pool_from_json(std::string_view json);
boost::system::result<quota> quota_from_json(std::string_view json);

std::string quota_object_id(quota_scope scope, std::string_view key);
std::string pause_object_id(const pause_target& t);
/// The scope to_string(pause_scope) names, or nullopt.
std::optional<pause_scope> pause_scope_named(std::string_view name);
std::string to_json(const pause_info& p);
/// The definition as stored; reading it back does not validate it
/// (`sequence::compile` does).
std::string to_json(const sequence_config& s);
boost::system::result<sequence_config> sequence_config_from_json(std::string_view json);
boost::system::result<pause_info> pause_from_json(std::string_view json);
/// A started campaign (object "campaign"), without its recipients.
std::string to_json(const campaign_info& c);
boost::system::result<campaign_info> campaign_info_from_json(std::string_view json);

/// The workspace's suppression settings (object "settings"/"suppression"):
/// the folding rules its entries were normalised with, and the version of
/// the normaliser that made the keys.
struct suppression_settings {
    int normaliser = 0;
    suppression_options options;
    friend bool operator==(const suppression_settings&, const suppression_settings&) = default;
};
std::string to_json(const suppression_settings& s);
boost::system::result<suppression_settings> suppression_settings_from_json(std::string_view json);

}  // namespace mailers::detail
