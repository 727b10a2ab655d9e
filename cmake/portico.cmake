# Project warnings apply to project code only, never to third-party headers.
add_library(portico_warnings INTERFACE)
target_compile_options(portico_warnings INTERFACE -Wall -Wextra -Wshadow -Werror)
# g++ 12 at -O2/-O3 reports Asio's recycling allocator for coroutine frames as a
# mismatched new/delete after inlining: a known false positive (GCC PR 109224).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(portico_warnings INTERFACE -Wno-mismatched-new-delete)
    # Sanitizer instrumentation at -O1 makes g++ 12 report std::regex and std::function
    # internals as maybe-uninitialized; the sanitizers themselves check the real thing.
    if(PORTICO_SANITIZE)
        target_compile_options(portico_warnings INTERFACE -Wno-maybe-uninitialized)
    endif()
endif()

# portico_module(NAME SOURCES ... DEPENDS ...): one static library per module.
function(portico_module name)
    cmake_parse_arguments(arg "" "" "SOURCES;DEPENDS" ${ARGN})
    add_library(portico_${name} STATIC ${arg_SOURCES})
    target_include_directories(portico_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include
                               PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(portico_${name} PUBLIC ${arg_DEPENDS} PRIVATE portico_warnings)
endfunction()

# portico_test(NAME LABEL SOURCES ... DEPENDS ...): one GoogleTest binary, discovered by ctest.
function(portico_test name label)
    cmake_parse_arguments(arg "" "" "SOURCES;DEPENDS" ${ARGN})
    add_executable(${name} ${arg_SOURCES})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(${name} PRIVATE ${arg_DEPENDS} GTest::gtest GTest::gtest_main
                          portico_warnings)
    gtest_discover_tests(${name} PROPERTIES LABELS ${label} DISCOVERY_TIMEOUT 60
                         WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
endfunction()

# yaml-cpp and libyaml: the Debian archives when PORTICO_STATIC_LINK is on, else the shared
# libraries. Debian's yaml-cpp package config only knows the shared one.
add_library(portico_yaml INTERFACE)
if(PORTICO_STATIC_LINK)
    find_library(PORTICO_YAML_CPP_ARCHIVE libyaml-cpp.a REQUIRED)
    find_library(PORTICO_LIBYAML_ARCHIVE libyaml.a REQUIRED)
    target_link_libraries(portico_yaml INTERFACE ${PORTICO_YAML_CPP_ARCHIVE}
                          ${PORTICO_LIBYAML_ARCHIVE})
    target_include_directories(portico_yaml INTERFACE
                               $<TARGET_PROPERTY:yaml-cpp,INTERFACE_INCLUDE_DIRECTORIES>
                               ${LIBYAML_INCLUDE_DIRS})
else()
    target_link_libraries(portico_yaml INTERFACE yaml-cpp PkgConfig::LIBYAML)
endif()

# liburing (gathered sends to backends, decision 0020): the archive when PORTICO_STATIC_LINK is
# on, so that the binary maps no other shared library.
add_library(portico_uring INTERFACE)
if(PORTICO_STATIC_LINK)
    find_library(PORTICO_LIBURING_ARCHIVE liburing.a REQUIRED)
    target_link_libraries(portico_uring INTERFACE ${PORTICO_LIBURING_ARCHIVE})
    target_include_directories(portico_uring INTERFACE ${LIBURING_INCLUDE_DIRS})
else()
    target_link_libraries(portico_uring INTERFACE PkgConfig::LIBURING)
endif()

# portico_compact_binary(TARGET): the C++ runtime linked in, unused sections dropped, relative
# relocations packed (DT_RELR, so start-up does not write half a megabyte of relocations),
# symbols bound at start (full RELRO), and, with lld 16, functions laid out in
# cmake/link-order.txt's order so that the code a start and a request run shares pages.
# scripts/link-order.sh regenerates that file.
function(portico_compact_binary target)
    if(NOT PORTICO_STATIC_LINK)
        return()
    endif()
    include(CheckLinkerFlag)
    find_program(PORTICO_LLD ld.lld PATHS /usr/lib/llvm-16/bin NO_DEFAULT_PATH)
    set(linker)
    set(relr_check PORTICO_HAS_RELR_DEFAULT_LINKER)
    if(PORTICO_LLD)
        get_filename_component(lld_dir "${PORTICO_LLD}" DIRECTORY)
        set(linker -B${lld_dir} -fuse-ld=lld)
        set(relr_check PORTICO_HAS_RELR_LLD)
    endif()
    # The linker goes in the checked flags (check_linker_flag sets its own link options), and
    # linkers only warn about an unknown -z option: fatal warnings make the check real.
    check_linker_flag(CXX "${linker};LINKER:--fatal-warnings,-z,pack-relative-relocs"
                      ${relr_check})
    set(PORTICO_HAS_RELR ${${relr_check}} CACHE INTERNAL "the portico binary packs relocations")
    target_link_options(${target} PRIVATE ${linker} -static-libstdc++ -static-libgcc
                        LINKER:--gc-sections LINKER:-z,relro,-z,now)
    if(PORTICO_HAS_RELR)
        target_link_options(${target} PRIVATE LINKER:-z,pack-relative-relocs)
    endif()
    if(PORTICO_LLD)
        set(order ${PROJECT_SOURCE_DIR}/cmake/link-order.txt)
        target_link_options(${target} PRIVATE LINKER:--symbol-ordering-file=${order}
                            LINKER:--no-warn-symbol-ordering)
        set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${order})
    else()
        message(STATUS "lld 16 not found (Debian: lld-16): portico links without code ordering")
    endif()
    # dpkg gives an upgraded library archive the package's date, which can be older than the
    # binary; its file list, rewritten at every install, tells the build to relink instead.
    foreach(package libssl-dev libyaml-cpp-dev libyaml-dev liburing-dev)
        file(GLOB package_list /var/lib/dpkg/info/${package}.list
             /var/lib/dpkg/info/${package}:*.list)
        set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${package_list})
    endforeach()
endfunction()
