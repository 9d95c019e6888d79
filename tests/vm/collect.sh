#!/bin/sh
# In the guest, in two phases.
# 1. (tracer-vm-collect.service, part of the boot) wait until the scenario units have
#    settled, drive the scenarios that need a running system (systemctl kill, restart),
#    then schedule phase 2 on a transient timer and exit, so that boot can finish:
#    systemd-analyze blame and critical-chain refuse to answer before it has.
# 2. (transient unit) gather systemd's account and the tracer's, write everything as a tar
#    to the results disk (/dev/vdb); the unit powers the VM off when it ends.
set -u
exec 2>&1
lib=/usr/local/lib/tracer-vm
R=/run/tracer-vm-results
mkdir -p "$R/units"
stamp() { echo "=== VMTEST $* uptime=$(cut -d' ' -f1 /proc/uptime)"; }
has() { grep -qx "$1" "$lib/scenarios.txt"; }

# No job left but this unit's own (flaky.service's restarts are jobs too).
settle() {
  for i in $(seq 300); do
    [ -z "$(systemctl list-jobs --no-legend | grep -v tracer-vm-collect)" ] && return
    sleep 0.2
  done
  echo "jobs still pending after 60 s:"; systemctl list-jobs --no-pager
}

second=; grep -qw tracer.vmtest=second /proc/cmdline && second=1

if [ "${1:-}" != final ]; then
  stamp "collect start${second:+ (second boot)}"
  settle
  if [ -n "$second" ]; then
    systemd-run --on-active=1 --timer-property=AccuracySec=10ms --unit=tracer-vm-collect-final \
      -p SuccessAction=poweroff-force -p FailureAction=poweroff-force \
      -p StandardOutput=tty -p StandardError=tty -p TTYPath=/dev/ttyS0 \
      "$lib/collect.sh" final
    exit 0
  fi
  for i in $(seq 50); do   # flaky.service: between its restarts there is no job for 200 ms
    [ "$(systemctl show -P ActiveState flaky.service)" = failed ] && break
    sleep 0.2
  done
  systemctl kill --signal=SIGKILL killme.service
  # (Waits its TimeoutStopSec=2s, then systemd kills it.)
  has stoptimeout && systemctl stop stoptimeout.service
  systemctl restart healthy.service
  # ExecStop= fails at the stop; ExecReload= fails at the reload (the unit runs on).
  has stopfail && systemctl stop stopfail.service
  has reloadfail && { systemctl reload reloadfail.service; echo "reload: exit $?"; }
  # Two more starts within StartLimitIntervalSec=: the second is refused.
  if has startlimit; then
    systemctl start startlimit.service; systemctl start startlimit.service
    echo "third start: exit $?"
  fi
  # The socket's first connection starts sock.service; a job file starts watch.service.
  has sock && timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/7777'
  has watch && touch /run/watch/incoming.job
  settle
  stamp "scenario actions done"
  systemd-run --on-active=1 --timer-property=AccuracySec=10ms --unit=tracer-vm-collect-final \
    -p SuccessAction=poweroff-force -p FailureAction=poweroff-force \
    -p StandardOutput=tty -p StandardError=tty -p TTYPath=/dev/ttyS0 \
    "$lib/collect.sh" final
  exit 0
fi

stamp "final collect start"
cat /proc/sys/kernel/random/boot_id > "$R/boot_id.txt"
systemctl show tracer.service > "$R/tracer.show"
timeout 60 systemd-analyze security --no-pager tracer.service > "$R/security.txt" 2>&1
# /metrics, on the socket systemd made (the daemon itself has no network).
timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9464 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' \
  > "$R/metrics.txt" 2>&1 || echo "(no answer within 20 s: $?)" >> "$R/metrics.txt"
systemctl status --no-pager tracer.service tracer-metrics.socket > "$R/tracer.status" 2>&1
# The daemon's own log lines carry their priority when stderr is the journal's stream:
# an error (a configuration file that is not there) is PRIORITY=3.
# (Not `systemd-run --wait`: that asks over the bus, which the no-dbus image lacks. The
# unit fails at once; waited for, at most 60 s.)
systemd-run --quiet --unit=tracer-vm-priority /usr/local/bin/tracer daemon \
  --config /nonexistent/tracer.toml > /dev/null 2>&1
