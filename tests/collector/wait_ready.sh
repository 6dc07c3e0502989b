#!/bin/sh
# wait_ready.sh PORT [SECONDS]: waits until something accepts TCP connections
# on 127.0.0.1:PORT (default: up to 5 s). Exit 0 when ready, 1 on timeout.
# The probe connects and closes without sending a byte: the collector does not
# log or count it (no request line), and nginx just closes it.
set -u
port=${1:?usage: wait_ready.sh PORT [SECONDS]}
secs=${2:-5}
exec /usr/bin/python3 - "$port" "$secs" <<'PY'
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + secs
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() >= deadline:
            print("wait_ready: nothing listening on 127.0.0.1:%d after %gs" % (port, secs), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
PY
