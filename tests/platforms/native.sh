#!/bin/bash
# The x86-64 reference for tests/platforms/run.sh: guest.sh with the native
# build, in a private IPC and mount namespace (tests/integration/lib.sh), so
# the host's limits and /etc are never touched.
# Usage: native.sh SHMPROV SHM_HELPER
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/integration/lib.sh
. "$src/tests/integration/lib.sh"
enter_private_namespace "$@"
exec sh "$src/tests/platforms/guest.sh" "$1" "$2" "$src/profiles" "$TMPDIR/platform"
