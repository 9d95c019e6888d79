#!/bin/bash
# In the guest of the package flow (tracer-vm-package.service, once boot has finished),
# on a fresh copy of the base image: no Rust, no tracer but the .debs in $P.
# - Boot 1 (tracer.vmpkg=install): `dpkg -i tracer_A.deb`, then systemd's and the
#   daemon's account of what that did.
# - Boot 2 (tracer.vmpkg=upgrade): the daemon started early and records this boot; a
#   storm of execs runs across `dpkg -i tracer_B.deb` (a newer version), whose postinst
#   restarts the daemon; then the daemon is stopped (its journal synced) and its journal
#   read; then `apt-get purge -y tracer`, and what is left.
# tracer-vm-package.service runs this with "schedule", which starts it again on a
# transient timer and exits, so that boot finishes first (the daemon takes systemd's
# account of a boot once it has). Results go as a tar to /dev/vdb; the transient unit
# then powers the VM off. tests/vm.rs (check_package) judges them on the host.
set -u
exec 2>&1
if [ "${1:-}" = schedule ]; then
  exec systemd-run --on-active=1 --timer-property=AccuracySec=10ms --unit=tracer-vm-package-run \
    -p SuccessAction=poweroff -p FailureAction=poweroff-force \
    -p StandardOutput=tty -p StandardError=tty -p TTYPath=/dev/ttyS0 "$0" run
fi
export DEBIAN_FRONTEND=noninteractive
P=/var/tmp/tracer-vm-package
R=/run/tracer-vm-results
mkdir -p "$R"
stamp() { echo "=== VMPKG $* uptime=$(cut -d' ' -f1 /proc/uptime)"; }
phase=$(sed -n 's/.*tracer\.vmpkg=\([a-z]*\).*/\1/p' /proc/cmdline)
stamp "$phase start"
cat /proc/sys/kernel/random/boot_id > "$R/boot_id.txt"
{ uname -r; systemctl --version | head -1; } > "$R/versions.txt"

# What the package or its daemon may leave behind, one a line when it is there.
PATHS="/usr/bin/tracer /usr/lib/systemd/system/tracer.service
/usr/lib/systemd/system/tracer-metrics.socket /usr/lib/systemd/catalog/tracer.catalog
/usr/share/tracer /etc/tracer /var/lib/tracer /run/tracer /sys/fs/bpf/tracer
/etc/systemd/system/sysinit.target.wants/tracer.service
/etc/systemd/system/sysinit.target.wants/tracer-metrics.socket"
present() {
  for p in $PATHS; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi
  done
}

# No job left but this unit's own.
settle() {
  for i in $(seq 300); do
    [ -z "$(systemctl list-jobs --no-legend | grep -v tracer-vm-package)" ] && return
    sleep 0.2
  done
  echo "jobs still pending after 60 s:"; systemctl list-jobs --no-pager
}

# $1: a name; the rest: a command. Its output in $R/$1.txt, its exit status in $R/$1.rc.
run() {
  name=$1; shift
  "$@" > "$R/$name.txt" 2>&1
  echo $? > "$R/$name.rc"
}

settle
stamp "$phase: no job left"
case "$phase" in
install)
  { command -v cargo rustc rustup; ls -d /root/.cargo /root/.rustup; } > "$R/rust.txt" 2>/dev/null
  present > "$R/before.txt"
  t0=$(date +%s%N)
  run dpkg-install dpkg -i "$P/tracer_A.deb"
  echo $(( ($(date +%s%N) - t0) / 1000000 )) > "$R/dpkg-install.ms"
  stamp "dpkg -i done"
  systemctl is-active tracer.service tracer-metrics.socket > "$R/is-active.txt"
  systemctl is-enabled tracer.service tracer-metrics.socket > "$R/is-enabled.txt"
  systemctl show tracer.service -p ExecStart,FragmentPath,ActiveState,SubState,NRestarts > "$R/tracer.show"
  dpkg-query -W -f='${Version} ${Status}\n' tracer > "$R/dpkg-query.txt" 2>&1
  dpkg -L tracer > "$R/dpkg-L.txt" 2>&1
  present > "$R/installed.txt"
  run journal-list tracer journal list --json
  ;;
