// webhook_server and sns_certificate_fetcher over real sockets on 127.0.0.1.
//
// The server runs on an io_context driven by a background thread; the
// tests talk to it with blocking sockets, as a provider would. SNS
// certificates come from a local TLS server standing in for
// sns.us-east-1.amazonaws.com, whose certificate a CA made here signs.

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mailers/sns_certificate_fetcher.hpp>
#include <mailers/webhook_server.hpp>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace mailers;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

const fs::path fixtures{MAILERS_SHARED_FIXTURES};

bool have_fixtures() {
    return fs::is_directory(fixtures / "webhooks") && fs::is_directory(fixtures / "signing");
}

// An io_context run by background threads for as long as the object lives.
struct runner {
    asio::io_context ioc;
    asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
    std::vector<std::thread> threads;

    explicit runner(int n = 1) {
        for (int i = 0; i < n; ++i) threads.emplace_back([this] { ioc.run(); });
    }
    ~runner() {
        guard.reset();
        ioc.stop();
        for (auto& t : threads) t.join();
    }
};

// What the callback received, per route path.
struct inbox {
    std::mutex mu;
    std::vector<std::pair<std::string, event>> events;
    int calls = 0;

    webhook_callback callback() {
        return [this](const webhook_route& r, webhook_result& res) {
            std::lock_guard lock(mu);
            ++calls;
            for (auto& e : res.events) events.emplace_back(r.path, std::move(e));
        };
    }
    std::size_t size() {
        std::lock_guard lock(mu);
        return events.size();
    }
};

// A blocking HTTP/1.1 client connection, as a provider would open.
struct client_conn {
    asio::io_context ioc;
    tcp::socket sock{ioc};
    beast::flat_buffer buf;

    explicit client_conn(std::uint16_t port) {
        sock.connect({asio::ip::make_address("127.0.0.1"), port});
        // A safety net against a hang, not a timing assertion.
        timeval tv{20, 0};
        ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    void send_raw(std::string_view bytes) { asio::write(sock, asio::buffer(bytes)); }

    bhttp::response<bhttp::string_body> post(
        const std::string& path, const std::string& body,
        const std::vector<std::pair<std::string, std::string>>& headers, bool keep = true,
        std::string method = "POST") {
        bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), path, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        for (const auto& [n, v] : headers) req.set(n, v);
        req.keep_alive(keep);
        req.body() = body;
        req.prepare_payload();
        bhttp::write(sock, req);
        return read();
    }
    bhttp::response<bhttp::string_body> read() {
        bhttp::response<bhttp::string_body> res;
        bhttp::read(sock, buf, res);
        return res;
    }
    // True once the server has closed the connection: a read sees the end
    // (or a reset) rather than data.
    bool closed_by_server() {
        char c;
        boost::system::error_code ec;
        const auto n = sock.read_some(asio::buffer(&c, 1), ec);
        return ec && n == 0;
    }
};

// A request built from a fixture body and its *.headers.txt.
struct fixture_req {
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

fixture_req fixture(const std::string& provider, const std::string& file) {
    fixture_req r;
    const auto dir = fixtures / "webhooks" / provider;
    r.body = read_file(dir / file);
    const auto headers = dir / (file.substr(0, file.rfind('.')) + ".headers.txt");
    if (fs::exists(headers)) {
        std::istringstream in(read_file(headers));
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            const auto colon = line.find(':');
            if (colon == std::string::npos || line.find(' ') < colon) continue;
            auto value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') value.erase(0, 1);
            r.headers.emplace_back(line.substr(0, colon), value);
        }
    } else {
        r.headers.emplace_back(
            "Content-Type", provider == "ses" ? "text/plain; charset=UTF-8" : "application/json");
    }
    return r;
}

// EXPECTED.tsv rows for one fixture: (type, recipient) in order.
std::vector<std::pair<std::string, std::string>> expected(const std::string& provider,
                                                          const std::string& file) {
    std::vector<std::pair<std::string, std::string>> rows;
    std::istringstream in(read_file(fixtures / "webhooks" / "EXPECTED.tsv"));
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> cols;
        std::istringstream ls(line);
        std::string c;
        while (std::getline(ls, c, '\t')) cols.push_back(c);
        if (cols.size() > 4 && cols[0] == provider && cols[1] == file)
            rows.emplace_back(cols[2], cols[4]);
    }
    return rows;
}

std::string sendgrid_public_key() {
    const auto v = read_file(fixtures / "signing" / "sendgrid" / "sendgrid-python-vector.json");
    const std::string tag = "\"public_key\": \"";
    const auto at = v.find(tag) + tag.size();
    return v.substr(at, v.find('"', at) - at);
}

constexpr std::string_view mailgun_key = "TEST_WEBHOOK_SIGNING_KEY";
constexpr std::string_view postmark_secret_path = "/hooks/postmark/9f2c1e7ab04d";
constexpr std::string_view sns_cert_url =
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";

// Routes for every provider, with the keys the shared fixtures are signed
// with and their years-old timestamps accepted.
std::vector<webhook_route> fixture_routes() {
    std::vector<webhook_route> routes;
    webhook_route ses{"/hooks/ses", webhook_provider::ses, {}};
    auto store = std::make_shared<memory_sns_certificate_store>();
    REQUIRE(store
                ->add(sns_cert_url, read_file(fixtures / "signing" / "sns" /
                                              "sns-cert-7ff5318490ec183fbaddaa2a969abfda.pem"))
                .has_value());
    ses.params.ses.certificates = store;
    ses.params.ses.check_certificate_dates = false;
    routes.push_back(ses);

    webhook_route mg{"/hooks/mailgun", webhook_provider::mailgun, {}};
    mg.params.mailgun.signing_key = std::string(mailgun_key);
    mg.params.mailgun.tolerance = std::chrono::seconds{std::int64_t{1} << 40};
    routes.push_back(mg);

    webhook_route sg{"/hooks/sendgrid", webhook_provider::sendgrid, {}};
    sg.params.sendgrid.public_key = sendgrid_public_key();
    sg.params.sendgrid.tolerance = std::chrono::seconds{std::int64_t{1} << 40};
    routes.push_back(sg);

    webhook_route pm{std::string(postmark_secret_path), webhook_provider::postmark, {}};
    pm.params.postmark.basic_user = "pm";
    pm.params.postmark.basic_password = "s3cret";
    routes.push_back(pm);
    return routes;
}

