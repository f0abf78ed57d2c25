fn main() -> std::process::ExitCode {
    tribune_template::cli::main()
}