for i in $(seq 300); do
  case $(systemctl show -P ActiveState tracer-vm-priority.service) in failed|inactive) break ;; esac
  sleep 0.2
done
journalctl -b -u tracer-vm-priority.service -o json --no-pager > "$R/priority.jsonl" 2>&1
# (Also on the console, the serial log, should anything after hang.)
head -12 "$R/tracer.status"
journalctl -b -u tracer.service --no-pager | grep -v systemd | tail -5
if [ -n "$second" ]; then
  # The journal of the first boot survived the reboot.
  /usr/local/bin/tracer journal list --json > "$R/journal-list.json" 2> "$R/journal-list.err"
  # mylog.service, enabled in the first boot's story, started in this one.
  /usr/local/bin/tracer boot --json > "$R/boot.json" 2> "$R/boot.err"
  /usr/local/bin/tracer boot > "$R/boot.txt" 2>&1
  /usr/local/bin/tracer boot --critical > "$R/boot-critical.txt" 2>&1
  systemd-analyze critical-chain > "$R/critical-chain.txt" 2>&1
  systemctl show > "$R/manager.show"
  # The same image booted twice: what changed?
  # Under TCG emulation start times jitter several-fold: only a change past 5x and 1 s counts.
  /usr/local/bin/tracer boot --compare -1 --threshold 5 --threshold-min 1 > "$R/compare.txt" 2>&1
  /usr/local/bin/tracer boot --compare -1 --threshold 5 --threshold-min 1 --json > "$R/compare.json" 2> "$R/compare.err"
  echo ok > "$R/complete"
  tar -C "$R" -cf /dev/vdb . && sync
  stamp "results written"
  exit 0
fi
for i in $(seq 150); do
  [ "$(systemctl show -P FinishTimestampMonotonic)" != 0 ] && break
  sleep 0.2
done
systemctl is-system-running > "$R/system-state.txt"
# tick.timer stopped, so that tick.service's account below is of a run that ended.
if grep -qx tick "$lib/scenarios.txt"; then
  systemctl stop tick.timer
  for i in $(seq 50); do
    [ "$(systemctl show -P ActiveState tick.service)" = inactive ] && break
    sleep 0.2
  done
fi
for u in $(cat "$lib/scenarios.txt"); do
  systemctl show "$u.service" -p Id,Type,ControlGroup,ExecStart,ActiveState,SubState,Result \
    -p NRestarts,MainPID,ExecMainPID,ExecMainCode,ExecMainStatus \
    -p InactiveExitTimestampMonotonic,ExecMainStartTimestampMonotonic \
    -p ActiveEnterTimestampMonotonic,ExecMainExitTimestampMonotonic \
    -p ControlPID,ReloadResult,ExecStartPre,ExecStartPost,ExecReload,ExecStop,ExecStopPost \
    -p TriggeredBy,StartLimitBurst,RestartPreventExitStatus \
    > "$R/units/$u.show"
done
systemctl show > "$R/manager.show"
systemd-analyze blame > "$R/blame.txt"
systemd-analyze critical-chain > "$R/critical-chain.txt"
systemd-analyze plot > "$R/plot.svg"
systemd-analyze exit-status > "$R/exit-status.txt"
{ uname -r; systemctl --version | head -1; } > "$R/versions.txt"
cut -d' ' -f1 /proc/uptime > "$R/uptime.txt"

# The story's daemon-reload makes systemd forget how each unit's commands and conditions
# went: let the daemon record systemd's account of the boot first (it does once boot has
# finished; its changes, as they happen, it records from its start).
for i in $(seq 120); do
  /usr/local/bin/tracer journal systemd > /dev/null 2>&1 && break
  sleep 0.5
