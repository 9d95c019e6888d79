#!/bin/sh
# The seed's story, literally, as a new user types it: a script, a unit, daemon-reload,
# enable, start (it fails: the script is not executable), tracer why, chmod +x, start
# again, tracer why, and tracer why on a replay of the boot's journal. Each step's command and output go to $1/NN-name.txt.
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
step status "systemctl status --no-pager mylog.service | head -n 6"
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
