# Cross build for Debian ppc64el with Debian 12's own cross compiler
# (gcc-powerpc64le-linux-gnu) and its multiarch libraries
# (libyaml-dev:ppc64el libjson-c-dev:ppc64el libmd-dev:ppc64el, after
# dpkg --add-architecture ppc64el). tests/platforms/run.sh ppc64el uses it:
#   cmake -S . -B build-ppc64el -DCMAKE_TOOLCHAIN_FILE=cmake/ppc64el.cmake
# The unit tests are off: Debian 12 builds no Criterion for this target.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ppc64le)
set(CMAKE_C_COMPILER powerpc64le-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE powerpc64le-linux-gnu)
# pkg-config reads the target's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/powerpc64le-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(SHMPROV_TESTS OFF CACHE BOOL "no Criterion for the target")
