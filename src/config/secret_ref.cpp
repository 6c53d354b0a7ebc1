#include "config/secret_ref.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mailers::detail {

namespace {

// A secret read from a file is a token or a key, not a document.
constexpr std::size_t max_secret_file_size = 64 * 1024;

bool is_env_name(std::string_view s) {
    auto alpha = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (s.empty() || digit(s.front())) return false;
    for (char c : s)
        if (!alpha(c) && !digit(c)) return false;
    return true;
}

}  // namespace

bool resolve_value(std::string& value, std::string_view what, std::string& error) {
    if (value.starts_with("env:")) {
        const auto name = std::string_view{value}.substr(4);
        if (!is_env_name(name)) {
            error = std::string{what} +
                    " is an 'env:' reference with an invalid variable name (letters, digits "
                    "and '_' only)";
            return false;
        }
        const std::string name_str{name};
        const char* v = std::getenv(name_str.c_str());
        if (v == nullptr) {
            error = std::string{what} + " refers to environment variable '" + name_str +
                    "', which is not set";
            return false;
        }
        if (*v == '\0') {
            error = std::string{what} + " refers to environment variable '" + name_str +
                    "', which is empty";
            return false;
        }
        value = v;
        return true;
    }
    if (value.starts_with("file:")) {
        const std::string path = value.substr(5);
        if (path.empty()) {
            error = std::string{what} + " is a 'file:' reference without a path";
            return false;
        }
        std::FILE* f = std::fopen(path.c_str(), "rb");
        if (f == nullptr) {
            error = std::string{what} + " refers to file '" + path +
                    "', which cannot be read: " + std::strerror(errno);
            return false;
        }
        std::string content;
        char buf[4096];
        std::size_t n = 0;
        bool too_large = false;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
            content.append(buf, n);
            if (content.size() > max_secret_file_size) {
                too_large = true;
                break;
            }
        }
        const bool read_error = std::ferror(f) != 0;
        const int saved_errno = errno;
        std::fclose(f);
        if (read_error) {
            error = std::string{what} + " refers to file '" + path +
                    "', which cannot be read: " + std::strerror(saved_errno);
            return false;
        }
        if (too_large) {
            error = std::string{what} + " refers to file '" + path + "', which is larger than " +
                    std::to_string(max_secret_file_size / 1024) + " KiB";
            return false;
        }
        // Secret files are usually written by editors or `echo`, which end
        // them with a newline that is not part of the secret.
        while (!content.empty() && (content.back() == '\n' || content.back() == '\r'))
            content.pop_back();
        if (content.empty()) {
            error = std::string{what} + " refers to file '" + path + "', which is empty";
            return false;
        }
        value = std::move(content);
        return true;
    }
    return true;
}

}  // namespace mailers::detail
