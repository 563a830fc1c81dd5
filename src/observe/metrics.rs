//! The Prometheus metrics of one server. Each server holds its own recorder
//! (no global one: several servers share a test process, and each must
//! report only its own calls). Hot paths hold pre-registered handles;
//! gauges of live state are set when scraped.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Histogram, Key, Label, Recorder as _, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use uuid::Uuid;

use super::methods::{self, Method};
use crate::domain::principal::RoleKind;

/// Latency buckets (seconds): the usual Prometheus ones, extended down to
/// 50 us because a lookup answers in tens of microseconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// gRPC status codes by number, named as grpc-prometheus (Go's `codes`) names them.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Handles of one RPC method's grpc-prometheus series.
struct MethodMetrics {
    method: &'static Method,
    started: Counter,
    seconds: Histogram,
    /// One counter per code, registered on first use.
    handled: [OnceLock<Counter>; 17],
}

/// The metrics of one server (all no-ops when metrics are off).
pub struct Metrics {
    exporter: Option<Exporter>,
    per_principal: bool,
    /// In the order of `methods::all()`.
    methods: Vec<MethodMetrics>,
}

/// What renders the text exposition.
struct Exporter {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Metrics {
    /// Metrics recorded and rendered; `per_principal` adds a series per token
    /// (it reveals who is connected, so it is off unless asked for).
    pub fn enabled(per_principal: bool) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("grpc_server_handling_seconds".into()), LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .build_recorder();
        let recorder = Arc::new(recorder);
        let handle = recorder.handle();
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(recorder.as_ref(), || process.describe());
        describe(&recorder);
        let register = |m: &'static Method| MethodMetrics {
            method: m,
            started: recorder.register_counter(&method_key("grpc_server_started_total", m, None), &METADATA),
            seconds: recorder.register_histogram(&method_key("grpc_server_handling_seconds", m, None), &METADATA),
            handled: Default::default(),
        };
        Self {
            methods: methods::all().iter().map(register).collect(),
            exporter: Some(Exporter {
                recorder,
                handle,
                process,
            }),
            per_principal,
        }
    }

    /// Nothing recorded (`--metrics-listen ""`).
    pub fn disabled() -> Self {
        let noop = |m: &'static Method| MethodMetrics {
            method: m,
            started: Counter::noop(),
            seconds: Histogram::noop(),
            handled: std::array::from_fn(|_| OnceLock::from(Counter::noop())),
        };
        Self {
            methods: methods::all().iter().map(noop).collect(),
            exporter: None,
            per_principal: false,
        }
    }

    /// Counts a call of the method at `methods::index` `method` as started.
    pub fn started(&self, method: usize) {
        self.methods[method].started.increment(1);
    }

    /// Records a call of `method` that ended with `code` after `seconds`.
    pub fn handled(&self, method: usize, code: i32, seconds: f64) {
        let m = &self.methods[method];
        let index = usize::try_from(code)
            .ok()
            .filter(|&c| c < CODE_NAMES.len())
            .unwrap_or(2);
        m.handled[index]
            .get_or_init(|| match &self.exporter {
                Some(e) => e.recorder.register_counter(
                    &method_key("grpc_server_handled_total", m.method, Some(code)),
                    &METADATA,
                ),
                None => Counter::noop(),
            })
            .increment(1);
        m.seconds.record(seconds);
    }

    /// Counts a call of `principal` (only with `--metrics-per-principal`).
    pub fn principal_call(&self, m: &Method, token: Uuid, role: RoleKind, code: i32) {
        let Some(exporter) = self.exporter.as_ref().filter(|_| self.per_principal) else {
            return;
        };
        let key = method_key("vpn_registry_principal_handled_total", m, Some(code)).with_extra_labels(vec![
            Label::new("token_id", token.to_string()),
            Label::new("role", role.as_str()),
        ]);
        exporter.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// Sets a gauge (at scrape time).
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, SharedString)], value: f64) {
        if let Some(e) = &self.exporter {
            e.recorder.register_gauge(&key(name, labels), &METADATA).set(value);
        }
    }

    /// Sets a counter kept elsewhere to its total (at scrape time).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, SharedString)], total: u64) {
        if let Some(e) = &self.exporter {
            e.recorder
                .register_counter(&key(name, labels), &METADATA)
                .absolute(total);
        }
    }

    /// The text exposition, after reading the process's own figures.
    /// `None` when metrics are off.
    pub fn render(&self) -> Option<String> {
        let e = self.exporter.as_ref()?;
        metrics::with_local_recorder(e.recorder.as_ref(), || e.process.collect());
        Some(e.handle.render())
    }

    /// Folds recorded latencies into their buckets (bounds memory between scrapes).
    pub fn upkeep(&self) {
        if let Some(e) = &self.exporter {
            e.handle.run_upkeep();
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.exporter.is_some()
    }
}

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

