// AWS Signature Version 4 (header authorization), as pure functions.
//
// Every step of the algorithm is exposed on its own (canonical request,
// string to sign, signing key, signature) so that the tests can hold each one
// against the published AWS test suite, and so that a transport can cache the
// signing key, which depends only on the secret, the day, the region and the
// service.
//
// The path rules are those of every service but S3: the path is normalised
// (empty, "." and ".." segments removed) and each segment is URI-encoded once
// more, on top of whatever encoding it has on the wire. For S3, set
// `params::escape_path` to false and the path is used exactly as given.
#pragma once

#include <array>
#include <boost/system/result.hpp>
#include <chrono>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailers::sigv4 {

inline constexpr std::string_view algorithm = "AWS4-HMAC-SHA256";
/// The payload hash to use when the body is not signed.
inline constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";

struct header {
    std::string_view name;   ///< any case; compared case-insensitively
    std::string_view value;  ///< as sent; the canonical form trims and collapses whitespace
};

struct query_param {
    std::string_view key;    ///< decoded
    std::string_view value;  ///< decoded; "" for "?key" and "?key="
};

/// The parts of an HTTP request that are signed.
struct request {
    std::string_view method = "GET";
    /// The path as it appears in the request line, without the query.
    std::string_view path = "/";
    /// Decoded query parameters, in any order. canonical_query() gives the
    /// encoded query string to send, so request and signature agree.
    std::span<const query_param> query;
    /// The headers to sign, `host` included. Several headers of one name are
    /// signed as one, their values joined by ',' in the order given.
    std::span<const header> headers;
    /// Lower-case hex SHA-256 of the body (sha256_hex(body)) or unsigned_payload.
    std::string_view payload_hash;
};

struct params {
    std::string_view access_key_id;
    std::string_view secret_access_key;
    /// Session token of temporary credentials (X-Amz-Security-Token); empty
    /// for long-term keys.
    std::string_view session_token;
    std::string_view region;   ///< "eu-west-1"
    std::string_view service;  ///< "ses"
    /// Time of signing, ISO 8601 basic: YYYYMMDD'T'HHMMSS'Z' (format_amz_date()).
    std::string_view amz_date;
    /// Most services want X-Amz-Security-Token signed; a few want it added
    /// after signing.
    bool sign_session_token = true;
    /// False for S3, which neither normalises nor re-encodes the path.
    bool escape_path = true;
};

/// Everything sign() computed; the intermediate strings are kept because they
/// are what AWS returns in its "signature does not match" errors.
struct signed_request {
    std::string canonical_request;
    std::string string_to_sign;
    std::string signed_headers;  ///< "host;x-amz-date"
    std::string signature;       ///< lower-case hex
    std::string authorization;   ///< value of the Authorization header
    /// Headers the caller must add to the HTTP request besides Authorization:
    /// X-Amz-Date when the request had none, X-Amz-Security-Token when a
    /// session token is given and the request had none.
    std::vector<std::pair<std::string, std::string>> extra_headers;
};

using signing_key_bytes = std::array<unsigned char, 32>;

/// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);

/// RFC 3986 encoding as SigV4 wants it: unreserved characters (A-Z a-z 0-9
/// - . _ ~) are kept, every other byte becomes %XX with upper-case hex.
void uri_encode(std::string& out, std::string_view s, bool keep_slash);

/// The canonical URI of a path; see the rules at the top of this file.
std::string canonical_uri(std::string_view path, bool escape_path = true);

/// Encoded "k=v&k=v" sorted by encoded key, then encoded value.
std::string canonical_query(std::span<const query_param> query);

/// Appends the canonical header block (one "name:value\n" per name) to
/// `canonical` and the ';'-joined lower-case names to `signed_names`.
void canonical_headers(std::span<const header> headers, std::string& canonical,
                       std::string& signed_names);

/// The six-line canonical request (method, URI, query, headers, signed
/// headers, payload hash).
std::string canonical_request(const request& req, bool escape_path = true);

/// "20150830/us-east-1/iam/aws4_request"
std::string credential_scope(std::string_view date, std::string_view region,
                             std::string_view service);

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request);

/// HMAC chain "AWS4" + secret -> date (YYYYMMDD) -> region -> service ->
/// "aws4_request". Valid for one day; callers may cache it.
signing_key_bytes derive_signing_key(std::string_view secret_access_key, std::string_view date,
                                     std::string_view region, std::string_view service);

/// Lower-case hex HMAC-SHA256 of the string to sign.
std::string signature(const signing_key_bytes& key, std::string_view string_to_sign);

/// Signs `req`. Adds X-Amz-Date (from params.amz_date) and, when signed, the
/// session token to the signed headers if the request does not carry them.
/// Fails with errc::invalid_argument (and a diagnostics message) when
/// amz_date is not YYYYMMDDTHHMMSSZ or differs from an X-Amz-Date header,
/// when there is no host header, or when a credential, the region, the
/// service or the payload hash is empty. `key`, when given, must be
/// derive_signing_key() for the same secret, day, region and service.
boost::system::result<signed_request> sign(const request& req, const params& p,
                                           const signing_key_bytes* key = nullptr,
                                           diagnostics* diag = nullptr);

/// YYYYMMDD'T'HHMMSS'Z' in UTC.
std::string format_amz_date(std::chrono::system_clock::time_point t);

}  // namespace mailers::sigv4
