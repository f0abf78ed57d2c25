fn main() {
    eprintln!("tribune-template: not built yet (issue 4)");
    std::process::exit(2);
}
