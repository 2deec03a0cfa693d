# CTest driver for the packaging tests (fmt's habit: packaging is tested).
#   -DSTEP=install          install BUILD_DIR into PREFIX (emptied first) and
#                           check the package files and headers landed there;
#   -DSTEP=consumer         configure SOURCE into WORK_DIR (emptied first) with
#                           ARGS, build it, run psap_consumer, expect OUTPUT_REGEX;
#   -DSTEP=configure_fails  configure SOURCE with ARGS: must fail with a
#                           message matching ERROR_REGEX.
# GENERATOR and CXX_COMPILER are the parent build's. ARGS is a |-separated list.
cmake_minimum_required(VERSION 3.20)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  set(rc ${rc} PARENT_SCOPE)
  set(out "${out}" PARENT_SCOPE)
endfunction()

function(must_run what)
  run(${ARGN})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

string(REPLACE "|" ";" ARGS "${ARGS}")
set(_configure ${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK_DIR} -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} ${ARGS})

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE ${PREFIX})
  must_run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
  foreach(f ${LIBDIR}/cmake/psap/psapConfig.cmake ${LIBDIR}/cmake/psap/psapConfigVersion.cmake
            ${LIBDIR}/cmake/psap/psapTargets.cmake)
    if(NOT EXISTS ${PREFIX}/${f})
      message(FATAL_ERROR "the install is missing ${f}:\n${out}")
    endif()
  endforeach()
  # Every header of the source tree is installed, and nothing for nvcc only.
  file(GLOB_RECURSE _src RELATIVE ${SOURCE_INCLUDE_DIR} ${SOURCE_INCLUDE_DIR}/psap/*)
  list(FILTER _src EXCLUDE REGEX "\\.cu$")
  file(GLOB_RECURSE _inst RELATIVE ${PREFIX}/${INCLUDEDIR} ${PREFIX}/${INCLUDEDIR}/psap/*)
  list(SORT _src)
  list(SORT _inst)
  if(NOT _src STREQUAL _inst)
    message(FATAL_ERROR "installed headers differ from the source tree's:\n  source: ${_src}\n  installed: ${_inst}")
  endif()
  list(LENGTH _inst _n)
  message(STATUS "installed ${_n} headers and the package files into ${PREFIX}")
elseif(STEP STREQUAL "consumer")
  file(REMOVE_RECURSE ${WORK_DIR})
  must_run("configuring ${SOURCE}" ${_configure})
  must_run("building ${SOURCE}" ${CMAKE_COMMAND} --build ${WORK_DIR})
  set(_exe ${WORK_DIR}/psap_consumer${CMAKE_EXECUTABLE_SUFFIX})
  if(NOT EXISTS ${_exe})  # multi-config generators: <work>/<config>/psap_consumer
    file(GLOB _exe ${WORK_DIR}/*/psap_consumer${CMAKE_EXECUTABLE_SUFFIX})
  endif()
  must_run("running ${_exe}" ${_exe})
  if(NOT out MATCHES "${OUTPUT_REGEX}")
    message(FATAL_ERROR "${_exe} ran but its output does not match \"${OUTPUT_REGEX}\":\n${out}")
  endif()
  message(STATUS "${out}")
elseif(STEP STREQUAL "configure_fails")
  file(REMOVE_RECURSE ${WORK_DIR})
  run(${_configure})
  if(rc EQUAL 0)
    message(FATAL_ERROR "configuring ${SOURCE} with ${ARGS} succeeded, but it must fail")
  endif()
  if(NOT out MATCHES "${ERROR_REGEX}")
    message(FATAL_ERROR "configuring ${SOURCE} failed as it must, but not with \"${ERROR_REGEX}\":\n${out}")
  endif()
  message(STATUS "configuring failed as it must, matching \"${ERROR_REGEX}\"")
else()
  message(FATAL_ERROR "packaging_test.cmake: unknown STEP '${STEP}'")
endif()
