//! The built-in supervisor (DESIGN §7): keeps the gateway and N runner processes true to
//! the config, restarts them with backoff, reloads in place, serves the control socket
//! and speaks sd_notify to systemd.
//!
//! It owns processes, never jobs: it knows nothing of the store, the queue or the
//! runner<->gateway protocol beyond the readiness pipe its children write to.
