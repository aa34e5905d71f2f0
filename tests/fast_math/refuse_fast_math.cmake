# Every public header must refuse -ffast-math and -ffinite-math-only with npft's message (core/config.hpp), and the
# same headers must preprocess cleanly without them. Preprocessing is enough: #error fires there.
# Run with -DCXX=<compiler> -DINCLUDE_DIR=<repo>/include -DEIGEN_DIRS=<dir|dir>.
file(GLOB_RECURSE headers RELATIVE ${INCLUDE_DIR} ${INCLUDE_DIR}/npft/*.hpp)
set(includes -I${INCLUDE_DIR})
string(REPLACE "|" ";" EIGEN_DIRS "${EIGEN_DIRS}")
foreach(dir IN LISTS EIGEN_DIRS)
  list(APPEND includes -I${dir})
endforeach()
set(failures "")
foreach(header IN LISTS headers)
  foreach(flag -ffast-math -ffinite-math-only)
    execute_process(COMMAND ${CXX} -std=c++20 ${flag} ${includes} -E -x c++ ${INCLUDE_DIR}/${header} -o /dev/null
                    RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
    if(rc EQUAL 0 OR NOT err MATCHES "npft does not support -ffast-math")
      string(APPEND failures "  ${header} ${flag}: accepted\n")
    endif()
  endforeach()
endforeach()
execute_process(COMMAND ${CXX} -std=c++20 ${includes} -E -x c++ ${INCLUDE_DIR}/npft/npft.hpp -o /dev/null
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  string(APPEND failures "  npft/npft.hpp without fast math: rejected: ${err}\n")
endif()
list(LENGTH headers count)
if(failures)
  message(FATAL_ERROR "fast-math refusal failed:\n${failures}")
endif()
message(STATUS "all ${count} public headers refuse -ffast-math and -ffinite-math-only")
