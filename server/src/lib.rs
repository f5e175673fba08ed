//! The `cairn` server as a library: the HTTP front end and its parts, so
//! that integration tests and fuzz targets can drive the routes without a
//! socket. The binary (`main.rs`) is the CLI around it.

pub mod collections;
pub mod compress;
pub mod config;
pub mod geojson;
pub mod http;
pub mod metrics;
pub mod params;
pub mod ratelimit;
pub mod replica;
