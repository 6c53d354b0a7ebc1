# Finds GNU libunistring, which ships neither a CMake package nor a
# pkg-config file, and defines the imported target Unistring::Unistring.
# Installed beside mailersConfig.cmake, which uses it to find the library
# again for a static mailers.
#
# Sets Unistring_FOUND, Unistring_VERSION, Unistring_INCLUDE_DIR and
# Unistring_LIBRARY.
find_path(Unistring_INCLUDE_DIR NAMES uninorm.h)
find_library(Unistring_LIBRARY NAMES unistring)

if(Unistring_INCLUDE_DIR AND EXISTS "${Unistring_INCLUDE_DIR}/unistring/version.h")
  # _LIBUNISTRING_VERSION is 0xMMmmpp.
  file(STRINGS "${Unistring_INCLUDE_DIR}/unistring/version.h" _unistring_version
       REGEX "^#define _LIBUNISTRING_VERSION 0x[0-9a-fA-F]+")
  if(_unistring_version MATCHES "0x([0-9a-fA-F][0-9a-fA-F])([0-9a-fA-F][0-9a-fA-F])([0-9a-fA-F][0-9a-fA-F])")
    math(EXPR _unistring_major "0x${CMAKE_MATCH_1}")
    math(EXPR _unistring_minor "0x${CMAKE_MATCH_2}")
    math(EXPR _unistring_patch "0x${CMAKE_MATCH_3}")
    set(Unistring_VERSION "${_unistring_major}.${_unistring_minor}.${_unistring_patch}")
  endif()
  unset(_unistring_version)
  unset(_unistring_major)
  unset(_unistring_minor)
  unset(_unistring_patch)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Unistring
  REQUIRED_VARS Unistring_LIBRARY Unistring_INCLUDE_DIR
  VERSION_VAR Unistring_VERSION)
mark_as_advanced(Unistring_INCLUDE_DIR Unistring_LIBRARY)

if(Unistring_FOUND AND NOT TARGET Unistring::Unistring)
  add_library(Unistring::Unistring UNKNOWN IMPORTED)
  set_target_properties(Unistring::Unistring PROPERTIES
    IMPORTED_LOCATION "${Unistring_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Unistring_INCLUDE_DIR}")
endif()