done
stamp "systemd's account recorded (or not, after 60 s)"
# tracer's journal catalog, made known as `cargo xtask install` does (the image has the
# file in /usr/lib/systemd/catalog/; journalctl -x reads the database this builds).
journalctl --update-catalog > "$R/update-catalog.txt" 2>&1
# The seed's story, step by step, against the running daemon.
PATH=/usr/local/bin:$PATH "$lib/story.sh" "$R/story"

# The running daemon's own account, from its model.
mkdir -p "$R/tracer"
for u in $(cat "$lib/scenarios.txt"); do
  /usr/local/bin/tracer why "$u.service" --json > "$R/tracer/why-daemon-$u.json" 2>&1
  /usr/local/bin/tracer why "$u.service" > "$R/tracer/why-daemon-$u.txt" 2>&1
done
/usr/local/bin/tracer units --json > "$R/tracer/units-daemon.json" 2>&1
# The units that start a scenario: what systemd says of each.
for t in tick.timer sock.socket watch.path; do
  has "${t%.*}" || continue
  /usr/local/bin/tracer why "$t" > "$R/tracer/why-daemon-$t.txt" 2>&1
  /usr/local/bin/tracer why "$t" --json > "$R/tracer/why-daemon-$t.json" 2>&1
done
# A mount unit that fails: a file system type the kernel does not know (mount(8) exits 32).
# (systemd 257 makes a bind mount's missing source itself, so that one would succeed.)
mkdir -p /run/systemd/system
printf '[Mount]\nWhat=none\nWhere=/mnt/tracerbad\nType=tracerbadfs\n' \
  > /run/systemd/system/mnt-tracerbad.mount
systemctl daemon-reload
systemctl start mnt-tracerbad.mount > "$R/tracer/mount-start.txt" 2>&1
systemctl show mnt-tracerbad.mount -p Id,ActiveState,Result,ControlGroup,ExecMount \
  > "$R/units/mnt-tracerbad.show"
/usr/local/bin/tracer why mnt-tracerbad.mount > "$R/tracer/why-daemon-mnt-tracerbad.mount.txt" 2>&1
/usr/local/bin/tracer why mnt-tracerbad.mount --json > "$R/tracer/why-daemon-mnt-tracerbad.mount.json" 2>&1
# A socket with Accept=yes: one instance of its service per connection.
printf '[Socket]\nListenStream=127.0.0.1:7778\nAccept=yes\n' > /run/systemd/system/tracer-vm-echo.socket
printf '[Service]\nExecStart=/bin/cat\nStandardInput=socket\n' > /run/systemd/system/tracer-vm-echo@.service
systemctl daemon-reload
systemctl start tracer-vm-echo.socket
timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/7778; echo hello >&3; read -r line <&3; echo "$line"' \
  > "$R/tracer/echo.txt" 2>&1
sleep 0.5
/usr/local/bin/tracer why tracer-vm-echo.socket --json > "$R/tracer/why-daemon-tracer-vm-echo.socket.json" 2>&1
/usr/local/bin/tracer why tracer-vm-echo.socket > "$R/tracer/why-daemon-tracer-vm-echo.socket.txt" 2>&1
# A job asked for over the bus (as a program using D-Bus does; root's systemctl talks to
# pid 1 over its own socket): the daemon's monitor of the bus names the caller.
printf '[Service]\nType=oneshot\nExecStart=/bin/sleep 0.5\n' > /run/systemd/system/tracer-vm-asked.service
systemctl daemon-reload
busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
  StartUnit ss tracer-vm-asked.service replace > "$R/tracer/asked-call.txt" 2>&1
for i in $(seq 50); do
  [ "$(systemctl show -P ActiveState tracer-vm-asked.service)" = inactive ] && break
  sleep 0.2
done
/usr/local/bin/tracer why tracer-vm-asked.service --json > "$R/tracer/why-daemon-asked.json" 2>&1
# Units systemd has not loaded: a typo of a loaded one's name, and a masked one.
/usr/local/bin/tracer why tracr.service > "$R/tracer/why-typo.txt" 2>&1
systemctl mask --runtime tracer-vm-masked.service > /dev/null 2>&1
/usr/local/bin/tracer why tracer-vm-masked.service > "$R/tracer/why-masked.txt" 2>&1

