//! The `agentd` executable: all logic lives in the library so tests can share the code path.

fn main() -> std::process::ExitCode {
    agentd::main()
}
