//! The grammars of the workload fields, stated once: the OpenAPI document publishes these
//! schemas and the request parsers check the same patterns, so a client (or a fuzzer)
//! generating from the document and the server never disagree on what a duration, a size, an
//! environment name, a label or a constraint is.
//!
//! Where JSON Schema has a keyword for a rule, the schema uses it (`pattern`, `propertyNames`,
//! `maxProperties`, `prefixItems`, `if`/`then`). The numeric bounds of durations and sizes,
//! which a pattern cannot state, are published as `x-duration-min`/`x-duration-max` (ms),
//! `x-duration-at-least` (a sibling field), and a
//! repeated-port rule as `x-unique-by`; `cargo xtask fuzz` reads those keywords from the
//! document (xtask/fuzz_hooks.py).

use std::sync::LazyLock;
use std::time::Duration;

use orchestrator_core::workload::{MIN_DURATION, MIN_MEMORY_BYTES};
use orchestrator_core::{
    DeployPolicy, Error, Limits, MAX_DEREGISTER_DELAY, MAX_MONITOR, MAX_PROGRESS_DEADLINE, MAX_READY_DEADLINE,
    UpdatePolicy,
};
use regex::Regex;
use serde_json::{Value, json};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{Array, RefOr};

/// A Docker image reference (`local/busybox:1`, `reg.io:5000/a/b@sha256:...`).
pub const IMAGE: &str = "^(((localhost|[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+)(:[0-9]{1,5})?|[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?:[0-9]{1,5})/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*|[a-z0-9]+((_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)+|[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[a-z0-9+._-]+:[0-9a-fA-F]{32,})?$";
/// Go's and Compose's duration grammar in whole units: `1m30s`, `500ms`, `10s` (ns, us, ms, s,
/// m, h; `1.5s` is written `1500ms`: the parser's fractions lose precision in some units).
pub const DURATION: &str = r"^([0-9]{1,10}(ns|us|ms|s|m|h))+$";
/// A memory limit in Docker's binary units, 6 MiB to under 1 PiB, the range written into the
/// pattern itself: bytes (`6291456`, `6291456B`), or `K`, `M` (`64M`), `G` (`1.5G`), `T`,
/// each optionally followed by `B` or `iB` (any case; a byte count takes only the `B`).
/// A fraction only from `6.5M` up: "0.5G" is written "512M".
pub const MEMORY: &str = concat!(
    "^(",
    "(6(29145[6-9]|2914[6-9][0-9]|291[5-9][0-9]{2}|29[2-9][0-9]{3}|[3-9][0-9]{5})|[7-9][0-9]{6}|[1-9][0-9]{7,14})[bB]?",
    "|(",
    "(614[4-9]|61[5-9][0-9]|6[2-9][0-9]{2}|[7-9][0-9]{3}|[1-9][0-9]{4,11})[kK]",
    "|([6-9]|[1-9][0-9]{1,8})(\\.[0-9]{1,9})?[mM]",
    "|[1-9][0-9]{0,5}(\\.[0-9]{1,9})?[gG]",
    "|[1-9][0-9]{0,2}(\\.[0-9]{1,9})?[tT]",
    ")([iI]?[bB])?",
    ")$"
);
/// A duration of at least 1 ms: the grammar above in whole units from ms up, one of them not 0.
pub const DURATION_FROM_1MS: &str = "^([0-9]{1,10}(ms|s|m|h))*0{0,9}[1-9][0-9]{0,9}(ms|s|m|h)([0-9]{1,10}(ms|s|m|h))*$";
/// A shell's environment variable name.
pub const ENV_KEY: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Any text without NUL (no program can receive one).
pub const NO_NUL: &str = "^[^\\u0000]*$";
/// A label key, for containers and nodes.
pub const LABEL_KEY: &str = "^[A-Za-z0-9._/-]{1,128}$";
/// Deployment label keys the orchestrator keeps for itself.
pub const RESERVED_LABEL: &str = "^io\\.orchestrator\\.";
/// A node label value: 1 to 256 characters, no NUL, no white space (Unicode's) at either end.
pub const NODE_LABEL_VALUE: &str = concat!(
    "^[^\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
    "([^\\u0000]{0,254}[^\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
);
/// `node.labels.KEY == VALUE`, `node.name != NAME` (spaces around the operator optional).
pub const CONSTRAINT: &str =
    "^ *node\\.(name|labels\\.[A-Za-z0-9._/-]{1,128}) *(==|!=) *[^\\u0000-\\u0020\\u007f=!]{1,256} *$";

