# CUDA backend (only with -DLFMD_CUDA=ON; the CPU build never reads this file).
# Builds lfmd_cuda (kernels.cu + backend.c, cuBLAS), links it into the engine (LFMD_HAVE_CUDA),
# and registers tests/cuda/test_*.c as ctest label "cuda" plus the lfmd-cuda-bench tool.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90a)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)

file(GLOB lfmd_cuda_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.c ${CMAKE_CURRENT_LIST_DIR}/*.cu)
add_library(lfmd_cuda STATIC ${lfmd_cuda_srcs})
# The project's C warning flags are not nvcc flags: reapply them to C sources only.
set_property(TARGET lfmd_cuda PROPERTY COMPILE_OPTIONS "")
set(lfmd_cuda_cflags -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2
    -Wundef -Wno-unused-parameter -fno-strict-aliasing)
if(LFMD_WERROR)
  list(APPEND lfmd_cuda_cflags -Werror)
endif()
target_compile_options(lfmd_cuda PRIVATE "$<$<COMPILE_LANGUAGE:C>:${lfmd_cuda_cflags}>"
                       "$<$<COMPILE_LANGUAGE:CUDA>:-O3;-Xptxas=-warn-spills>")
# nvcc's device-code optimizations on every CPU (--split-compile=0): matvec.cu's ~140 kernel
# instantiations took 98 s on one thread, 65 s on two (Debian 12 dev machine); the GPU check's
# build is mostly this file. The PTX of every kernel on a default path is identical with 1 or 16
# partitions (kernels.cu: up to the order of declarations); what differs in scheduling is opt-in:
# 13 of matvec.cu's 142 kernels (the bf16 ring, bf16 5-7-token norm variants).
if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 11.8)
  target_compile_options(lfmd_cuda PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:--split-compile=0>")
endif()
target_include_directories(lfmd_cuda PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/include)
# -DLFMD_CUDA_TRACE=ON: kernels record the step trace (kernels.h cuk_trace; lfmd-cuda-bench
# LFMD_CUDA_TRACE=1, tools/cuda_check.sh --trace). Off by default: the measured kernels stay
# exactly as they are.
option(LFMD_CUDA_TRACE "CUDA kernels record the step trace" OFF)
if(LFMD_CUDA_TRACE)
  target_compile_definitions(lfmd_cuda PRIVATE LFMD_CUDA_TRACE=1)
endif()
# lfmd_tokenizer after lfmd_model: model/gguf_tokenizer.c calls into it (static link order).
# stdc++: the kernel launch stubs use guarded statics (C executables link this library too).
target_link_libraries(lfmd_cuda PUBLIC lfmd_model lfmd_tokenizer CUDA::cudart CUDA::cublas stdc++)
target_link_libraries(lfmd_engine PUBLIC lfmd_cuda)
target_compile_definitions(lfmd_engine PUBLIC LFMD_HAVE_CUDA=1)

file(GLOB lfmd_cuda_tests CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/cuda/test_*.c)
foreach(src ${lfmd_cuda_tests})
  get_filename_component(name ${src} NAME_WE)
  add_executable(cuda_${name} ${src})
  target_link_libraries(cuda_${name} PRIVATE lfmd_engine lfmd_cuda)
  target_include_directories(cuda_${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(cuda_${name} PRIVATE LFMD_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  add_test(NAME cuda/${name} COMMAND cuda_${name} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cuda/${name} PROPERTIES LABELS cuda TIMEOUT 600)
endforeach()
add_executable(lfmd-cuda-bench ${PROJECT_SOURCE_DIR}/tests/cuda/bench_cuda.c)
target_link_libraries(lfmd-cuda-bench PRIVATE lfmd_cuda)