upgrade)
  # The daemon, enabled by the package, started before sysinit.target and recorded this
  # boot; the first boot's journal is still there.
  systemctl show tracer.service -p ActiveState,ActiveEnterTimestampMonotonic,NRestarts > "$R/tracer.show"
  systemctl show sysinit.target -p ActiveEnterTimestampMonotonic > "$R/sysinit.show"
  run journal-list-before tracer journal list --json
  run boot tracer boot --boot 0 --json
  dpkg-query -W -f='${Version}\n' tracer > "$R/version-before.txt" 2>&1
  stamp "the boot's account taken"
  # The storm: short processes, each pid written down once it is started, until the
  # upgrade is over; then more, to at least 2000 and at least 200 after the upgrade.
  rm -f /run/tracer-vm-storm.stop
  : > "$R/storm.pids"
  sh -c 'while [ ! -e /run/tracer-vm-storm.stop ]; do /bin/true & echo $! >> "$1"; wait $!; done' \
    storm "$R/storm.pids" &
  storm=$!
  for i in $(seq 300); do
    [ "$(wc -l < "$R/storm.pids")" -ge 100 ] && break
    sleep 0.1
  done
  wc -l < "$R/storm.pids" > "$R/storm-before-upgrade.txt"
  stamp "storm running; upgrading"
  t0=$(date +%s%N)
  run dpkg-upgrade dpkg -i "$P/tracer_B.deb"
  echo $(( ($(date +%s%N) - t0) / 1000000 )) > "$R/dpkg-upgrade.ms"
  wc -l < "$R/storm.pids" > "$R/storm-after-upgrade.txt"
  touch /run/tracer-vm-storm.stop
  wait "$storm"
  more=$(( 2000 - $(wc -l < "$R/storm.pids") ))
  [ "$more" -lt 200 ] && more=200
  sh -c 'i=0; while [ $i -lt "$2" ]; do /bin/true & echo $! >> "$1"; wait $!; i=$((i+1)); done' \
    storm "$R/storm.pids" "$more"
  stamp "storm done: $(wc -l < "$R/storm.pids") processes"
  systemctl is-active tracer.service > "$R/is-active-after-upgrade.txt"
  dpkg-query -W -f='${Version}\n' tracer > "$R/version-after.txt" 2>&1
  ls /sys/fs/bpf/tracer > "$R/pins-running.txt" 2>&1
  # A stop drains the ring and syncs the journal; the boot is then read from it whole.
  systemctl stop tracer.service
  run events tracer events --boot 0 --kind exec --json
  run journal-list-after tracer journal list --json
  journalctl -b -u tracer.service -o cat --no-pager > "$R/tracer-upgrade.log"
  systemctl start tracer.service
  systemctl is-active tracer.service > "$R/is-active-before-purge.txt"
  stamp "purging"
  run purge apt-get purge -y tracer
  present > "$R/after-purge.txt"
  run status systemctl status --no-pager tracer.service
  systemctl list-unit-files --no-legend 'tracer*' > "$R/unit-files.txt" 2>&1
  run dpkg-status dpkg-query -W -f='${Status}\n' tracer
  journalctl -b -u tracer.service -o cat --no-pager > "$R/tracer-purge.log"
  ;;
*)
  echo "no tracer.vmpkg= phase on the kernel command line" > "$R/error.txt"
  ;;
esac
journalctl -b -u tracer.service -o cat --no-pager > "$R/tracer.log"
journalctl -b -o short-monotonic --no-pager > "$R/journal.txt"
stamp "$phase collected"
echo ok > "$R/complete"
tar -C "$R" -cf /dev/vdb . && sync
stamp "results written"
