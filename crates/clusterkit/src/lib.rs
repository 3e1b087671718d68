//! How a cluster on one machine is made, one way for `mailctl up`, the tests and the
//! benchmarks: certificates (rcgen, no `openssl` command). The node and front
//! configuration builder joins it (issue 19, point 1).

pub mod certs;
