//! `faq-bot`: see the crate's documentation (`NATS_URL`, `BOT_ID`, `FAQ_FILE`).

fn main() -> std::process::ExitCode {
    switchboard_faq_bot::main()
}