/// A host name: dot-separated labels of letters, digits and inner dashes (dotted IPv4 is one).
macro_rules! host_name {
    () => {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"
    };
}

/// A host name or an IPv6 address in brackets, written in hex groups.
pub const PUBLIC_HOST: &str = concat!(
    "^(",
    host_name!(),
    "|\\[(",
    "([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
    "|([0-9a-fA-F]{1,4}:){1,7}:",
    "|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    "|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}",
    "|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    "|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}",
    "|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    "|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}",
    "|:((:[0-9a-fA-F]{1,4}){1,7}|:)",
    ")\\])$"
);

/// A registry: a host name and an optional port, as image references name it.
pub const REGISTRY_SERVER: &str = concat!("^", host_name!(), "(:[0-9]{1,5})?$");

/// One event kind or family.
macro_rules! event_kind {
    () => {
        "deployment(\\.(crash_looping|created|deleted|scaled|unplaced|updated))?|image(\\.(pull_failed|pulled|pulling))?|leader(\\.elected)?|node(\\.(added|draining|offline|online|removed|updated))?|replica(\\.(deregistered|exited|health|lost|placed|removed|started))?|rollout(\\.(failed|paused|progressed|resumed|rolled_back|started|succeeded))?"
    };
}

/// `GET /v1/events?kind=`: event kinds and families, comma-separated (spaces and empty items
/// are ignored). Every kind of `EventKind::ALL` (a test holds the two together).
pub const EVENT_KINDS: &str = concat!("^ *(", event_kind!(), ")? *(, *(", event_kind!(), ")? *)*$");

/// Health check timings: at least Docker's 1 ms, at most a day.
pub const MIN_HEALTH_TIMING: Duration = MIN_DURATION;
pub const MAX_HEALTH_TIMING: Duration = Duration::from_secs(86_400);

static DURATION_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(DURATION).expect("the duration pattern"));
static DURATION_FROM_1MS_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DURATION_FROM_1MS).expect("the duration pattern"));
static MEMORY_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(MEMORY).expect("the memory pattern"));

/// The grammar a duration field with this floor is published and checked with: a floor of 1 ms
/// or more rules out "0s" and sub-millisecond units in the grammar itself.
fn duration_grammar(min: Duration) -> (&'static str, &'static Regex) {
    if min >= MIN_DURATION { (DURATION_FROM_1MS, &DURATION_FROM_1MS_RE) } else { (DURATION, &DURATION_RE) }
}

/// A duration as Compose writes one (`"1m30s"`, `"500ms"`, `"10s"`).
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, Error> {
    let bad = |why: String| {
        Error::invalid(field, format!("{text:?} is not a duration like \"10s\", \"1m30s\" or \"500ms\"{why}"))
    };
    if text.len() > 64 || !DURATION_RE.is_match(text) {
        return Err(bad(String::new()));
    }
    humantime::parse_duration(text).map_err(|e| bad(format!(": {e}")))
}

/// A duration written in the grammar above, largest units first (`1h30m`, `1m30s`, `1500ms`
/// is `1s500ms`, zero is `0s`): what a view shows a client can send back.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let sub = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(sub / 1_000_000), "ms"),
        (u64::from(sub / 1_000 % 1_000), "us"),
        (u64::from(sub % 1_000), "ns"),
    ];
    let text: String = parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if text.is_empty() { "0s".into() } else { text }
}

