// The HTTP API transports against a fake provider written here with Beast,
// on 127.0.0.1, that checks what each provider checks (method, path, auth
// header, SigV4 signature recomputed from the received request, JWT
// signature, required JSON and form fields) and replays each provider's
// documented success and error replies. Also: keep-alive and connection
// limits, every failure phase (refused, stalled write, lost or late reply,
// garbage), TLS with a throwaway CA and wrong certificates, OAuth token
// caching and refresh, Graph's per-mailbox concurrency, and a throughput
// figure.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <simdjson.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mailers/engine.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transports/http_transports.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "http/sigv4.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

using mailers::error_code;
using mailers::failure;
using mailers::outbound;
using mailers::send_outcome;
using mailers::transport_errc;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------
// Small helpers

std::string b64decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=' || c == '\r' || c == '\n') continue;
        const int v = val(c);
        if (v < 0) return "<invalid base64>";
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return out;
}

std::string b64encode(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()),
                                  static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string form_value(std::string_view body, std::string_view name) {
    std::size_t pos = 0;
    while (pos <= body.size()) {
        const auto amp = body.find('&', pos);
        const auto pair = body.substr(pos, amp == std::string_view::npos ? amp : amp - pos);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            std::string out;
            const auto v = pair.substr(eq + 1);
            for (std::size_t i = 0; i < v.size(); ++i) {
                if (v[i] == '%' && i + 2 < v.size()) {
                    out +=
                        static_cast<char>(std::stoi(std::string(v.substr(i + 1, 2)), nullptr, 16));
                    i += 2;
                } else {
                    out += v[i] == '+' ? ' ' : v[i];
                }
            }
            return out;
        }
        if (amp == std::string_view::npos) break;
        pos = amp + 1;
    }
    return {};
}

struct json_doc {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    bool ok = false;
    explicit json_doc(const std::string& text) {
        ok = parser.parse(text).get(root) == simdjson::SUCCESS;
    }
    std::string str(std::string_view pointer) {
        std::string_view s;
        if (root.at_pointer(pointer).get(s) != simdjson::SUCCESS) return "<missing>";
        return std::string(s);
    }
    bool has(std::string_view pointer) {
        simdjson::dom::element e;
        return root.at_pointer(pointer).get(e) == simdjson::SUCCESS;
    }
};

// ---------------------------------------------------------------------------
// The fake provider

struct received {
    std::string method;
    std::string target;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    std::string header(const std::string& n) const {
        auto it = headers.find(n);
        return it == headers.end() ? std::string{} : it->second;
    }
};

struct reply {
    unsigned status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::chrono::milliseconds delay{0};
    enum class act {
        respond,
        close_without_reply,
        garbage,
        respond_then_close,
        truncated_body  // the status line and headers, then half the body, then a close
    } action = act::respond;
    std::string hold_key;  // counted as in flight for this key while delayed
};

class fake_server {
public:
    using handler = std::function<reply(const received&)>;

    explicit fake_server(handler h, asio::ssl::context* tls = nullptr)
        : handler_(std::move(h)),
          tls_(tls),
          acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        port_ = acceptor_.local_endpoint().port();
        asio::co_spawn(ioc_, accept_loop(), asio::detached);
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~fake_server() {
        asio::post(ioc_, [this] {
            beast::error_code ec;
            acceptor_.close(ec);
            ioc_.stop();
        });
        thread_.join();
    }

    std::string url() const {
        return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
    }
    std::uint16_t port() const { return port_; }

    std::vector<received> requests() {
        std::lock_guard lock(mu_);
        return requests_;
    }
    std::size_t request_count() {
        std::lock_guard lock(mu_);
        return requests_.size();
    }
    int connections() const { return connections_.load(); }
    std::string last_sni() {
        std::lock_guard lock(mu_);
        return last_sni_;
    }
    int max_open_connections() const { return max_open_.load(); }
    int max_in_flight(const std::string& key) {
        std::lock_guard lock(mu_);
        return max_in_flight_[key];
    }
    // Accept connections but never read from them (the client's write stalls).
    std::atomic<bool> stall_reading{false};

private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
            if (ec) co_return;
            ++connections_;
            asio::co_spawn(ioc_, session(std::move(sock)), asio::detached);
        }
    }

    asio::awaitable<void> session(tcp::socket sock) {
        const int open = ++open_;
        for (int m = max_open_.load(); open > m && !max_open_.compare_exchange_weak(m, open);) {
        }
        if (tls_) {
            beast::ssl_stream<beast::tcp_stream> s(beast::tcp_stream(std::move(sock)), *tls_);
            auto [ec] = co_await s.async_handshake(asio::ssl::stream_base::server, use_tuple);
            if (const char* sni =
                    SSL_get_servername(s.native_handle(), TLSEXT_NAMETYPE_host_name)) {
                std::lock_guard lock(mu_);
                last_sni_ = sni;
            }
            if (!ec) co_await serve(s);
        } else {
            beast::tcp_stream s(std::move(sock));
            co_await serve(s);
        }
        --open_;
    }

    template <class Stream>
    asio::awaitable<void> serve(Stream& s) {
        beast::flat_buffer buf;
        if (stall_reading) {
            asio::steady_timer t(ioc_, 30s);
            co_await t.async_wait(use_tuple);
            co_return;
        }
        for (;;) {
            bhttp::request_parser<bhttp::string_body> parser;
            parser.body_limit(64 * 1024 * 1024);
            auto [ec, n] = co_await bhttp::async_read(s, buf, parser, use_tuple);
            if (ec) co_return;
            auto msg = parser.release();
            received r;
            r.method = std::string(msg.method_string());
            r.target = std::string(msg.target());
            for (const auto& f : msg) {
                std::string name(f.name_string());
                for (auto& c : name)
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                r.headers[name] = std::string(f.value());
            }
            r.body = std::move(msg.body());
            reply rep = handler_(r);
            {
                std::lock_guard lock(mu_);
                requests_.push_back(std::move(r));
                if (!rep.hold_key.empty()) {
                    const int now = ++in_flight_[rep.hold_key];
                    max_in_flight_[rep.hold_key] = std::max(max_in_flight_[rep.hold_key], now);
                }
            }
            if (rep.delay.count() > 0) {
                asio::steady_timer t(ioc_, rep.delay);
                co_await t.async_wait(use_tuple);
            }
            if (!rep.hold_key.empty()) {
                std::lock_guard lock(mu_);
                --in_flight_[rep.hold_key];
            }
            if (rep.action == reply::act::close_without_reply) co_return;
            if (rep.action == reply::act::garbage) {
                static const std::string junk = "SMTP/1.0 here is not HTTP\r\n\r\n";
                co_await asio::async_write(s, asio::buffer(junk), use_tuple);
                co_return;
            }
            if (rep.action == reply::act::truncated_body) {
                const std::string head = "HTTP/1.1 " + std::to_string(rep.status) +
                                         " OK\r\nContent-Type: application/json\r\n"
                                         "Content-Length: " +
                                         std::to_string(rep.body.size()) + "\r\n\r\n";
                const std::string part = head + rep.body.substr(0, rep.body.size() / 2);
                co_await asio::async_write(s, asio::buffer(part), use_tuple);
                co_return;
            }
            bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(rep.status), 11};
            for (const auto& [k, v] : rep.headers) res.set(k, v);
            if (!rep.body.empty() && res.find(bhttp::field::content_type) == res.end())
                res.set(bhttp::field::content_type,
                        rep.body.front() == '{' ? "application/json" : "text/plain");
            res.body() = rep.body;
            res.keep_alive(true);
            res.prepare_payload();
            auto [wec, wn] = co_await bhttp::async_write(s, res, use_tuple);
            if (wec || rep.action == reply::act::respond_then_close) co_return;
        }
    }

    handler handler_;
    asio::ssl::context* tls_;
    asio::io_context ioc_;
    tcp::acceptor acceptor_;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::mutex mu_;
    std::vector<received> requests_;
    std::string last_sni_;
    std::map<std::string, int> in_flight_;
    std::map<std::string, int> max_in_flight_;
    std::atomic<int> connections_{0};
    std::atomic<int> open_{0};
    std::atomic<int> max_open_{0};
};

reply json_reply(unsigned status, std::string body,
                 std::vector<std::pair<std::string, std::string>> headers = {}) {
    reply r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
}

reply refuse(std::string why) {
    MESSAGE("fake provider refused: " << why);
    return json_reply(400, R"({"fake_server_refused":")" + why + "\"}");
}

// ---------------------------------------------------------------------------
// The client side

struct sent {
    error_code ec;
    send_outcome out;
};

std::shared_ptr<outbound> make_out(std::string to_local = "ann") {
    auto o = std::make_shared<outbound>();
    o->msg.from = {"rep", "brand.example", "Rep One"};
    o->msg.to = {{to_local, "example.com", "Ann Example"}};
    o->msg.subject = "Quarterly numbers";
    o->msg.text = "Hello Ann,\nthe numbers are in.\n";
    o->msg.html = "<p>Hello Ann, the numbers are in.</p>";
    o->env = mailers::envelope::from_message(o->msg);
    o->send_id = "42";
    return o;
}

sent send_one(asio::io_context& ioc, mailers::provider_transport& t,
              std::shared_ptr<const outbound> o) {
    std::optional<sent> r;
    t.async_send(std::move(o), [&](error_code ec, send_outcome so) {
        r = sent{ec, std::move(so)};
    });
    ioc.restart();
    while (!r && ioc.run_one_for(30s)) {
    }
    REQUIRE(r);
    return std::move(*r);
}

std::vector<sent> send_many(asio::io_context& ioc, mailers::provider_transport& t,
                            const std::vector<std::shared_ptr<outbound>>& outs) {
    std::vector<std::optional<sent>> results(outs.size());
    std::size_t done = 0;
    for (std::size_t i = 0; i < outs.size(); ++i)
        t.async_send(outs[i], [&, i](error_code ec, send_outcome so) {
            results[i] = sent{ec, std::move(so)};
            ++done;
        });
    ioc.restart();
    while (done < outs.size() && ioc.run_one_for(60s)) {
    }
    REQUIRE(done == outs.size());
    std::vector<sent> v;
    for (auto& r : results) v.push_back(std::move(*r));
    return v;
}

mailers::http_client_params test_http() {
    mailers::http_client_params h;
    h.timeouts.connect = 5s;
    h.timeouts.handshake = 5s;
    h.timeouts.write = 10s;
    h.timeouts.response = 10s;
    return h;
}

// Postmark with the server token "k" that postmark_check(r, "k") expects.
mailers::postmark_params postmark_at(std::string endpoint, mailers::http_client_params http = {}) {
    mailers::postmark_params p;
    p.server_token = mailers::secret("k");
    p.endpoint = std::move(endpoint);
    p.http = std::move(http);
    return p;
}

// ---------------------------------------------------------------------------
// Provider checks, as the real services make them

