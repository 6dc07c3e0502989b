# Cross build for Debian s390x with Debian 12's own cross compiler
# (gcc-s390x-linux-gnu) and its multiarch libraries
# (libyaml-dev:s390x libjson-c-dev:s390x libmd-dev:s390x, after
# dpkg --add-architecture s390x). tests/platforms/run.sh s390x uses it:
#   cmake -S . -B build-s390x -DCMAKE_TOOLCHAIN_FILE=cmake/s390x.cmake
# The unit tests are off: Debian 12 builds no Criterion for this target.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR s390x)
set(CMAKE_C_COMPILER s390x-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE s390x-linux-gnu)
# pkg-config reads the target's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/s390x-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(SHMPROV_TESTS OFF CACHE BOOL "no Criterion for the target")