/// `parse_duration` within `min..=max`, the bounds named in the error.
pub fn parse_duration_within(field: &str, text: &str, min: Duration, max: Duration) -> Result<Duration, Error> {
    let (_, grammar) = duration_grammar(min);
    if text.len() > 64 || !grammar.is_match(text) {
        let floor = if min.is_zero() { "" } else { ", in whole ms, s, m or h, not 0" };
        return Err(Error::invalid(
            field,
            format!("{text:?} is not a duration like \"10s\", \"1m30s\" or \"500ms\"{floor}"),
        ));
    }
    let d = humantime::parse_duration(text).map_err(|e| Error::invalid(field, format!("{text:?}: {e}")))?;
    if d < min || d > max {
        let show = format_duration;
        return Err(Error::invalid(field, format!("must be between {} and {}, got {text:?}", show(min), show(max))));
    }
    Ok(d)
}

/// A memory limit: a size of the grammar above, 6 MiB to 1 PiB.
pub fn parse_memory(field: &str, text: &str) -> Result<u64, Error> {
    if !MEMORY_RE.is_match(text) {
        return Err(Error::invalid(
            field,
            format!("{text:?} is not a memory size from 6M to under 1P, like \"64M\", \"1.5G\" or \"6291456\""),
        ));
    }
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| Error::invalid(field, format!("{text:?} is not a size like \"64M\" or \"1G\": {e}")))?;
    debug_assert!(bytes >= MIN_MEMORY_BYTES, "the pattern's floor");
    Ok(bytes)
}

/// JSON Schema keywords utoipa has no builder for (`not`, `if`/`then`/`else`, `prefixItems`)
/// and this module's `x-` bounds, set on a schema as they are written.
fn keywords(value: Value) -> Option<Extensions> {
    let Value::Object(map) = value else { return None };
    Some(map.into_iter().collect())
}

/// Entries of a map or list field, as `Limits` bounds them.
fn max_entries() -> usize {
    Limits::default().max_entries
}

fn string(pattern: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern))
}

/// A duration field between `min` and `max`, or null, whose default (or example) is `default`;
/// `at_least`: a sibling duration it may not be under, with that sibling's default (each
/// default counts when the field is absent).
fn duration_schema(min: Duration, max: Duration, default: Duration, at_least: Option<(&str, Duration)>) -> Schema {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut extra = json!({"x-duration-min": millis(min), "x-duration-max": millis(max)});
    if let Some((field, sibling)) = at_least {
        extra["x-duration-at-least"] =
            json!({"field": field, "default": format_duration(sibling), "own_default": format_duration(default)});
    }
    let (pattern, _) = duration_grammar(min);
    let schema = string(pattern).max_length(Some(64)).examples([json!(format_duration(default))]);
    or_null(schema.extensions(keywords(extra)))
}

/// `schema` or `null` (an optional field a request may give as null).
pub fn or_null(schema: impl Into<Schema>) -> Schema {
    let null = ObjectBuilder::new().schema_type(Type::Null).build();
    Schema::OneOf(OneOfBuilder::new().item(null).item(schema.into()).build())
}

pub fn memory_schema_or_null() -> Schema {
    or_null(memory_schema())
}

pub fn health_test_schema_or_null() -> Schema {
    or_null(health_test_schema())
}

pub fn memory_schema() -> Object {
    string(MEMORY).examples([json!("64M")]).build()
}

pub fn env_schema() -> Object {
    ObjectBuilder::new()
        .property_names(Some(string(ENV_KEY)))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(string(NO_NUL).build())))))
        .max_properties(Some(max_entries()))
        .examples([json!({"GREETING": "hello"})])
        .build()
}

/// Container labels: keys not under `io.orchestrator.`, values without NUL.
pub fn labels_schema() -> Object {
    let names = string(LABEL_KEY).extensions(keywords(json!({"not": {"pattern": RESERVED_LABEL}})));
    ObjectBuilder::new()
        .property_names(Some(names))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(string(NO_NUL).build())))))
        .max_properties(Some(max_entries()))
        .build()
}