constexpr const char* aws_key_id = "AKIDEXAMPLE";
constexpr const char* aws_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// Recomputes the SigV4 signature from the request as received.
std::string check_sigv4(const received& r, const std::string& region) {
    const auto auth = r.header("authorization");
    const std::string prefix = "AWS4-HMAC-SHA256 Credential=";
    if (!auth.starts_with(prefix)) return "no SigV4 Authorization header";
    const auto cred_end = auth.find(',');
    const auto credential = auth.substr(prefix.size(), cred_end - prefix.size());
    const auto sh = auth.find("SignedHeaders=");
    const auto sig = auth.find("Signature=");
    if (sh == std::string::npos || sig == std::string::npos) return "malformed Authorization";
    const auto signed_names = auth.substr(sh + 14, auth.find(',', sh) - sh - 14);
    const auto signature = auth.substr(sig + 10);
    const auto amz_date = r.header("x-amz-date");
    if (credential !=
        std::string(aws_key_id) + "/" + amz_date.substr(0, 8) + "/" + region + "/ses/aws4_request")
        return "credential scope " + credential;
    std::vector<std::string> names;
    for (std::size_t p = 0; p <= signed_names.size();) {
        auto e = signed_names.find(';', p);
        names.push_back(signed_names.substr(p, e == std::string::npos ? e : e - p));
        if (e == std::string::npos) break;
        p = e + 1;
    }
    for (const char* must : {"host", "x-amz-date"})
        if (std::find(names.begin(), names.end(), must) == names.end())
            return std::string(must) + " not signed";
    std::vector<mailers::sigv4::header> hs;
    for (const auto& n : names) hs.push_back({n, r.headers.at(n)});
    const auto hash = mailers::sigv4::sha256_hex(r.body);
    mailers::sigv4::request req;
    req.method = r.method;
    req.path = r.target;
    req.headers = hs;
    req.payload_hash = hash;
    mailers::sigv4::params p;
    p.access_key_id = aws_key_id;
    p.secret_access_key = aws_secret;
    p.region = region;
    p.service = "ses";
    p.amz_date = amz_date;
    auto s = mailers::sigv4::sign(req, p);
    if (!s) return "cannot recompute";
    if (s->signature != signature) return "signature does not match";
    return {};
}

// SES v2 SendEmail: the checks, then the documented reply.
reply ses_check(const received& r, const std::string& region) {
    if (r.method != "POST" || r.target != "/v2/email/outbound-emails") return refuse("ses path");
    if (auto why = check_sigv4(r, region); !why.empty())
        return json_reply(
            403,
            R"({"message":"The request signature we calculated does not match the signature you provided."})",
            {{"x-amzn-ErrorType", "InvalidSignatureException"}});
    if (r.header("content-type") != "application/json") return refuse("ses content type");
    json_doc j(r.body);
    if (!j.ok || j.str("/FromEmailAddress") == "<missing>" ||
        j.str("/Destination/ToAddresses/0") == "<missing>")
        return json_reply(400, R"({"message":"Missing required field"})",
                          {{"x-amzn-ErrorType", "BadRequestException"}});
    const auto mime = b64decode(j.str("/Content/Raw/Data"));
    if (mime.find("\r\nSubject: ") == std::string::npos)
        return refuse("ses raw content is not MIME");
    return json_reply(200, R"({"MessageId":"0100018c-ses-message-id-000000"})",
                      {{"x-amzn-RequestId", "req-ses-1"}});
}

std::map<std::string, std::vector<std::string>> multipart_fields(const received& r) {
    std::map<std::string, std::vector<std::string>> out;
    const auto ct = r.header("content-type");
    const auto bpos = ct.find("boundary=");
    if (!ct.starts_with("multipart/form-data") || bpos == std::string::npos) return out;
    const std::string delim = "--" + ct.substr(bpos + 9);
    std::size_t pos = r.body.find(delim);
    while (pos != std::string::npos) {
        pos += delim.size();
        if (r.body.compare(pos, 2, "--") == 0) break;
        pos += 2;  // CRLF
        const auto head_end = r.body.find("\r\n\r\n", pos);
        const auto head = r.body.substr(pos, head_end - pos);
        const auto next = r.body.find("\r\n" + delim, head_end);
        const auto content = r.body.substr(head_end + 4, next - head_end - 4);
        const auto np = head.find("name=\"");
        const auto name = head.substr(np + 6, head.find('"', np + 6) - np - 6);
        out[name].push_back(content);
        pos = next == std::string::npos ? next : next + 2;
    }
    return out;
}

reply mailgun_check(const received& r, const std::string& key, const std::string& domain) {
    if (r.method != "POST" || r.target != "/v3/" + domain + "/messages.mime")
        return json_reply(404, R"({"message":"Domain not found: )" + domain + "\"}");
    if (r.header("authorization") != "Basic " + b64encode("api:" + key))
        return json_reply(401, "Forbidden");
    auto f = multipart_fields(r);
    if (f["to"].empty()) return json_reply(400, R"({"message":"'to' parameter is missing"})");
    if (f["message"].size() != 1 || f["message"][0].find("\r\nSubject: ") == std::string::npos)
        return json_reply(400, R"({"message":"'message' parameter is missing"})");
    return json_reply(
        200,
        R"({"id":"<20300101120000.1.ABCDEF@mg.brand.example>","message":"Queued. Thank you."})");
}

reply sendgrid_check(const received& r, const std::string& key) {
    if (r.method != "POST" || r.target != "/v3/mail/send") return json_reply(404, "");
    if (r.header("authorization") != "Bearer " + key)
        return json_reply(
            401,
            R"({"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]})");
    json_doc j(r.body);
    if (!j.ok || j.str("/personalizations/0/to/0/email") == "<missing>" ||
        j.str("/from/email") == "<missing>" || j.str("/subject") == "<missing>" ||
        j.str("/content/0/type") != "text/plain")
        return json_reply(400,
                          R"({"errors":[{"message":"Bad Request","field":null,"help":null}]})");
    reply ok;
    ok.status = 202;
    ok.headers = {{"X-Message-Id", "sg-message-id-1"}};
    return ok;
}

reply postmark_check(const received& r, const std::string& token) {
    if (r.method != "POST" || r.target != "/email") return json_reply(404, "");
    if (r.header("x-postmark-server-token") != token)
        return json_reply(
            401,
            R"({"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."})");
    if (r.header("accept") != "application/json" || r.header("content-type") != "application/json")
        return json_reply(415, R"({"ErrorCode":409,"Message":"JSON required."})");
    json_doc j(r.body);
    if (!j.ok || j.str("/From") == "<missing>" || j.str("/To") == "<missing>" ||
        j.str("/MessageStream") == "<missing>" || (!j.has("/TextBody") && !j.has("/HtmlBody")))
        return json_reply(422, R"({"ErrorCode":300,"Message":"Invalid email request"})");
    return json_reply(
        200,
        R"({"To":"ann@example.com","SubmittedAt":"2030-01-01T12:00:00.0000000-05:00","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","ErrorCode":0,"Message":"OK"})");
}

// ---------------------------------------------------------------------------
// TLS material, made once per run with the openssl tool

struct pki {
    fs::path dir;
    bool ok = false;
    std::string path(const char* f) const { return (dir / f).string(); }
};

const pki& certificates() {
    static const pki p = [] {
        pki t;
        t.dir = fs::temp_directory_path() / ("mailers-http-pki-" + std::to_string(::getpid()));
        fs::remove_all(t.dir);
        fs::create_directories(t.dir);
        std::ofstream(t.dir / "good.ext")
            << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n";
        std::ofstream(t.dir / "wrongname.ext")
            << "subjectAltName=DNS:other.example\nbasicConstraints=CA:FALSE\n";
        const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
        const std::string cmd =
            "cd '" + t.dir.string() +
            "' && "
            "openssl req -x509" +
            key +
            "-keyout ca.key -out ca.pem -days 1 -subj '/CN=mailers http test CA' "
            "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
            ">/dev/null 2>&1 && "
            "openssl req" +
            key +
            "-keyout good.key -out good.csr -subj '/CN=127.0.0.1' >/dev/null 2>&1 && "
            "openssl x509 -req -in good.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
            "-extfile good.ext -out good.pem >/dev/null 2>&1 && "
            "openssl req" +
            key +
            "-keyout wrongname.key -out wrongname.csr -subj '/CN=other.example' >/dev/null 2>&1 && "
            "openssl x509 -req -in wrongname.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
            "-extfile wrongname.ext -out wrongname.pem >/dev/null 2>&1 && "
            "openssl req -x509" +
            key +
            "-keyout self.key -out self.pem -days 1 -subj '/CN=127.0.0.1' "
            "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1";
        t.ok = std::system(cmd.c_str()) == 0;
        return t;
    }();
    return p;
}

std::unique_ptr<asio::ssl::context> server_tls(const pki& p, const char* name) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->use_certificate_chain_file(p.path((std::string(name) + ".pem").c_str()));
    ctx->use_private_key_file(p.path((std::string(name) + ".key").c_str()),
                              asio::ssl::context::pem);
    return ctx;
}

// ---------------------------------------------------------------------------
// OAuth: an RSA service-account key, and the token endpoint's checks

struct rsa_key {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{EVP_RSA_gen(2048), EVP_PKEY_free};
    std::string pem() const {
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
        PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        char* data = nullptr;
        const long len = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<std::size_t>(len));
    }
    bool verify(std::string_view input, std::string_view sig) const {
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                    EVP_MD_CTX_free);
        return EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
               EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                                sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                                input.size()) == 1;
    }
};

const rsa_key& service_account_key() {
    static const rsa_key k;
    return k;
}

// A token endpoint and API that issue and check bearer tokens.
struct token_authority {
    std::mutex mu;
    std::map<std::string, std::string> issued;  // token -> subject
    int issued_count = 0;
    int expires_in = 3599;
    std::string refuse_grant;  // when set, the token endpoint answers this OAuth error
    std::string token_url;

    std::string issue(const std::string& subject) {
        std::lock_guard lock(mu);
        const auto t = "ya29.token-" + std::to_string(++issued_count);
        issued[t] = subject;
        return t;
    }
    std::optional<std::string> subject_of(const received& r) {
        const auto auth = r.header("authorization");
        if (!auth.starts_with("Bearer ")) return std::nullopt;
        std::lock_guard lock(mu);
        auto it = issued.find(auth.substr(7));
        if (it == issued.end()) return std::nullopt;
        return it->second;
    }
    void revoke_all() {
        std::lock_guard lock(mu);
        issued.clear();
    }
    reply token_reply(const std::string& subject) {
        const auto tok = issue(subject);
        return json_reply(200, R"({"access_token":")" + tok + R"(","expires_in":)" +
                                   std::to_string(expires_in) + R"(,"token_type":"Bearer"})");
    }

