# Cross build for Debian ppc64el (64 KiB pages): cmake/debian-cross.cmake.
set(SHMPROV_CROSS_TRIPLE powerpc64le-linux-gnu)
set(CMAKE_SYSTEM_PROCESSOR ppc64le)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
