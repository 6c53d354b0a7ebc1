#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/system/error_code.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <mailers/transports/file_transport.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace mailers {
namespace {

// Shared by every instance so two transports on one folder cannot pick the
// same name within a microsecond.
std::atomic<std::uint64_t> g_sequence{0};

constexpr std::size_t max_id_chars = 100;

bool iequals_prefix(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != prefix[i]) return false;
    }
    return true;
}

// The Message-ID value as rendered (unfolded, without <>), or "" when the
// header section has none.
std::string rendered_message_id(std::string_view bytes) {
    const auto header_end = bytes.find("\r\n\r\n");
    const std::string_view headers = bytes.substr(0, header_end);
    std::size_t pos = 0;
    while (pos < headers.size()) {
        auto eol = headers.find("\r\n", pos);
        if (eol == std::string_view::npos) eol = headers.size();
        std::string_view line = headers.substr(pos, eol - pos);
        pos = eol + 2;
        if (!iequals_prefix(line, "message-id:")) continue;
        std::string value(line.substr(11));
        // A long id may have been folded onto continuation lines.
        while (pos < headers.size() && (headers[pos] == ' ' || headers[pos] == '\t')) {
            eol = headers.find("\r\n", pos);
            if (eol == std::string_view::npos) eol = headers.size();
            value += headers.substr(pos, eol - pos);
            pos = eol + 2;
        }
        std::string id;
        for (char c : value) {
            if (c != ' ' && c != '\t' && c != '<' && c != '>') id += c;
        }
        return id;
    }
    return {};
}

std::string sanitise(std::string_view id) {
    std::string out;
    for (char c : id.substr(0, max_id_chars)) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' || c == '+' ||
                          c == '@';
        out += keep ? c : '_';
    }
    return out.empty() ? std::string("no-message-id") : out;
}

std::string file_name_for(std::string_view rendered) {
    const auto now =
        std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
    const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
    const auto micros = (now - secs).count();
    const std::time_t t = std::chrono::system_clock::to_time_t(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    const auto seq = g_sequence.fetch_add(1, std::memory_order_relaxed) + 1;
    char prefix[64];
    std::snprintf(prefix, sizeof prefix, "%04d%02d%02dT%02d%02d%02d.%06lldZ-%06llu-",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(micros), static_cast<unsigned long long>(seq));
    return prefix + sanitise(rendered_message_id(rendered)) + ".eml";
}

send_outcome io_failure(std::string_view what, const std::filesystem::path& path, int err) {
    send_outcome o;
    o.diag.message = "file_transport: cannot " + std::string(what) + " '" + path.string() +
                     "': " + boost::system::generic_category().message(err);
    return o;
}

// Writes `data` to a new file at `path`; returns 0 or the errno of the first
// failure, having removed whatever was created.
int write_new_file(const std::filesystem::path& path, std::string_view data) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    int err = 0;
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    // close() reports deferred write errors on some file systems (NFS).
    if (::close(fd) != 0 && err == 0) err = errno;
    if (err != 0) ::unlink(path.c_str());
    return err;
}

}  // namespace

file_transport::file_transport(boost::asio::any_io_executor ex, std::filesystem::path folder,
                               render_options opts)
    : provider_transport(std::move(ex)), folder_(std::move(folder)), opts_(std::move(opts)) {}

void file_transport::do_send(std::shared_ptr<const outbound> out, any_send_handler handler) {
    // Pre-rendered bytes are written as the host made them.
    auto rendered = out->raw.empty() ? render_message(out->msg, opts_)
                                     : boost::system::result<std::string>(out->raw);
    if (!rendered) {
        send_outcome o;
        o.diag.message =
            "file_transport: the message does not render: " + rendered.error().message();
        std::move(handler)(rendered.error(), std::move(o));
        return;
    }
    const auto fail = make_error_code(transport_errc::temporary_reply);

    std::error_code fs_ec;
    std::filesystem::create_directories(folder_, fs_ec);
    if (fs_ec) {
        std::move(handler)(fail, io_failure("create folder", folder_, fs_ec.value()));
        return;
    }

    const std::string name = file_name_for(*rendered);
    const auto final_path = folder_ / name;
    auto tmp_path = final_path;
    tmp_path += ".tmp";

    if (const int err = write_new_file(tmp_path, *rendered); err != 0) {
        std::move(handler)(fail, io_failure("write", tmp_path, err));
        return;
    }
    if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp_path.c_str());
        std::move(handler)(fail, io_failure("rename into", final_path, err));
        return;
    }
    send_outcome o;
    o.provider_message_id = name;
    std::move(handler)(error_code{}, std::move(o));
}

}  // namespace mailers
