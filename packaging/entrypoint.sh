#!/bin/sh
# Container entrypoint: start agentd in the background next to the workspace's own command,
# and forward termination to it so its children are cleaned up.
set -eu
agentd serve --workdir "${AGENTD_WORKDIR:-$PWD}" &
AGENTD_PID=$!
trap 'kill -TERM "$AGENTD_PID" 2>/dev/null; wait "$AGENTD_PID"' TERM INT
if [ "$#" -gt 0 ]; then "$@"; else wait "$AGENTD_PID"; fi
