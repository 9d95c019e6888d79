#!/bin/sh
# The seed's story, literally, as a new user types it: a script, a unit, daemon-reload,
# enable, start (it fails: the script is not executable), tracer why, chmod +x, start
# again, tracer why, and tracer why on a replay of the boot's journal; after the failed
# start, systemctl status and the journal show tracer's finding. Each step's command and output go to $1/NN-name.txt.
set -u
out=$1
mkdir -p "$out"
n=0
step() {  # step NAME COMMAND...
  name=$1; shift
  n=$((n + 1))
  f=$(printf '%s/%02d-%s.txt' "$out" "$n" "$name")
  { echo "\$ $*"; sh -c "$*" 2>&1; echo "[exit $?]"; } > "$f"
}
step write-script "printf '#!/bin/sh\necho \"\$(date) mylog ran\" >> /tmp/mylog.log\n' > /usr/local/bin/mylog.sh"
step write-unit "printf '[Unit]\nDescription=My first service\n\n[Service]\nExecStart=/usr/local/bin/mylog.sh\n\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/mylog.service"
step daemon-reload "systemctl daemon-reload"
step enable "systemctl enable mylog.service"
step start "systemctl start mylog.service"
# tracer's finding reaches the journal a moment after the failed start returns (it waits
# 300 ms for the file's look and systemd's verdict; longer under TCG right after boot):
# waited for, at most 10 s, outside the steps the README shows.
t0=$(cut -d' ' -f1 /proc/uptime)
for i in $(seq 50); do
  journalctl -b -q -u mylog.service -t tracer -o cat --no-pager 2>/dev/null | grep -q . && break
  sleep 0.2
done
echo "waited from uptime $t0 to $(cut -d' ' -f1 /proc/uptime)" > "$out/finding-wait.out"
step status "systemctl status --no-pager --full mylog.service"
journalctl -b -u mylog.service --no-pager > "$out/journal-u.out" 2>&1
journalctl -b -x -u mylog.service --no-pager > "$out/journal-x.out" 2>&1
journalctl -b -u mylog.service -t tracer -o json --no-pager > "$out/finding.jsonl" 2>&1
step why-failed "tracer why mylog.service"
tracer why mylog.service --json > "$out/why-failed.json" 2>&1
step chmod "chmod +x /usr/local/bin/mylog.sh"
step start-again "systemctl start mylog.service; sleep 1"
step why-ran "tracer why mylog.service"
tracer why mylog.service --json > "$out/why-ran.json" 2>&1
# The boot's journal replayed after the fix: run 1 is still explained by what the kernel
# recorded then, not by the file as it is now.
step replayed "tracer events -b 0 --json > /tmp/story-boot.jsonl; tracer why mylog.service --events /tmp/story-boot.jsonl"
tracer why mylog.service --events /tmp/story-boot.jsonl --json > "$out/why-replayed.json" 2>&1
step is-active "systemctl is-active mylog.service"
step log "cat /tmp/mylog.log"
