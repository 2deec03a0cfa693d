# Builds one target of psap's build tree and checks the outcome (a CTest
# driver for the compile-fail tests, after Eigen's failtest/):
#   cmake -DBUILD_DIR=<dir> -DTARGET=<target> -DEXPECT=success|failure
#         [-DREGEX=<regex>] [-DCONFIG=<config>] -P check_build.cmake
# EXPECT=failure passes only when the build fails AND its output matches
# REGEX (the diagnostic names the concept); EXPECT=success only when the
# build succeeds. Anything else is reported with the full compiler output.
foreach(var BUILD_DIR TARGET EXPECT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_build.cmake: ${var} is not set")
  endif()
endforeach()
set(_config)
if(CONFIG)
  set(_config --config ${CONFIG})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET} ${_config}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(EXPECT STREQUAL "success")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${TARGET} must compile (it is the valid twin of a compile-fail case) but did not:\n${out}")
  endif()
  message(STATUS "${TARGET} compiles, as it must")
elseif(EXPECT STREQUAL "failure")
  if(NOT DEFINED REGEX)
    message(FATAL_ERROR "check_build.cmake: EXPECT=failure needs REGEX")
  endif()
  if(rc EQUAL 0)
    message(FATAL_ERROR "${TARGET} compiled, but this misuse must be rejected at compile time")
  endif()
  if(NOT out MATCHES "${REGEX}")
    message(FATAL_ERROR "${TARGET} failed to compile as it must, but no diagnostic matches \"${REGEX}\":\n${out}")
  endif()
  message(STATUS "${TARGET} is rejected with a diagnostic matching \"${REGEX}\"")
else()
  message(FATAL_ERROR "check_build.cmake: EXPECT must be success or failure, got '${EXPECT}'")
endif()
