// Building transports from DSN strings, so moving volume between providers
// is a configuration change:
//
//   smtp://user:pass@smtp.example.com:587        smtps://user:pass@host:465
//   ses+smtp://..., sendgrid+smtp://..., postmark+smtp://..., mailgun+smtp://...
//   ses+api://KEY:SECRET@default?region=eu-west-1
//   sendgrid+api://KEY@default                   postmark+api://TOKEN@default?stream=outbound
//   mailgun+api://KEY:DOMAIN@default?region=eu   gmail+api://...   graph+api://...
//   null://null        capture://capture        file:///var/spool/mailers
//   failover(postmark+api://... sendgrid+api://...)   roundrobin(a b c)
//
// Secret references (`env:NAME`, `file:/path`) are resolved here. Errors name
// the part that is wrong and never contain a secret; an unknown scheme lists
// the supported ones.
#pragma once

#include <boost/system/result.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/logger.hpp>
#include <mailers/provider_transport.hpp>
#include <memory>
#include <string_view>

namespace mailers {

/// Builds the transport a DSN names (composites included). Returns
/// errc::invalid_argument with `diag->message` saying what is wrong.
MAILERS_API boost::system::result<std::shared_ptr<provider_transport>> make_transport(
    boost::asio::any_io_executor ex, std::string_view dsn_text, diagnostics* diag = nullptr);

/// The same, with the SMTP and HTTP transports it builds (the children of
/// a composite included) logging through `log`. `engine::add_provider`
/// passes `engine_params::log` here.
MAILERS_API boost::system::result<std::shared_ptr<provider_transport>> make_transport(
    boost::asio::any_io_executor ex, std::string_view dsn_text, const logger& log,
    diagnostics* diag = nullptr);

/// Refuses a DSN that holds a secret inline, for DSNs kept in a store
/// (engine::save_provider): every field that carries a credential must be
/// an `env:NAME` or `file:/path` reference, or empty. Those fields are the
/// password (except mailgun+api's, which is the sending domain), the user
/// where it is the key (sendgrid+api, postmark+api, mailgun+api, and
/// sendgrid+smtp / postmark+smtp without a password), and the secret
/// options (is_secret_option()). Returns errc::invalid_argument with
/// `diag->message` naming the scheme and the field, never its value; a DSN
/// that does not parse fails as parse_dsn() does.
MAILERS_API boost::system::result<void> require_secret_references(std::string_view dsn_text,
                                                                  diagnostics* diag = nullptr);

}  // namespace mailers
