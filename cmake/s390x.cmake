# Cross build for Debian s390x (big-endian): cmake/debian-cross.cmake.
set(SHMPROV_CROSS_TRIPLE s390x-linux-gnu)
set(CMAKE_SYSTEM_PROCESSOR s390x)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
