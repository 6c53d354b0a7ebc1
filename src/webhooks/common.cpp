#include "webhooks/common.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <mailers/address.hpp>
#include <mailers/suppression.hpp>

#include "webhooks/crypto.hpp"

namespace mailers::webhooks {
namespace {

char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() &&
           (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

std::optional<std::string_view> find_header(std::span<const http_header> headers,
                                            std::string_view name) noexcept {
    for (const auto& h : headers)
        if (iequals(h.name, name)) return h.value;
    return std::nullopt;
}

std::string media_type(std::string_view content_type) {
    const auto semi = content_type.find(';');
    const auto t = trim(content_type.substr(0, semi));
    std::string out(t);
    for (auto& c : out) c = lower(c);
    return out;
}

std::optional<time_point> parse_iso8601(std::string_view s) noexcept {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
    if (s.size() < 19 || !digits(s, 0, 4, y) || s[4] != '-' || !digits(s, 5, 2, mo) ||
        s[7] != '-' || !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' ||
        !digits(s, 17, 2, se))
        return std::nullopt;
    if (h > 23 || mi > 59 || se > 60) return std::nullopt;
    const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{unsigned(mo)},
                                          std::chrono::day{unsigned(d)}};
    if (!ymd.ok()) return std::nullopt;
    std::size_t pos = 19;
    std::int64_t micros = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int n = 0;
        while (pos < s.size() && is_digit(s[pos])) {
            if (n < 6) micros = micros * 10 + (s[pos] - '0');
            ++n;
            ++pos;
        }
        if (n == 0) return std::nullopt;
        for (int i = n; i < 6; ++i) micros *= 10;
    }
    std::int64_t offset = 0;
    if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
        ++pos;
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        int oh = 0, om = 0;
        const bool colon = pos + 3 < s.size() && s[pos + 3] == ':';
        if (!digits(s, pos + 1, 2, oh) || !digits(s, pos + (colon ? 4 : 3), 2, om) || oh > 23 ||
            om > 59)
            return std::nullopt;
        offset = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
        pos += colon ? 6 : 5;
    } else {
        return std::nullopt;
    }
    if (pos != s.size()) return std::nullopt;
    const auto days = std::chrono::sys_days{ymd}.time_since_epoch().count();
    const std::int64_t secs =
        static_cast<std::int64_t>(days) * 86400 + h * 3600 + mi * 60 + se - offset;
    return time_point{duration{secs * 1'000'000 + micros}};
}

time_point from_unix_seconds(double s) noexcept {
    // Beyond year 9999 or before 1970 is not a time a provider reports.
    if (!std::isfinite(s) || s < 0 || s > 253402300799.0) return {};
    return time_point{duration{static_cast<std::int64_t>(std::llround(s * 1e6))}};
}

std::string recipient_of(std::string_view text) {
    text = trim(text);
    if (text.empty()) return {};
    if (auto n = normalise_address(text)) return std::move(*n);
    const auto open = text.rfind('<');
    const auto close = text.rfind('>');
    if (open != std::string_view::npos && close != std::string_view::npos && close > open)
        return std::string(trim(text.substr(open + 1, close - open - 1)));
    return std::string(text);
}

std::string diagnostic_code_in(std::string_view text) {
    // An enhanced status code: class "2", "4" or "5", then 1-3 and 1-3 digits.
    for (std::size_t i = 0; i + 4 < text.size(); ++i) {
        if ((text[i] != '2' && text[i] != '4' && text[i] != '5') || text[i + 1] != '.') continue;
        if (i > 0 && (is_digit(text[i - 1]) || text[i - 1] == '.')) continue;
        std::size_t j = i + 2, n = 0;
        while (j < text.size() && is_digit(text[j]) && n < 4) ++j, ++n;
        if (n == 0 || n > 3 || j >= text.size() || text[j] != '.') continue;
        std::size_t k = j + 1, m = 0;
        while (k < text.size() && is_digit(text[k]) && m < 4) ++k, ++m;
        if (m == 0 || m > 3) continue;
        if (k < text.size() && (is_digit(text[k]) || text[k] == '.')) continue;
        return std::string(text.substr(i, k - i));
    }
    for (std::size_t i = 0; i + 2 < text.size(); ++i) {
        if (!is_digit(text[i]) || !is_digit(text[i + 1]) || !is_digit(text[i + 2])) continue;
        if (i > 0 && is_digit(text[i - 1])) continue;
        if (i + 3 < text.size() && is_digit(text[i + 3])) continue;
        if (text[i] < '2' || text[i] > '5') continue;
        return std::string(text.substr(i, 3));
    }
    return {};
}

std::string sha256_hex(std::string_view data) {
    return to_hex(as_view(sha256(data)));
}

std::optional<std::vector<std::pair<std::string, std::string>>> decode_form(std::string_view body) {
    std::vector<std::pair<std::string, std::string>> out;
    const auto decode = [](std::string_view s, std::string& to) {
        to.reserve(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '+') {
                to.push_back(' ');
            } else if (s[i] == '%') {
                if (i + 2 >= s.size()) return false;
                const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
                if (hi < 0 || lo < 0) return false;
                to.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
            } else {
                to.push_back(s[i]);
            }
        }
        return true;
    };
    while (!body.empty()) {
        const auto amp = body.find('&');
        auto pair = body.substr(0, amp);
        body.remove_prefix(amp == std::string_view::npos ? body.size() : amp + 1);
        if (pair.empty()) continue;
        const auto eq = pair.find('=');
        std::string k, v;
        if (!decode(pair.substr(0, eq), k)) return std::nullopt;
        if (eq != std::string_view::npos && !decode(pair.substr(eq + 1), v)) return std::nullopt;
        out.emplace_back(std::move(k), std::move(v));
    }
    return out;
}

std::string_view str(simdjson::dom::element e, std::string_view key) noexcept {
    simdjson::dom::object o;
    if (e.get(o) != simdjson::SUCCESS) return {};
    return str(o, key);
}

std::string_view str(simdjson::dom::object o, std::string_view key) noexcept {
    std::string_view v;
    if (o[key].get(v) != simdjson::SUCCESS) return {};
    return v;
}

std::string str_or_int(simdjson::dom::object o, std::string_view key) {
    simdjson::dom::element e;
    if (o[key].get(e) != simdjson::SUCCESS) return {};
    std::string_view s;
    if (e.get(s) == simdjson::SUCCESS) return std::string(s);
    std::int64_t i = 0;
    if (e.get(i) == simdjson::SUCCESS) return std::to_string(i);
    std::uint64_t u = 0;
    if (e.get(u) == simdjson::SUCCESS) return std::to_string(u);
    return {};
}

std::optional<double> number(simdjson::dom::object o, std::string_view key) noexcept {
    simdjson::dom::element e;
    if (o[key].get(e) != simdjson::SUCCESS) return std::nullopt;
    double d = 0;
    if (e.get(d) == simdjson::SUCCESS) return d;
    std::int64_t i = 0;
    if (e.get(i) == simdjson::SUCCESS) return static_cast<double>(i);
    std::uint64_t u = 0;
    if (e.get(u) == simdjson::SUCCESS) return static_cast<double>(u);
    std::string_view s;
    if (e.get(s) == simdjson::SUCCESS) {
        double v = 0;
        const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec == std::errc{} && p == s.data() + s.size()) return v;
    }
    return std::nullopt;
}

time_point now_of(const webhook_params& p) {
    if (p.now) return *p.now;
    return std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
}

}  // namespace mailers::webhooks