const std::pair<std::string, std::string> postmark_auth{"Authorization",
                                                        "Basic cG06czNjcmV0"};  // pm:s3cret

// ---------------------------------------------------------------------------
// Certificates made with OpenSSL's C API

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using x509_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    REQUIRE(ext != nullptr);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

struct keyed_cert {
    pkey_ptr key{nullptr, EVP_PKEY_free};
    x509_ptr cert{nullptr, X509_free};

    std::string cert_pem() const {
        std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new(BIO_s_mem()), BIO_free);
        PEM_write_bio_X509(b.get(), cert.get());
        char* d = nullptr;
        const long n = BIO_get_mem_data(b.get(), &d);
        return std::string(d, static_cast<std::size_t>(n));
    }
    std::string key_pem() const {
        std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new(BIO_s_mem()), BIO_free);
        PEM_write_bio_PrivateKey(b.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        char* d = nullptr;
        const long n = BIO_get_mem_data(b.get(), &d);
        return std::string(d, static_cast<std::size_t>(n));
    }
};

// A CA when `issuer` is null (self-signed, CA:TRUE), else a leaf for `dns`
// signed by it. `rsa` for SNS signing certificates, which must hold RSA keys.
keyed_cert make_cert(const char* cn, const keyed_cert* issuer, const char* dns, bool rsa = false) {
    static std::atomic<long> serial{1};
    keyed_cert k;
    k.key.reset(rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"));
    REQUIRE(k.key);
    k.cert.reset(X509_new());
    X509* x = k.cert.get();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k.key.get());
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                               -1, -1, 0);
    X509* signer = issuer ? issuer->cert.get() : x;
    X509_set_issuer_name(x, X509_get_subject_name(signer));
    if (!issuer) {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
        if (dns) add_ext(x, signer, NID_subject_alt_name, (std::string("DNS:") + dns).c_str());
    }
    REQUIRE(X509_sign(x, issuer ? issuer->key.get() : k.key.get(), EVP_sha256()) > 0);
    return k;
}

std::string base64(const unsigned char* data, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    const int len =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

// An SNS Notification carrying an SES Bounce record for `recipient`, signed
// (SignatureVersion 2) with `signer`'s key, naming `cert_url`.
// The SNS message `envelope(signature)` makes, signed by `signer` (version 2,
// SHA-256).
std::string signed_sns(const keyed_cert& signer,
                       const std::function<std::string(std::string_view)>& envelope) {
    const auto to_sign = sns_string_to_sign(envelope("x"));
    REQUIRE(to_sign.has_value());
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, signer.key.get()) == 1);
    std::size_t len = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(to_sign->data());
    REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, in, to_sign->size()) == 1);
    std::vector<unsigned char> sig(len);
    REQUIRE(EVP_DigestSign(ctx.get(), sig.data(), &len, in, to_sign->size()) == 1);
    return envelope(base64(sig.data(), len));
}

std::string signed_sns_bounce(const keyed_cert& signer, std::string_view cert_url,
                              std::string_view recipient, std::string_view message_id) {
    const std::string record =
        R"({"eventType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",)"
        R"("bouncedRecipients":[{"emailAddress":")" +
        std::string(recipient) +
        R"(","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 no such user"}],)"
        R"("timestamp":"2026-12-07T08:00:00.000Z","feedbackId":"fb-)" +
        std::string(message_id) +
        R"("},"mail":{"timestamp":"2026-12-07T07:59:00.000Z","source":"rep@brand.example",)"
        R"("messageId":")" +
        std::string(message_id) + R"(","destination":[")" + std::string(recipient) + R"("]}})";
    const auto envelope = [&](std::string_view signature) {
        return R"({"Type":"Notification","MessageId":")" + std::string(message_id) +
               R"(","TopicArn":"arn:aws:sns:us-east-1:123456789012:ses-events","Message":")" +
               json_escape(record) +
               R"(","Timestamp":"2026-12-07T08:00:01.000Z","SignatureVersion":"2","Signature":")" +
               std::string(signature) + R"(","SigningCertURL":")" + std::string(cert_url) + R"("})";
    };
    return signed_sns(signer, envelope);
}

// A SubscriptionConfirmation for topic `topic` whose SubscribeURL is
// `subscribe_url`, signed by `signer`.
std::string signed_sns_confirmation(const keyed_cert& signer, std::string_view cert_url,
                                    std::string_view subscribe_url, std::string_view topic) {
    return signed_sns(signer, [&](std::string_view signature) {
        return R"({"Type":"SubscriptionConfirmation","MessageId":"c-1","Token":"tok-1","TopicArn":")" +
               std::string(topic) +
               R"(","Message":"You have chosen to subscribe.","SubscribeURL":")" +
               std::string(subscribe_url) +
               R"(","Timestamp":"2026-12-07T08:00:01.000Z","SignatureVersion":"2","Signature":")" +
               std::string(signature) + R"(","SigningCertURL":")" + std::string(cert_url) + R"("})";
    });
}