    // Google's JWT-bearer grant: the assertion must verify with the service
    // account's public key and carry its claims.
    reply google_token(const received& r) {
        if (!refuse_grant.empty())
            return json_reply(400, R"({"error":")" + refuse_grant +
                                       R"(","error_description":"Invalid JWT Signature."})");
        if (r.header("content-type") != "application/x-www-form-urlencoded")
            return refuse("token content type");
        if (form_value(r.body, "grant_type") == "refresh_token") {
            if (form_value(r.body, "client_id") != "cid.apps.googleusercontent.com" ||
                form_value(r.body, "client_secret") != "csecret" ||
                form_value(r.body, "refresh_token") != "1//refresh")
                return json_reply(400,
                                  R"({"error":"invalid_grant","error_description":"Bad Request"})");
            return token_reply("me");
        }
        if (form_value(r.body, "grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer")
            return refuse("grant_type");
        const auto jwt = form_value(r.body, "assertion");
        const auto d1 = jwt.find('.');
        const auto d2 = jwt.find('.', d1 + 1);
        if (d2 == std::string::npos) return refuse("assertion is not a JWT");
        if (b64decode(jwt.substr(0, d1)) != R"({"alg":"RS256","typ":"JWT"})")
            return refuse("JWT header");
        if (!service_account_key().verify(jwt.substr(0, d2), b64decode(jwt.substr(d2 + 1))))
            return json_reply(
                400, R"({"error":"invalid_grant","error_description":"Invalid JWT Signature."})");
        json_doc claims(b64decode(jwt.substr(d1 + 1, d2 - d1 - 1)));
        std::int64_t iat = 0, exp = 0;
        if (claims.root["iat"].get(iat) != simdjson::SUCCESS ||
            claims.root["exp"].get(exp) != simdjson::SUCCESS)
            return refuse("JWT without iat or exp");
        if (claims.str("/iss") != "mailer@project.iam.gserviceaccount.com" ||
            claims.str("/scope") != "https://www.googleapis.com/auth/gmail.send" ||
            claims.str("/aud") != token_url || exp - iat != 3600)
            return json_reply(
                400, R"({"error":"invalid_grant","error_description":"Invalid JWT claims."})");
        return token_reply(claims.str("/sub"));
    }

    reply microsoft_token(const received& r) {
        if (r.target != "/tenant-1/oauth2/v2.0/token")
            return json_reply(400, R"({"error":"invalid_request"})");
        if (form_value(r.body, "grant_type") != "client_credentials" ||
            form_value(r.body, "client_id") != "app-id" ||
            form_value(r.body, "scope") != "https://graph.microsoft.com/.default")
            return json_reply(400, R"({"error":"invalid_request"})");
        if (form_value(r.body, "client_secret") != "app-secret")
            return json_reply(
                401,
                R"({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."})");
        return token_reply("app");
    }
};

}  // namespace

// ===========================================================================

TEST_CASE("SES v2: SigV4-signed raw SendEmail, tags and configuration set, documented errors") {
    std::string mode = "ok";
    std::string last_body;
    fake_server srv([&](const received& r) {
        last_body = r.body;
        reply ok = ses_check(r, "eu-west-1");
        if (ok.status != 200 || mode == "ok") return ok;
        if (mode == "quota")
            return json_reply(
                400, R"({"message":"Daily message quota exceeded."})",
                {{"x-amzn-ErrorType",
                  "LimitExceededException:http://internal.amazon.com/coral/com.amazonaws.sesv2/"}});
        if (mode == "throttle")
            return json_reply(
                429, R"({"message":"Maximum sending rate exceeded."})",
                {{"x-amzn-ErrorType", "TooManyRequestsException"}, {"Retry-After", "2"}});
        if (mode == "unverified")
            return json_reply(
                400,
                R"({"message":"Email address is not verified. The following identities failed the check in region EU-WEST-1: rep@brand.example"})",
                {{"x-amzn-ErrorType", "MessageRejected"}});
        return json_reply(400, R"({"message":"Your account has been suspended."})",
                          {{"x-amzn-ErrorType", "AccountSuspendedException"}});
    });
    asio::io_context ioc;
    mailers::diagnostics diag;
    auto t = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("ses+api://AKIDEXAMPLE:wJalrXUtnFEMI/"
                         "K7MDENG+bPxRfiCYEXAMPLEKEY@default?region=eu-west-1"
                         "&configuration_set=bulk&tag=team:growth&endpoint=" +
                         srv.url()),
        &diag);
    REQUIRE_MESSAGE(t, diag.message);
    auto& tr = **t;
    CHECK(tr.name() == "ses");

    auto o = make_out();
    o->msg.cc = {{"bob", "example.com", ""}};
    o->env.rcpt_to = {"ann@example.com", "bob@example.com", "hidden@example.org"};
    auto r = send_one(ioc, tr, o);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "0100018c-ses-message-id-000000");
    CHECK(r.out.diag.request_id == "req-ses-1");
    json_doc j(last_body);
    REQUIRE(j.ok);
    CHECK(j.str("/FromEmailAddress") == "rep@brand.example");
    CHECK(j.str("/Destination/ToAddresses/2") == "hidden@example.org");
    CHECK(j.str("/ConfigurationSetName") == "bulk");
    CHECK(j.str("/EmailTags/0/Name") == "team");
    CHECK(j.str("/EmailTags/1/Name") == "mailers_send_id");
    CHECK(j.str("/EmailTags/1/Value") == "42");
    const auto mime = b64decode(j.str("/Content/Raw/Data"));
    CHECK(mime.find("Subject: Quarterly numbers") != std::string::npos);
    CHECK(mime.find("hidden@example.org") == std::string::npos);  // Bcc never in the headers

    mode = "quota";
    r = send_one(ioc, tr, make_out());
    CHECK(r.ec == transport_errc::sender_quota_exhausted);
    CHECK(r.ec == failure::quota_exhausted);
    CHECK(r.out.diag.provider_code == "LimitExceededException");
    CHECK(r.out.diag.status == 400);
    mode = "throttle";
    r = send_one(ioc, tr, make_out());
    CHECK(r.ec == failure::throttled);
    CHECK(r.out.diag.retry_after == 2s);
    mode = "unverified";
    r = send_one(ioc, tr, make_out());
    CHECK(r.ec == transport_errc::configuration);
    mode = "suspended";
    r = send_one(ioc, tr, make_out());
    CHECK(r.ec == failure::reputation);

    // A wrong secret fails the server's signature check.
    auto bad = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("ses+api://AKIDEXAMPLE:not-the-secret@default?region=eu-west-1&endpoint=" +
                         srv.url()));
    REQUIRE(bad);
    mode = "ok";
    r = send_one(ioc, **bad, make_out());
    CHECK(r.ec == transport_errc::authentication_failed);
    CHECK(r.out.diag.provider_code == "InvalidSignatureException");
    CHECK(tr.stats().connections_opened == 1);  // five sends, one keep-alive connection
}

TEST_CASE("Mailgun: MIME upload with Basic api:KEY, EU region by DSN, errors") {
    std::string mode = "ok";
    received last;
    fake_server srv([&](const received& r) {
        last = r;
        if (mode == "throttle")
            return json_reply(429, R"({"message":"Too many requests"})", {{"Retry-After", "7"}});
        if (mode == "sandbox")
            return json_reply(
                403,
                R"({"message":"Domain sandbox1234.mailgun.org is not allowed to send: Free accounts are for test purposes only."})");
        return mailgun_check(r, "key-secret", "mg.brand.example");
    });
    asio::io_context ioc;
    auto t = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view(
            "mailgun+api://key-secret:mg.brand.example@default?region=eu&tag=welcome&endpoint=" +
            srv.url()));
    REQUIRE(t);
    auto o = make_out();
    o->env.rcpt_to.push_back("hidden@example.org");
    auto r = send_one(ioc, **t, o);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "20300101120000.1.ABCDEF@mg.brand.example");
    auto f = multipart_fields(last);
    CHECK(f["to"] == std::vector<std::string>{"ann@example.com", "hidden@example.org"});
    CHECK(f["o:tag"] == std::vector<std::string>{"welcome"});
    CHECK(f["v:mailers_send_id"] == std::vector<std::string>{"42"});
    CHECK(f["message"][0].find("From: Rep One <rep@brand.example>") != std::string::npos);

    auto wrong = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("mailgun+api://key-wrong:mg.brand.example@default?endpoint=" + srv.url()));
    r = send_one(ioc, **wrong, make_out());
    CHECK(r.ec == failure::auth);
    mode = "throttle";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == failure::throttled);
    CHECK(r.out.diag.retry_after == 7s);
    mode = "sandbox";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == transport_errc::configuration);

    // The region picks the public host when no endpoint overrides it.
    auto eu = mailers::http_params_from_dsn(
        *mailers::parse_single_dsn("mailgun+api://k:d.example@default?region=eu"));
    REQUIRE(eu.has_value());
    CHECK(std::get<mailers::mailgun_params>(*eu).region == mailers::mailgun_region::eu);
}

TEST_CASE(
    "SendGrid: JSON mail/send with Bearer key, 202 + X-Message-Id, 429 with X-RateLimit-Reset") {
    std::string mode = "ok";
    std::string body;
    fake_server srv([&](const received& r) {
        body = r.body;
        if (mode == "throttle") {
            const auto reset = std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch() + 20s)
                                   .count();
            return json_reply(429, R"({"errors":[{"field":null,"message":"too many requests"}]})",
                              {{"X-RateLimit-Limit", "600"},
                               {"X-RateLimit-Remaining", "0"},
                               {"X-RateLimit-Reset", std::to_string(reset)}});
        }
        if (mode == "identity")
            return json_reply(
                403,
                R"({"errors":[{"message":"The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.","field":"from","help":null}]})");
        return sendgrid_check(r, "SG.test-key");
    });
    asio::io_context ioc;
    auto t = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("sendgrid+api://SG.test-key@default?category=onboarding&endpoint=" +
                         srv.url()));
    REQUIRE(t);
    auto o = make_out();
    o->msg.in_reply_to = "first@brand.example";
    o->msg.references = {"first@brand.example"};
    o->msg.unsubscribe = mailers::list_unsubscribe{"https://brand.example/u/1", ""};
    o->msg.attachments = {
        {"report.pdf", "application/pdf", std::string("%PDF-1.4\0binary", 15), ""}};
    o->msg.message_id = "m1@brand.example";
    o->env.rcpt_to.push_back("hidden@example.org");
    auto r = send_one(ioc, **t, o);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "sg-message-id-1");
    CHECK(r.out.diag.status == 202);
    json_doc j(body);
    REQUIRE(j.ok);
    CHECK(j.str("/personalizations/0/to/0/email") == "ann@example.com");
    CHECK(j.str("/personalizations/0/to/0/name") == "Ann Example");
    CHECK(j.str("/personalizations/0/bcc/0/email") == "hidden@example.org");
    CHECK(j.str("/from/name") == "Rep One");
    CHECK(j.str("/content/1/type") == "text/html");
    CHECK(j.str("/headers/Message-ID") == "<m1@brand.example>");
    CHECK(j.str("/headers/In-Reply-To") == "<first@brand.example>");
    CHECK(j.str("/headers/List-Unsubscribe-Post") == "List-Unsubscribe=One-Click");
    CHECK(b64decode(j.str("/attachments/0/content")) == std::string("%PDF-1.4\0binary", 15));
    CHECK(j.str("/attachments/0/disposition") == "attachment");
    CHECK(j.str("/custom_args/mailers_send_id") == "42");
    CHECK(j.str("/categories/0") == "onboarding");

    // A To address the envelope leaves out is never handed to SendGrid.
    auto leaky = make_out();
    leaky->msg.to.push_back({"suppressed", "example.com", ""});
    const auto before = srv.request_count();
    r = send_one(ioc, **t, leaky);
    CHECK(r.ec == mailers::errc::invalid_argument);
    CHECK(srv.request_count() == before);

    mode = "throttle";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == failure::throttled);
    REQUIRE(r.out.diag.retry_after);
    CHECK(*r.out.diag.retry_after >= 18s);
    CHECK(*r.out.diag.retry_after <= 21s);
    mode = "identity";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == transport_errc::configuration);
    mode = "ok";
    auto wrong = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("sendgrid+api://SG.other@default?endpoint=" + srv.url()));
    r = send_one(ioc, **wrong, make_out());
    CHECK(r.ec == transport_errc::authentication_failed);
}

