# Install-time part of packaging/package.cmake: runs inside cmake_install.cmake,
# where CMAKE_INSTALL_PREFIX is the prefix actually used (--prefix, CPack) and
# file(INSTALL) prepends $ENV{DESTDIR} to every destination.

set(_prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" _prefix "${_prefix}")
if(IS_ABSOLUTE "${SG_SBINDIR}")
    set(_sbindir "${SG_SBINDIR}")
else()
    set(_sbindir "${_prefix}/${SG_SBINDIR}")
endif()
if(IS_ABSOLUTE "${SG_MANDIR}")
    set(_mandir "${SG_MANDIR}")
else()
    set(_mandir "${_prefix}/${SG_MANDIR}")
endif()
if(SG_SYSTEMD_UNITDIR)
    set(_unitdir "${SG_SYSTEMD_UNITDIR}")
elseif(_prefix STREQUAL "/usr")
    # Debian 12 ships units in /lib/systemd/system (/usr/lib after the usr-merge transition).
    set(_unitdir "/lib/systemd/system")
else()
    set(_unitdir "${_prefix}/lib/systemd/system")
endif()
# A private staging dir per run: concurrent installs with other prefixes
# (tests, CPack) never see each other's files, and nothing is left behind.
string(RANDOM LENGTH 12 _rnd)
set(_stage "${SG_STAGE_DIR}/stage-${_rnd}")
file(MAKE_DIRECTORY "${_stage}")

# systemd unit: the source file is the one for prefix /usr and /etc/swarmgate.
file(READ "${SG_SOURCE_PACKAGING}/swarmgate.service" _unit)
string(REPLACE "ExecStart=/usr/sbin/swarmgate" "ExecStart=${_sbindir}/swarmgate" _unit "${_unit}")
string(REPLACE "/etc/swarmgate/swarmgate.yaml" "${SG_CONFDIR}/swarmgate.yaml" _unit "${_unit}")
file(WRITE "${_stage}/swarmgate.service" "${_unit}")
file(INSTALL DESTINATION "${_unitdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${_stage}/swarmgate.service")

# Man page, compressed as Debian policy 12.1 wants (-n: reproducible).
find_program(_gzip gzip)
if(_gzip)
    execute_process(COMMAND "${_gzip}" -9nc "${SG_SOURCE_PACKAGING}/swarmgate.8"
                    OUTPUT_FILE "${_stage}/swarmgate.8.gz" RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
        file(REMOVE_RECURSE "${_stage}")
        message(FATAL_ERROR "gzip of the man page failed: ${_rc}")
    endif()
    set(_man "${_stage}/swarmgate.8.gz")
else()
    set(_man "${SG_SOURCE_PACKAGING}/swarmgate.8")
endif()
file(INSTALL DESTINATION "${_mandir}/man8" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${_man}")

file(REMOVE_RECURSE "${_stage}")

# Example config: installed once, never over an operator's edited file (the
# package marks it a conffile, so dpkg handles upgrades there).
if(NOT EXISTS "${SG_CONFIG_EXAMPLE}")
    message(FATAL_ERROR "missing ${SG_CONFIG_EXAMPLE}")
endif()
if(EXISTS "$ENV{DESTDIR}${SG_CONFDIR}/swarmgate.yaml")
    message(STATUS "Keeping existing: $ENV{DESTDIR}${SG_CONFDIR}/swarmgate.yaml")
else()
    # 0644 here; the package's postinst makes it root:swarmgate 0640.
    file(INSTALL DESTINATION "${SG_CONFDIR}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES "${SG_CONFIG_EXAMPLE}")
endif()
