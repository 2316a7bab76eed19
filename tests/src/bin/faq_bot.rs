//! The example FAQ bot (bots/faq), built inside the test package so that
//! the bot tests run the real bot process, kept up to date by cargo.

fn main() -> std::process::ExitCode {
    switchboard_faq_bot::main()
}