TEST_CASE("Postmark: server token, message stream, 406 inactive recipient is permanent") {
    std::string mode = "ok";
    std::string body;
    fake_server srv([&](const received& r) {
        body = r.body;
        reply ok = postmark_check(r, "pm-server-token");
        if (ok.status != 200 || mode == "ok") return ok;
        if (mode == "inactive")
            return json_reply(
                422,
                R"({"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: ann@example.com. Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression."})");
        if (mode == "invalid")
            return json_reply(
                422, R"({"ErrorCode":300,"Message":"Invalid 'To' address: 'ann@example'."})");
        return json_reply(429, R"({"ErrorCode":429,"Message":"Rate limit exceeded"})",
                          {{"Retry-After", "3"}});
    });
    asio::io_context ioc;
    auto t = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view(
            "postmark+api://pm-server-token@default?stream=outbound&tag=welcome&endpoint=" +
            srv.url()));
    REQUIRE(t);
    auto o = make_out();
    o->msg.to[0].display_name = "Example, Ann";
    o->msg.attachments = {{"logo.png", "image/png", "PNGDATA", "logo1"}};
    auto r = send_one(ioc, **t, o);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "b7bc2f4a-e38e-4336-af7d-e6c392c2f817");
    json_doc j(body);
    CHECK(j.str("/From") == "Rep One <rep@brand.example>");
    CHECK(j.str("/To") == "\"Example, Ann\" <ann@example.com>");
    CHECK(j.str("/MessageStream") == "outbound");
    CHECK(j.str("/Tag") == "welcome");
    CHECK(j.str("/Metadata/mailers_send_id") == "42");
    CHECK(j.str("/Attachments/0/ContentID") == "cid:logo1");
    CHECK(j.str("/Headers/0/Name") == "Message-ID");

    mode = "inactive";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == transport_errc::recipient_rejected);
    CHECK(r.ec == failure::recipient_permanent);
    CHECK(r.out.diag.provider_code == "406");
    mode = "invalid";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == failure::message_rejected);
    mode = "throttle";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == failure::throttled);
    CHECK(r.out.diag.retry_after == 3s);
    auto wrong = mailers::make_http_transport(
        ioc.get_executor(), std::string_view("postmark+api://bad@default?endpoint=" + srv.url()));
    r = send_one(ioc, **wrong, make_out());
    CHECK(r.ec == transport_errc::authentication_failed);
    CHECK(r.out.diag.provider_code == "10");
}

TEST_CASE(
    "keep-alive pool: one connection for sequential sends, at most max_connections in parallel") {
    fake_server srv([&](const received& r) {
        reply rep = postmark_check(r, "tok");
        rep.delay = 20ms;
        return rep;
    });
    asio::io_context ioc;
    mailers::postmark_params p;
    p.server_token = mailers::secret("tok");
    p.endpoint = srv.url();
    p.http = test_http();
    p.http.max_connections = 4;
    mailers::http_transport t(ioc.get_executor(), p);
    for (int i = 0; i < 20; ++i) REQUIRE(!send_one(ioc, t, make_out()).ec);
    CHECK(srv.connections() == 1);
    std::vector<std::shared_ptr<outbound>> outs;
    for (int i = 0; i < 40; ++i) outs.push_back(make_out());
    for (const auto& s : send_many(ioc, t, outs)) CHECK(!s.ec);
    CHECK(srv.max_open_connections() <= 4);
    CHECK(srv.connections() <= 4);
    CHECK(t.stats().accepted == 60);
    CHECK(t.stats().requests == 60);
}

TEST_CASE("failure phases: what may be retried and what is an unknown outcome") {
    asio::io_context ioc;
    SUBCASE("nobody listening: connection_failed, transient") {
        tcp::acceptor probe(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        const auto port = probe.local_endpoint().port();
        probe.close();
        mailers::sendgrid_params p;
        p.api_key = mailers::secret("k");
        p.endpoint = "http://127.0.0.1:" + std::to_string(port);
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::connection_failed);
        CHECK(r.ec == failure::transient);
        CHECK(r.out.diag.message.find("127.0.0.1") != std::string::npos);
        CHECK(t.stats().failed == 1);
    }
    SUBCASE("connection closed after the request arrived: outcome_unknown") {
        fake_server srv([](const received&) {
            reply r;
            r.action = reply::act::close_without_reply;
            return r;
        });
        mailers::sendgrid_params p;
        p.api_key = mailers::secret("k");
        p.endpoint = srv.url();
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(r.ec == failure::unknown_outcome);
        CHECK(srv.request_count() == 1);  // delivered once, never retried
    }
    SUBCASE("no reply within the response timeout: outcome_unknown") {
        fake_server srv([](const received& r) {
            reply rep = sendgrid_check(r, "k");
            rep.delay = 3s;
            return rep;
        });
        mailers::sendgrid_params p;
        p.api_key = mailers::secret("k");
        p.endpoint = srv.url();
        p.http = test_http();
        p.http.timeouts.response = 300ms;
        mailers::http_transport t(ioc.get_executor(), p);
        const auto start = std::chrono::steady_clock::now();
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(std::chrono::steady_clock::now() - start < 2500ms);
        CHECK(r.out.diag.message.find("300 ms") != std::string::npos);
    }
    SUBCASE("a server that never reads: the write times out before the request is sent") {
        fake_server srv([](const received&) { return reply{}; });
        srv.stall_reading = true;
        auto p = postmark_at(srv.url(), test_http());
        p.http.timeouts.write = 500ms;
        mailers::http_transport t(ioc.get_executor(), p);
        auto o = make_out();
        o->msg.attachments = {
            {"big.bin", "application/octet-stream", std::string(24 << 20, 'x'), ""}};
        auto r = send_one(ioc, t, o);
        CHECK(r.ec == transport_errc::timeout_before_send);
        CHECK(r.ec == failure::transient);
    }
    SUBCASE("a kept-alive connection still times out after many exchanges") {
        // One timer serves every phase of a connection and is re-armed only
        // when it fires; a short response limit after long write limits on
        // the same connection must still be kept.
        std::atomic<int> seen{0};
        fake_server srv([&](const received& r) {
            reply rep = postmark_check(r, "k");
            if (++seen == 6) rep.delay = 3s;
            return rep;
        });
        auto p = postmark_at(srv.url(), test_http());
        p.http.timeouts.response = 400ms;
        mailers::http_transport t(ioc.get_executor(), p);
        for (int i = 0; i < 5; ++i) CHECK(!send_one(ioc, t, make_out()).ec);
        const auto start = std::chrono::steady_clock::now();
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(std::chrono::steady_clock::now() - start < 2500ms);
        CHECK(r.out.diag.message.find("400 ms") != std::string::npos);
        CHECK(srv.connections() == 1);
    }
    SUBCASE("an idle kept-alive connection leaves no work: io_context::run() returns") {
        // The host's run() returns once its sends are done, although the
        // connection stays open and every timeout is the default (10 s or
        // more): no phase timer may stay armed on an idle connection.
        fake_server srv([](const received& r) { return postmark_check(r, "k"); });
        auto p = postmark_at(srv.url());
        mailers::http_transport t(ioc.get_executor(), p);
        int done = 0;
        for (int i = 0; i < 8; ++i)
            t.async_send(make_out(), [&](error_code ec, send_outcome) { done += !ec ? 1 : 0; });
        ioc.restart();
        const auto start = std::chrono::steady_clock::now();
        ioc.run();
        CHECK(done == 8);
        CHECK(std::chrono::steady_clock::now() - start < 5s);
        CHECK(t.stats().accepted == 8);
        CHECK(srv.request_count() == 8);
    }
    SUBCASE("garbage instead of HTTP after the request: outcome_unknown") {
        fake_server srv([](const received&) {
            reply r;
            r.action = reply::act::garbage;
            return r;
        });
        auto p = postmark_at(srv.url());
        mailers::http_transport t(ioc.get_executor(), p);
        CHECK(send_one(ioc, t, make_out()).ec == transport_errc::outcome_unknown);
    }
    SUBCASE("a gateway that timed out after passing the request on: outcome_unknown") {
        for (const unsigned status : {504u, 524u, 598u}) {
            CAPTURE(status);
            fake_server srv([&](const received&) {
                return json_reply(status, "<html>upstream timed out</html>");
            });
            auto p = postmark_at(srv.url());
            mailers::http_transport t(ioc.get_executor(), p);
            auto r = send_one(ioc, t, make_out());
            CHECK(r.ec == transport_errc::outcome_unknown);
            CHECK_FALSE(mailers::may_retry(r.ec));
            CHECK(r.out.diag.status == static_cast<int>(status));
            CHECK(srv.request_count() == 1);
        }
    }
    SUBCASE("other 5xx: the service refused before acting, transient") {
        for (const unsigned status : {500u, 502u, 503u}) {
            CAPTURE(status);
            fake_server srv([&](const received&) { return json_reply(status, "{}"); });
            auto p = postmark_at(srv.url());
            mailers::http_transport t(ioc.get_executor(), p);
            auto r = send_one(ioc, t, make_out());
            CHECK(r.ec == failure::transient);
            CHECK(mailers::may_retry(r.ec));
        }
    }
    SUBCASE("a 2xx whose body is cut short: outcome_unknown, though the provider took it") {
        fake_server srv([](const received&) {
            reply r =
                json_reply(200, R"({"To":"a@example.org","MessageID":"b7bc2f4a","ErrorCode":0})");
            r.action = reply::act::truncated_body;
            return r;
        });
        auto p = postmark_at(srv.url());
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(srv.request_count() == 1);
    }
    SUBCASE("a reply over max_response_size, even a refusal: outcome_unknown") {
        fake_server srv([](const received&) {
            return json_reply(422,
                              R"({"ErrorCode":300,"Message":")" + std::string(4096, 'x') + R"("})");
        });
        auto p = postmark_at(srv.url());
        p.http.max_response_size = 1024;
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(srv.request_count() == 1);
    }
    SUBCASE("a keep-alive connection the server closed is replaced, not reported") {
        fake_server srv([](const received& r) {
            reply rep = postmark_check(r, "k");
            rep.action = reply::act::respond_then_close;  // closes without saying so
            return rep;
        });
        auto p = postmark_at(srv.url());
        mailers::http_transport t(ioc.get_executor(), p);
        for (int i = 0; i < 5; ++i) {
            auto r = send_one(ioc, t, make_out());
            CHECK_MESSAGE(!r.ec, r.out.diag.message);
            std::this_thread::sleep_for(20ms);  // let the close arrive
        }
        CHECK(srv.connections() == 5);
        CHECK(srv.request_count() == 5);
    }
    SUBCASE("destroying the transport fails the sends still waiting for a connection") {
        fake_server srv([](const received& r) {
            reply rep = postmark_check(r, "k");
            rep.delay = 300ms;
            return rep;
        });
        auto p = postmark_at(srv.url());
        p.http.max_connections = 1;
        auto t = std::make_shared<mailers::http_transport>(ioc.get_executor(), p);
        std::vector<error_code> ecs;
        for (int i = 0; i < 3; ++i)
            t->async_send(make_out(), [&](error_code ec, send_outcome) { ecs.push_back(ec); });
        ioc.restart();
        ioc.run_for(50ms);
        // From a handler on the io_context's thread, where a completion
        // could run at once: none may run inside the destructor.
        std::size_t answered_inside = 0;
        asio::post(ioc, [&] {
            t.reset();
            answered_inside = ecs.size();
        });
        ioc.restart();
        while ((t || ecs.size() < 3) && ioc.run_one_for(10s)) {
        }
        CHECK(answered_inside == 0);
        REQUIRE(ecs.size() == 3);
        CHECK(std::count(ecs.begin(), ecs.end(),
                         mailers::make_error_code(mailers::errc::operation_aborted)) == 2);
        CHECK(std::count(ecs.begin(), ecs.end(), error_code{}) == 1);
    }
    SUBCASE("a handler that throws: the exception leaves run(), every other send completes") {
        // Completions from I/O run at once inside the client's exchange,
        // which must still hand its connection back.
        fake_server srv([](const received& r) { return postmark_check(r, "k"); });
        auto p = postmark_at(srv.url());
        p.http.max_connections = 1;
        mailers::http_transport t(ioc.get_executor(), p);
        constexpr int n = 6;
        std::vector<int> calls(n, 0);
        for (int i = 0; i < n; ++i)
            t.async_send(make_out(), [&, i](error_code ec, send_outcome) {
                ++calls[static_cast<std::size_t>(i)];
                CHECK(!ec);
                if (i % 2 == 0) throw std::runtime_error("handler failed");
            });
        int thrown = 0;
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (std::chrono::steady_clock::now() < deadline) {
            try {
                ioc.restart();
                if (ioc.run_for(100ms) == 0 && std::count(calls.begin(), calls.end(), 1) == n)
                    break;
            } catch (const std::runtime_error&) {
                ++thrown;
            }
        }
        CHECK(calls == std::vector<int>(n, 1));
        CHECK(thrown == n / 2);
        CHECK(!send_one(ioc, t, make_out()).ec);
        CHECK(srv.connections() == 1);
    }
    SUBCASE("CR or LF in a credential never reaches the wire") {
        fake_server srv([](const received& r) { return postmark_check(r, "k"); });
        mailers::postmark_params p;
        p.server_token = mailers::secret("k\r\nX-Injected: 1");
        p.endpoint = srv.url();
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::configuration);
        CHECK(r.out.diag.message.find("X-Injected") == std::string::npos);
        CHECK(srv.request_count() == 0);
    }
}