// A TLS server standing in for an SNS host: GET <path> answers the body
// held for it, else 404. Counts connections and requests.
struct pem_server {
    asio::io_context& ioc;
    asio::ssl::context tls{asio::ssl::context::tls_server};
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    std::mutex mu;
    std::map<std::string, std::string> bodies;
    std::atomic<int> connections{0};
    std::atomic<int> requests{0};

    pem_server(asio::io_context& io, const keyed_cert& server_cert) : ioc(io) {
        const auto cert = server_cert.cert_pem();
        const auto key = server_cert.key_pem();
        tls.use_certificate_chain(asio::buffer(cert));
        tls.use_private_key(asio::buffer(key), asio::ssl::context::pem);
        asio::co_spawn(ioc, accept_loop(), asio::detached);
    }
    ~pem_server() {
        std::promise<void> closed;
        asio::post(ioc, [&] {
            acceptor.close();
            closed.set_value();
        });
        closed.get_future().wait();
    }
    std::uint16_t port() const { return acceptor.local_endpoint().port(); }
    void serve(const std::string& path, std::string body) {
        std::lock_guard lock(mu);
        bodies[path] = std::move(body);
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
            if (ec) co_return;
            ++connections;
            asio::co_spawn(ioc, session(std::move(sock)), asio::detached);
        }
    }
    asio::awaitable<void> session(tcp::socket sock) {
        asio::ssl::stream<tcp::socket> s(std::move(sock), tls);
        auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::server, use_tuple);
        if (hec) co_return;
        beast::flat_buffer buf;
        for (;;) {
            bhttp::request<bhttp::string_body> req;
            auto [rec, rn] = co_await bhttp::async_read(s, buf, req, use_tuple);
            if (rec) co_return;
            ++requests;
            bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
            {
                std::lock_guard lock(mu);
                auto it = bodies.find(std::string(req.target()));
                if (it == bodies.end())
                    res.result(bhttp::status::not_found);
                else
                    res.body() = it->second;
            }
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            auto [wec, wn] = co_await bhttp::async_write(s, res, use_tuple);
            if (wec || !req.keep_alive()) co_return;
        }
    }
};

// The test PKI: a CA, the stand-in SNS host's TLS certificate, an SNS
// signing certificate, and a second CA that trusts none of them.
struct sns_pki {
    keyed_cert ca = make_cert("mailers webhook test CA", nullptr, nullptr);
    keyed_cert host = make_cert("sns.us-east-1.amazonaws.com", &ca, "sns.us-east-1.amazonaws.com");
    keyed_cert signer = make_cert("sns.amazonaws.com", &ca, nullptr, true);
    keyed_cert other_ca = make_cert("some other CA", nullptr, nullptr);
    fs::path dir =
        fs::temp_directory_path() / ("mailers-webhook-server-" + std::to_string(::getpid()));
    fs::path ca_file = dir / "ca.pem";
    fs::path other_ca_file = dir / "other-ca.pem";

    sns_pki() {
        fs::create_directories(dir);
        std::ofstream(ca_file) << ca.cert_pem();
        std::ofstream(other_ca_file) << other_ca.cert_pem();
    }
    ~sns_pki() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

constexpr std::string_view own_cert_path = "/SimpleNotificationService-mailerstest.pem";
const std::string own_cert_url = "https://sns.us-east-1.amazonaws.com" + std::string(own_cert_path);

sns_certificate_fetcher_params fetcher_params(const sns_pki& pki, const pem_server& srv,
                                              const fs::path& ca_file) {
    sns_certificate_fetcher_params p;
    p.ca_file = ca_file.string();
    p.timeout = 5s;
    p.connect_to.push_back({"sns.us-east-1.amazonaws.com", 443, "127.0.0.1", srv.port()});
    // A non-SNS host pointed at the same server: a refusal must come from
    // the URL rule, not from a failed connection.
    p.connect_to.push_back({"evil.example.com", 443, "127.0.0.1", srv.port()});
    (void)pki;
    return p;
}

using fetched = std::pair<error_code, std::shared_ptr<const sns_certificate>>;

std::future<fetched> fetch_later(sns_certificate_fetcher& f, const std::string& url) {
    auto done = std::make_shared<std::promise<fetched>>();
    auto result = done->get_future();
    f.async_fetch(url, [done](error_code ec, std::shared_ptr<const sns_certificate> cert) {
        done->set_value({ec, std::move(cert)});
    });
    return result;
}

}  // namespace

// ---------------------------------------------------------------------------

TEST_CASE("every provider route accepts its signed fixture and delivers its events") {
    if (!have_fixtures()) {
        MESSAGE("skipped: " << fixtures.string() << " is absent");
        return;
    }
    runner run;
    inbox got;
    webhook_server_params p;
    p.routes = fixture_routes();
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    const auto port = server.local_endpoint().port();
    CHECK(port != 0);

    struct item {
        std::string provider, file, path;
        bool auth = false;
    };
    const std::vector<item> items = {
        {"ses", "real-signed-complaint.json", "/hooks/ses"},
        {"ses", "real-signed-bounce-permanent.json", "/hooks/ses"},
        {"mailgun", "docs-delivered.json", "/hooks/mailgun"},
        {"sendgrid", "signed-sendgrid-python-dropped.json", "/hooks/sendgrid"},
        {"postmark", "pmdocs-bounce-hardbounce.json", std::string(postmark_secret_path), true},
    };
    for (const auto& it : items) {
        CAPTURE(it.file);
        auto req = fixture(it.provider, it.file);
        if (it.auth) req.headers.push_back(postmark_auth);
        const auto before = got.size();
        client_conn c(port);
        const auto res = c.post(it.path, req.body, req.headers);
        CHECK(res.result_int() == 200);
        const auto want = expected(it.provider, it.file);
        REQUIRE(!want.empty());
        std::lock_guard lock(got.mu);
        REQUIRE(got.events.size() - before == want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            const auto& [path, e] = got.events[before + i];
            CHECK(path == it.path);
            CHECK(to_string(e.type) == want[i].first);
            CHECK(e.recipient == want[i].second);
            CHECK(e.provider == it.provider);
        }
    }
}

