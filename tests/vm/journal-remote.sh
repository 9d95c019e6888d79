#!/bin/sh
# tracer's findings beyond the host: the journal's entries, tracer's among them, shipped
# by systemd-journal-upload to systemd-journal-remote (Debian's systemd-journal-remote
# package), both in this guest, on loopback, over plain HTTP. The steps are the README's
# ("Fleet", "systemd-journal-remote"), each one's command and output in $1/NN-name.txt as
# story.sh writes them; what the host checks read back is in $1/*.out and *.jsonl.
# Run after the story: its failed start left tracer's finding for mylog.service in the
# journal. Every wait is bounded.
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
remote=/var/log/journal/remote
finding=8652b949182b4d948932779599e03b8e

# The collector: the packaged socket (port 19532) on loopback only, and the service on
# plain HTTP from it (the package's default is HTTPS, with certificates).
step remote-socket "mkdir -p /etc/systemd/system/systemd-journal-remote.socket.d && printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:19532\n' > /etc/systemd/system/systemd-journal-remote.socket.d/loopback.conf"
step remote-http "mkdir -p /etc/systemd/system/systemd-journal-remote.service.d && printf '[Service]\nExecStart=\nExecStart=/usr/lib/systemd/systemd-journal-remote --listen-http=-3 --output=$remote/\n' > /etc/systemd/system/systemd-journal-remote.service.d/http.conf"
step daemon-reload "systemctl daemon-reload"
step remote-start "systemctl start systemd-journal-remote.socket"
# The sender: the packaged uploader, pointed at the collector. It keeps its place in the
# journal (the cursor of the last entry the collector took) in its state file.
step upload-url "mkdir -p /etc/systemd/journal-upload.conf.d && printf '[Upload]\nURL=http://127.0.0.1:19532\n' > /etc/systemd/journal-upload.conf.d/collector.conf"
step upload-start "systemctl start systemd-journal-upload.service"

# The uploader sends what the journal has, then follows it: wait (at most 60 s) until
# tracer's finding is in the collector's journal.
t0=$(cut -d' ' -f1 /proc/uptime)
arrived=no
for i in $(seq 300); do
  if journalctl --directory=$remote -q -o cat MESSAGE_ID=$finding OBJECT_SYSTEMD_UNIT=mylog.service 2>/dev/null | grep -q .; then
    arrived=yes
    break
  fi
  sleep 0.2
done
echo "arrived=$arrived, waited from uptime $t0 to $(cut -d' ' -f1 /proc/uptime)" > "$out/wait.out"

step remote-u "journalctl --directory=$remote --no-pager -u mylog.service"
step remote-fields "journalctl --directory=$remote --no-pager -o json-pretty --output-fields=OBJECT_SYSTEMD_UNIT,PRIORITY,MESSAGE_ID,TRACER_KIND,TRACER_CAUSE,TRACER_ERRNO,TRACER_ERROR,TRACER_PATH,TRACER_MODE,TRACER_FIX MESSAGE_ID=$finding OBJECT_SYSTEMD_UNIT=mylog.service"
journalctl --directory=$remote --no-pager -x -u mylog.service > "$out/remote-x.out" 2>&1
step upload-state "cat /var/lib/systemd/journal-upload/state"

# Both stopped (the uploader saves its state, the collector closes its files), then what
# each journal holds, for the host's comparison.
systemctl stop systemd-journal-upload.service systemd-journal-remote.socket systemd-journal-remote.service > "$out/stop.out" 2>&1
echo "exit $?" >> "$out/stop.out"
cp /var/lib/systemd/journal-upload/state "$out/state.out" 2>> "$out/stop.out"
ls -l $remote > "$out/remote-files.out" 2>&1
journalctl --directory=$remote -o json --no-pager > "$out/remote.jsonl" 2> "$out/remote.err"
journalctl -o json --no-pager > "$out/local.jsonl" 2> "$out/local.err"
journalctl -b --no-pager -o short-monotonic -u systemd-journal-remote.service -u systemd-journal-remote.socket \
  -u systemd-journal-upload.service > "$out/units-journal.out" 2>&1
