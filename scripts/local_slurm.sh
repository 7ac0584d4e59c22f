#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, to try the Slurm launcher and to test it (CI).
#
#   sudo scripts/local_slurm.sh install   # apt-get slurm-wlm + munge if missing (Debian/Ubuntu)
#   sudo scripts/local_slurm.sh start     # install if needed, write the config, start munged,
#                                         # slurmctld and slurmd, wait until the node is idle
#   scripts/local_slurm.sh status         # exit 0 if the node answers, with sinfo's line
#   sudo scripts/local_slurm.sh stop      # cancel its jobs, stop the daemons it started
#
# Then: python -m bapo_exp -m debug=tiny method=dpo,bapo hydra/launcher=slurm \
#         hydra.launcher.partition=local hydra.launcher.gpus_per_node=0 \
#         hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=4
#
# The node is this machine (its CPUs and memory as `slurmd -C` reports them) in one partition
# (BAPO_SLURM_PARTITION, default `local`). No cgroups (ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none: nothing is confined or limited), no accounting database (no slurmdbd,
# so `sacct` fails; the project's Slurm launcher then reads job states from squeue, which keeps
# finished jobs for MinJobAge). Daemons run as root. State, logs and pid files live in
# BAPO_SLURM_DIR (default /tmp/bapo-slurm). The config is written to /etc/slurm/slurm.conf
# (where sbatch and squeue look) only if that file is absent or was written by this script.
set -euo pipefail

DIR=${BAPO_SLURM_DIR:-/tmp/bapo-slurm}
PARTITION=${BAPO_SLURM_PARTITION:-local}
CONF=/etc/slurm/slurm.conf
MARK="# written by bapo-exp scripts/local_slurm.sh"
NODE=$(hostname -s)

die() { echo "local_slurm: $*" >&2; exit 1; }
say() { echo "local_slurm: $*"; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
  && command -v sbatch >/dev/null && command -v munged >/dev/null; }

do_install() {
  installed && return 0
  [ "$(id -u)" = 0 ] || die "slurm-wlm/munge are not installed and installing needs root"
  command -v apt-get >/dev/null || die "no apt-get: install slurm-wlm and munge yourself"
  say "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  installed || die "apt-get finished but slurmctld/slurmd/munged are still missing"
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script: not overwriting a real cluster's config"
  fi
  local hw
  hw=$(slurmd -C | head -1)  # NodeName=... CPUs=... Boards=... RealMemory=...
  mkdir -p "$DIR/state" "$DIR/spool" /etc/slurm
  cat >"$CONF" <<EOF
$MARK
# One node ($NODE), one partition ($PARTITION); see the script's header.
ClusterName=bapo-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for a day: without accounting it is the only record.
MinJobAge=86400
ReturnToService=2
KillWait=30
# A requeued job (preemption, timeout) may start again after cred_expire seconds (default 120);
# the schedulers look at pending jobs every second instead of every 60 / 30 s.
AuthInfo=cred_expire=10
SchedulerParameters=sched_interval=1,bf_interval=1
$hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  munge_ok && return 0
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  runuser -u munge -- /usr/sbin/munged
  touch "$DIR/munged.ours"
  for _ in $(seq 50); do munge_ok && return 0; sleep 0.1; done
  die "munged did not answer"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

do_start() {
  [ "$(id -u)" = 0 ] || die "starting the daemons needs root"
  do_install
  mkdir -p "$DIR"
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && [ "$(node_state)" = idle ]; then
    say "already running: $(sinfo -h -o '%P %D %T %c CPUs %m MB')"
    return 0
  fi
  do_stop quiet
  write_conf
  start_munge
  slurmctld -c -i  # cold start: no jobs left over from an earlier run of this script
  slurmd
  for _ in $(seq 120); do
    case "$(node_state)" in
      idle) say "node $NODE idle in partition $PARTITION (state and logs in $DIR)"; return 0 ;;
      down* | drain* | inval*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.25
  done
  tail -20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  die "node $NODE did not become idle in 30 s (state: $(node_state))"
}

stop_pidfile() {  # stop_pidfile <file>: TERM, then KILL after 10 s
  alive "$1" || { rm -f "$1"; return 0; }
  local pid
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$1"
}

do_stop() {
  if alive "$DIR/slurmctld.pid"; then
    scancel --partition="$PARTITION" 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h -p "$PARTITION" 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  stop_pidfile "$DIR/slurmd.pid"
  stop_pidfile "$DIR/slurmctld.pid"
  if [ -f "$DIR/munged.ours" ]; then
    stop_pidfile /run/munge/munged.pid
    rm -f "$DIR/munged.ours"
  fi
  [ "${1:-}" = quiet ] || say "stopped"
}

do_status() {
  alive "$DIR/slurmctld.pid" || { say "slurmctld is not running"; return 1; }
  sinfo -h -o '%P %D %T %c CPUs %m MB' || return 1
  [ "$(node_state)" = idle ] || [ "$(node_state)" = mixed ] || [ "$(node_state)" = allocated ]
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
