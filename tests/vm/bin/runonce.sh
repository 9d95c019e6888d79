#!/bin/sh
echo "$(date) ran" >> /tmp/runonce.log
