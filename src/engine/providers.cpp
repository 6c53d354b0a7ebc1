// Providers kept in the store: a DSN per id, built into a transport by
// every engine of the workspace (at start and from the change feed), with
// the secrets its references name in that engine's own process.
#include <fmt/format.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <mailers/dsn.hpp>
#include <mailers/transport_factory.hpp>

#include "core/post.hpp"
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

namespace {

namespace asio = boost::asio;

// One provider check in flight. Its handler completes once: with the
// transport's outcome, or with operation_aborted when cancelled first. The
// transport's check starts on `strand`, and the cancellation sent to it is
// emitted there, so it never races the transport installing its handler.
struct provider_check_op : std::enable_shared_from_this<provider_check_op> {
    using handler_type = asio::any_completion_handler<void(error_code, provider_check)>;

    explicit provider_check_op(const asio::any_io_executor& e)
        : ex(e), strand(asio::make_strand(e)) {}

    asio::any_io_executor ex;
    asio::strand<asio::any_io_executor> strand;
    std::shared_ptr<detail::check_registry> registry;
    std::uint64_t key = 0;
    std::shared_ptr<provider_transport> transport;
    provider_check result;  // set before start()

    std::mutex mu;
    std::optional<handler_type> handler;  // under mu

    // On strand.
    asio::cancellation_signal to_transport;
    bool started = false, cancel_requested = false, transport_done = false;

    // Any thread; the first call completes the handler, later ones do nothing.
    void complete(error_code ec, provider_check r) {
        std::optional<handler_type> h;
        {
            std::lock_guard lock(mu);
            h.swap(handler);
        }
        if (!h) return;
        if (registry) {
            std::lock_guard lock(registry->mu);
            registry->aborts.erase(key);
        }
        detail::complete_later(ex, std::move(*h), ec, std::move(r));
    }

    // Any thread.
    void abort() {
        auto r = result;
        r.diag.message = "the check was cancelled";
        complete(make_error_code(errc::operation_aborted), std::move(r));
        asio::post(strand, [self = shared_from_this()] {
            self->cancel_requested = true;
            if (self->started && !self->transport_done)
                self->to_transport.emit(asio::cancellation_type::terminal);
        });
    }

    void start() {
        asio::post(strand, [self = shared_from_this()] {
            if (self->cancel_requested) return;  // aborted before it started
            self->started = true;
            self->transport->async_check(asio::bind_cancellation_slot(
                self->to_transport.slot(),
                asio::bind_executor(self->strand, [self](error_code ec, diagnostics d) {
                    self->transport_done = true;
                    auto r = self->result;
                    r.diag = std::move(d);
                    self->complete(ec, std::move(r));
                })));
        });
    }
};

}  // namespace

void engine::impl::abort_checks() {
    std::vector<std::function<void()>> live;
    {
        std::lock_guard lock(checks->mu);
        for (auto& [key, abort] : checks->aborts) live.push_back(abort);
    }
    for (auto& abort : live) abort();
}

void engine::async_check_impl(
    const std::shared_ptr<impl>& s, principal who, std::string id, std::string dsn,
    boost::asio::any_completion_handler<void(error_code, provider_check)> handler) {
    auto op = std::make_shared<provider_check_op>(s->ex);
    op->result.provider = id;
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    op->handler.emplace(std::move(handler));
    error_code ec;
    try {
        if (id.empty() && dsn.empty())
            fail(errc::invalid_argument, "a provider check needs a provider id or a DSN");
        s->authorize(who, "provider.check", id.empty() ? "workspace" : "provider", id);
        std::string stored;
        if (!id.empty()) {
            std::lock_guard lock(s->mu);
            if (auto it = s->providers.find(id); it != s->providers.end()) {
                op->transport = it->second;
                op->result.host_registered = s->host_providers.count(id) != 0;
            } else if (auto sp = s->saved_providers.find(id); sp != s->saved_providers.end()) {
                stored = sp->second.dsn;
            } else {
                fail(errc::not_found,
                     fmt::format("no provider '{}' in this engine: none registered, none stored",
                                 id));
            }
        }
        if (!op->transport && !id.empty()) {
            // Built again only to say why it could not be built at load.
            diagnostics diag;
            auto t = make_transport(s->ex, stored, s->params.log, &diag);
            fail(errc::invalid_argument,
                 fmt::format("provider '{}' is stored but cannot be built in this process: {}", id,
                             t ? std::string("it could not be when this engine loaded it; it "
                                             "can now, so save it again or restart the engine")
                               : diag.message));
        }
        if (!op->transport) {
            diagnostics diag;
            auto t = make_transport(s->ex, dsn, s->params.log, &diag);
            if (!t) fail(errc::invalid_argument, diag.message);
            op->transport = std::move(*t);
        }
        op->result.transport = op->transport->name();
    } catch (const exception& e) {
        ec = e.code();
        op->result.diag = e.diag();
    }
    if (!ec) {
        std::lock_guard lock(s->checks->mu);
        // cancel() sets `cancelled` before it reads the registry: a check
        // registered after that read sees it here.
        if (s->cancelled) {
            ec = make_error_code(errc::operation_aborted);
            op->result.diag.message = "the engine was cancelled";
        } else {
            op->registry = s->checks;
            op->key = ++s->checks->next;
            s->checks->aborts.emplace(op->key, [w = std::weak_ptr<provider_check_op>(op)] {
                if (auto o = w.lock()) o->abort();
            });
        }
    }
    if (ec) return op->complete(ec, op->result);
    if (slot.is_connected())
        slot.assign(
            [w = std::weak_ptr<provider_check_op>(op)](boost::asio::cancellation_type) {
                if (auto o = w.lock()) o->abort();
            });
    op->start();
}

std::vector<stored_provider> engine::stored_providers() const {
    std::lock_guard lock(impl_->mu);
    std::vector<stored_provider> out;
    out.reserve(impl_->saved_providers.size());
    for (const auto& [id, p] : impl_->saved_providers) out.push_back(p);
    return out;
}

}  // namespace mailers
