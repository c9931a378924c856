#!/bin/sh
# Container entrypoint for a workspace image.
#
# With no arguments agentd is the container's main process: as PID 1 it runs a minimal
# init that reaps every orphan of the container (also those of `docker exec` sessions) and
# forwards SIGTERM/SIGINT/SIGHUP to the daemon, which stops every process tree it started
# (TERM, 2 s grace, KILL) and exits 0.
#
# With arguments (the image's own command, e.g. an IDE server), agentd runs beside it and
# the container stops when either ends. This shell is then PID 1 and reaps nothing: start
# such a container with `docker run --init` (or prefer the no-argument form).
set -eu
: "${AGENTD_STATE_DIR:=${HOME:-/root}/.local/state/agentd}"
export AGENTD_STATE_DIR
if [ "$#" -eq 0 ]; then
  exec agentd serve --init
fi
agentd serve &
agentd_pid=$!
"$@" &
cmd_pid=$!
trap 'kill -TERM "$agentd_pid" "$cmd_pid" 2>/dev/null' TERM INT HUP
# POSIX sh has no `wait -n`: poll both.
while kill -0 "$agentd_pid" 2>/dev/null && kill -0 "$cmd_pid" 2>/dev/null; do
  sleep 1
done
kill -TERM "$agentd_pid" "$cmd_pid" 2>/dev/null || true
wait "$agentd_pid" 2>/dev/null || true
wait "$cmd_pid" 2>/dev/null || true
