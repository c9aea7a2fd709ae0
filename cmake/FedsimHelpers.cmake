# fedsim_cc_library(NAME n SRCS ... DEPS ... [HDRS ...])
#   Builds fedsim_<n> with the alias fedsim::<n> and fedsim's warning set.
#   A library without SRCS is an INTERFACE library (headers only).
set(FEDSIM_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Werror=unused-result
    -Wno-missing-field-initializers)
if(FEDSIM_WERROR)
  list(APPEND FEDSIM_WARNINGS -Werror)
endif()

function(fedsim_cc_library)
  cmake_parse_arguments(L "" "NAME" "SRCS;HDRS;DEPS" ${ARGN})
  set(target fedsim_${L_NAME})
  if(L_SRCS)
    add_library(${target} STATIC ${L_SRCS} ${L_HDRS})
    target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${target} PUBLIC ${L_DEPS})
    target_compile_options(${target} PRIVATE ${FEDSIM_WARNINGS})
    # Eigen parallelises nothing by itself: fedsim decides where threads go
    # (over clients, or inside fedsim kernels), never both.
    target_compile_definitions(${target} PUBLIC EIGEN_DONT_PARALLELIZE)
    if(FEDSIM_UNITY_BUILD)
      set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
    endif()
  else()
    add_library(${target} INTERFACE ${L_HDRS})
    target_include_directories(${target} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${target} INTERFACE ${L_DEPS})
    target_compile_definitions(${target} INTERFACE EIGEN_DONT_PARALLELIZE)
  endif()
  add_library(fedsim::${L_NAME} ALIAS ${target})
endfunction()

# fedsim_cc_binary(NAME n SRCS ... DEPS ...)
function(fedsim_cc_binary)
  cmake_parse_arguments(B "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${B_NAME} ${B_SRCS})
  # Every binary checks its CPU first (common/base/cpu_check.cc).
  target_link_libraries(${B_NAME} PRIVATE ${B_DEPS} fedsim_cpu_check)
  target_compile_options(${B_NAME} PRIVATE ${FEDSIM_WARNINGS})
endfunction()

# fedsim_cc_test(NAME n SRCS ... DEPS ... LABELS ...)
#   One binary per layer (few links on 2 cores); every TEST becomes a ctest
#   entry through gtest_discover_tests.
function(fedsim_cc_test)
  cmake_parse_arguments(T "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SRCS})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gmock_main fedsim_cpu_check)
  # Test code is harness, not compute (the kernels are the libraries', built
  # as the build type says): -Og compiles it in about 60% of the time of -O2
  # (release) or -O1 (sanitizers), the suite's largest compile cost.
  target_compile_options(${T_NAME} PRIVATE ${FEDSIM_WARNINGS} -Og)
  set_property(GLOBAL APPEND PROPERTY FEDSIM_TEST_TARGETS ${T_NAME})
  if(FEDSIM_UNITY_BUILD)
    # Test files put their helpers in a namespace named after the file
    # (fedsim::<file>_test), so batching them into one translation unit
    # cannot make names collide.
    set_target_properties(${T_NAME} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
  endif()
  gtest_discover_tests(${T_NAME}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS "${T_LABELS}"
    DISCOVERY_TIMEOUT 60)
endfunction()