TEST_CASE("the connect and TLS handshake phases time out on their own limits") {
    asio::io_context ioc;
    // The phase named by `phase` overruns its 300 ms limit: a retryable
    // failure that says which phase, with nothing written.
    const auto expect_timeout = [&](std::string endpoint, std::string_view phase, auto set_limit) {
        auto p = postmark_at(std::move(endpoint), test_http());
        p.http.verify_peer = false;
        set_limit(p.http.timeouts);
        mailers::http_transport t(ioc.get_executor(), p);
        const auto start = std::chrono::steady_clock::now();
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::timeout_before_send);
        CHECK(r.ec == failure::transient);
        CHECK(std::chrono::steady_clock::now() - start < 2500ms);
        CHECK_MESSAGE(r.out.diag.message.find(phase) != std::string::npos, r.out.diag.message);
        CHECK(r.out.diag.message.find("300 ms") != std::string::npos);
        CHECK(t.stats().requests == 0);
    };
    SUBCASE("a listener whose accept queue is full: the connect times out") {
        // Linux drops a SYN to a listener whose accept queue is full, so the
        // connect neither succeeds nor fails until the timeout ends it.
        tcp::acceptor full(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        full.listen(0);
        const auto port = full.local_endpoint().port();
        // Raw non-blocking connects: they fill the queue without waiting.
        std::vector<int> fillers;
        struct closer {
            std::vector<int>& fds;
            ~closer() {
                for (int fd : fds) ::close(fd);
            }
        } close_fillers{fillers};
        for (int i = 0; i < 4; ++i) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            REQUIRE(fd >= 0);
            fillers.push_back(fd);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_port = htons(port);
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            (void)::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
        }
        std::this_thread::sleep_for(50ms);
        expect_timeout("http://127.0.0.1:" + std::to_string(port), "connecting to 127.0.0.1",
                       [](mailers::http_timeouts& t) { t.connect = 300ms; });
    }
    SUBCASE("a server that accepts and never answers the TLS handshake") {
        // Connections complete in the kernel's accept queue; nobody reads.
        tcp::acceptor silent(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        silent.listen();
        expect_timeout("https://127.0.0.1:" + std::to_string(silent.local_endpoint().port()),
                       "TLS handshake", [](mailers::http_timeouts& t) { t.handshake = 300ms; });
    }
}

TEST_CASE("an io_context run by four threads: every send answered once while timeouts race") {
    // Connections have no strand: one exchange's steps never overlap, and
    // only the deadline timer runs beside them. Here four threads run the
    // io_context, sends come from four more, four connections carry them,
    // and every seventh reply comes after the response limit.
    constexpr int senders = 4;
    constexpr int per_sender = 100;
    constexpr int total = senders * per_sender;
    std::atomic<int> seen{0};
    fake_server srv([&](const received& r) {
        reply rep = postmark_check(r, "k");
        if (++seen % 7 == 0) rep.delay = 400ms;
        return rep;
    });
    asio::io_context ioc;
    auto work = asio::make_work_guard(ioc);
    std::vector<std::thread> runners;
    for (int i = 0; i < 4; ++i) runners.emplace_back([&] { ioc.run(); });

    auto p = postmark_at(srv.url(), test_http());
    p.http.max_connections = 4;
    p.http.timeouts.response = 150ms;
    auto t = std::make_shared<mailers::http_transport>(ioc.get_executor(), p);

    std::vector<std::atomic<int>> calls(total);
    std::atomic<int> ok{0}, unknown{0}, other{0}, done{0};
    std::vector<std::thread> threads;
    for (int s = 0; s < senders; ++s)
        threads.emplace_back([&, s] {
            for (int i = 0; i < per_sender; ++i) {
                const int id = s * per_sender + i;
                t->async_send(make_out(), [&, id](error_code ec, send_outcome) {
                    ++calls[id];
                    if (!ec)
                        ++ok;
                    else if (ec == transport_errc::outcome_unknown)
                        ++unknown;
                    else
                        ++other;
                    ++done;
                });
            }
        });
    for (auto& th : threads) th.join();
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (done < total && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    // Late duplicates would arrive after the last first answer.
    std::this_thread::sleep_for(100ms);
    work.reset();
    t.reset();
    for (auto& th : runners) th.join();

    REQUIRE(done == total);
    for (int i = 0; i < total; ++i) CHECK_MESSAGE(calls[i] == 1, "send " << i);
    CHECK(other == 0);
    CHECK(ok + unknown == total);
    CHECK(unknown >= total / 7);
    CHECK(ok > 0);
    // Each request was written once: a lost reply is never sent again.
    CHECK(srv.request_count() == static_cast<std::size_t>(total));
}

TEST_CASE("TLS: verified against a CA file, refused with the system store or a wrong certificate") {
    const auto& p = certificates();
    if (!p.ok) {
        MESSAGE("skipped: the openssl tool could not make the test certificates");
        return;
    }
    asio::io_context ioc;
    auto good = server_tls(p, "good");
    fake_server srv([](const received& r) { return postmark_check(r, "tok"); }, good.get());
    const auto dsn = "postmark+api://tok@default?endpoint=" + srv.url();

    auto ok = mailers::make_http_transport(ioc.get_executor(),
                                           std::string_view(dsn + "&ca_file=" + p.path("ca.pem")));
    REQUIRE(ok);
    auto r = send_one(ioc, **ok, make_out());
    CHECK_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(!send_one(ioc, **ok, make_out()).ec);
    CHECK((*ok)->stats().connections_opened == 1);

    // The system store does not know the throwaway CA.
    auto system = mailers::make_http_transport(ioc.get_executor(), std::string_view(dsn));
    r = send_one(ioc, **system, make_out());
    CHECK(r.ec == transport_errc::tls_verification_failed);
    CHECK(r.ec == failure::auth);
    CHECK(r.out.diag.message.find("does not verify") != std::string::npos);

    // Signed by the right CA but for another name.
    auto wrong_name = server_tls(p, "wrongname");
    fake_server other([](const received& r) { return postmark_check(r, "tok"); }, wrong_name.get());
    auto w = mailers::make_http_transport(
        ioc.get_executor(), std::string_view("postmark+api://tok@default?endpoint=" + other.url() +
                                             "&ca_file=" + p.path("ca.pem")));
    r = send_one(ioc, **w, make_out());
    CHECK(r.ec == transport_errc::tls_verification_failed);
    CHECK(other.request_count() == 0);

    // By name: SNI carries it, and the certificate must name it.
    const auto ca = "&ca_file=" + p.path("ca.pem");
    auto by_name = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("postmark+api://tok@default?endpoint=https://localhost:" +
                         std::to_string(srv.port()) + ca));
    r = send_one(ioc, **by_name, make_out());
    CHECK_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(srv.last_sni() == "localhost");
    auto by_wrong_name = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("postmark+api://tok@default?endpoint=https://localhost:" +
                         std::to_string(other.port()) + ca));
    // (The server's view of this refused handshake is not checked: the client
    // may finish refusing before the server thread has recorded it.)
    CHECK(send_one(ioc, **by_wrong_name, make_out()).ec == transport_errc::tls_verification_failed);

    // Self-signed: refused, unless verification is turned off explicitly.
    auto self = server_tls(p, "self");
    fake_server selfsrv([](const received& r) { return postmark_check(r, "tok"); }, self.get());
    auto s = mailers::make_http_transport(
        ioc.get_executor(), std::string_view("postmark+api://tok@default?endpoint=" +
                                             selfsrv.url() + "&ca_file=" + p.path("ca.pem")));
    CHECK(send_one(ioc, **s, make_out()).ec == transport_errc::tls_verification_failed);
    auto off = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("postmark+api://tok@default?endpoint=" + selfsrv.url() + "&verify=false"));
    r = send_one(ioc, **off, make_out());
    CHECK_MESSAGE(!r.ec, r.out.diag.message);

    // Plain HTTP to a TLS server: the reply is not HTTP, so nothing is known.
    auto plain = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("postmark+api://tok@default?endpoint=http://127.0.0.1:" +
                         std::to_string(srv.port())));
    r = send_one(ioc, **plain, make_out());
    CHECK(r.ec);

    // An unreadable CA file is a configuration error at construction.
    mailers::diagnostics diag;
    auto missing = mailers::make_http_transport(
        ioc.get_executor(), std::string_view(dsn + "&ca_file=/nonexistent/ca.pem"), &diag);
    CHECK(!missing);
    CHECK(diag.message.find("/nonexistent/ca.pem") != std::string::npos);
}