pub fn node_labels_schema() -> Object {
    ObjectBuilder::new()
        .property_names(Some(string(LABEL_KEY)))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            string(NODE_LABEL_VALUE).build(),
        )))))
        .max_properties(Some(max_entries()))
        .examples([json!({"zone": "a"})])
        .build()
}

pub fn constraints_schema() -> Array {
    ArrayBuilder::new()
        .items(string(CONSTRAINT))
        .max_items(Some(max_entries()))
        .examples([json!(["node.labels.zone == a"])])
        .build()
}

/// Ports: each published port/protocol once (`x-unique-by`, `tcp` when absent).
pub fn ports_schema() -> Array {
    ArrayBuilder::new()
        .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("PortRequest")))
        .max_items(Some(max_entries()))
        .extensions(keywords(
            json!({"x-unique-by": {"fields": ["published", "protocol"], "defaults": {"protocol": "tcp"}}}),
        ))
        .build()
}

/// `["CMD", program, args..]` or `["CMD-SHELL", command]`.
pub fn health_test_schema() -> Array {
    let shape = json!({"anyOf": [
        {"prefixItems": [{"const": "CMD"}], "minItems": 2},
        {"prefixItems": [{"const": "CMD-SHELL"}], "minItems": 2, "maxItems": 2},
    ]});
    ArrayBuilder::new()
        .items(string(NO_NUL))
        .max_items(Some(256))
        .examples([json!(["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"])])
        .extensions(keywords(shape))
        .build()
}

/// What a health check object may hold: `{"disable": true}` alone, or a `test` with timings.
pub fn healthcheck_rules() -> Option<Extensions> {
    keywords(json!({
        "if": {"properties": {"disable": {"const": true}}, "required": ["disable"]},
        // A null field is an absent one.
        "then": {"properties": {
            "test": {"type": "null"}, "interval": {"type": "null"}, "timeout": {"type": "null"},
            "retries": {"type": "null"}, "start_period": {"type": "null"},
        }},
        "else": {"required": ["test"], "properties": {"test": {"type": "array"}}},
    }))
}

/// An update policy may not make start-first replace nothing: `max_surge` 0 needs
/// `max_unavailable` of at least 1 (its default is 0), unless the order is stop-first.
pub fn update_policy_rules() -> Option<Extensions> {
    keywords(json!({
        "if": {
            "properties": {"max_surge": {"const": 0}, "order": {"not": {"const": "stop-first"}}},
            "required": ["max_surge"],
        },
        "then": {"properties": {"max_unavailable": {"type": "integer", "minimum": 1}}, "required": ["max_unavailable"]},
    }))
}

pub fn image_schema() -> Object {
    string(IMAGE).max_length(Some(255)).examples([json!("local/busybox:1")]).build()
}

pub fn image_schema_or_null() -> Schema {
    or_null(image_schema())
}

/// At most 256 arguments, none with a NUL (no program can receive one).
pub fn command_schema() -> Array {
    ArrayBuilder::new().items(string(NO_NUL)).max_items(Some(256)).build()
}

pub fn command_schema_or_null() -> Schema {
    or_null(command_schema())
}

pub fn env_schema_or_null() -> Schema {
    or_null(env_schema())
}

pub fn ports_schema_or_null() -> Schema {
    or_null(ports_schema())
}

pub fn labels_schema_or_null() -> Schema {
    or_null(labels_schema())
}

pub fn node_labels_schema_or_null() -> Schema {
    or_null(node_labels_schema())
}

pub fn constraints_schema_or_null() -> Schema {
    or_null(constraints_schema())
}

/// A host name, an IPv4 address or a bracketed IPv6 address (hex groups), or null.
pub fn public_host_schema() -> Schema {
    or_null(string(PUBLIC_HOST).max_length(Some(253)).examples([json!("10.123.0.11")]))
}

