#!/bin/sh
# Type=forking: start a child that keeps running, then exit.
/bin/sleep infinity </dev/null >/dev/null 2>&1 &
exit 0
