#!/usr/bin/env bash
# Start or stop a one-node SLURM cluster on this machine (Debian packages, root).
#   .ci/slurm.sh install   apt-get the packages (skipped when present)
#   .ci/slurm.sh start     write slurm.conf, start munged, slurmctld, slurmd; wait for the node
#   .ci/slurm.sh stop      stop the daemons by their pid files
# Bounded in time: every wait has a timeout and fails with a message, never hangs.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
RUN=/run/slurm

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    local host cpus
    host=$(hostname -s)
    cpus=$(nproc)
    mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$RUN" /var/log/slurm
    cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=dsrpipe-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=600
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    install
    write_conf
    mkdir -p /run/munge /var/log/munge
    chown -R munge:munge /run/munge /var/log/munge /etc/munge 2>/dev/null || true
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    if ! pgrep -x munged >/dev/null; then runuser -u munge -- munged --force; fi
    slurmctld -i
    slurmd
    for _ in $(seq 1 30); do
        if timeout 5 sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm: node up ($(sinfo -h -o '%N %t %c CPUs'))"
            return 0
        fi
        sleep 1
    done
    echo "slurm: the node did not come up within 30 s" >&2
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    return 1
}

stop() {
    for pidfile in "$RUN/slurmd.pid" "$RUN/slurmctld.pid"; do
        if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    pkill -x munged 2>/dev/null || true
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
