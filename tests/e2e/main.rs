//! End-to-end tests: the real `tina4-wasm` binary serving real compiled
//! components, driven over real sockets by real WebSocket and HTTP clients.
//!
//! Build the host and the guests first (`scripts/test.sh` does both).

mod auth;
mod backplane;
mod browser;
mod build;
mod chat;
mod compression;
mod dashboard;
mod echo;
mod edge;
mod execution;
mod faults;
mod history;
mod hostile;
mod hot_swap;
mod http2;
mod http_routes;
mod lifecycle;
mod loading;
mod notifications;
mod operations;
mod outbound;
mod policy;
mod presence;
mod redis_server;
mod resources;
mod shared_history;
mod source_watch;
mod sse;
mod storage;
mod support;
mod tenancy;
mod timers;
mod tina4_projects;
mod tls;
mod web;
mod websocket;
