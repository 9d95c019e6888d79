#!/bin/sh
# Dies of SIGSEGV (default action: terminate, core dump).
kill -11 $$
