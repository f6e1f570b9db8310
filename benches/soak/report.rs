//! Accounting: every request ends in exactly one column, and the invariants are checked.
//!
//! | column | meaning |
//! |---|---|
//! | ok | the expected answer, checked end to end (hash and length both ways, the verdict, 400 for an invalid capture) |
//! | problem | an `application/problem+json` answer from the proxy (legitimate while a fault explains it) |
//! | refused | the connection was refused: the listener had closed |
//! | reset unseen | connected, but no answer, and neither the backend nor Oz ever saw the request (safe to retry) |
//! | cut by kill | no complete answer, the backend had the request, and the backend was killed while it was in flight |
//! | lost | anything else: a wrong or truncated answer presented as complete (a capture forwarded without a verdict shows here too: the backend echoes the verdict it got), a reset after the backend or Oz had the request with no kill to explain it, a hang; and, whatever the client saw, a non-idempotent request the backend got twice, or a respond-route or invalid capture that reached it |
//!
//! Duplicates, captures forwarded without a verdict and forged verdicts come from the backend's
//! records, which are matched with the client's by request id. An idempotent request the backend
//! got twice is reported, not lost: the proxy retries a bodiless idempotent request once when a
//! reused backend connection fails (README, *What the backend and the client see*).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::backend::Seen;
use crate::proxy::{Sample, DRAIN_DEADLINE, DRAIN_DELAY};
use crate::traffic::{Class, Outcome, Record};

/// Allowed growth over the baseline after a phase: fds (once the phase's connections are
/// closed: the backend pool's idle timeout is 2 s, each phase ends with a calm stretch), and RSS.
pub const FD_MARGIN: usize = 8;
pub const RSS_FACTOR: f64 = 1.5;
pub const RSS_MARGIN_KIB: u64 = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseKind {
    Baseline,
    BackendKill,
    BackendSlow,
    Oz5xx,
    OzHang,
    OzToken,
    ReloadValid,
    ReloadInvalid,
    Drain,
}

impl PhaseKind {
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::Baseline => "baseline",
            PhaseKind::BackendKill => "backend killed, restarted",
            PhaseKind::BackendSlow => "backend slow",
            PhaseKind::Oz5xx => "Oz 5xx",
            PhaseKind::OzHang => "Oz hangs past oz.timeout",
            PhaseKind::OzToken => "Oz tokens expire",
            PhaseKind::ReloadValid => "reload: valid change",
            PhaseKind::ReloadInvalid => "reload: invalid, weakening",
            PhaseKind::Drain => "drain (SIGTERM)",
        }
    }

    /// Whether the phase's fault may legitimately turn a request of `class` into a problem
    /// answer (or an unseen reset).
    pub fn allows_problem(self, class: Class) -> bool {
        match self {
            PhaseKind::BackendKill => class.passthrough() || class == Class::CaptureForward,
            PhaseKind::Oz5xx | PhaseKind::OzHang => {
                matches!(class, Class::CaptureForward | Class::CaptureRespond)
            }
            PhaseKind::Drain => true,
            _ => false,
        }
    }

    fn is_oz_fault(self) -> bool {
        matches!(
            self,
            PhaseKind::Oz5xx | PhaseKind::OzHang | PhaseKind::OzToken
        )
    }
}

/// One phase: the fault is active from `start` to `fault_end`, then the system has until `end`
/// to recover.
#[derive(Clone, Debug)]
pub struct Phase {
    pub kind: PhaseKind,
    pub start: Instant,
    pub fault_end: Instant,
    pub end: Instant,
    /// What was done and what the driver saw of it.
    pub note: String,
}