pub fn registry_server_schema() -> Object {
    string(REGISTRY_SERVER).max_length(Some(253)).examples([json!("10.123.0.1:5000")]).build()
}

pub fn event_kinds_schema() -> Object {
    string(EVENT_KINDS).examples([json!("replica.exited,rollout")]).build()
}

pub fn stop_grace_schema() -> Schema {
    duration_schema(Duration::ZERO, Limits::default().max_stop_grace, Duration::from_secs(10), None)
}

pub fn deregister_delay_schema() -> Schema {
    duration_schema(Duration::ZERO, MAX_DEREGISTER_DELAY, DeployPolicy::default().deregister_delay, None)
}

pub fn monitor_schema() -> Schema {
    duration_schema(Duration::ZERO, MAX_MONITOR, UpdatePolicy::default().monitor, None)
}

pub fn ready_deadline_schema() -> Schema {
    duration_schema(MIN_DURATION, MAX_READY_DEADLINE, UpdatePolicy::default().ready_deadline, None)
}

pub fn progress_deadline_schema() -> Schema {
    let defaults = UpdatePolicy::default();
    duration_schema(
        Duration::ZERO,
        MAX_PROGRESS_DEADLINE,
        defaults.progress_deadline,
        Some(("monitor", defaults.monitor)),
    )
}

/// A health check's interval, timeout or start period.
pub fn health_timing_schema() -> Schema {
    duration_schema(MIN_HEALTH_TIMING, MAX_HEALTH_TIMING, Duration::from_secs(1), None)
}

/// A component's schema with `rules` that need the whole object, or null.
fn with_rules(component: &str, rules: Option<Extensions>) -> Schema {
    let rule = ObjectBuilder::new().extensions(rules).build();
    or_null(Schema::AllOf(
        AllOfBuilder::new().item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(component))).item(rule).build(),
    ))
}

/// An update or rollback policy field: the policy with its start-first rule.
pub fn update_policy_schema() -> Schema {
    with_rules("UpdatePolicyRequest", update_policy_rules())
}

