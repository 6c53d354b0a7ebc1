// A transport that writes each message to a folder as an .eml file, for
// demos and for looking at exactly what would have gone out.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <filesystem>
#include <mailers/config.hpp>
#include <mailers/mime.hpp>
#include <mailers/provider_transport.hpp>
#include <string_view>

namespace mailers {

/// Renders each message with `render_message` and writes the octets to
/// `<folder>/<timestamp>-<seq>-<message-id>.eml`, where `timestamp` is UTC
/// (`20261127T232025.123456Z`), `seq` counts sends across every
/// `file_transport` in the process, and `message-id` is the rendered
/// Message-ID with every character other than letters, digits and `.-_+@`
/// replaced by `_`. Names sort by time of sending and never repeat within a
/// process. The folder is created when missing, at every send, so it may be
/// deleted between sends.
///
/// The file holds the rendered message only; the envelope (and so the Bcc
/// recipients) is not written.
///
/// Each file is written under a `.tmp` name and renamed into place, so a
/// reader watching the folder for `*.eml` never sees a partial message. The
/// files are not flushed to stable storage: this transport is not a queue.
///
/// Completion: success carries the file name (without the folder) as
/// `provider_message_id`. A message that does not render completes with the
/// render error (an `errc` value such as `errc::invalid_address`). A failed
/// create, write or rename completes with `transport_errc::temporary_reply`
/// and `diag.message` naming the path and the system error; the partial file
/// is removed, so nothing was sent.
///
/// Blocking: the rendering and the file I/O run synchronously inside
/// `async_send`, on the calling thread. That is acceptable for tests and
/// demos; do not send through it from a thread that serves latency-sensitive
/// work.
///
/// Thread safety: `async_send` may be called concurrently from any thread.
///
/// Executor: the handler runs on its associated executor, else on the
/// executor given to the constructor; never inside `async_send`.
///
/// Lifetime: the transport must outlive the operations started on it.
class MAILERS_API file_transport final : public provider_transport {
public:
    file_transport(boost::asio::any_io_executor ex, std::filesystem::path folder,
                   render_options opts = {});

    std::string_view name() const noexcept override { return "file"; }

    const std::filesystem::path& folder() const noexcept { return folder_; }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;

private:
    std::filesystem::path folder_;
    render_options opts_;
};

}  // namespace mailers