/// Everything the run produced.
pub struct Facts {
    pub title: String,
    pub t0: Instant,
    pub records: Vec<Record>,
    pub phases: Vec<Phase>,
    pub kills: Vec<Instant>,
    pub sigterm: Instant,
    pub exit: Option<(ExitStatus, Instant)>,
    /// `/ready` polls after SIGTERM: when the answer came, and its status (or the error).
    pub ready_polls: Vec<(Instant, Result<u16, String>)>,
    pub samples: Vec<Sample>,
    pub panics: Vec<String>,
    pub seen: HashMap<String, Seen>,
    pub backend_violations: Vec<String>,
    /// Request ids in the folder metadata of the uploads Oz still holds (the most recent ones).
    pub oz_request_ids: HashSet<String>,
    /// Checks the driver made while injecting faults: (what, passed, detail).
    pub driver_checks: Vec<(String, bool, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Final {
    Ok,
    Problem,
    Refused,
    ResetUnseen,
    CutByKill,
    Lost(String),
}

#[derive(Default)]
struct Tally {
    sent: usize,
    ok: usize,
    problem: usize,
    refused: usize,
    reset_unseen: usize,
    cut: usize,
    lost: usize,
    ok_latency: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, r: &Record, f: &Final) {
        self.sent += 1;
        match f {
            Final::Ok => {
                self.ok += 1;
                self.ok_latency.push(r.end - r.start);
            }
            Final::Problem => self.problem += 1,
            Final::Refused => self.refused += 1,
            Final::ResetUnseen => self.reset_unseen += 1,
            Final::CutByKill => self.cut += 1,
            Final::Lost(_) => self.lost += 1,
        }
    }

    fn row(&mut self, name: &str, notes: &str) -> String {
        self.ok_latency.sort();
        format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {notes} |",
            self.sent,
            self.ok,
            self.problem,
            self.refused,
            self.reset_unseen,
            self.cut,
            self.lost,
            pct(&self.ok_latency, 50.0),
            pct(&self.ok_latency, 99.0),
        )
    }
}

