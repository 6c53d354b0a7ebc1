// Everything mailers offers, in one include.
#pragma once

#include <mailers/address.hpp>
#include <mailers/audit.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/dsn.hpp>
#include <mailers/engine.hpp>
#include <mailers/error.hpp>
#include <mailers/event.hpp>
#include <mailers/logger.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/message.hpp>
#include <mailers/mime.hpp>
#include <mailers/pool.hpp>
#include <mailers/principal.hpp>
#include <mailers/provider_transport.hpp>
#include <mailers/quota.hpp>
#include <mailers/rotation_policy.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>
#include <mailers/template.hpp>
#include <mailers/transport_factory.hpp>
#include <mailers/transports.hpp>
#include <mailers/webhook.hpp>
#include <mailers/with_result.hpp>
