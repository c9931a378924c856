# agentd in a Coder template: add these blocks to the template's main.tf (they assume the
# template's `coder_agent "main"`; merge the `env` into yours).

variable "agentd_url" {
  description = "Where the workspace downloads the static agentd binary (scripts/release.sh output)."
  type        = string
}

variable "agentd_sha256" {
  description = "SHA-256 of that binary (the .sha256 file next to it)."
  type        = string
}

variable "agentd_require_token" {
  description = "Require a bearer token on TCP. Coder's chatd sends none, so leave this off when chatd reaches agentd through the agent's loopback port forwarding."
  type        = bool
  default     = false
}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  env = {
    # What agentd reports to chatd (GET /api/v0/context-config); the values are Coder's.
    CODER_AGENT_EXP_INSTRUCTIONS_DIRS = "~/.coder"
    CODER_AGENT_EXP_INSTRUCTIONS_FILE = "AGENTS.md"
    CODER_AGENT_EXP_SKILLS_DIRS       = ".agents/skills"
    CODER_AGENT_EXP_MCP_CONFIG_FILES  = ".mcp.json"
  }
}

resource "coder_script" "agentd" {
  agent_id           = coder_agent.main.id
  display_name       = "agentd"
  icon               = "/icon/terminal.svg"
  run_on_start       = true
  start_blocks_login = false
  script             = <<-EOT
    #!/bin/sh
    set -eu
    umask 077
    state="$HOME/.local/state/agentd"
    bin="$HOME/.local/bin/agentd"
    mkdir -p "$state" "$HOME/.local/bin"
    chmod 0700 "$state"
    # Install (or update) the pinned binary, checked against its SHA-256.
    if ! echo "${var.agentd_sha256}  $bin" | sha256sum -c --status 2>/dev/null; then
      curl -fsSL --retry 3 -o "$bin.new" "${var.agentd_url}"
      echo "${var.agentd_sha256}  $bin.new" | sha256sum -c --quiet
      chmod 0755 "$bin.new"
      mv -f "$bin.new" "$bin"
    fi
    # The token lives in a 0600 file, never in the environment (children could read it).
    if [ ! -s "$state/token" ]; then
      head -c 32 /dev/urandom | base64 | tr -d '=+/\n' > "$state/token"
    fi
    if [ "${var.agentd_require_token}" = "true" ]; then
      export AGENTD_AUTH_TOKEN_FILE="$state/token"
    fi
    # The workdir may not exist yet (the repo is cloned later): agentd starts anyway.
    export AGENTD_WORKDIR="$HOME"
    export AGENTD_STATE_DIR="$state"
    if "$bin" doctor --json >"$state/doctor.json" 2>&1; then :; else
      echo "agentd doctor reported a failure:" >&2
      cat "$state/doctor.json" >&2
    fi
    # Logs under the state dir (0700), not a world-readable /tmp file.
    nohup "$bin" serve >>"$state/agentd.log" 2>&1 &
    # Health check: the script fails (and the workspace shows it) if agentd is not up.
    i=0
    until curl -fsS http://127.0.0.1:4114/healthz >/dev/null 2>&1; do
      i=$((i + 1))
      if [ "$i" -ge 100 ]; then
        echo "agentd did not answer /healthz within 10 s; log:" >&2
        tail -n 50 "$state/agentd.log" >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "agentd $("$bin" version | head -1) is up on 127.0.0.1:4114 (socket and logs in $state)"
  EOT
}
