#!/usr/bin/nonexistent-interpreter
echo never
