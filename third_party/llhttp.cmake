# Builds llhttp 8.1 from the C sources Debian's node-llhttp package installs.
# Nothing of llhttp lives in this repository.
set(LLHTTP_SOURCE_DIR "/usr/share/llhttp" CACHE PATH "llhttp C sources (Debian: node-llhttp)")
set(LLHTTP_INCLUDE_DIR "/usr/share/include/llhttp" CACHE PATH "llhttp.h (Debian: node-llhttp)")

foreach(f api.c http.c llhttp.c)
    if(NOT EXISTS "${LLHTTP_SOURCE_DIR}/${f}")
        message(FATAL_ERROR "llhttp source ${LLHTTP_SOURCE_DIR}/${f} not found: "
                            "install the Debian package node-llhttp (make deps)")
    endif()
endforeach()
if(NOT EXISTS "${LLHTTP_INCLUDE_DIR}/llhttp.h")
    message(FATAL_ERROR "${LLHTTP_INCLUDE_DIR}/llhttp.h not found: install the Debian package node-llhttp (make deps)")
endif()
file(STRINGS "${LLHTTP_INCLUDE_DIR}/llhttp.h" _llhttp_major REGEX "#define LLHTTP_VERSION_MAJOR")
if(NOT _llhttp_major MATCHES "MAJOR 8$")
    message(FATAL_ERROR "llhttp 8.x expected, found: ${_llhttp_major}")
endif()

add_library(llhttp STATIC
    "${LLHTTP_SOURCE_DIR}/api.c"
    "${LLHTTP_SOURCE_DIR}/http.c"
    "${LLHTTP_SOURCE_DIR}/llhttp.c")
target_include_directories(llhttp SYSTEM PUBLIC "${LLHTTP_INCLUDE_DIR}")
set_target_properties(llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON C_STANDARD 11)
# Strict mode (llhttp.c begins with `#if LLHTTP_STRICT_MODE`): the loose
# machine skips any two bytes after chunk data, takes bare LF and other
# framing that a backend may read differently (request smuggling). PUBLIC so
# that src/net/http1.c can refuse to build against a loose parser.
target_compile_definitions(llhttp PUBLIC LLHTTP_STRICT_MODE=1)
# Third-party code: our warning flags do not apply to it.
target_compile_options(llhttp PRIVATE -w)
