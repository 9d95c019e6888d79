#!/bin/sh
# In the guest: drive the scenarios that need a running system, gather systemd's account
# and the tracer's, and write everything as a tar to the results disk (/dev/vdb).
set -u
exec 2>&1
lib=/usr/local/lib/tracer-vm
R=/run/tracer-vm-results
mkdir -p "$R/units"
stamp() { echo "=== VMTEST $* uptime=$(cut -d' ' -f1 /proc/uptime)"; }
stamp "collect start"

# Boot has settled when no job but this unit's own is left (is-system-running --wait
# would wait for this unit too). flaky.service's restarts are jobs as well.
settle() {
  for i in $(seq 300); do
    [ -z "$(systemctl list-jobs --no-legend | grep -v tracer-vm-collect)" ] && return
    sleep 0.2
  done
  echo "jobs still pending after 60 s:"; systemctl list-jobs --no-pager
}
settle
for i in $(seq 50); do   # flaky.service: between its restarts there is no job for 200 ms
  [ "$(systemctl show -P ActiveState flaky.service)" = failed ] && break
  sleep 0.2
done
systemctl is-system-running > "$R/system-state.txt"
systemctl kill --signal=SIGKILL killme.service
systemctl restart healthy.service
sleep 1
stamp "scenario actions done"

for u in $(cat "$lib/scenarios.txt"); do
  systemctl show "$u.service" -p Id,Type,ControlGroup,ExecStart,ActiveState,SubState,Result \
    -p NRestarts,MainPID,ExecMainPID,ExecMainCode,ExecMainStatus \
    -p InactiveExitTimestampMonotonic,ExecMainStartTimestampMonotonic \
    -p ActiveEnterTimestampMonotonic,ExecMainExitTimestampMonotonic \
    > "$R/units/$u.show"
done
systemctl show tracer.service > "$R/tracer.show"
systemd-analyze blame > "$R/blame.txt"
systemd-analyze critical-chain > "$R/critical-chain.txt"
systemd-analyze plot > "$R/plot.svg"
systemd-analyze exit-status > "$R/exit-status.txt"
{ uname -r; systemctl --version | head -1; } > "$R/versions.txt"
cut -d' ' -f1 /proc/uptime > "$R/uptime.txt"

# Stop the tracer so its output is complete, then take it and the journal.
systemctl stop tracer.service
cp /run/tracer-events.jsonl "$R/events.jsonl" 2>/dev/null || echo "no tracer output" > "$R/events-missing.txt"
journalctl -b -o json > "$R/journal.json"
# systemd's "Failed at step X spawning Y" records (SD_MESSAGE_SPAWN_FAILED)
journalctl -b -o json MESSAGE_ID=641257651c1b4ec9a8624d7a40a9e1e7 > "$R/spawn-failed.json"
journalctl -b -o short-monotonic --no-pager > "$R/journal.txt"
stamp "collected"
echo ok > "$R/complete"
tar -C "$R" -cf /dev/vdb . && sync
stamp "results written"