TEST_CASE("Gmail API: service-account JWT per user, token cache and refresh, threadId, errors") {
    token_authority auth;
    std::string mode = "ok";
    std::vector<received> api;
    std::mutex mu;
    fake_server srv([&](const received& r) {
        if (r.target == "/token") return auth.google_token(r);
        std::size_t seq = 0;
        {
            std::lock_guard lock(mu);
            api.push_back(r);
            seq = api.size();
        }
        const auto who = auth.subject_of(r);
        if (!who)
            return json_reply(
                401,
                R"({"error":{"errors":[{"domain":"global","reason":"authError","message":"Invalid Credentials"}],"code":401,"message":"Invalid Credentials"}})");
        const std::string expected =
            "/gmail/v1/users/" + (*who == "me" ? std::string("me") : *who) + "/messages/send";
        std::string target = r.target;
        for (auto pos = target.find("%40"); pos != std::string::npos; pos = target.find("%40"))
            target.replace(pos, 3, "@");
        if (r.method != "POST" || target != expected)
            return json_reply(
                403,
                R"({"error":{"code":403,"message":"Delegation denied","errors":[{"reason":"forbidden"}]}})");
        if (mode == "daily")
            return json_reply(
                429,
                R"j({"error":{"code":429,"message":"User-rate limit exceeded.  Retry after 2099-01-01T00:00:00.000Z (Mail sending)","errors":[{"message":"User-rate limit exceeded.","domain":"usageLimits","reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}})j");
        if (mode == "user-rate")
            return json_reply(
                403,
                R"({"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"User Rate Limit Exceeded"}],"code":403,"message":"User Rate Limit Exceeded"}})");
        json_doc j(r.body);
        const auto raw = b64decode(j.str("/raw"));
        if (raw.find("\r\nSubject: ") == std::string::npos ||
            j.str("/raw").find_first_of("+/=") != std::string::npos)
            return json_reply(
                400,
                R"({"error":{"code":400,"message":"Invalid value for ByteString","errors":[{"reason":"invalidArgument"}]}})");
        return json_reply(
            200, R"({"id":"msg-)" + std::to_string(seq) + R"(","threadId":"thread-)" +
                     (j.has("/threadId") ? j.str("/threadId").substr(7) : std::to_string(seq)) +
                     R"(","labelIds":["SENT"]})");
    });
    auth.token_url = srv.url() + "/token";
    asio::io_context ioc;

    mailers::gmail_params p;
    p.service_account_email = "mailer@project.iam.gserviceaccount.com";
    p.private_key = mailers::secret(service_account_key().pem());
    p.endpoint = srv.url();
    p.token_endpoint = auth.token_url;
    p.http = test_http();
    mailers::http_transport t(ioc.get_executor(), p);
    CHECK(t.name() == "gmail");

    // Two sends as rep@brand.example, one as other@brand.example: one token each.
    auto first = make_out();
    first->msg.message_id = "first@brand.example";
    first->env.rcpt_to.push_back("hidden@example.org");
    auto r = send_one(ioc, t, first);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "msg-1");
    {
        std::lock_guard lock(mu);
        json_doc j(api.back().body);
        const auto raw = b64decode(j.str("/raw"));
        CHECK(raw.starts_with("Bcc: hidden@example.org\r\n"));
        CHECK(!j.has("/threadId"));
    }
    auto reply_msg = make_out();
    reply_msg->msg.in_reply_to = "first@brand.example";
    reply_msg->msg.references = {"first@brand.example"};
    reply_msg->msg.subject = "Re: Quarterly numbers";
    r = send_one(ioc, t, reply_msg);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    {
        std::lock_guard lock(mu);
        json_doc j(api.back().body);
        CHECK(j.str("/threadId") == "thread-1");  // the reply joins the first message's thread
    }
    auto other = make_out();
    other->msg.from = {"other", "brand.example", ""};
    r = send_one(ioc, t, other);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(t.stats().token_requests == 2);
    CHECK(auth.issued_count == 2);

    // A token the API stops accepting is dropped and replaced on the next send.
    auth.revoke_all();
    r = send_one(ioc, t, make_out());
    CHECK(r.ec == transport_errc::authentication_failed);
    r = send_one(ioc, t, make_out());
    CHECK_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(t.stats().token_requests == 3);

    mode = "daily";
    r = send_one(ioc, t, make_out());
    CHECK(r.ec == failure::quota_exhausted);
    REQUIRE(r.out.diag.retry_after);
    CHECK(*r.out.diag.retry_after > 24h);
    mode = "user-rate";
    r = send_one(ioc, t, make_out());
    CHECK(r.ec == failure::throttled);
    mode = "ok";

    // A refused grant fails the send as auth, and nothing reaches the API.
    auth.refuse_grant = "invalid_grant";
    const auto api_count = [&] {
        std::lock_guard lock(mu);
        return api.size();
    };
    const auto before = api_count();
    auto stranger = make_out();
    stranger->msg.from = {"new", "brand.example", ""};
    r = send_one(ioc, t, stranger);
    CHECK(r.ec == transport_errc::authentication_failed);
    CHECK(r.out.diag.message.find("invalid_grant") != std::string::npos);
    CHECK(api_count() == before);
    auth.refuse_grant.clear();
}

TEST_CASE(
    "Gmail API: refresh-token flow, short-lived tokens refreshed before expiry, DSN with a key "
    "file") {
    token_authority auth;
    auth.expires_in = 2;  // refreshed after one second
    fake_server srv([&](const received& r) {
        if (r.target == "/token") return auth.google_token(r);
        if (!auth.subject_of(r))
            return json_reply(
                401,
                R"({"error":{"code":401,"message":"Invalid Credentials","errors":[{"reason":"authError"}]}})");
        return json_reply(200, R"({"id":"m","threadId":"t","labelIds":["SENT"]})");
    });
    auth.token_url = srv.url() + "/token";
    asio::io_context ioc;
    auto t = mailers::make_http_transport(
        ioc.get_executor(), std::string_view("gmail+api://"
                                             "cid.apps.googleusercontent.com:csecret@default?"
                                             "refresh_token=1%2F%2Frefresh&endpoint=" +
                                             srv.url() + "&token_endpoint=" + auth.token_url));
    REQUIRE(t);
    CHECK(!send_one(ioc, **t, make_out()).ec);
    CHECK(!send_one(ioc, **t, make_out()).ec);
    CHECK((*t)->stats().token_requests == 1);
    std::this_thread::sleep_for(1100ms);
    CHECK(!send_one(ioc, **t, make_out()).ec);
    CHECK((*t)->stats().token_requests == 2);

    // The service account's JSON key file, as Google hands it out.
    const auto dir = fs::temp_directory_path() / ("mailers-http-sa-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::string key_json =
        R"({"type":"service_account","client_email":"mailer@project.iam.gserviceaccount.com","private_key":)";
    std::string pem_escaped;
    for (char c : service_account_key().pem())
        pem_escaped += c == '\n' ? std::string("\\n") : std::string(1, c);
    key_json += "\"" + pem_escaped + "\",\"token_uri\":\"" + auth.token_url + "\"}";
    std::ofstream(dir / "sa.json") << key_json;
    auth.expires_in = 3599;
    mailers::diagnostics diag;
    auto sa = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("gmail+api://default?service_account=" + (dir / "sa.json").string() +
                         "&endpoint=" + srv.url()),
        &diag);
    REQUIRE_MESSAGE(sa, diag.message);
    auto r = send_one(ioc, **sa, make_out());
    CHECK_MESSAGE(!r.ec, r.out.diag.message);
    fs::remove_all(dir);
}

TEST_CASE(
    "Microsoft Graph: client credentials, MIME sendMail, at most 4 requests per mailbox, 429") {
    token_authority auth;
    std::string mode = "ok";
    fake_server srv([&](const received& r) {
        if (r.target.ends_with("/oauth2/v2.0/token")) return auth.microsoft_token(r);
        if (!auth.subject_of(r))
            return json_reply(
                401,
                R"({"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid."}})");
        const std::string prefix = "/v1.0/users/";
        if (r.method != "POST" || !r.target.starts_with(prefix) || !r.target.ends_with("/sendMail"))
            return json_reply(
                404, R"({"error":{"code":"ResourceNotFound","message":"Resource not found"}})");
        if (r.header("content-type") != "text/plain")
            return json_reply(
                400,
                R"({"error":{"code":"ErrorMimeContentInvalidBase64String","message":"Invalid base64 string for MIME content."}})");
        const auto mime = b64decode(r.body);
        if (mime.find("\r\nSubject: ") == std::string::npos)
            return json_reply(
                400,
                R"({"error":{"code":"ErrorMimeContentInvalidBase64String","message":"Invalid base64 string for MIME content."}})");
        if (mode == "throttle")
            return json_reply(
                429,
                R"({"error":{"code":"ApplicationThrottled","message":"Application is over its MailboxConcurrency limit."}})",
                {{"Retry-After", "1"}});
        if (mode == "sendas")
            return json_reply(
                403,
                R"({"error":{"code":"ErrorSendAsDenied","message":"The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."}})");
        reply ok;
        ok.status = 202;
        ok.headers = {{"request-id", "graph-req-1"}};
        ok.delay = 40ms;
        ok.hold_key = r.target.substr(prefix.size(), r.target.size() - prefix.size() - 9);
        return ok;
    });
    asio::io_context ioc;
    mailers::diagnostics diag;
    auto t = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view(
            "graph+api://app-id:app-secret@default?tenant=tenant-1&endpoint=" + srv.url() +
            "&token_endpoint=" + srv.url() + "/tenant-1/oauth2/v2.0/token"),
        &diag);
    REQUIRE_MESSAGE(t, diag.message);
    auto o = make_out();
    o->msg.message_id = "graph1@brand.example";
    auto r = send_one(ioc, **t, o);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "graph1@brand.example");
    CHECK(r.out.diag.request_id == "graph-req-1");
    CHECK(r.out.diag.status == 202);

    // Twelve sends for one mailbox and four for another, all at once.
    std::vector<std::shared_ptr<outbound>> outs;
    for (int i = 0; i < 12; ++i) outs.push_back(make_out());
    for (int i = 0; i < 4; ++i) {
        auto x = make_out();
        x->msg.from = {"second", "brand.example", ""};
        outs.push_back(x);
    }
    for (const auto& s : send_many(ioc, **t, outs)) CHECK_MESSAGE(!s.ec, s.out.diag.message);
    CHECK(srv.max_in_flight("rep%40brand.example") <= 4);
    CHECK(srv.max_in_flight("rep%40brand.example") >= 2);
    CHECK(srv.max_in_flight("second%40brand.example") >= 2);
    CHECK((*t)->stats().token_requests == 1);

    mode = "throttle";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == failure::throttled);
    CHECK(r.out.diag.retry_after == 1s);
    mode = "sendas";
    r = send_one(ioc, **t, make_out());
    CHECK(r.ec == transport_errc::configuration);

    auto bad = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("graph+api://app-id:wrong@default?tenant=tenant-1&endpoint=" + srv.url() +
                         "&token_endpoint=" + srv.url() + "/tenant-1/oauth2/v2.0/token"));
    r = send_one(ioc, **bad, make_out());
    CHECK(r.ec == transport_errc::authentication_failed);
    CHECK(r.out.diag.provider_code == "invalid_client");
}

TEST_CASE(
    "SendGrid: names holding ',' or ';', which SendGrid would drop the mail for, go without") {
    std::string body;
    fake_server srv([&](const received& r) {
        body = r.body;
        return sendgrid_check(r, "k");
    });
    asio::io_context ioc;
    mailers::sendgrid_params p;
    p.api_key = mailers::secret("k");
    p.endpoint = srv.url();
    mailers::http_transport t(ioc.get_executor(), p);
    auto o = make_out();
    o->msg.from.display_name = "Brand, Inc.";
    o->msg.to[0].display_name = "Example, Ann";
    o->msg.to.push_back({"carl", "example.com", ", ;"});
    o->msg.cc = {{"bob", "example.com", "Lee;Bob"}};
    o->msg.reply_to = mailers::address{"help", "brand.example", "Support; Team,"};
    o->env = mailers::envelope::from_message(o->msg);
    auto r = send_one(ioc, t, o);
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    json_doc j(body);
    REQUIRE(j.ok);
    CHECK(j.str("/personalizations/0/to/0/name") == "Example Ann");
    CHECK(j.str("/personalizations/0/to/1/email") == "carl@example.com");
    CHECK_FALSE(j.has("/personalizations/0/to/1/name"));
    CHECK(j.str("/personalizations/0/cc/0/name") == "Lee Bob");
    CHECK(j.str("/from/name") == "Brand Inc.");
    CHECK(j.str("/reply_to/name") == "Support Team");
}

