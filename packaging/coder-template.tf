# Coder template snippet: run agentd from the workspace agent's startup script.
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  startup_script = <<-EOT
    set -e
    # agentd listens on loopback by default; chatd reaches it through the agent's network.
    nohup agentd serve --workdir /home/coder >/tmp/agentd.log 2>&1 &
  EOT
}