# Whether this image has the bus at all (the no-dbus image has no dbus package).
{ systemctl show -p Id,LoadState,ActiveState dbus.service dbus.socket; ls -l /run/dbus/system_bus_socket; } \
  > "$R/dbus.show" 2>&1
# With the D-Bus daemon gone (as on a host without the dbus package), systemd's account
# still comes, over pid 1's own socket.
systemctl stop dbus.socket dbus.service > "$R/tracer/nodbus-stop.txt" 2>&1
echo "exit $?" >> "$R/tracer/nodbus-stop.txt"
systemctl is-active dbus.service dbus.socket >> "$R/tracer/nodbus-stop.txt" 2>&1
/usr/local/bin/tracer why noexec.service --json > "$R/tracer/why-nodbus.json" 2>&1

# A live `tracer units` started now finds the running units in /proc (start-up snapshot).
mkdir -p "$R/tracer"
/usr/local/bin/tracer units --json --duration 1 > "$R/tracer/units-live.json" 2> "$R/tracer/units-live.err"

# Stop the daemon so its journal is complete, then replay this boot from it.
systemctl stop tracer.service
/usr/local/bin/tracer events --boot 0 --json > "$R/events.jsonl" 2> "$R/events.err"
/usr/local/bin/tracer boot > "$R/tracer/boot.txt" 2>&1
/usr/local/bin/tracer boot --blame > "$R/tracer/boot-blame.txt" 2>&1
/usr/local/bin/tracer boot --json --plot "$R/tracer/boot.svg" > "$R/tracer/boot.json" 2> "$R/tracer/boot.err"
/usr/local/bin/tracer boot --critical > "$R/tracer/boot-critical.txt" 2>&1
/usr/local/bin/tracer journal systemd > "$R/tracer/systemd.json" 2> "$R/tracer/systemd.err"
/usr/local/bin/tracer journal changes > "$R/tracer/changes.jsonl" 2> "$R/tracer/changes.err"
# Each unit's account replayed from the journal: the kernel's records and systemd's
# changes as the daemon recorded them.
for u in $(cat "$lib/scenarios.txt"); do
  /usr/local/bin/tracer why "$u.service" --json -b 0 > "$R/tracer/why-boot-$u.json" 2>&1
  # ... and as a tracer that could not ask systemd would have it: the kernel's alone.
  /usr/local/bin/tracer why "$u.service" --json -b 0 --no-systemd > "$R/tracer/why-kernel-$u.json" 2> "$R/tracer/why-kernel-$u.err"
done
systemd-analyze time > "$R/analyze-time.txt" 2>&1
/usr/local/bin/tracer journal list --json > "$R/journal-list.json" 2> "$R/journal-list.err"
# The tracer's own account of the units, from its recording, with this system's files.
T=/usr/local/bin/tracer
E="$R/events.jsonl"
mkdir -p "$R/tracer"
$T units --events "$E" > "$R/tracer/units.txt" 2>&1
$T units --json --events "$E" > "$R/tracer/units.json"
for u in $(cat "$lib/scenarios.txt"); do
  $T why "$u.service" --events "$E" > "$R/tracer/why-$u.txt" 2>&1
  $T why "$u.service" --json --events "$E" > "$R/tracer/why-$u.json"
  $T restarts "$u.service" --json --events "$E" > "$R/tracer/restarts-$u.json"
done
journalctl -b -o json > "$R/journal.json"
# systemd's "Failed at step X spawning Y" records (SD_MESSAGE_SPAWN_FAILED)
journalctl -b -o json MESSAGE_ID=641257651c1b4ec9a8624d7a40a9e1e7 > "$R/spawn-failed.json"
journalctl -b -o short-monotonic --no-pager > "$R/journal.txt"
# tracer's findings shipped to systemd-journal-remote on loopback (at most 3 min).
timeout 180 "$lib/journal-remote.sh" "$R/journal-remote"
stamp "journal-remote done"
stamp "collected"
echo ok > "$R/complete"
tar -C "$R" -cf /dev/vdb . && sync
stamp "results written"