TEST_CASE("per-message recipient limits: over the limit refused before any request, at it sent") {
    fake_server srv([](const received& r) {
        if (r.target.ends_with("/token"))
            return json_reply(200, R"({"access_token":"tok","expires_in":3600})");
        return json_reply(200, R"({"MessageId":"m","id":"m","MessageID":"m"})");
    });
    asio::io_context ioc;
    const auto token_url = srv.url() + "/token";
    mailers::ses_params ses;
    ses.access_key_id = aws_key_id;
    ses.secret_access_key = mailers::secret(aws_secret);
    mailers::mailgun_params mailgun;
    mailgun.api_key = mailers::secret("k");
    mailgun.domain = "mg.brand.example";
    mailers::sendgrid_params sendgrid;
    sendgrid.api_key = mailers::secret("k");
    mailers::postmark_params postmark;
    postmark.server_token = mailers::secret("k");
    mailers::gmail_params gmail;
    gmail.client_id = "cid";
    gmail.client_secret = mailers::secret("cs");
    gmail.refresh_token = mailers::secret("rt");
    gmail.token_endpoint = token_url;
    mailers::graph_params graph;
    graph.client_id = "app";
    graph.client_secret = mailers::secret("s");
    graph.tenant = "tenant-1";
    graph.token_endpoint = token_url;
    const std::vector<std::pair<mailers::http_provider_params, std::size_t>> cases{
        {ses, 50}, {mailgun, 1000}, {sendgrid, 1000}, {postmark, 50}, {gmail, 100}, {graph, 1000}};
    for (auto [params, limit] : cases) {
        std::visit([&](auto& p) { p.endpoint = srv.url(); }, params);
        mailers::http_transport t(ioc.get_executor(), params);
        CAPTURE(t.name());
        // The message's To, then as many envelope-only recipients as it takes.
        const auto with_recipients = [](std::size_t n) {
            auto o = make_out();
            for (std::size_t i = 1; i < n; ++i)
                o->env.rcpt_to.push_back("r" + std::to_string(i) + "@example.org");
            return o;
        };
        const auto before = srv.request_count();
        auto r = send_one(ioc, t, with_recipients(limit + 1));
        CHECK(r.ec == mailers::errc::invalid_argument);
        CHECK(mailers::classify(r.ec) == failure::message_rejected);
        CHECK_FALSE(mailers::may_retry(r.ec));
        CHECK(r.out.diag.message.find(std::to_string(limit + 1) + " recipients") !=
              std::string::npos);
        CHECK(r.out.diag.message.find("at most " + std::to_string(limit)) != std::string::npos);
        CHECK(srv.request_count() == before);  // not even a token request
        // Repeats of one address count once.
        auto repeated = with_recipients(limit);
        repeated->env.rcpt_to.push_back("r1@EXAMPLE.org");
        r = send_one(ioc, t, repeated);
        CHECK_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(srv.request_count() > before);
    }
}

TEST_CASE("a 429 from an OAuth token endpoint is throttling, not a refused credential") {
    std::string token_reply_body;
    fake_server srv([&](const received& r) {
        if (r.target.ends_with("/token"))
            return json_reply(429, token_reply_body, {{"Retry-After", "5"}});
        return json_reply(202, "");
    });
    asio::io_context ioc;
    mailers::graph_params graph;
    graph.client_id = "app";
    graph.client_secret = mailers::secret("s");
    graph.tenant = "tenant-1";
    graph.endpoint = srv.url();
    graph.token_endpoint = srv.url() + "/tenant-1/oauth2/v2.0/token";
    mailers::gmail_params gmail;
    gmail.client_id = "cid";
    gmail.client_secret = mailers::secret("cs");
    gmail.refresh_token = mailers::secret("rt");
    gmail.endpoint = srv.url();
    gmail.token_endpoint = srv.url() + "/token";
    for (const auto& params : std::vector<mailers::http_provider_params>{graph, gmail}) {
        mailers::http_transport t(ioc.get_executor(), params);
        CAPTURE(t.name());
        for (
            const char* body :
            {R"({"error":"temporarily_unavailable","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop."})",
             R"({"error":"invalid_request","error_description":"Too many requests"})"}) {
            CAPTURE(body);
            token_reply_body = body;
            const auto before = srv.request_count();
            auto r = send_one(ioc, t, make_out());
            CHECK(r.ec == transport_errc::rate_limited);
            CHECK(r.ec == failure::throttled);
            CHECK(r.out.diag.retry_after == 5s);
            CHECK(r.out.diag.status == 429);
            CHECK(srv.request_count() == before + 1);  // the token request, no mail
        }
    }
}

namespace {

std::string http_date(std::chrono::system_clock::time_point t) {
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

std::optional<std::chrono::system_clock::time_point> from_amz_date(const std::string& d) {
    std::tm tm{};
    if (d.size() != 16 || !strptime(d.c_str(), "%Y%m%dT%H%M%SZ", &tm)) return std::nullopt;
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

TEST_CASE("SES: a request refused for a clock that is off is signed again with the server's") {
    // The server's clock runs an hour ahead of this machine's. Like SES, it
    // refuses a signing time more than five minutes from its own, and puts
    // its time in Date.
    std::string mode = "server";
    std::vector<std::string> amz_dates;
    fake_server srv([&](const received& r) {
        amz_dates.push_back(r.header("x-amz-date"));
        const auto server_now = std::chrono::system_clock::now() + 1h;
        std::vector<std::pair<std::string, std::string>> date;
        if (mode != "no-date") date.push_back({"Date", http_date(server_now)});
        const auto signed_at = from_amz_date(r.header("x-amz-date"));
        if (!signed_at) return refuse("X-Amz-Date");
        const auto skew =
            *signed_at > server_now ? *signed_at - server_now : server_now - *signed_at;
        if (skew > 5min || mode == "always") {
            date.push_back({"x-amzn-ErrorType", "InvalidSignatureException"});
            return json_reply(
                403,
                R"({"message":"Signature expired: )" + r.header("x-amz-date") +
                    R"j( is now earlier than 20300101T115500Z (20300101T120000Z - 5 min.)"})j",
                date);
        }
        reply ok = ses_check(r, "us-east-1");
        ok.headers.insert(ok.headers.end(), date.begin(), date.end());
        return ok;
    });
    asio::io_context ioc;
    mailers::ses_params p;
    p.access_key_id = aws_key_id;
    p.secret_access_key = mailers::secret(aws_secret);
    p.endpoint = srv.url();

    SUBCASE("refused once, then accepted with the corrected time; later sends use it at once") {
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(r.out.provider_message_id == "0100018c-ses-message-id-000000");
        REQUIRE(amz_dates.size() == 2);
        CHECK(*from_amz_date(amz_dates[1]) - *from_amz_date(amz_dates[0]) > 55min);
        r = send_one(ioc, t, make_out());
        CHECK_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(amz_dates.size() == 3);
        CHECK(t.stats().accepted == 2);
    }
    SUBCASE("without a Date to correct the clock by, the refusal stands") {
        mode = "no-date";
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::authentication_failed);
        CHECK(r.out.diag.provider_code == "InvalidSignatureException");
        CHECK(amz_dates.size() == 1);
    }
    SUBCASE("signed again once only: a second refusal is the answer") {
        mode = "always";
        mailers::http_transport t(ioc.get_executor(), p);
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::authentication_failed);
        CHECK(r.out.diag.message.find("Signature expired") != std::string::npos);
        CHECK(amz_dates.size() == 2);
    }
    SUBCASE("a refusal whose Date agrees with the signing time is not about the clock") {
        mode = "always";
        mailers::http_transport t(ioc.get_executor(), p);
        REQUIRE(send_one(ioc, t, make_out()).ec);  // learns the server's clock
        amz_dates.clear();
        auto r = send_one(ioc, t, make_out());
        CHECK(r.ec == transport_errc::authentication_failed);
        CHECK(amz_dates.size() == 1);
    }
}

// Runs the connection check of the transport `dsn` builds.
std::pair<error_code, mailers::diagnostics> check_dsn(asio::io_context& ioc,
                                                      const std::string& dsn) {
    auto t = mailers::make_http_transport(ioc.get_executor(), dsn);
    REQUIRE(t);
    std::optional<std::pair<error_code, mailers::diagnostics>> out;
    (*t)->async_check(
        [&](error_code ec, mailers::diagnostics d) { out.emplace(ec, std::move(d)); });
    ioc.restart();
    while (!out && ioc.run_one_for(30s)) {
    }
    REQUIRE(out);
    return *out;
}

TEST_CASE("check: one read-only GET with the send's credentials; a wrong one fails as auth") {
    // The documented read-only requests, answered as the services answer
    // them: 200 with the right credentials, their refusal otherwise.
    fake_server srv([&](const received& r) {
        if (r.method != "GET") return refuse("a check sent " + r.method + " " + r.target);
        if (r.target == "/v2/email/account") {
            if (!check_sigv4(r, "eu-west-1").empty())
                return json_reply(
                    403, R"({"message":"The request signature we calculated does not match"})",
                    {{"x-amzn-ErrorType", "InvalidSignatureException"}});
            return json_reply(200, R"({"SendingEnabled":true})");
        }
        if (r.target == "/v3/domains/mg.brand.example")
            return r.header("authorization") == "Basic " + b64encode("api:key-right")
                       ? json_reply(200, R"({"domain":{"name":"mg.brand.example"}})")
                       : json_reply(401, "Forbidden");
        if (r.target == "/v3/scopes")
            return r.header("authorization") == "Bearer SG.right"
                       ? json_reply(200, R"({"scopes":["mail.send"]})")
                       : json_reply(
                             401,
                             R"({"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]})");
        if (r.target == "/server")
            return r.header("x-postmark-server-token") == "pm-right"
                       ? json_reply(200, R"({"ID":1,"Name":"Production"})")
                       : json_reply(
                             401,
                             R"({"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."})");
        return refuse("unknown check " + r.target);
    });
    const std::string ep = "endpoint=" + srv.url();
    struct variant {
        std::string good, bad, target;
    };
    const variant variants[] = {
        {"ses+api://AKIDEXAMPLE:wJalrXUtnFEMI/"
         "K7MDENG+bPxRfiCYEXAMPLEKEY@default?region=eu-west-1&" +
             ep,
         "ses+api://AKIDEXAMPLE:not-the-secret@default?region=eu-west-1&" + ep,
         "/v2/email/account"},
        {"mailgun+api://key-right:mg.brand.example@default?" + ep,
         "mailgun+api://key-wrong:mg.brand.example@default?" + ep, "/v3/domains/mg.brand.example"},
        {"sendgrid+api://SG.right@default?" + ep, "sendgrid+api://SG.wrong@default?" + ep,
         "/v3/scopes"},
        {"postmark+api://pm-right@default?" + ep, "postmark+api://pm-wrong@default?" + ep,
         "/server"},
    };
    asio::io_context ioc;
    const auto check = [&](const std::string& dsn) { return check_dsn(ioc, dsn); };
    for (const auto& v : variants) {
        CAPTURE(v.target);
        const auto good = check(v.good);
        CHECK_MESSAGE(!good.first, good.second.message);
        CHECK(good.second.message.find("GET " + v.target + " answered 200") != std::string::npos);
        const auto bad = check(v.bad);
        const auto& message = bad.second.message;
        CAPTURE(message);
        CHECK(bad.first == transport_errc::authentication_failed);
        CHECK(bad.first == failure::auth);
        CHECK(message.find("wrong") == std::string::npos);
        CHECK(message.find("not-the-secret") == std::string::npos);
    }
    for (const auto& r : srv.requests()) CHECK(r.method == "GET");
    CHECK(srv.request_count() == 8);
}

