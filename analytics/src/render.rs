//! The report for people (a table) and for spreadsheets (CSV: one row per
//! agent, then a totals row). JSON is `serde_json` of the report itself.

use std::fmt::Write;

use switchboard_protocol::stats::{StatsReport, Timer};

/// The CSV header.
pub const CSV_HEADER: &str = "agent_id,login,name,conversations,first_responses,\
first_response_median_secs,first_response_p90_secs,first_response_average_secs,\
csat_average,csat_responses";

/// One row per agent and a last row `total` for every conversation of the
/// report (`conversations` = started), with a header.
pub fn csv(report: &StatsReport) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for a in &report.by_agent {
        let row = [
            field(&a.agent_id),
            field(a.login.as_deref().unwrap_or("")),
            field(&a.name),
            a.conversations.to_string(),
            a.first_response_secs.count.to_string(),
            number(a.first_response_secs.median),
            number(a.first_response_secs.p90),
            number(a.first_response_secs.average),
            number(a.csat_average),
            a.csat_responses.to_string(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    let total = [
        "total".to_owned(),
        String::new(),
        String::new(),
        report.conversations.started.to_string(),
        report.first_response_secs.count.to_string(),
        number(report.first_response_secs.median),
        number(report.first_response_secs.p90),
        number(report.first_response_secs.average),
        number(report.csat.average),
        report.csat.responses.to_string(),
    ];
    out.push_str(&total.join(","));
    out.push('\n');
    out
}

/// A CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn number(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn timer_row(out: &mut String, name: &str, t: &Timer) {
    let _ = writeln!(
        out,
        "  {name:<22} {:>10} {:>10} {:>10} {:>8}",
        cell(t.median),
        cell(t.p90),
        cell(t.average),
        t.count
    );
}

/// The report as text for a terminal.
pub fn table(report: &StatsReport) -> String {
    let mut out = String::new();
    let c = &report.conversations;
    let _ = writeln!(
        out,
        "Conversations started {} – {} (hours in {})",
        report.since, report.until, report.tz
    );
    let _ = writeln!(
        out,
        "Team: {}   Agent: {}\n",
        report.team.as_deref().unwrap_or("all"),
        report.agent.as_deref().unwrap_or("all")
    );
    let _ = writeln!(
        out,
        "  started {}   answered {}   missed {}   abandoned {}   handed off {}   bot-resolved {}   closed {}",
        c.started, c.answered, c.missed, c.abandoned, c.handed_off, c.bot_resolved, c.closed
    );
    let _ = writeln!(
        out,
        "  messages per conversation {}\n",
        cell(report.messages_per_conversation)
    );
    let _ = writeln!(
        out,
        "  {:<22} {:>10} {:>10} {:>10} {:>8}",
        "seconds", "median", "p90", "average", "samples"
    );
    timer_row(&mut out, "wait", &report.wait_secs);
    timer_row(&mut out, "first response", &report.first_response_secs);
    timer_row(&mut out, "resolution", &report.resolution_secs);
    let s = &report.csat;
    let _ = writeln!(
        out,
        "\n  CSAT average {}   responses {}   response rate {}   positive share {}",
        cell(s.average),
        s.responses,
        cell(s.response_rate),
        cell(s.positive_share)
    );
    let _ = writeln!(out, "\nBy agent");
    let _ = writeln!(
        out,
        "  {:<28} {:<20} {:>13} {:>10} {:>10} {:>10} {:>6}",
        "login", "name", "conversations", "1st median", "1st p90", "1st avg", "CSAT"
    );
    for a in &report.by_agent {
        let _ = writeln!(
            out,
            "  {:<28} {:<20} {:>13} {:>10} {:>10} {:>10} {:>6}",
            a.login.as_deref().unwrap_or(&a.agent_id),
            a.name,
            a.conversations,
            cell(a.first_response_secs.median),
            cell(a.first_response_secs.p90),
            cell(a.first_response_secs.average),
            cell(a.csat_average)
        );
    }
    let _ = writeln!(out, "\nBy team");
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>9} {:>7} {:>10} {:>12} {:>10} {:>6}",
        "team", "started", "answered", "missed", "abandoned", "wait median", "1st median", "CSAT"
    );
    for t in &report.by_team {
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>9} {:>7} {:>10} {:>12} {:>10} {:>6}",
            t.team.as_deref().unwrap_or("(none)"),
            t.conversations.started,
            t.conversations.answered,
            t.conversations.missed,
            t.conversations.abandoned,
            cell(t.wait_secs.median),
            cell(t.first_response_secs.median),
            cell(t.csat_average)
        );
    }
    let _ = writeln!(out, "\nBy hour ({})", report.tz);
    let _ = writeln!(
        out,
        "  {:>4} {:>8} {:>9} {:>7} {:>10}",
        "hour", "started", "answered", "missed", "abandoned"
    );
    for h in &report.by_hour {
        let _ = writeln!(
            out,
            "  {:>4} {:>8} {:>9} {:>7} {:>10}",
            format!("{:02}", h.hour),
            h.started,
            h.answered,
            h.missed,
            h.abandoned
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::stats::{AgentFigures, ConversationCounts, Csat};

    fn sample() -> StatsReport {
        StatsReport {
            since: "2025-03-29T23:00:00.000Z".into(),
            until: "2025-03-30T22:00:00.000Z".into(),
            tz: "Europe/Paris".into(),
            team: None,
            agent: None,
            conversations: ConversationCounts {
                started: 3,
                ..Default::default()
            },
            wait_secs: Timer::default(),
            first_response_secs: Timer {
                median: Some(30.0),
                p90: Some(40.0),
                average: Some(30.0),
                count: 2,
            },
            resolution_secs: Timer::default(),
            messages_per_conversation: Some(1.0),
            csat: Csat {
                average: Some(3.5),
                responses: 2,
                ..Default::default()
            },
            by_agent: vec![AgentFigures {
                agent_id: "a_1".into(),
                login: Some("ann@x".into()),
                name: "Lee, \"Ann\"".into(),
                conversations: 1,
                first_response_secs: Timer {
                    median: Some(20.5),
                    p90: Some(20.5),
                    average: Some(20.5),
                    count: 1,
                },
                csat_average: None,
                csat_responses: 0,
            }],
            by_team: Vec::new(),
            by_hour: Vec::new(),
        }
    }

    #[test]
    fn csv_has_a_header_a_row_per_agent_and_totals() {
        let text = csv(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1],
            "a_1,ann@x,\"Lee, \"\"Ann\"\"\",1,1,20.5,20.5,20.5,,0"
        );
        assert_eq!(lines[2], "total,,,3,2,30,40,30,3.5,2");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn the_table_names_every_section() {
        let text = table(&sample());
        for section in [
            "started 3",
            "first response",
            "By agent",
            "ann@x",
            "By team",
            "By hour (Europe/Paris)",
        ] {
            assert!(text.contains(section), "{section} missing from:\n{text}");
        }
    }
}
