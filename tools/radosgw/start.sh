#!/usr/bin/env bash
# Start a minimal single-node Ceph cluster for walship's tests: 1 mon, 1 mgr, 1 bluestore OSD on
# a sparse file, radosgw with the beast frontend; every daemon bound to 127.0.0.1 only.
# Idempotent: daemons already running are left alone, an existing cluster is reused, the S3 user
# is created (or given the key) only when missing. Needs root; installs Debian's ceph-mon,
# ceph-osd, ceph-mgr, radosgw, uuid-runtime and curl when a command is missing.
#
#   tools/radosgw/start.sh          start (create the cluster if absent)
#   tools/radosgw/start.sh --fresh  stop it and wipe CEPH_BASE first, then create and start
#   eval "$(tools/radosgw/start.sh)"   the same, exporting what the test suite reads
#
# Environment (defaults: the instance the test fixture looks for):
#   CEPH_BASE=/tmp/walship-ceph            the cluster's config, data, logs and pid files
#   WALSHIP_RADOSGW_PORT=17480              radosgw's S3 port
#   CEPH_MON_PORT=40789 CEPH_MON_PORT2=40300   the mon's v1 and v2 messenger ports
#   WALSHIP_RADOSGW_ACCESS_KEY, WALSHIP_RADOSGW_SECRET_KEY   the S3 user's keys
# Progress goes to stderr; stdout gets only `export NAME=value` lines (endpoint, keys, ceph.conf).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # `sh start.sh` too: the rest is bash
set -euo pipefail

BASE=${CEPH_BASE:-/tmp/walship-ceph}
RGW_PORT=${WALSHIP_RADOSGW_PORT:-17480}
MON_PORT=${CEPH_MON_PORT:-40789}
MON_PORT2=${CEPH_MON_PORT2:-40300}
ACCESS_KEY=${WALSHIP_RADOSGW_ACCESS_KEY:-WALSHIPTESTACCESSKEY}
SECRET_KEY=${WALSHIP_RADOSGW_SECRET_KEY:-walshipTestSecretKey0123456789abcdefghij}
UID_NAME=walship
CONF=$BASE/ceph.conf
ENDPOINT=http://127.0.0.1:$RGW_PORT
WAIT=${CEPH_START_TIMEOUT:-180}  # seconds each daemon may take to answer
T0=$(date +%s%N)

