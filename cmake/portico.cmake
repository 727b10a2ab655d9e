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
