// Completing a handler later, never inside the call that started it.
//
// Boost 1.81's any_completion_executor (what an any_completion_handler
// reports as its associated executor) cannot carry blocking.never, so
// posting to it may run the handler inline. Posting the bound handler to an
// io executor instead is always deferred, and asio::post then dispatches it
// to the handler's own associated executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <utility>

namespace mailers::detail {

template <class Handler, class... Args>
void complete_later(const boost::asio::any_io_executor& io, Handler&& handler, Args&&... args) {
    boost::asio::post(
        io, boost::asio::append(std::forward<Handler>(handler), std::forward<Args>(args)...));
}

}  // namespace mailers::detail
