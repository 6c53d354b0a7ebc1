// Providers kept in the store: a DSN per id, built into a transport by
// every engine of the workspace (at start and from the change feed), with
// the secrets its references name in that engine's own process.
#include <fmt/format.h>

#include <mailers/dsn.hpp>
#include <mailers/transport_factory.hpp>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"
#include "json/writer.hpp"

namespace mailers {
namespace {

using detail::fail;
using detail::has_crlf;

// The audit form: the DSN as dsn::to_string() prints it, which hides any
// secret even if a stored DSN somehow held one.
std::string audit_json(const stored_provider& p) {
    diagnostics ignored;
    auto parsed = parse_dsn(p.dsn, &ignored);
    std::string out;
    json::writer(out)
        .begin_object()
        .member("id", p.id)
        .member("dsn", parsed ? parsed->to_string() : std::string("(unreadable)"))
        .end_object();
    return out;
}

}  // namespace

void engine::impl::apply_provider_object(const stored_object& o) {
    auto p = detail::stored_provider_from_json(o.json);
    if (!p) {
        remove_provider_object(o.id);
        params.log.log(log_level::error,
                       fmt::format("provider '{}' in the store cannot be read; this process has "
                                   "no such provider until it is saved again",
                                   o.id));
        return;
    }
    p->active = false;
    if (!host_providers.count(p->id)) {
        diagnostics diag;
        auto t = make_transport(ex, p->dsn, params.log, &diag);
        if (t) {
            providers[p->id] = std::move(*t);
            p->active = true;
        } else {
            providers.erase(p->id);
            params.log.log(log_level::error,
                           fmt::format("provider '{}' in the store cannot be built in this "
                                       "process: {}; sends through it fail here",
                                       p->id, diag.message));
        }
    }
    saved_providers.insert_or_assign(p->id, std::move(*p));
}

void engine::impl::register_host_provider(const std::string& id,
                                          std::shared_ptr<provider_transport> t) {
    std::lock_guard lock(mu);
    providers[id] = std::move(t);
    host_providers.insert(id);
    if (auto it = saved_providers.find(id); it != saved_providers.end()) it->second.active = false;
}

void engine::impl::remove_provider_object(const std::string& id) {
    saved_providers.erase(id);
    if (!host_providers.count(id)) providers.erase(id);
}

void engine::save_provider(const principal& who, const std::string& id, std::string_view dsn_text) {
    if (id.empty() || has_crlf(id))
        fail(errc::invalid_argument, "provider id must be non-empty text");
    impl_->authorize(who, "provider.save", "provider", id);
    diagnostics diag;
    if (auto r = require_secret_references(dsn_text, &diag); !r)
        throw exception(r.error(), fmt::format("provider '{}': {}", id, diag.message));
    auto t = make_transport(impl_->ex, dsn_text, impl_->params.log, &diag);
    if (!t) throw exception(t.error(), fmt::format("provider '{}': {}", id, diag.message));

    stored_provider p{id, std::string(dsn_text), {}, impl_->clk->now(), false};
    p.created_at = p.updated_at;
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->saved_providers.find(id); it != impl_->saved_providers.end()) {
            before = audit_json(it->second);
            p.created_at = it->second.created_at;
        }
    }
    impl_->mutate(who, "provider.save", "provider", id, before, audit_json(p),
                  {store_ops::put_object{stored_object{"provider", id, detail::to_json(p)}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      p.active = !impl_->host_providers.count(id);
                      if (p.active) impl_->providers[id] = std::move(*t);
                      impl_->saved_providers.insert_or_assign(id, p);
                  });
}

void engine::remove_provider(const principal& who, const std::string& id) {
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->saved_providers.find(id);
        if (it == impl_->saved_providers.end())
            fail(errc::not_found, fmt::format("no stored provider '{}'", id));
        before = audit_json(it->second);
        std::string users;
        for (const auto& [mid, m] : impl_->mailboxes)
            if (m.cfg.provider == id && m.cfg.state != mailbox_state::retired)
                users += (users.empty() ? "" : ", ") + mid;
        if (!users.empty())
            fail(errc::invalid_argument,
                 fmt::format("provider '{}' is used by mailbox {}: retire it or move it to another "
                             "provider first",
                             id, users));
    }
    impl_->authorize(who, "provider.remove", "provider", id);
    impl_->mutate(who, "provider.remove", "provider", id, before, {},
                  {store_ops::delete_object{"provider", id}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->remove_provider_object(id);
                  });
}

std::vector<stored_provider> engine::stored_providers() const {
    std::lock_guard lock(impl_->mu);
    std::vector<stored_provider> out;
    out.reserve(impl_->saved_providers.size());
    for (const auto& [id, p] : impl_->saved_providers) out.push_back(p);
    return out;
}

}  // namespace mailers
