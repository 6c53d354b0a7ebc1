#!/usr/bin/env bash
# Checks mailers as a host application meets it:
#   1. the build under test (shared, normally) installed into a scratch prefix,
#      consumed through find_package and through pkg-config;
#   2. the library built statically inside a consumer that embeds the source
#      tree with add_subdirectory; that one build is then installed and
#      consumed through find_package and pkg-config, so the static consumers
#      cost one library build between them.
# The static build lives under the build directory and is reused by later
# runs; the prefixes and the small consumers are made afresh each time.
# MAILERS_PACKAGE_JOBS sets the build parallelism (default 2).
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
consumer_src=$source_dir/tests/package/consumer
jobs=${MAILERS_PACKAGE_JOBS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
static_build=$build_dir/package-static

cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt"; }
cxx=$(cache_value CMAKE_CXX_COMPILER)
cmake_args=(-DCMAKE_CXX_COMPILER="$cxx")
if command -v ccache >/dev/null; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# The conformance kit is checked where the tree ships it.
conformance=OFF
if [[ -f $source_dir/include/mailers/testing/store_conformance.hpp ]]; then conformance=ON; fi

configure() { cmake "${cmake_args[@]}" "$@" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; return 1; }; }
build() { cmake --build "$1" -j "$jobs" >"$work/build.log" 2>&1 || { tail -60 "$work/build.log"; return 1; }; }
step() { echo "package: $*"; }
pc_link() {  # prefix, output, extra pkg-config flags
  PKG_CONFIG_PATH="$1/lib/pkgconfig:$1/lib/x86_64-linux-gnu/pkgconfig" \
    pkg-config --cflags --libs "${@:3}" mailers >"$work/pc.flags"
  # shellcheck disable=SC2046
  "$cxx" -o "$2" "$consumer_src/main.cpp" $(cat "$work/pc.flags")
}
run_in() {  # prefix, program
  (cd "$work" && LD_LIBRARY_PATH="$1/lib:$1/lib/x86_64-linux-gnu" "$2")
}
not_linked_to_shared() {
  if readelf -d "$1" | grep -q 'NEEDED.*libmailers'; then
    echo "package: $1 should link libmailers.a, yet needs libmailers.so"; return 1
  fi
}

step "shared: install, find_package consumer"
cmake --install "$build_dir" --prefix "$work/shared" >/dev/null
configure -S "$consumer_src" -B "$work/shared-consumer" -DCMAKE_PREFIX_PATH="$work/shared" \
  -DMAILERS_CONSUMER_CONFORMANCE=$conformance
build "$work/shared-consumer"
run_in "$work/shared" "$work/shared-consumer/consumer"
if [[ -x $work/shared-consumer/conformance ]]; then
  step "shared: the installed store conformance kit against the SQLite store"
  run_in "$work/shared" "$work/shared-consumer/conformance" >"$work/conformance.log" 2>&1 ||
    { cat "$work/conformance.log"; exit 1; }
fi

step "shared: pkg-config consumer"
pc_link "$work/shared" "$work/pc-shared"
run_in "$work/shared" "$work/pc-shared"

step "static: add_subdirectory consumer (builds the library, -j$jobs)"
configure -S "$consumer_src" -B "$static_build" -DMAILERS_CONSUMER_MODE=add_subdirectory \
  -DMAILERS_SOURCE_DIR="$source_dir" -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release \
  -DMAILERS_CONSUMER_CONFORMANCE=OFF
build "$static_build"
not_linked_to_shared "$static_build/consumer"
run_in "$work/none" "$static_build/consumer"

step "static: install that build, find_package consumer"
cmake --install "$static_build/mailers" --prefix "$work/static" >/dev/null
configure -S "$consumer_src" -B "$work/static-consumer" -DCMAKE_PREFIX_PATH="$work/static" \
  -DCMAKE_BUILD_TYPE=Release -DMAILERS_CONSUMER_CONFORMANCE=OFF
build "$work/static-consumer"
not_linked_to_shared "$work/static-consumer/consumer"
run_in "$work/static" "$work/static-consumer/consumer"

step "static: pkg-config consumer"
pc_link "$work/static" "$work/pc-static"
not_linked_to_shared "$work/pc-static"
run_in "$work/static" "$work/pc-static"

echo "package: find_package, pkg-config and add_subdirectory consumers built and ran"
