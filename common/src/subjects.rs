//! Every subject string of the `SN` stream is spelled here and nowhere else.
//!
//! Layout: `sn.<model>.<kind>[.<task>]`. Model codes are `[A-Za-z0-9_-]{1,32}`, so they are
//! always a single safe subject token.

use uuid::Uuid;

/// Name of the one stream that holds every event.
pub const STREAM: &str = "SN";
/// Subjects captured by the stream.
pub const ALL: &str = "sn.>";
/// Durable pull consumer shared by every generator replica.
pub const GENERATOR_CONSUMER: &str = "generator";
/// Requests for every model: the generator consumer's filter.
pub const ALL_REQUESTS: &str = "sn.*.requested.*";
/// Every model's ledger subject.
pub const ALL_RESERVATIONS: &str = "sn.*.reserved";
/// Object store bucket holding snapshots of the gateway's views (stream `OBJ_SN_VIEWS`).
pub const VIEWS_BUCKET: &str = "SN_VIEWS";
/// The snapshot's object name in that bucket.
pub const VIEWS_OBJECT: &str = "views";

/// What a subject carries, read from its third token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requested,
    Reserved,
    Generated,
    Completed,
    Failed,
}

impl Kind {
    pub fn token(self) -> &'static str {
        match self {
            Kind::Requested => "requested",
            Kind::Reserved => "reserved",
            Kind::Generated => "generated",
            Kind::Completed => "completed",
            Kind::Failed => "failed",
        }
    }

    /// `Completed` or `Failed`: the last event of a task.
    pub fn is_final(self) -> bool {
        matches!(self, Kind::Completed | Kind::Failed)
    }

    fn from_token(token: &str) -> Option<Kind> {
        Some(match token {
            "requested" => Kind::Requested,
            "reserved" => Kind::Reserved,
            "generated" => Kind::Generated,
            "completed" => Kind::Completed,
            "failed" => Kind::Failed,
            _ => return None,
        })
    }
}

/// `sn.<model>.reserved`: the per-model ledger, target of the compare-and-set.
pub fn reserved(model: &str) -> String {
    format!("sn.{model}.reserved")
}

/// `sn.<model>.<kind>.<task>` for the per-task kinds.
pub fn task(kind: Kind, model: &str, task: Uuid) -> String {
    format!("sn.{model}.{}.{task}", kind.token())
}

pub fn requested(model: &str, task_id: Uuid) -> String {
    task(Kind::Requested, model, task_id)
}

pub fn generated(model: &str, task_id: Uuid) -> String {
    task(Kind::Generated, model, task_id)
}

/// Every event of one task, whatever its model: `sn.*.*.<task>`.
pub fn of_task(task_id: Uuid) -> String {
    format!("sn.*.*.{task_id}")
}

/// Every event of one model: `sn.<model>.>`.
pub fn of_model(model: &str) -> String {
    format!("sn.{model}.>")
}

/// A subject split into its parts; `None` for anything outside the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub model: &'a str,
    pub kind: Kind,
    pub task: Option<Uuid>,
}

pub fn parse(subject: &str) -> Option<Parsed<'_>> {
    let mut parts = subject.split('.');
    if parts.next()? != "sn" {
        return None;
    }
    let model = parts.next()?;
    let kind = Kind::from_token(parts.next()?)?;
    let task = match parts.next() {
        Some(t) => Some(Uuid::parse_str(t).ok()?),
        None => None,
    };
    if parts.next().is_some() || (kind == Kind::Reserved) != task.is_none() {
        return None;
    }
    Some(Parsed { model, kind, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_parser_agree() {
        let id = Uuid::new_v4();
        for kind in [
            Kind::Requested,
            Kind::Generated,
            Kind::Completed,
            Kind::Failed,
        ] {
            let s = task(kind, "0111", id);
            assert_eq!(
                parse(&s),
                Some(Parsed {
                    model: "0111",
                    kind,
                    task: Some(id)
                })
            );
        }
        assert_eq!(
            parse(&reserved("A-1")),
            Some(Parsed {
                model: "A-1",
                kind: Kind::Reserved,
                task: None
            })
        );
    }

    #[test]
    fn parser_rejects_foreign_subjects() {
        assert_eq!(parse("sn.0111.reserved.x"), None);
        assert_eq!(parse("sn.0111.generated"), None);
        assert_eq!(parse("other.0111.reserved"), None);
        assert_eq!(parse("sn.0111.bogus.1"), None);
    }
}
