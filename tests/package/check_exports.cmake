# Fails when the shared library exports a symbol from a private namespace:
# one that sources under src/ open (`namespace mailers::x`) and no public
# header does, and `detail` always. Only templates that public headers
# instantiate (include/mailers/detail/) may need such symbols exported; add
# them to `allowed`, a regex alternation.
#   cmake -DNM=nm -DLIBRARY=libmailers.so -DSOURCE_DIR=. -P check_exports.cmake
set(allowed "")

# `namespace mailers::x` in the files under `dir`; with `nested`, also any
# `namespace x {`, which public headers open inside `namespace mailers {`
# (sources also use that form for other libraries' namespaces, so not there).
function(namespaces_under dir out nested)
  file(GLOB_RECURSE files "${dir}/*.hpp" "${dir}/*.cpp")
  set(found)
  foreach(f IN LISTS files)
    file(STRINGS "${f}" lines REGEX "namespace mailers::[a-z_0-9]+")
    foreach(l IN LISTS lines)
      string(REGEX MATCH "namespace mailers::([a-z_0-9]+)" _ "${l}")
      list(APPEND found "${CMAKE_MATCH_1}")
    endforeach()
    if(nested)
      file(STRINGS "${f}" lines REGEX "^namespace [a-z_0-9]+ {")
      foreach(l IN LISTS lines)
        string(REGEX MATCH "^namespace ([a-z_0-9]+) {" _ "${l}")
        list(APPEND found "${CMAKE_MATCH_1}")
      endforeach()
    endif()
  endforeach()
  list(REMOVE_DUPLICATES found)
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

namespaces_under("${SOURCE_DIR}/src" private FALSE)
namespaces_under("${SOURCE_DIR}/include" public TRUE)
list(REMOVE_ITEM private ${public})
list(APPEND private detail)
list(REMOVE_DUPLICATES private)
list(JOIN private "|" alternation)
set(private_namespaces "mailers::(${alternation})::")

execute_process(COMMAND ${NM} -DC --defined-only ${LIBRARY}
                OUTPUT_VARIABLE symbols RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} ${LIBRARY} failed: ${err}")
endif()
# Demangled names hold brackets and semicolons, which CMake lists mangle, so
# the output is filtered as one string, line by line through regexes.
string(REGEX MATCHALL "[^\n]*mailers::[^\n]*" public_symbols "${symbols}")
list(LENGTH public_symbols exported)
if(NOT allowed STREQUAL "")
  string(REGEX REPLACE "[^\n]*(${allowed})[^\n]*" "" symbols "${symbols}")
endif()
string(REGEX MATCHALL "[^\n]*${private_namespaces}[^\n]*" leaked "${symbols}")
if(leaked)
  string(REPLACE ";" "\n  " shown "${leaked}")
  # Two usual causes: MAILERS_API on a header under src/, or a private nested
  # class (an `impl`) of an exported class, which inherits its visibility
  # unless its definition says hidden.
  message(FATAL_ERROR "${LIBRARY} exports symbols matching ${private_namespaces}\n  ${shown}")
endif()
message(STATUS "${LIBRARY}: about ${exported} exported symbols mention mailers::, "
               "none from ${private_namespaces}")