fn key(name: &'static str, labels: &[(&'static str, SharedString)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect();
    Key::from_parts(name, labels)
}

/// A grpc-prometheus series key: type, service, method (and code).
fn method_key(name: &'static str, m: &Method, code: Option<i32>) -> Key {
    let mut labels = vec![
        Label::new("grpc_type", m.kind.as_str()),
        Label::new("grpc_service", m.service),
        Label::new("grpc_method", m.name),
    ];
    if let Some(code) = code {
        let name = usize::try_from(code)
            .ok()
            .and_then(|c| CODE_NAMES.get(c))
            .unwrap_or(&"Unknown");
        labels.push(Label::new("grpc_code", *name));
    }
    Key::from_parts(name, labels)
}

/// HELP lines of our own series.
fn describe(r: &PrometheusRecorder) {
    let counters: &[(&'static str, &'static str)] = &[
        (
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
        ),
        (
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
        ),
        (
            "vpn_registry_watchers_dropped_total",
            "WatchChanges streams the server ended or refused, by reason.",
        ),
        ("vpn_registry_expiry_runs_total", "Passes of the expiry task."),
        (
            "vpn_registry_registrations_expired_total",
            "Registrations this server's expiry task expired.",
        ),
        (
            "vpn_registry_rate_limited_total",
            "Calls refused because their principal exceeded its role's rate limit.",
        ),
        (
            "vpn_registry_auth_failures_total",
            "Calls refused for a missing, unknown, revoked, expired or unbound token.",
        ),
        (
            "vpn_registry_principal_handled_total",
            "Calls completed per token (only with --metrics-per-principal).",
        ),
    ];
    for (name, help) in counters {
        r.describe_counter((*name).into(), None, (*help).into());
    }
    let gauges: &[(&'static str, &'static str)] = &[
        (
            "vpn_registry_feed_applied_serial",
            "Last change-feed serial applied to the lookup index.",
        ),
        (
            "vpn_registry_feed_lag_seconds",
            "Age of the oldest committed change not yet applied to the lookup index (0 when current).",
        ),
        (
            "vpn_registry_index_entries",
            "Entries (prefix, registration) in the lookup index.",
        ),
        ("vpn_registry_watchers", "WatchChanges streams open."),
        ("vpn_registry_credentials", "Active API tokens held in memory."),
        (
            "vpn_registry_registrations",
            "Registrations by state (refreshed every 30 s).",
        ),
        (
            "vpn_registry_db_pool_connections",
            "PostgreSQL pool connections by state.",
        ),
        (
            "vpn_registry_database_up",
            "1 when PostgreSQL answered the last health probe.",
        ),
        ("vpn_registry_ready", "1 when /readyz answers 200."),
        ("vpn_registry_uptime_seconds", "Seconds since this server started."),
        ("vpn_registry_build_info", "Always 1; labelled with the version."),
    ];
    for (name, help) in gauges {
        r.describe_gauge((*name).into(), None, (*help).into());
    }
    r.describe_histogram(
        "grpc_server_handling_seconds".into(),
        Some(Unit::Seconds),
        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.".into(),
    );
}
