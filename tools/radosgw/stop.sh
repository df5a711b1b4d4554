#!/usr/bin/env bash
# Stop the daemons tools/radosgw/start.sh started (by the PIDs in their pid files), radosgw
# first; the data is kept, so start.sh brings the same cluster back.
#   tools/radosgw/stop.sh        stop everything
#   tools/radosgw/stop.sh rgw    stop radosgw only (the S3 server), to test an outage
# Environment: CEPH_BASE (default /tmp/walship-ceph), the cluster's directory.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # `sh stop.sh` too: the rest is bash
set -uo pipefail
BASE=${CEPH_BASE:-/tmp/walship-ceph}
names=(client.rgw.a:radosgw osd.0:ceph-osd mgr.x:ceph-mgr mon.a:ceph-mon)
case ${1:-} in
    "") ;;
    rgw) names=(client.rgw.a:radosgw) ;;
    *) echo "radosgw/stop.sh: unknown argument '$1' (usage: stop.sh [rgw])" >&2; exit 2 ;;
esac
for entry in "${names[@]}"; do
    name=${entry%%:*} program=${entry#*:}
    pf=$BASE/run/$name.pid
    [[ -s $pf ]] || continue
    pid=$(cat "$pf")
    # only a live process of that program: a stale pid file may name someone else's process now
    if grep -qa "$program" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$pf"
done
