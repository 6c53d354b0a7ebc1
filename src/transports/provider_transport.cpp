#include <mailers/provider_transport.hpp>

#include "core/post.hpp"

namespace mailers {

void provider_transport::send_impl(std::shared_ptr<const outbound> out, any_send_handler handler) {
    // Completion always goes through post() so a handler never runs inside
    // the initiating call, whatever the backend does.
    do_send(std::move(out), any_send_handler([h = std::move(handler), ex = ex_](
                                                 error_code ec, send_outcome outcome) mutable {
                detail::complete_later(ex, std::move(h), ec, std::move(outcome));
            }));
}

}  // namespace mailers
