// Unpredictable bytes for Message-IDs and multipart boundaries.
#pragma once

#include <cstddef>

namespace mailers::mime {

/// Fills `out` with `n` bytes from OpenSSL's CSPRNG. Bytes are drawn in
/// blocks into a per-thread buffer because one RAND_bytes call costs about as
/// much as rendering a small message; the buffer is discarded in a forked
/// child so that parent and child never hand out the same Message-ID.
void random_bytes(unsigned char* out, std::size_t n) noexcept;

}  // namespace mailers::mime