/// Nearest-rank percentile in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    format!("{:.1}", sorted[rank - 1].as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The report as Markdown, and whether every invariant held.
pub fn report(f: &Facts) -> (String, bool) {
    let secs = |t: Instant| t.saturating_duration_since(f.t0).as_secs_f64();
    let class_of: HashMap<&str, Class> =
        f.records.iter().map(|r| (r.id.as_str(), r.class)).collect();

    // --- every request into one column ---
    let finals: Vec<Final> = f
        .records
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Ok => Final::Ok,
            Outcome::Problem { .. } => Final::Problem,
            Outcome::Refused => Final::Refused,
            Outcome::Reset(why) => {
                let at_backend = f.seen.get(&r.id).is_some_and(|s| s.count > 0);
                let at_oz = f.oz_request_ids.contains(&r.id);
                let spans_kill = f.kills.iter().any(|k| r.start <= *k && *k <= r.end);
                if !at_backend && !at_oz {
                    Final::ResetUnseen
                } else if at_backend && spans_kill {
                    Final::CutByKill
                } else {
                    Final::Lost(format!(
                        "{} {}: {why} (the {} had it{})",
                        r.class.name(),
                        r.id,
                        if at_backend { "backend" } else { "Oz API" },
                        if spans_kill {
                            ""
                        } else {
                            "; no backend kill during it"
                        }
                    ))
                }
            }
            Outcome::Wrong(why) => Final::Lost(format!("{}: {why}", r.id)),
            Outcome::Hang => Final::Lost(format!(
                "{} {}: no answer within {:?}",
                r.class.name(),
                r.id,
                crate::traffic::HANG
            )),
        })
        .zip(&f.records)
        .map(|(fin, r)| {
            // What the backend saw overrides what the client saw: a non-idempotent request it got
            // twice, or a capture it must never get, is lost whatever the answer was.
            let times = f.seen.get(&r.id).map_or(0, |s| s.count);
            if times > 1 && !r.class.idempotent() {
                Final::Lost(format!(
                    "{} {}: the backend got it {times} times",
                    r.class.name(),
                    r.id
                ))
            } else if times > 0 && matches!(r.class, Class::CaptureRespond | Class::CaptureInvalid)
            {
                Final::Lost(format!("{} {}: reached the backend", r.class.name(), r.id))
            } else {
                fin
            }
        })
        .collect();

    let phase_at = |t: Instant| {
        f.phases
            .iter()
            .rev()
            .find(|p| p.start <= t)
            .map(|p| p.kind)
            .unwrap_or(PhaseKind::Baseline)
    };
    // A fault explains a request's problem if the request was in flight while the fault (or the
    // drain) was active.
    let explained = |r: &Record| {
        f.phases.iter().any(|p| {
            let active_end = if p.kind == PhaseKind::Drain {
                p.end.max(r.end)
            } else {
                p.fault_end
            };
            r.start <= active_end && p.start <= r.end && p.kind.allows_problem(r.class)
        })
    };

    let mut by_class: BTreeMap<Class, Tally> = BTreeMap::new();
    let mut by_phase: Vec<Tally> = f.phases.iter().map(|_| Tally::default()).collect();
    for (r, fin) in f.records.iter().zip(&finals) {
        by_class.entry(r.class).or_default().add(r, fin);
        if let Some(i) = f.phases.iter().rposition(|p| p.start <= r.start) {
            by_phase[i].add(r, fin);
        }
    }

    // --- the invariants ---
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let mut check =
        |what: &str, ok: bool, detail: String| checks.push((what.to_owned(), ok, detail));
    let examples = |v: &[String]| -> String {
        let mut s = v.iter().take(8).cloned().collect::<Vec<_>>().join("; ");
        if v.len() > 8 {
            let _ = write!(s, "; … {} more", v.len() - 8);
        }
        s
    };

    let lost: Vec<String> = finals
        .iter()
        .filter_map(|x| match x {
            Final::Lost(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    check(
        "0 lost",
        lost.is_empty(),
        format!("{} lost. {}", lost.len(), examples(&lost)),
    );

    let mut dup_non_idem = Vec::new();
    let mut dup_idem = 0;
    let mut invalid_at_backend = Vec::new();
    for (id, s) in &f.seen {
        let class = class_of.get(id.as_str()).copied();
        if s.count > 1 {
            match class {
                Some(c) if c.idempotent() => dup_idem += 1,
                _ => dup_non_idem.push(format!("{id} ×{}", s.count)),
            }
        }
        if class == Some(Class::CaptureInvalid) {
            invalid_at_backend.push(format!("{id}: an invalid capture reached the backend"));
        }
    }
    check(
        "0 duplicates of a non-idempotent request at the backend",
        dup_non_idem.is_empty(),
        format!(
            "{} non-idempotent ids seen twice or more. {}; idempotent ids seen twice: {dup_idem}",
            dup_non_idem.len(),
            examples(&dup_non_idem)
        ),
    );
    let (no_verdict, other_violations): (Vec<String>, Vec<String>) = f
        .backend_violations
        .iter()
        .cloned()
        .chain(invalid_at_backend)
        .partition(|v| v.contains("without a verdict"));
    check(
        "0 captures forwarded without a verdict",
        no_verdict.is_empty(),
        format!("{}. {}", no_verdict.len(), examples(&no_verdict)),
    );
    check(
        "nothing else forbidden reached the backend (respond-route or invalid captures, forged X-Oz-*, corrupted request bodies, requests without an id)",
        other_violations.is_empty(),
        format!("{}. {}", other_violations.len(), examples(&other_violations)),
    );

    let mut pt_oz = Vec::new();
    let mut unexplained = Vec::new();
    let mut early_refusals = Vec::new();
    for (r, fin) in f.records.iter().zip(&finals) {
        if r.class.passthrough() && phase_at(r.start).is_oz_fault() && *fin != Final::Ok {
            pt_oz.push(format!("{} {}: {:?}", r.class.name(), r.id, r.outcome));
        }
        if matches!(fin, Final::Problem | Final::ResetUnseen) && !explained(r) {
            unexplained.push(format!(
                "{} {} at {:.1} s: {:?}",
                r.class.name(),
                r.id,
                secs(r.start),
                r.outcome
            ));
        }
        if *fin == Final::Refused && r.start < f.sigterm {
            early_refusals.push(format!(
                "{} {} at {:.1} s",
                r.class.name(),
                r.id,
                secs(r.start)
            ));
        }
    }
    check(
        "passthrough unaffected by Oz faults (every passthrough request during Oz-fault phases ok)",
        pt_oz.is_empty(),
        format!("{} not ok. {}", pt_oz.len(), examples(&pt_oz)),
    );
    check(
        "no problem answer or unanswered connection that no fault explains",
        unexplained.is_empty(),
        format!("{}. {}", unexplained.len(), examples(&unexplained)),
    );
    check(
        "no connection refused before SIGTERM",
        early_refusals.is_empty(),
        format!("{}. {}", early_refusals.len(), examples(&early_refusals)),
    );

    // Resources: baseline = RSS at the end of the baseline phase, most fds during it.
    let in_phase = |p: &Phase| -> Vec<Sample> {
        f.samples
            .iter()
            .filter(|s| p.start <= s.at && s.at < p.end)
            .copied()
            .collect()
    };
    let base = f
        .phases
        .iter()
        .find(|p| p.kind == PhaseKind::Baseline)
        .map(in_phase);
    let (base_rss, base_fds) = match base.as_deref() {
        Some([.., last]) => (
            last.rss_kib,
            base.as_ref()
                .unwrap()
                .iter()
                .map(|s| s.fds)
                .max()
                .unwrap_or(0),
        ),
        _ => (0, 0),
    };
    let rss_limit = (base_rss as f64 * RSS_FACTOR) as u64 + RSS_MARGIN_KIB;
    let fd_limit = base_fds + FD_MARGIN;
    let mut after: Vec<String> = Vec::new();
    let mut over = Vec::new();
    for p in &f.phases {
        if p.kind == PhaseKind::Drain {
            after.push(String::new());
            continue;
        }
        match in_phase(p).last() {
            Some(s) => {
                after.push(format!("after: RSS {} MiB, {} fds", mib(s.rss_kib), s.fds));
                if p.kind != PhaseKind::Baseline && (s.rss_kib > rss_limit || s.fds > fd_limit) {
                    over.push(format!(
                        "{}: RSS {} MiB (limit {}), {} fds (limit {fd_limit})",
                        p.kind.name(),
                        mib(s.rss_kib),
                        mib(rss_limit),
                        s.fds
                    ));
                }
            }
            None => {
                after.push("no sample".into());
                over.push(format!("{}: no RSS/fd sample", p.kind.name()));
            }
        }
    }
    check(
        &format!(
            "RSS and fds back near baseline after each phase (RSS ≤ baseline × {RSS_FACTOR} + {} MiB, fds ≤ baseline max + {FD_MARGIN})",
            RSS_MARGIN_KIB / 1024
        ),
        over.is_empty() && base_rss > 0,
        format!(
            "baseline RSS {} MiB, fds {base_fds}. {}",
            mib(base_rss),
            examples(&over)
        ),
    );

    let limit = DRAIN_DELAY + DRAIN_DEADLINE + Duration::from_secs(1);
    let (exit_text, exit_ok) = match f.exit {
        Some((status, at)) => {
            let took = at.saturating_duration_since(f.sigterm);
            (
                format!(
                    "exit {} after {:.2} s (limit {:.0} s)",
                    status
                        .code()
                        .map_or_else(|| format!("{status}"), |c| c.to_string()),
                    took.as_secs_f64(),
                    limit.as_secs_f64()
                ),
                status.success() && took <= limit,
            )
        }
        None => ("did not exit; killed".into(), false),
    };
    check(
        "exit 0 after SIGTERM within drain_delay + drain_deadline + 1 s",
        exit_ok,
        exit_text.clone(),
    );

    let first_503 = f.ready_polls.iter().position(|(_, r)| matches!(r, Ok(503)));
    let ready_200_before = first_503.map_or(0, |i| {
        f.ready_polls[..i]
            .iter()
            .filter(|(_, r)| matches!(r, Ok(200)))
            .count()
    });
    let (n503, n200_after, nerr) = match first_503 {
        Some(i) => {
            let rest = &f.ready_polls[i..];
            (
                rest.iter().filter(|(_, r)| matches!(r, Ok(503))).count(),
                rest.iter()
                    .filter(|(_, r)| matches!(r, Ok(s) if *s != 503))
                    .count(),
                rest.iter().filter(|(_, r)| r.is_err()).count(),
            )
        }
        None => (0, 0, 0),
    };
    let ready_text = match first_503 {
        Some(i) => format!(
            "/ready 503 ×{n503} from {:.0} ms after SIGTERM, other status after that ×{n200_after}, 200 before it ×{ready_200_before}, unreachable (exited) ×{nerr}",
            f.ready_polls[i]
                .0
                .saturating_duration_since(f.sigterm)
                .as_secs_f64()
                * 1000.0
        ),
        None => format!("/ready never said 503 ({} polls)", f.ready_polls.len()),
    };
    check(
        "/ready 503 during the drain",
        first_503.is_some() && n200_after == 0,
        ready_text.clone(),
    );
    check(
        "no panics in the proxy's output",
        f.panics.is_empty(),
        format!("{}. {}", f.panics.len(), examples(&f.panics)),
    );

    let draining_from = first_503.map(|i| f.ready_polls[i].0);
    let no_close: Vec<String> = f
        .records
        .iter()
        .filter(|r| draining_from.is_some_and(|d| r.start >= d) && r.conn_close == Some(false))
        .map(|r| format!("{} {}", r.class.name(), r.id))
        .collect();
    check(
        "HTTP/1.1 answers to requests sent after /ready said 503 carry Connection: close",
        no_close.is_empty(),
        format!(
            "{} without; {} with",
            no_close.len(),
            f.records
                .iter()
                .filter(
                    |r| draining_from.is_some_and(|d| r.start >= d) && r.conn_close == Some(true)
                )
                .count()
        ),
    );
    checks.extend(f.driver_checks.iter().cloned());

    // --- the table ---
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", f.title);
    let _ = writeln!(
        out,
        "| | sent | ok | problem | refused | reset unseen | cut by kill | lost | p50 ms | p99 ms | notes |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    let mut total = Tally::default();
    for c in Class::ALL {
        let mut t = by_class.remove(&c).unwrap_or_default();
        let problems: BTreeMap<String, usize> = f
            .records
            .iter()
            .filter(|r| r.class == c)
            .filter_map(|r| match &r.outcome {
                Outcome::Problem { status, code } => Some(format!("{status} {code}")),
                _ => None,
            })
            .fold(BTreeMap::new(), |mut m, k| {
                *m.entry(k).or_default() += 1;
                m
            });
        let notes = problems
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        total.sent += t.sent;
        total.ok += t.ok;
        total.problem += t.problem;
        total.refused += t.refused;
        total.reset_unseen += t.reset_unseen;
        total.cut += t.cut;
        total.lost += t.lost;
        total.ok_latency.extend(t.ok_latency.iter().copied());
        let _ = writeln!(out, "{}", t.row(c.name(), &notes));
    }
    let _ = writeln!(out, "{}", total.row("**all requests**", ""));
    for ((p, t), after) in f.phases.iter().zip(by_phase.iter_mut()).zip(&after) {
        let name = format!(
            "phase: {} ({:.1}–{:.1} s)",
            p.kind.name(),
            secs(p.start),
            secs(p.end)
        );
        let notes = if p.kind == PhaseKind::Drain {
            format!("{}; {exit_text}; {ready_text}", p.note)
        } else if after.is_empty() {
            p.note.clone()
        } else {
            format!("{}; {after}", p.note)
        };
        let _ = writeln!(out, "{}", t.row(&name, &notes));
    }
    let stat = |v: Vec<u64>, fmt: &dyn Fn(u64) -> String| -> String {
        match (v.first(), v.last(), v.iter().min(), v.iter().max()) {
            (Some(a), Some(z), Some(lo), Some(hi)) => format!(
                "start {}, min {}, max {}, end {} ({} samples, 1/s)",
                fmt(*a),
                fmt(*lo),
                fmt(*hi),
                fmt(*z),
                v.len()
            ),
            _ => "no samples".into(),
        }
    };
    let _ = writeln!(
        out,
        "| proxy RSS (MiB) | | | | | | | | | | {}; baseline {}, limit after a phase {} |",
        stat(f.samples.iter().map(|s| s.rss_kib).collect(), &|k| mib(k)),
        mib(base_rss),
        mib(rss_limit)
    );
    let _ = writeln!(
        out,
        "| proxy open fds | | | | | | | | | | {}; baseline max {base_fds}, limit after a phase {fd_limit} |",
        stat(f.samples.iter().map(|s| s.fds as u64).collect(), &|n| n.to_string())
    );
    let _ = writeln!(
        out,
        "| panics in proxy output | | | | | | | | | | {} |",
        f.panics.len()
    );
    let _ = writeln!(
        out,
        "| backend | | | | | | | | | | ids seen {}; non-idempotent duplicates {}; idempotent duplicates {dup_idem}; captures without verdict {}; other forbidden {} |",
        f.seen.len(),
        dup_non_idem.len(),
        no_verdict.len(),
        other_violations.len()
    );

    let _ = writeln!(out, "\nInvariants:\n");
    let mut all = true;
    for (what, ok, detail) in &checks {
        all &= ok;
        // "3. a; b" with examples, "0" without.
        let detail = detail.replace(". ;", ";");
        let detail = detail.trim_end().trim_end_matches('.');
        let _ = writeln!(
            out,
            "- {} {what}: {detail}",
            if *ok { "PASS" } else { "**FAIL**" }
        );
    }
    let _ = writeln!(
        out,
        "\nResult: {}",
        if all {
            "every invariant held"
        } else {
            "**an invariant failed**"
        }
    );
    (out, all)
}
