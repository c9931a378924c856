//! The real agentd entry point, built inside the test package so `CARGO_BIN_EXE_*` points at
//! it. Same code path as the shipped `agentd` binary.

fn main() -> std::process::ExitCode {
    agentd::main()
}