log() {
    local t=$(( ($(date +%s%N) - T0) / 100000000 ))
    printf '[radosgw/start.sh %4d.%ds] %s\n' $((t / 10)) $((t % 10)) "$*" >&2
}
die() { printf 'radosgw/start.sh: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: run COMMAND every half second until it succeeds
wait_for() {
    local limit=$1 what=$2 deadline=$(( $(date +%s) + $1 ))
    shift 2
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || die "$what after ${limit}s (logs: $BASE/log/)"
        sleep 0.5
    done
}

# listening PORT: something accepts connections on 127.0.0.1:PORT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive NAME PROGRAM: the daemon's pid file names a live PROGRAM process
alive() {
    local pf=$BASE/run/$1.pid
    [[ -s $pf ]] && grep -qa "$2" "/proc/$(cat "$pf")/cmdline" 2>/dev/null
}

# start_daemon NAME PROGRAM ARGS...: start PROGRAM unless it runs
start_daemon() {
    local name=$1 program=$2
    shift 2
    alive "$name" "$program" && return 0
    # a daemon forks into the background; what it says before that goes to a file, not to us
    "$program" -c "$CONF" "$@" 2>>"$BASE/log/$name.stderr" ||
        die "$name did not start: $(tail -n 3 "$BASE/log/$name.stderr")"
    log "$name started"
}

[[ ${1:-} == "" || ${1:-} == --fresh ]] || die "unknown argument '$1' (usage: start.sh [--fresh])"
for v in WALSHIP_RADOSGW_PORT:$RGW_PORT CEPH_MON_PORT:$MON_PORT CEPH_MON_PORT2:$MON_PORT2; do
    [[ ${v#*:} =~ ^[0-9]+$ ]] || die "${v%%:*} must be a port number, not '${v#*:}'"
done

missing=()
for cmd in ceph-mon ceph-osd ceph-mgr radosgw radosgw-admin ceph uuidgen curl; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if (( ${#missing[@]} )); then
    (( EUID == 0 )) || die "missing ${missing[*]}, and installing Debian's ceph packages needs root"
    log "installing ceph-mon ceph-osd ceph-mgr radosgw (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        ceph-mon ceph-osd ceph-mgr radosgw uuid-runtime curl >/dev/null
fi

if [[ ${1:-} == --fresh ]]; then
    CEPH_BASE=$BASE "$(dirname "$0")/stop.sh" >&2 || true
    rm -rf "$BASE"
    log "wiped $BASE"
fi
# before anything starts: the ports of each daemon still to start must be free
ports_free() { # ports_free NAME PROGRAM PORT...
    local name=$1 program=$2 port
    shift 2
    alive "$name" "$program" && return 0
    for port in "$@"; do
        ! listening "$port" ||
            die "port $port is taken by another process: $name of $BASE cannot bind it (set other ports)"
    done
}
ports_free mon.a ceph-mon "$MON_PORT" "$MON_PORT2"
ports_free client.rgw.a radosgw "$RGW_PORT"
mkdir -p "$BASE"/{run,log,mon,osd,mgr/ceph-x,rgw}

if [[ ! -f $CONF ]]; then
    FSID=$(uuidgen)
    cat >"$CONF.tmp" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# daemons (radosgw too) default to the secure-only mon client mode, which auth none cannot use:
# radosgw would loop on "get_initial_auth_request returned -13"
ms mon client mode = crc secure
ms client mode = crc secure
run dir = $BASE/run
pid file = $BASE/run/\$name.pid
admin socket = $BASE/run/\$name.asok
log file = $BASE/log/\$name.log
keyring = $BASE/keyring
mon data = $BASE/mon/\$cluster-\$id
osd data = $BASE/osd/\$cluster-\$id
mgr data = $BASE/mgr/\$cluster-\$id
# one OSD: every pool has one replica and the OSD is its own failure domain
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
osd objectstore = bluestore
# a sparse file: it takes on disk only what is written
bluestore block size = 21474836480
bluestore block create = true
bluestore cache size = 268435456
osd memory target = 1073741824
osd op num shards = 2
osd op num threads per shard = 1
mgr initial modules =
[mgr]
mgr disabled modules = dashboard,prometheus,restful,telemetry,influx,iostat,rbd_support,volumes,devicehealth
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $BASE/rgw
rgw thread pool size = 64
rgw enable usage log = false
EOF
    mv "$CONF.tmp" "$CONF"
    log "wrote $CONF (fsid $FSID)"
else
    # an existing cluster keeps the ports it was made with: asking for others is a mistake
    grep -q "^mon host = \[v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT\]$" "$CONF" &&
        grep -q "^rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT$" "$CONF" ||
        die "$CONF was made for other ports than rgw $RGW_PORT, mon $MON_PORT/$MON_PORT2 (see its 'mon host' and 'rgw frontends' lines; use them, or start.sh --fresh)"
fi
FSID=$(awk '/^fsid/ {print $3}' "$CONF")
C=(-c "$CONF")

# --- mon ------------------------------------------------------------------------------------
if [[ ! -f $BASE/mon/ceph-a/store.db/CURRENT ]]; then
    rm -rf "$BASE/mon/ceph-a"
    ceph-authtool --create-keyring "$BASE/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$BASE/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$BASE/mon.keyring" --import-keyring "$BASE/keyring" >/dev/null
    monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]" \
        "$BASE/monmap" >/dev/null
    ceph-mon "${C[@]}" --mkfs -i a --monmap "$BASE/monmap" --keyring "$BASE/mon.keyring"
    log "mon.a created"
fi
start_daemon mon.a ceph-mon -i a
wait_for "$WAIT" "mon.a does not answer" timeout 5 ceph "${C[@]}" mon stat
log "mon.a answers"

# --- mgr ------------------------------------------------------------------------------------
start_daemon mgr.x ceph-mgr -i x

# --- osd ------------------------------------------------------------------------------------
if [[ ! -f $BASE/osd/ceph-0/fsid ]]; then
    OSD_UUID=$(uuidgen)
    OSD_ID=$(ceph "${C[@]}" osd new "$OSD_UUID")
    [[ $OSD_ID == 0 ]] || die "the cluster gave osd id $OSD_ID, expected 0 (a half-made cluster? start.sh --fresh)"
    mkdir -p "$BASE/osd/ceph-0"
    ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" 2>>"$BASE/log/osd-mkfs.log"
    log "osd.0 created (bluestore on $BASE/osd/ceph-0/block)"
fi
start_daemon osd.0 ceph-osd -i 0
osd_up() { ceph "${C[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up'; }
wait_for "$WAIT" "osd.0 is not up" osd_up
log "osd.0 up"

# --- radosgw --------------------------------------------------------------------------------
start_daemon client.rgw.a radosgw -n client.rgw.a
wait_for "$WAIT" "radosgw does not answer on $ENDPOINT" curl -s -o /dev/null -m 2 "$ENDPOINT/"
log "radosgw answers on $ENDPOINT"

ADMIN=(radosgw-admin "${C[@]}")
if ! info=$("${ADMIN[@]}" user info --uid="$UID_NAME" 2>/dev/null); then
    "${ADMIN[@]}" user create --uid="$UID_NAME" --display-name="walship test" \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
    log "user $UID_NAME created"
elif ! grep -q "\"access_key\": \"$ACCESS_KEY\"" <<<"$info" ||
    ! grep -q "\"secret_key\": \"$SECRET_KEY\"" <<<"$info"; then
    "${ADMIN[@]}" key create --uid="$UID_NAME" --key-type=s3 \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
    log "user $UID_NAME given access key $ACCESS_KEY"
fi
# the default limit of 1000 buckets per user is reached by a few runs of the suite (0: none)
if ! grep -q '"max_buckets": 0,' <<<"$("${ADMIN[@]}" user info --uid="$UID_NAME")"; then
    "${ADMIN[@]}" user modify --uid="$UID_NAME" --max-buckets=0 >/dev/null
    log "user $UID_NAME may create any number of buckets"
fi
log "ready"
echo "export WALSHIP_RADOSGW_ENDPOINT=$ENDPOINT"
echo "export WALSHIP_RADOSGW_ACCESS_KEY=$ACCESS_KEY"
echo "export WALSHIP_RADOSGW_SECRET_KEY=$SECRET_KEY"
echo "export WALSHIP_CEPH_CONF=$CONF"