TEST_CASE("a bad signature or missing credentials get a 4xx and no events") {
    if (!have_fixtures()) {
        MESSAGE("skipped: " << fixtures.string() << " is absent");
        return;
    }
    runner run;
    inbox got;
    webhook_server_params p;
    p.routes = fixture_routes();
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    const auto port = server.local_endpoint().port();

    auto mg = fixture("mailgun", "docs-delivered.json");
    const auto at = mg.body.find("3514f9ca");
    REQUIRE(at != std::string::npos);
    mg.body[at] = '4';
    auto sg = fixture("sendgrid", "signed-sendgrid-python-dropped.json");
    sg.body.replace(sg.body.find("hello@world.com"), 5, "HELLO");
    auto ses = fixture("ses", "real-signed-complaint.json");
    ses.body.replace(ses.body.find("abuse"), 5, "fraud");
    const auto pm = fixture("postmark", "pmdocs-bounce-hardbounce.json");

    client_conn c(port);
    CHECK(c.post("/hooks/mailgun", mg.body, mg.headers).result_int() == 403);
    CHECK(c.post("/hooks/sendgrid", sg.body, sg.headers).result_int() == 403);
    CHECK(c.post("/hooks/ses", ses.body, ses.headers).result_int() == 403);
    CHECK(c.post(std::string(postmark_secret_path), pm.body, pm.headers).result_int() == 401);
    auto wrong = pm.headers;
    wrong.emplace_back("Authorization", "Basic cG06d3Jvbmc=");  // pm:wrong
    CHECK(c.post(std::string(postmark_secret_path), pm.body, wrong).result_int() == 403);
    CHECK(got.size() == 0);
    CHECK(got.calls == 0);
}

