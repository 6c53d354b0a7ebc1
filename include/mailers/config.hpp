// Build configuration shared by every public header.
#pragma once

#if defined(MAILERS_SHARED)
#if defined(MAILERS_BUILDING_LIBRARY)
#define MAILERS_API __attribute__((visibility("default")))
#else
#define MAILERS_API
#endif
#else
#define MAILERS_API
#endif

namespace mailers {
inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;
}  // namespace mailers
