# What cmake/ppc64el.cmake and cmake/s390x.cmake share: Debian 12's own
# cross compiler for SHMPROV_CROSS_TRIPLE (gcc-TRIPLE) and the target's
# multiarch libraries (libyaml-dev:ARCH libjson-c-dev:ARCH libmd-dev:ARCH,
# after dpkg --add-architecture ARCH). tests/platforms/run.sh ARCH uses them:
#   cmake -S . -B build-ARCH -DCMAKE_TOOLCHAIN_FILE=cmake/ARCH.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${SHMPROV_CROSS_TRIPLE}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${SHMPROV_CROSS_TRIPLE})
# pkg-config reads the target's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${SHMPROV_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# Debian 12 builds no Criterion for these targets: no unit tests.
set(SHMPROV_TESTS OFF CACHE BOOL "Build the Criterion unit tests")
