# Install layout and the Debian package (CPack, DEB generator).
# Included once from the top-level CMakeLists.txt.
#
#   cmake --install build/release                        # prefix /usr/local
#   DESTDIR=/tmp/root cmake --install build/release --prefix /usr
#   cd build/release && cpack -G DEB                     # swarmgate_<ver>-1_<arch>.deb
#
# Layout (prefix P, /usr for the package):
#   P/sbin/swarmgate
#   /etc/swarmgate/swarmgate.yaml           example config, never overwritten
#   /lib/systemd/system/swarmgate.service   (P/lib/systemd/system unless P is /usr)
#   P/share/man/man8/swarmgate.8.gz
#   P/share/swarmgate/                      everything under config/: the pristine
#                                           example, examples/, sql/, alerts, dashboards
# Absolute paths (/etc, /lib) honour DESTDIR like every other path.

include(GNUInstallDirs)

set(SG_CONFDIR "/etc/swarmgate" CACHE PATH
    "Directory of swarmgate.yaml (absolute; DESTDIR applies)")
set(SG_SYSTEMD_UNITDIR "" CACHE PATH
    "systemd system unit directory (empty: /lib/systemd/system for prefix /usr, else <prefix>/lib/systemd/system)")
set(SG_PACKAGE_MAINTAINER "swarmgate maintainers <maintainers@swarmgate.example>" CACHE STRING
    "Maintainer field of the Debian package")

set(_sg_pkg "${CMAKE_SOURCE_DIR}/packaging")

install(TARGETS swarmgate RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})

# Everything under config/ (present or landing later: sql/, examples/,
# alerts/, dashboards/) is reference material for the operator.
install(DIRECTORY "${CMAKE_SOURCE_DIR}/config/" DESTINATION "${CMAKE_INSTALL_DATADIR}/swarmgate" OPTIONAL
        PATTERN ".*" EXCLUDE PATTERN "*~" EXCLUDE PATTERN "*.orig" EXCLUDE PATTERN "*.rej" EXCLUDE)

# The unit, the man page and /etc depend on the prefix given at install time
# (cmake --install --prefix, CPack), so a script places them then.
install(CODE "
set(SG_SOURCE_PACKAGING \"${_sg_pkg}\")
set(SG_CONFIG_EXAMPLE \"${CMAKE_SOURCE_DIR}/config/swarmgate.yaml\")
set(SG_STAGE_DIR \"${CMAKE_BINARY_DIR}/packaging\")
set(SG_CONFDIR \"${SG_CONFDIR}\")
set(SG_SYSTEMD_UNITDIR \"${SG_SYSTEMD_UNITDIR}\")
set(SG_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
set(SG_MANDIR \"${CMAKE_INSTALL_MANDIR}\")
")
install(SCRIPT "${_sg_pkg}/install_files.cmake")

# ---- CPack: Debian package ----
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "swarmgate")
set(CPACK_PACKAGE_VENDOR "swarmgate")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${SG_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "reverse HTTP proxy with trace ids, Prometheus metrics and health endpoints")
# Absolute destinations (/etc, /lib) go into the package through DESTDIR.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
# Written into CPack*Config.cmake escaped, so these regexes' backslashes
# (and the description's quotes) arrive as written, without "Invalid escape
# sequence" warnings.
set(CPACK_VERBATIM_VARIABLES ON)
set(CPACK_SOURCE_IGNORE_FILES "/\\.git/" "/\\.git$" "/build/" "/\\.cache/" "~$")

set(CPACK_DEBIAN_PACKAGE_NAME "swarmgate")
set(CPACK_DEBIAN_PACKAGE_RELEASE "1")
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SG_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# The summary line comes from CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the long part.
set(CPACK_PACKAGE_DESCRIPTION
"swarmgate is a small, fast HTTP/1.1 reverse and egress proxy on libuv and
llhttp. It stamps every request with a trace id (X-Trace-Id and W3C
traceparent), exports Prometheus metrics (request latency histograms, 5xx
error rate, ticket gauges read from PostgreSQL) and answers liveness and
readiness probes.

The service runs as the system user swarmgate. It is not enabled on
installation: review /etc/swarmgate/swarmgate.yaml, then run
systemctl enable --now swarmgate.")
# Runtime libraries come from dpkg-shlibdeps when it works here; adduser is
# for postinst. Without dpkg-shlibdeps (or `file`) the list is explicit.
find_program(SG_DPKG_SHLIBDEPS dpkg-shlibdeps)
find_program(SG_FILE_PROGRAM file)
if(SG_DPKG_SHLIBDEPS AND SG_FILE_PROGRAM)
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
    set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
else()
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
    set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6, libuv1 (>= 1.44), libpq5, libyaml-0-2, libuuid1, adduser")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${_sg_pkg}/postinst;${_sg_pkg}/prerm;${_sg_pkg}/postrm;${_sg_pkg}/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