TEST_CASE("check: Graph fetches an access token and calls no API") {
    token_authority auth;
    std::atomic<int> api_calls{0};
    fake_server srv([&](const received& r) {
        if (r.target.ends_with("/oauth2/v2.0/token")) return auth.microsoft_token(r);
        ++api_calls;
        return refuse("a check called " + r.target);
    });
    asio::io_context ioc;
    const auto check = [&](const std::string& secret) {
        return check_dsn(ioc, "graph+api://app-id:" + secret +
                                  "@default?tenant=tenant-1&endpoint=" + srv.url() +
                                  "&token_endpoint=" + srv.url() + "/tenant-1/oauth2/v2.0/token");
    };
    const auto good = check("app-secret");
    CHECK_MESSAGE(!good.first, good.second.message);
    CHECK(good.second.message.find("an access token was issued") != std::string::npos);
    const auto bad = check("wrong");
    CHECK(bad.first == transport_errc::authentication_failed);
    CHECK(bad.second.provider_code == "invalid_client");
    CHECK(api_calls == 0);
}

TEST_CASE("engine: a Gmail provider's check fetches an access token and calls no API") {
    token_authority auth;
    std::atomic<int> api_calls{0};
    fake_server srv([&](const received& r) {
        if (r.target == "/token") return auth.google_token(r);
        ++api_calls;
        return refuse("a check called " + r.target);
    });
    auth.token_url = srv.url() + "/token";
    asio::io_context ioc;
    mailers::engine_params p;
    p.storage = mailers::open_sqlite_store({":memory:", mailers::open_mode::open_or_create});
    mailers::engine eng(ioc.get_executor(), std::move(p));
    const mailers::principal admin{"admin", "Admin"};
    ::setenv("MAILERS_TEST_GMAIL_REFRESH", "1//refresh", 1);
    const auto check = [&](const std::string& secret) {
        ::setenv("MAILERS_TEST_GMAIL_SECRET", secret.c_str(), 1);
        // Stored with the secret by reference, built with the variable as it is now.
        eng.save_provider(admin, "gw",
                          "gmail+api://cid.apps.googleusercontent.com:env:MAILERS_TEST_GMAIL_SECRET"
                          "@default?refresh_token=env:MAILERS_TEST_GMAIL_REFRESH&endpoint=" +
                              srv.url() + "&token_endpoint=" + auth.token_url);
        std::optional<std::pair<error_code, mailers::provider_check>> out;
        eng.async_check_provider(admin, "gw", [&](error_code ec, mailers::provider_check r) {
            out.emplace(ec, std::move(r));
        });
        ioc.restart();
        while (!out && ioc.run_one_for(30s)) {
        }
        REQUIRE(out);
        return *out;
    };
    const auto good = check("csecret");
    CHECK_MESSAGE(!good.first, good.second.diag.message);
    CHECK(good.second.transport == "gmail");
    const auto bad = check("wrong");
    CHECK(bad.first == failure::auth);
    CHECK(bad.second.diag.message.find("wrong") == std::string::npos);
    CHECK(api_calls == 0);
    ::unsetenv("MAILERS_TEST_GMAIL_SECRET");
    ::unsetenv("MAILERS_TEST_GMAIL_REFRESH");
}

TEST_CASE("throughput against the local fake provider (figures, not a gate)") {
    for (const char* which : {"postmark", "ses"}) {
        fake_server srv([&](const received& r) {
            return std::string(which) == "ses" ? ses_check(r, "us-east-1")
                                               : postmark_check(r, "tok");
        });
        asio::io_context ioc;
        const std::string dsn = std::string(which) == "ses"
                                    ? "ses+api://AKIDEXAMPLE:wJalrXUtnFEMI/"
                                      "K7MDENG+bPxRfiCYEXAMPLEKEY@default?endpoint=" +
                                          srv.url()
                                    : "postmark+api://tok@default?endpoint=" + srv.url();
        auto t = mailers::make_http_transport(ioc.get_executor(),
                                              std::string_view(dsn + "&max_connections=16"));
        REQUIRE(t);
        // One KiB of text, like the mission's benchmark message.
        auto base = make_out();
        base->msg.text = std::string(1024, 'a');
        base->msg.html.clear();
        const int n = 3000;
        int done = 0, failed = 0, in_flight = 0, started = 0;
        std::function<void()> launch = [&] {
            while (in_flight < 16 && started < n) {
                ++in_flight;
                ++started;
                (*t)->async_send(base, [&](error_code ec, send_outcome) {
                    --in_flight;
                    ++done;
                    if (ec) ++failed;
                    launch();
                });
            }
        };
        rusage before{}, after{};
        getrusage(RUSAGE_THREAD, &before);
        const auto start = std::chrono::steady_clock::now();
        launch();
        ioc.restart();
        while (done < n && ioc.run_one_for(30s)) {
        }
        const auto secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        getrusage(RUSAGE_THREAD, &after);
        const auto cpu_us = [](const rusage& u) {
            return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec +
                   u.ru_stime.tv_usec;
        };
        CHECK(done == n);
        CHECK(failed == 0);
        MESSAGE(std::string(which)
                << ": " << n << " messages at concurrency 16 in " << secs
                << " s = " << static_cast<int>(n / secs) << " msg/s; client thread CPU "
                << (cpu_us(after) - cpu_us(before)) / n << " us/message; "
                << (*t)->stats().connections_opened << " connections");
    }
}

TEST_CASE(
    "pre-rendered MIME: SES, Mailgun, Gmail and Graph send the bytes; SendGrid, Postmark "
    "refuse") {
    token_authority auth;
    std::vector<received> seen;
    std::mutex mu;
    fake_server srv([&](const received& r) {
        if (r.target == "/token") return auth.google_token(r);
        if (r.target.ends_with("/oauth2/v2.0/token")) return auth.microsoft_token(r);
        {
            std::lock_guard lock(mu);
            seen.push_back(r);
        }
        if (r.target.starts_with("/v2/email/")) return ses_check(r, "eu-west-1");
        if (r.target.starts_with("/v3/")) return mailgun_check(r, "key-secret", "mg.brand.example");
        if (r.target.starts_with("/gmail/"))
            return json_reply(200, R"({"id":"gm-1","threadId":"t","labelIds":["SENT"]})");
        reply ok;
        ok.status = 202;
        return ok;
    });
    auth.token_url = srv.url() + "/token";
    asio::io_context ioc;
    const std::string raw =
        "From: Rep One <rep@brand.example>\r\nTo: ann@example.com\r\n"
        "Message-ID: <raw-1@brand.example>\r\nSubject: Signed elsewhere\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=brand.example; s=s1; b=abc\r\n\r\n"
        "Body as the host rendered it.\r\n";
    auto raw_out = [&] {
        auto o = make_out();
        o->msg.subject.clear();
        o->msg.text.clear();
        o->msg.html.clear();
        o->msg.message_id = "raw-1@brand.example";
        o->env.rcpt_to.push_back("hidden@example.org");
        o->raw = raw;
        return o;
    };
    const auto last = [&] {
        std::lock_guard lock(mu);
        REQUIRE_FALSE(seen.empty());
        return seen.back();
    };

    auto ses = mailers::make_http_transport(
        ioc.get_executor(), std::string_view("ses+api://AKIDEXAMPLE:wJalrXUtnFEMI/"
                                             "K7MDENG+bPxRfiCYEXAMPLEKEY@default?region=eu-west-1"
                                             "&endpoint=" +
                                             srv.url()));
    REQUIRE(ses);
    auto r = send_one(ioc, **ses, raw_out());
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    json_doc j(last().body);
    REQUIRE(j.ok);
    CHECK(b64decode(j.str("/Content/Raw/Data")) == raw);
    CHECK(j.str("/Destination/ToAddresses/1") == "hidden@example.org");

    auto mg = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view("mailgun+api://key-secret:mg.brand.example@default?endpoint=" +
                         srv.url()));
    REQUIRE(mg);
    r = send_one(ioc, **mg, raw_out());
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    auto f = multipart_fields(last());
    CHECK(f["message"] == std::vector<std::string>{raw});
    CHECK(f["to"] == std::vector<std::string>{"ann@example.com", "hidden@example.org"});

    // The mailbox APIs deliver to the header recipients: envelope-only ones
    // go in a Bcc field put in front of the bytes, which are otherwise kept.
    auto gmail = mailers::make_http_transport(
        ioc.get_executor(), std::string_view("gmail+api://"
                                             "cid.apps.googleusercontent.com:csecret@default?"
                                             "refresh_token=1%2F%2Frefresh&endpoint=" +
                                             srv.url() + "&token_endpoint=" + auth.token_url));
    REQUIRE(gmail);
    r = send_one(ioc, **gmail, raw_out());
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    json_doc g(last().body);
    REQUIRE(g.ok);
    const auto gmail_mime = b64decode(g.str("/raw"));
    CHECK(gmail_mime.ends_with(raw));
    CHECK(gmail_mime.starts_with("Bcc: hidden@example.org\r\n"));

    auto graph = mailers::make_http_transport(
        ioc.get_executor(),
        std::string_view(
            "graph+api://app-id:app-secret@default?tenant=tenant-1&endpoint=" + srv.url() +
            "&token_endpoint=" + srv.url() + "/tenant-1/oauth2/v2.0/token"));
    REQUIRE(graph);
    r = send_one(ioc, **graph, raw_out());
    REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
    CHECK(r.out.provider_message_id == "raw-1@brand.example");
    CHECK(last().target.ends_with("/sendMail"));
    CHECK(last().header("content-type") == "text/plain");
    CHECK(b64decode(last().body).ends_with(raw));

    // Bare line ends would be sent as given: refused before any request.
    const auto before = srv.request_count();
    auto bare = raw_out();
    bare->raw = "From: rep@brand.example\nMessage-ID: <x@brand.example>\n\nbody\n";
    r = send_one(ioc, **ses, bare);
    CHECK(r.ec == mailers::errc::invalid_argument);
    CHECK(r.out.diag.message.find("LF without CR") != std::string::npos);

    for (const std::string dsn : {"sendgrid+api://SG.test-key@default?endpoint=",
                                  "postmark+api://pm-server-token@default?endpoint="}) {
        CAPTURE(dsn);
        auto t =
            mailers::make_http_transport(ioc.get_executor(), std::string_view(dsn + srv.url()));
        REQUIRE(t);
        r = send_one(ioc, **t, raw_out());
        CHECK(r.ec == mailers::errc::invalid_argument);
        CHECK(r.out.diag.message.find("pre-rendered") != std::string::npos);
    }
    CHECK(srv.request_count() == before);
}
