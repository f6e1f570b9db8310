//! A simulated Oz API for tests, `demo` and integrators without an Oz account.