TEST_CASE("unknown paths get 404, other methods 405 with Allow") {
    runner run;
    inbox got;
    webhook_server_params p;
    webhook_route r{"/hooks/postmark/abc", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    const auto port = server.local_endpoint().port();
    {
        client_conn c(port);
        CHECK(c.post("/hooks/postmark/abd", "{}", {}).result_int() == 404);
    }
    {
        client_conn c(port);
        CHECK(c.post("/hooks/postmark", "{}", {}).result_int() == 404);
    }
    {
        client_conn c(port);
        const auto res = c.post("/hooks/postmark/abc", "", {}, true, "GET");
        CHECK(res.result_int() == 405);
        CHECK(res[bhttp::field::allow] == "POST");
    }
    CHECK(got.calls == 0);
}

TEST_CASE("a body over the limit gets 413 before it is read") {
    runner run;
    inbox got;
    webhook_server_params p;
    p.max_body_bytes = 1024;
    webhook_route r{"/hooks/sendgrid", webhook_provider::sendgrid, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    webhook_server server(run.ioc.get_executor(), p, got.callback());

    SUBCASE("declared by Content-Length") {
        client_conn c(server.local_endpoint().port());
        // Announces 100 MB and sends a little: the answer must come without
        // the rest.
        c.send_raw(
            "POST /hooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000000\r\n\r\n[");
        c.send_raw(std::string(4096, ' '));
        const auto res = c.read();
        CHECK(res.result_int() == 413);
        CHECK(!res.keep_alive());
        CHECK(c.closed_by_server());
    }
    SUBCASE("chunked") {
        client_conn c(server.local_endpoint().port());
        c.send_raw(
            "POST /hooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 4; ++i) c.send_raw("200\r\n" + std::string(512, ' ') + "\r\n");
        const auto res = c.read();
        CHECK(res.result_int() == 413);
    }
    SUBCASE("headers over their limit get 431") {
        client_conn c(server.local_endpoint().port());
        c.send_raw("POST /hooks/sendgrid HTTP/1.1\r\nHost: x\r\nX-Big: " +
                   std::string(32 * 1024, 'a') + "\r\n\r\n");
        CHECK(c.read().result_int() == 431);
    }
    CHECK(got.calls == 0);
}

TEST_CASE("slow and idle clients are disconnected after their timeouts") {
    runner run;
    inbox got;
    webhook_server_params p;
    p.read_timeout = 300ms;
    p.idle_timeout = 300ms;
    webhook_route r{"/hooks/postmark", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    const auto port = server.local_endpoint().port();

    SUBCASE("a connection that never sends a request") {
        client_conn c(port);
        CHECK(c.closed_by_server());
    }
    SUBCASE("a connection idle after a request") {
        client_conn c(port);
        CHECK(c.post("/hooks/postmark", R"({"RecordType":"Delivery"})", {}).result_int() != 0);
        CHECK(c.closed_by_server());
    }
    SUBCASE("headers trickling in, a byte at a time") {
        // Each byte arrives well within the timeout; the request as a whole
        // does not, so the server must close while bytes still come.
        client_conn c(port);
        const std::string head =
            "POST /hooks/postmark HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(100000, 'a');
        bool closed = false;
        for (std::size_t i = 0; i < 1000 && !closed; ++i) {
            boost::system::error_code ec;
            c.sock.write_some(asio::buffer(&head[i], 1), ec);
            char b;
            const auto n = ::recv(c.sock.native_handle(), &b, 1, MSG_DONTWAIT);
            closed = ec || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
            std::this_thread::sleep_for(20ms);
        }
        CHECK(closed);
    }
    CHECK(server.stats().connections_open <= 1);
}

TEST_CASE("several requests on one keep-alive connection") {
    runner run;
    inbox got;
    webhook_server_params p;
    webhook_route r{"/hooks/postmark", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    client_conn c(server.local_endpoint().port());
    const std::string body =
        R"({"RecordType":"Delivery","MessageID":"m-1","Recipient":"ann@example.com",)"
        R"("DeliveredAt":"2026-12-07T08:00:00Z","ServerID":1,"MessageStream":"outbound"})";
    for (int i = 0; i < 5; ++i) {
        const auto res = c.post("/hooks/postmark", body, {{"Content-Type", "application/json"}});
        CHECK(res.result_int() == 200);
        CHECK(res.keep_alive());
    }
    CHECK(got.size() == 5);
    CHECK(server.stats().connections_accepted == 1);
    CHECK(server.stats().requests == 5);
}

TEST_CASE("200 concurrent connections within a connection limit of 8") {
    // Two threads run the server, so connections are served in parallel.
    runner run(2);
    inbox got;
    webhook_server_params p;
    p.max_connections = 8;
    webhook_route r{"/hooks/postmark", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    const auto port = server.local_endpoint().port();

    const std::string body =
        R"({"RecordType":"Delivery","MessageID":"m-1","Recipient":"ann@example.com",)"
        R"("DeliveredAt":"2026-12-07T08:00:00Z","ServerID":1,"MessageStream":"outbound"})";
    asio::io_context clients;
    std::atomic<int> ok{0};
    for (int i = 0; i < 200; ++i) {
        asio::co_spawn(
            clients,
            [&]() -> asio::awaitable<void> {
                tcp::socket s(clients);
                auto [cec] = co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port},
                                                      use_tuple);
                if (cec) co_return;
                bhttp::request<bhttp::string_body> req{bhttp::verb::post, "/hooks/postmark", 11};
                req.set(bhttp::field::host, "127.0.0.1");
                req.set(bhttp::field::content_type, "application/json");
                req.body() = body;
                req.prepare_payload();
                auto [wec, wn] = co_await bhttp::async_write(s, req, use_tuple);
                if (wec) co_return;
                beast::flat_buffer buf;
                bhttp::response<bhttp::string_body> res;
                auto [rec, rn] = co_await bhttp::async_read(s, buf, res, use_tuple);
                if (rec || res.result_int() != 200) co_return;
                // Hold the kept-alive connection a moment, so that clients
                // overlap and the limit is what keeps them out.
                asio::steady_timer t(clients, 20ms);
                co_await t.async_wait(use_tuple);
                ++ok;
            },
            asio::detached);
    }
    clients.run();
    CHECK(ok == 200);
    CHECK(got.size() == 200);
    const auto st = server.stats();
    CHECK(st.connections_accepted == 200);
    CHECK(st.connections_peak <= 8);
    CHECK(st.connections_peak >= 2);
}

TEST_CASE("a callback that throws gets 500, and the server keeps serving") {
    runner run;
    std::vector<std::string> logged;
    std::mutex log_mu;
    std::atomic<int> calls{0};
    webhook_server_params p;
    p.log.level = log_level::error;
    p.log.sink = [&](log_level, std::string_view m) {
        std::lock_guard lock(log_mu);
        logged.emplace_back(m);
    };
    webhook_route r{"/hooks/postmark", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    webhook_server server(run.ioc.get_executor(), p, [&](const webhook_route&, webhook_result&) {
        if (++calls == 1) throw std::runtime_error("store is down");
    });
    const std::string body =
        R"({"RecordType":"Delivery","MessageID":"m-1","Recipient":"ann@example.com",)"
        R"("DeliveredAt":"2026-12-07T08:00:00Z","ServerID":1,"MessageStream":"outbound"})";
    client_conn c(server.local_endpoint().port());
    CHECK(c.post("/hooks/postmark", body, {}).result_int() == 500);
    CHECK(c.post("/hooks/postmark", body, {}).result_int() == 200);
    client_conn c2(server.local_endpoint().port());
    CHECK(c2.post("/hooks/postmark", body, {}).result_int() == 200);
    CHECK(calls == 3);
    CHECK(server.stats().callback_errors == 1);
    std::lock_guard lock(log_mu);
    REQUIRE(logged.size() == 1);
    CHECK(logged[0].find("store is down") != std::string::npos);
}

TEST_CASE("a Mailgun request whose callback threw is taken when Mailgun retries its token") {
    if (!have_fixtures()) {
        MESSAGE("skipped: " << fixtures.string() << " is absent");
        return;
    }
    runner run;
    std::atomic<int> calls{0};
    webhook_server_params p;
    p.routes = fixture_routes();
    auto cache = std::make_shared<memory_replay_cache>();
    for (auto& r : p.routes)
        if (r.provider == webhook_provider::mailgun) r.params.mailgun.replay = cache;
    webhook_server server(run.ioc.get_executor(), p, [&](const webhook_route&, webhook_result&) {
        if (++calls == 1) throw std::runtime_error("store is down");
    });
    const auto mg = fixture("mailgun", "docs-delivered.json");
    client_conn c(server.local_endpoint().port());
    CHECK(c.post("/hooks/mailgun", mg.body, mg.headers).result_int() == 500);
    CHECK(cache->size() == 0);
    CHECK(c.post("/hooks/mailgun", mg.body, mg.headers).result_int() == 200);
    // Taken, the token is spent.
    CHECK(c.post("/hooks/mailgun", mg.body, mg.headers).result_int() == 403);
    CHECK(calls == 2);
}

TEST_CASE("stop() closes idle connections, finishes busy ones and lets run() return") {
    asio::io_context ioc;
    inbox got;
    webhook_server_params p;
    webhook_route r{"/hooks/postmark", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    auto server = std::make_unique<webhook_server>(ioc.get_executor(), p, got.callback());
    std::thread t([&] { ioc.run(); });
    const auto port = server->local_endpoint().port();
    const std::string body =
        R"({"RecordType":"Delivery","MessageID":"m-1","Recipient":"ann@example.com",)"
        R"("DeliveredAt":"2026-12-07T08:00:00Z","ServerID":1,"MessageStream":"outbound"})";

    client_conn idle(port);
    CHECK(idle.post("/hooks/postmark", body, {}).result_int() == 200);
    // The answer can arrive before the server has finished with it.
    while (server->stats().requests_in_progress != 0) std::this_thread::sleep_for(1ms);
    client_conn busy(port);
    const std::string head =
        "POST /hooks/postmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n";
    busy.send_raw(head);
    while (server->stats().requests_in_progress < 1) std::this_thread::sleep_for(1ms);

    server->stop();
    CHECK(idle.closed_by_server());
    busy.send_raw(body);
    const auto res = busy.read();
    CHECK(res.result_int() == 200);
    CHECK(!res.keep_alive());
    CHECK(busy.closed_by_server());
    CHECK(server->stats().requests_in_progress == 0);
    // New connections are refused once the listener is closed.
    boost::system::error_code ec;
    asio::io_context cio;
    tcp::socket late(cio);
    for (int i = 0; i < 100 && !ec; ++i) {
        late.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
        if (!ec) {
            late.close();
            std::this_thread::sleep_for(10ms);
        }
    }
    CHECK(ec);
    server.reset();
    t.join();  // nothing left on the io_context
    CHECK(got.size() == 2);
}

TEST_CASE("SNS certificates are fetched through connect_to over verified TLS, and cached") {
    runner run;
    sns_pki pki;
    pem_server sns(run.ioc, pki.host);
    sns.serve(std::string(own_cert_path), pki.signer.cert_pem());
    auto fetcher = std::make_shared<sns_certificate_fetcher>(run.ioc.get_executor(),
                                                             fetcher_params(pki, sns, pki.ca_file));

    inbox got;
    webhook_server_params p;
    p.sns_certificates = fetcher;
    p.routes.push_back({"/hooks/ses", webhook_provider::ses, {}});
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    client_conn c(server.local_endpoint().port());
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "text/plain; charset=UTF-8"}, {"x-amz-sns-message-type", "Notification"}};

    auto res =
        c.post("/hooks/ses", signed_sns_bounce(pki.signer, own_cert_url, "ann@example.com", "m-1"),
               headers);
    CHECK(res.result_int() == 200);
    res = c.post("/hooks/ses",
                 signed_sns_bounce(pki.signer, own_cert_url, "bob@example.com", "m-2"), headers);
    CHECK(res.result_int() == 200);
    {
        std::lock_guard lock(got.mu);
        REQUIRE(got.events.size() == 2);
        CHECK(got.events[0].second.type == event_type::bounced);
        CHECK(got.events[0].second.recipient == "ann@example.com");
        CHECK(got.events[1].second.recipient == "bob@example.com");
    }
    // The second message found the certificate in the cache.
    CHECK(fetcher->stats().fetches == 1);
    CHECK(fetcher->stats().cached == 1);
    CHECK(sns.requests == 1);

    SUBCASE("a forged message gets 403 and fetches nothing more") {
        auto forged = signed_sns_bounce(pki.other_ca, own_cert_url, "eve@example.com", "m-3");
        CHECK(c.post("/hooks/ses", forged, headers).result_int() == 403);
        CHECK(fetcher->stats().fetches == 1);
    }
    SUBCASE("a certificate URL off the SNS hosts is refused before any fetch") {
        const auto off = std::string("https://evil.example.com/SimpleNotificationService-x.pem");
        CHECK(c.post("/hooks/ses", signed_sns_bounce(pki.signer, off, "eve@example.com", "m-5"),
                     headers)
                  .result_int() == 403);
        CHECK(fetcher->stats().fetches == 1);
        CHECK(sns.connections == 1);
    }
    SUBCASE("an unreachable certificate gets 503, so that SNS delivers again") {
        const auto missing = std::string("https://sns.us-east-1.amazonaws.com/missing.pem");
        CHECK(c.post("/hooks/ses", signed_sns_bounce(pki.signer, missing, "cy@example.com", "m-4"),
                     headers)
                  .result_int() == 503);
        CHECK(fetcher->stats().failures == 1);
    }
}

TEST_CASE("the fetcher refuses what it must not trust") {
    runner run;
    sns_pki pki;
    pem_server sns(run.ioc, pki.host);
    sns.serve(std::string(own_cert_path), pki.signer.cert_pem());
    sns.serve("/big.pem", std::string(100 * 1024, 'A'));
    sns.serve("/not-a-cert.pem", "hello");

    const auto fetch = [&](sns_certificate_fetcher& f, const std::string& url) {
        auto [ec, cert] = fetch_later(f, url).get();
        CHECK((ec ? cert == nullptr : cert != nullptr));
        return ec;
    };

    SUBCASE("a host that is not SNS, without connecting") {
        sns_certificate_fetcher f(run.ioc.get_executor(), fetcher_params(pki, sns, pki.ca_file));
        CHECK(fetch(f, "https://evil.example.com/SimpleNotificationService-x.pem") ==
              make_error_code(errc::invalid_argument));
        CHECK(fetch(f, "https://sns.us-east-1.amazonaws.com.evil.example.com/x.pem") ==
              make_error_code(errc::invalid_argument));
        CHECK(fetch(f, "http://sns.us-east-1.amazonaws.com/x.pem") ==
              make_error_code(errc::invalid_argument));
        CHECK(f.stats().refused == 3);
        CHECK(f.stats().fetches == 0);
        CHECK(sns.connections == 0);
    }
    SUBCASE("a server certificate no trusted CA signed") {
        sns_certificate_fetcher f(run.ioc.get_executor(),
                                  fetcher_params(pki, sns, pki.other_ca_file));
        CHECK(fetch(f, own_cert_url) == make_error_code(transport_errc::tls_verification_failed));
        CHECK(sns.requests == 0);
        CHECK(f.find(own_cert_url) == nullptr);
    }
    SUBCASE("a body over the size limit") {
        auto fp = fetcher_params(pki, sns, pki.ca_file);
        fp.max_certificate_bytes = 8 * 1024;
        sns_certificate_fetcher f(run.ioc.get_executor(), fp);
        CHECK(fetch(f, "https://sns.us-east-1.amazonaws.com/big.pem"));
        CHECK(f.stats().failures == 1);
        CHECK(f.stats().cached == 0);
    }
    SUBCASE("a body that is not a certificate") {
        sns_certificate_fetcher f(run.ioc.get_executor(), fetcher_params(pki, sns, pki.ca_file));
        CHECK(fetch(f, "https://sns.us-east-1.amazonaws.com/not-a-cert.pem") ==
              make_error_code(errc::invalid_argument));
    }
    SUBCASE("concurrent fetches of one URL share one request") {
        sns_certificate_fetcher f(run.ioc.get_executor(), fetcher_params(pki, sns, pki.ca_file));
        std::vector<std::future<fetched>> waits;
        for (int i = 0; i < 8; ++i) waits.push_back(fetch_later(f, own_cert_url));
        for (auto& w : waits) {
            auto [ec, cert] = w.get();
            CHECK(!ec);
            CHECK(cert != nullptr);
        }
        CHECK(f.stats().fetches == 1);
        CHECK(sns.requests == 1);
        CHECK(f.find(own_cert_url) != nullptr);
    }
}

TEST_CASE("one-click unsubscribe: GET shows a button and applies nothing, POST applies the token") {
    runner run;
    const std::string secret = "a-secret-of-at-least-16-bytes";
    std::mutex mu;
    std::vector<std::string> applied;
    webhook_server_params p;
    p.unsubscribe = [&](std::string_view token) {
        const auto c = check_unsubscribe_token(
            token, secret,
            std::chrono::time_point_cast<duration>(std::chrono::system_clock::now()));
        if (c.status == unsubscribe_token_status::valid) {
            std::lock_guard lock(mu);
            applied.push_back(c.claims.recipient);
        }
        return c.status;
    };
    webhook_server server(run.ioc.get_executor(), p, nullptr);
    const auto port = server.local_endpoint().port();
    const auto now = std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
    const auto token = make_unsubscribe_token(
        {"default", "ana@prospect.example", 7, now + std::chrono::hours(24)}, secret);
    const auto link = unsubscribe_link("https://mail.brand.example/unsubscribe", token);
    const auto path = link.substr(link.find("/unsubscribe"));
    auto count = [&] {
        std::lock_guard lock(mu);
        return applied.size();
    };

    client_conn c(port);
    // A link scanner or preview follows the link: nothing happens.
    auto page = c.post(path, "", {}, true, "GET");
    CHECK(page.result_int() == 200);
    CHECK(page[bhttp::field::content_type] == "text/html; charset=utf-8");
    CHECK(page.body().find("<form method=\"post\" action=\"/unsubscribe?t=" + token + "\">") !=
          std::string::npos);
    CHECK(page.body().find("List-Unsubscribe") != std::string::npos);
    CHECK(count() == 0);

    // RFC 8058: the mailbox provider POSTs List-Unsubscribe=One-Click.
    auto done = c.post(path, "List-Unsubscribe=One-Click",
                       {{"Content-Type", "application/x-www-form-urlencoded"}});
    CHECK(done.result_int() == 200);
    CHECK(count() == 1);
    CHECK(applied.at(0) == "ana@prospect.example");

    auto altered = token;
    altered[3] = altered[3] == 'A' ? 'B' : 'A';
    CHECK(c.post("/unsubscribe?t=" + altered, "List-Unsubscribe=One-Click", {}).result_int() ==
          403);
    const auto expired = make_unsubscribe_token(
        {"default", "bo@prospect.example", 8, now - std::chrono::hours(1)}, secret);
    CHECK(c.post("/unsubscribe?t=" + expired, "List-Unsubscribe=One-Click", {}).result_int() ==
          410);
    CHECK(c.post("/unsubscribe", "List-Unsubscribe=One-Click", {}).result_int() == 400);
    CHECK(c.post("/unsubscribe?t=nope", "List-Unsubscribe=One-Click", {}).result_int() == 400);
    // Not a token's alphabet: refused, and never written back into the page.
    const auto hostile = c.post("/unsubscribe?t=%22%3E%3Cscript%3E", "", {}, true, "GET");
    CHECK(hostile.result_int() == 400);
    CHECK(hostile.body().find("<script>") == std::string::npos);
    const auto put = c.post(path, "", {}, true, "PUT");
    CHECK(put.result_int() == 405);
    CHECK(put[bhttp::field::allow] == "GET, POST");
    CHECK(count() == 1);
}

TEST_CASE("an unsubscribe handler that throws gets 500 and the server keeps serving") {
    runner run;
    webhook_server_params p;
    int calls = 0;
    p.unsubscribe = [&](std::string_view) -> unsubscribe_token_status {
        if (++calls == 1) throw std::runtime_error("store down");
        return unsubscribe_token_status::valid;
    };
    webhook_server server(run.ioc.get_executor(), p, nullptr);
    client_conn c(server.local_endpoint().port());
    CHECK(c.post("/unsubscribe?t=abc.def", "List-Unsubscribe=One-Click", {}).result_int() == 500);
    CHECK(c.post("/unsubscribe?t=abc.def", "List-Unsubscribe=One-Click", {}).result_int() == 200);
}

TEST_CASE("the metrics path serves the host's text and the server's counters") {
    runner run;
    webhook_server_params p;
    webhook_route r{"/hooks/postmark", webhook_provider::postmark, {}};
    r.params.verify = false;
    p.routes.push_back(r);
    p.metrics = [] { return std::string("# TYPE host_up gauge\nhost_up 1"); };
    inbox got;
    webhook_server server(run.ioc.get_executor(), p, got.callback());
    client_conn c(server.local_endpoint().port());
    auto res = c.post("/metrics", "", {}, true, "GET");
    CHECK(res.result_int() == 200);
    CHECK(res[bhttp::field::content_type] == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(res.body().starts_with("# TYPE host_up gauge\nhost_up 1\n"));
    CHECK(res.body().find("\nmailers_webhook_server_connections_total 1\n") != std::string::npos);
    CHECK(res.body().find("\nmailers_webhook_server_requests_total 0\n") != std::string::npos);
    res = c.post("/metrics", "", {}, true, "GET");
    CHECK(res.body().find("\nmailers_webhook_server_requests_total 1\n") != std::string::npos);
    // Webhook routes still work beside it.
    CHECK(c.post("/hooks/postmark", "{\"RecordType\":\"Delivery\"}", {}).result_int() / 100 != 5);
    CHECK(c.post("/metrics", "", {}, true, "POST").result_int() == 405);

    webhook_server_params clash;
    clash.metrics = p.metrics;
    clash.unsubscribe = [](std::string_view) { return unsubscribe_token_status::valid; };
    clash.unsubscribe_path = "/metrics";
    CHECK_THROWS_AS(webhook_server(run.ioc.get_executor(), clash, nullptr), exception);
    CHECK_THROWS_AS(webhook_server(run.ioc.get_executor(), webhook_server_params{}, nullptr),
                    exception);
}

TEST_CASE("a verified SNS subscription confirmation is confirmed before the answer") {
    runner run;
    sns_pki pki;
    pem_server sns(run.ioc, pki.host);
    sns.serve(std::string(own_cert_path), pki.signer.cert_pem());
    const std::string confirm_path =
        "/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-events"
        "&Token=tok-1";
    sns.serve(confirm_path, "<ConfirmSubscriptionResponse/>");
    auto fetcher = std::make_shared<sns_certificate_fetcher>(run.ioc.get_executor(),
                                                             fetcher_params(pki, sns, pki.ca_file));
    inbox got;
    webhook_server_params p;
    p.sns_certificates = fetcher;
    webhook_route ses{"/hooks/ses", webhook_provider::ses, {}};
    ses.params.ses.allowed_topic_arns = {"arn:aws:sns:us-east-1:123456789012:ses-events"};
    p.routes.push_back(ses);
    std::vector<webhook_outcome> seen;
    webhook_server server(run.ioc.get_executor(), p, [&](const webhook_route&, webhook_result& r) {
        std::lock_guard lock(got.mu);
        seen.push_back(r.outcome);
    });
    client_conn c(server.local_endpoint().port());
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "text/plain; charset=UTF-8"},
        {"x-amz-sns-message-type", "SubscriptionConfirmation"}};
    const auto url = "https://sns.us-east-1.amazonaws.com" + confirm_path;
    const std::string topic = "arn:aws:sns:us-east-1:123456789012:ses-events";
    auto confirm = [&](const keyed_cert& signer, const std::string& subscribe_url,
                       const std::string& topic_arn) {
        return c
            .post("/hooks/ses",
                  signed_sns_confirmation(signer, own_cert_url, subscribe_url, topic_arn), headers)
            .result_int();
    };

    CHECK(confirm(pki.signer, url, topic) == 200);
    // The certificate, then the confirmation.
    CHECK(sns.requests == 2);
    {
        std::lock_guard lock(got.mu);
        REQUIRE(seen.size() == 1);
        CHECK(seen[0] == webhook_outcome::subscription_confirmation);
    }

    SUBCASE("a topic not allowed is refused and nothing is fetched") {
        CHECK(confirm(pki.signer, url, "arn:aws:sns:us-east-1:999999999999:other") == 403);
        CHECK(sns.requests == 2);
    }
    SUBCASE("a SubscribeURL off the SNS hosts is refused before any request") {
        CHECK(confirm(pki.signer, "https://evil.example.com/?Action=ConfirmSubscription", topic) ==
              403);
        CHECK(sns.requests == 2);
    }
    SUBCASE("a confirmation SNS does not accept is answered 503, and the callback not called") {
        const auto gone = std::string("https://sns.us-east-1.amazonaws.com/?Action=Gone");
        CHECK(confirm(pki.signer, gone, topic) == 503);
        CHECK(sns.requests == 3);
        std::lock_guard lock(got.mu);
        CHECK(seen.size() == 1);
    }
    SUBCASE("a forged confirmation confirms nothing") {
        CHECK(confirm(pki.other_ca, url, topic) == 403);
        CHECK(sns.requests == 2);
    }
}
