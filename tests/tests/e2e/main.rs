//! End-to-end tests: the real portal, its real Mosquitto and real agents, all on loopback.
//! One test binary so the tests run in parallel; each test starts its own portal on free ports.

mod activation;
mod control;
mod discovery;
mod isolation;
mod lifecycle;
mod mqtt;
mod people;
mod presence;
mod resilience;
mod settings;
mod subscription;
mod systemd;
mod update;
mod web;
