//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod chromium;
pub mod cli;
pub mod controller;
pub mod dojo;
pub mod http_thread;
pub mod kube_http;
pub mod kube_server;
pub mod postgres;
pub mod proxy;
pub mod reports;
pub mod slack;
pub mod smtp;
pub mod teams;
pub mod trivy;
pub mod webhook;
