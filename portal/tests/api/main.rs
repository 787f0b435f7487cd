//! API and app tests: the real axum router and app on a temporary SQLite database, with a recording fake
//! broker and command sender (real Mosquitto is exercised by the broker and end-to-end tests).

mod account;
mod activation;
mod agents;
mod branding;
mod commands;
mod control;
mod devices;
mod diagnostics;
mod groups;
mod harness;
mod ingest;
mod lifecycle;
mod openapi;
mod owner;
mod people;
mod releases;
mod renewals;
mod roles;
mod rollouts;
mod search;
mod settings;
mod sites;
mod team_pages;
mod web;
