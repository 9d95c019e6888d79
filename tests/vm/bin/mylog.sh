#!/bin/sh
echo "$(date) ran" >> /tmp/mylog.log