/// A health check field: the object with its disable-or-test rule.
pub fn healthcheck_schema() -> Schema {
    with_rules("HealthcheckRequest", healthcheck_rules())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_kind_pattern_names_every_kind_and_family_and_nothing_else() {
        let re = Regex::new(EVENT_KINDS).unwrap();
        for kind in orchestrator_core::EventKind::ALL {
            let (family, _) = kind.as_str().split_once('.').unwrap();
            for text in [kind.as_str(), family, &format!(" {family} , {} ,", kind.as_str())] {
                assert!(re.is_match(text), "{text}");
            }
        }
        for bad in ["node.crash_looping", "nod", "replica.", "rollout.*", "leader.lost", "@"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn durations_follow_the_grammar_and_its_units() {
        for ok in ["1m30s", "500ms", "1500ms", "10us", "3ns", "1h1h", "0s", "9999999999h9999999999h"] {
            assert!(parse_duration("d", ok).is_ok(), "{ok}");
        }
        for bad in ["1 hour", "2d", "5min", "", "s", "1s ", " 1s", "-1s", "1e3s", "1,5s", "1.5s", "0.000000001h"] {
            let err = parse_duration("d", bad).unwrap_err();
            assert!(err.to_string().contains("not a duration"), "{bad}: {err}");
        }
        let ms = Duration::from_millis(1);
        for ok in ["1ms", "0s1ms", "00001s", "1m0s", "00004761212ms", "95ms4h00000000322s"] {
            assert!(parse_duration_within("d", ok, ms, Duration::MAX).is_ok(), "{ok}");
        }
        for below in ["0s", "0ms0s", "999us", "0.5ms", "1ns"] {
            assert!(parse_duration_within("d", below, ms, Duration::MAX).is_err(), "{below}");
        }
        let hour = Duration::from_secs(3600);
        assert!(parse_duration_within("d", "61m", Duration::ZERO, hour).unwrap_err().to_string().contains("between"));
        assert_eq!(parse_duration_within("d", "59m60s", Duration::ZERO, hour).unwrap(), hour);
    }

    #[test]
    fn a_written_duration_reads_back_as_itself() {
        for d in [0, 1, 999, 1_000_000, 1_500_000_000, 90_000_000_000, 86_400_000_000_000, 3_723_004_005_006] {
            let d = Duration::from_nanos(d);
            let text = format_duration(d);
            assert_eq!(parse_duration("d", &text).unwrap(), d, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
    }

    /// A published pattern without its anchors, for proptest's generator (which has none).
    fn unanchored(pattern: &str) -> &str {
        pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("an anchored pattern")
    }

    proptest::proptest! {
        // A client generating from the document is never refused by the parser: the fuzzer
        // found "6890472bIB", which the pattern took (a `B` then an `iB`) and no parser does.
        #[test]
        fn every_size_the_memory_pattern_takes_is_parsed_within_bounds(
            text in proptest::string::string_regex(unanchored(MEMORY)).unwrap()
        ) {
            let bytes = parse_memory("m", &text).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert!((MIN_MEMORY_BYTES..1 << 50).contains(&bytes), "{text}");
        }

        #[test]
        fn every_constraint_and_image_the_patterns_take_is_parsed(
            constraint in proptest::string::string_regex(unanchored(CONSTRAINT)).unwrap(),
            image in proptest::string::string_regex(unanchored(IMAGE)).unwrap(),
        ) {
            orchestrator_core::Constraint::parse(&constraint, "c")
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            if image.len() <= 255 {
                orchestrator_core::ImageRef::parse(&image)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            }
        }

        // The repetitions bounded so that most strings drawn are within the published 64 characters.
        #[test]
        fn every_duration_the_patterns_take_is_parsed(
            any in proptest::string::string_regex(&unanchored(DURATION).replace(")+", "){1,4}")).unwrap(),
            from_1ms in proptest::string::string_regex(&unanchored(DURATION_FROM_1MS).replace(")*", "){0,2}")).unwrap(),
        ) {
            proptest::prop_assume!(any.len() <= 64 && from_1ms.len() <= 64);
            parse_duration("d", &any).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let d = parse_duration_within("d", &from_1ms, MIN_DURATION, Duration::MAX)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert!(d >= MIN_DURATION);
        }
    }

    #[test]
    fn memory_is_a_size_between_the_engines_floor_and_a_pebibyte() {
        for (text, bytes) in [
            ("64M", 64 << 20),
            ("64MiB", 64 << 20),
            ("64mb", 64 << 20),
            ("1.5g", 3 << 29),
            ("6291456", 6 << 20),
            ("6291456B", 6 << 20),
            ("6291456b", 6 << 20),
            ("6144K", 6 << 20),
            ("6144kib", 6 << 20),
            ("6m", 6 << 20),
            ("999T", 999 << 40),
        ] {
            assert_eq!(parse_memory("m", text).unwrap(), bytes, "{text}");
        }
        for bad in [
            "5M",
            "6291455",
            "6143K",
            "0",
            "0.5G",
            "2P",
            "1024T",
            "064M",
            "64 M",
            "lots",
            "1e9",
            "-64M",
            "9999999999999999",
            "6890472bIB",
            "6291456iB",
        ] {
            assert!(parse_memory("m", bad).is_err(), "{bad}");
        }
        // Every size the pattern takes is at least the engine's floor and under a pebibyte.
        for digits in 1..=16 {
            for lead in ["1", "5", "6", "9"] {
                let n = format!("{lead}{}", "0".repeat(digits - 1));
                for unit in ["", "b", "k", "m", "g", "t", "Kib", "MB"] {
                    if let Ok(bytes) = parse_memory("m", &format!("{n}{unit}")) {
                        assert!((MIN_MEMORY_BYTES..1 << 50).contains(&bytes), "{n}{unit}");
                    }
                }
            }
        }
    }
}
